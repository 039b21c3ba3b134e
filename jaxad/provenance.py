"""What produced a result: the command, package versions, devices, git commit, XLA flags."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

_PACKAGES = ("jaxad", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "tensorflow-datasets")


def git_commit(path: str | os.PathLike | None = None) -> dict:
  """{"commit": sha or None, "dirty": bool or None} of the repository holding `path` (default: jaxad's).

  Dirty means changed tracked files outside benchmarks/results/, where a benchmark rewriting its own
  results file (after every row) would otherwise mark its record dirty."""
  cwd = Path(path) if path else Path(__file__).resolve().parent
  try:
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    if sha.returncode != 0:
      return {"commit": None, "dirty": None}
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True,
                         timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results"], cwd=top or cwd, capture_output=True, text=True, timeout=10)
    return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
  except (OSError, subprocess.SubprocessError):
    return {"commit": None, "dirty": None}


def versions() -> dict:
  out = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def collect() -> dict:
  """Full provenance record (imports jax)."""
  import jax
  devices = jax.devices()
  return {
      "time_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "command": shlex.join(sys.argv),  # what ran, e.g. `jaxad fit --config experiments/x.py:128 --set …`
      "cwd": os.getcwd(),
      "versions": versions(),
      "git": git_commit(),
      "devices": [str(d) for d in devices],
      "device_kind": devices[0].device_kind if devices else None,
      "platform": devices[0].platform if devices else None,
      "host": platform.node(),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "matmul_precision": str(jax.config.jax_default_matmul_precision),
  }
