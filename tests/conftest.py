"""Test settings: fake 4 CPU devices (sharding tests), strict numerics, quick compiles."""

import os

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAXAD_COMPILATION_CACHE", "0")  # CLI tests must not write to ~/.cache

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def rng():
  return np.random.default_rng(0)
