"""Loads an experiment file (experiments/*.py): `get_config(arg)` returns {"run": {...}, "set": {...}}.

`path:arg` passes `arg` to get_config (e.g. `experiments/supersimplenet_mvtec.py:smoke`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from jaxad.errors import ConfigError


def load_experiment(spec: str) -> dict:
  path, _, arg = spec.partition(":")
  file = Path(path)
  if not file.exists():
    raise ConfigError(f"experiment file {file} does not exist")
  module_spec = importlib.util.spec_from_file_location(f"jaxad_experiment_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"experiment file {file} has no get_config(arg) function")
  cfg = module.get_config(arg or None)
  if not isinstance(cfg, dict) or not set(cfg) <= {"run", "set", "sweep", "notes"}:
    raise ConfigError(f"{file}: get_config must return a dict with keys run/set (and optionally sweep, notes)")
  cfg["set"] = {k: str(v) if not isinstance(v, (tuple, list)) else ",".join(map(str, v))
                for k, v in cfg.get("set", {}).items()}
  return cfg
