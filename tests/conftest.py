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


@pytest.fixture(scope="session")
def train_data():
  """Eight normal 32 × 32 training images of Gaussian noise, as the training loop takes them."""
  from jaxad.train.loop import SplitData
  image = np.random.default_rng(1).normal(size=(8, 32, 32, 3)).astype(np.float32)
  return SplitData(image=image, mask=np.zeros((8, 32, 32), np.float32), label=np.zeros(8, np.int32),
                   is_segmented=np.ones(8, bool))


@pytest.fixture(scope="session")
def load_benchmark():
  """Imports `benchmarks/<name>.py` as a module (benchmarks/ is not a package)."""
  import importlib.util
  import sys
  from pathlib import Path

  def load(name: str):
    if name not in sys.modules:
      spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "benchmarks" / f"{name}.py")
      module = importlib.util.module_from_spec(spec)
      sys.modules[name] = module  # dataclasses look their module up while the class is built
      spec.loader.exec_module(module)
    return sys.modules[name]
  return load


# `./scripts/test.sh` installs the test and parity extras and sets JAXAD_REQUIRE_PARITY=1: a test
# skipped because one of their packages (torch, anomalib, sklearn, ...) cannot be imported then fails
# the run instead of passing it quietly (an import broken by a dependency update would otherwise
# hide every parity check).
_IMPORT_SKIPS: dict[str, str] = {}


def _note_import_skip(report) -> None:
  if report.skipped:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "could not import" in reason:
      _IMPORT_SKIPS.setdefault(report.nodeid, reason)


pytest_collectreport = pytest_runtest_logreport = _note_import_skip


def pytest_sessionfinish(session, exitstatus):
  if (os.environ.get("JAXAD_REQUIRE_PARITY") == "1" and _IMPORT_SKIPS
      and not hasattr(session.config, "workerinput")):  # the controller (or a run without xdist) decides
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"JAXAD_REQUIRE_PARITY=1, but {len(_IMPORT_SKIPS)} test(s) skipped for a missing import:"]
    lines += [f"  {nodeid}: {reason}" for nodeid, reason in sorted(_IMPORT_SKIPS.items())]
    if reporter:
      reporter.ensure_newline()
    for line in lines:
      if reporter:
        reporter.write_line(line, red=True)
      else:
        print(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
