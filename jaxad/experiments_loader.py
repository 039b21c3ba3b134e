"""Loads an experiment file (experiments/*.py): `get_config(arg)` returns {"run": {...}, "set": {...}}.

Optional keys: "sweep" (a sweep section: "grid", "members_per_chunk", "memory_budget_gb", "select" and
"shard", as `jaxad.sweep.grid.check_section` checks them), "notes", and "paper": the published numbers the run
reproduces, {"source": text, <metric>: value in [0, 1], ...} with metrics named as in the reports
(`jaxad.evaluate.report.METRIC_ORDER`); `jaxad fit` then writes paper_comparison.{json,md}.

`path:arg` passes `arg` to get_config (e.g. `experiments/supersimplenet_mvtec.py:smoke`); a file may list
the arguments it knows in `ARGS` (None for none), and any other is refused.
"""

from __future__ import annotations

import importlib.util
import traceback
import types
import typing
from pathlib import Path

from jaxad.errors import ConfigError
from jaxad.run import RunConfig
from jaxad.sweep.grid import check_section


def _describe(e: Exception, file: Path) -> str:
  """The exception and the line of the experiment file it came from."""
  if isinstance(e, SyntaxError):
    return f"SyntaxError at line {e.lineno}: {e.msg}"
  lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == file.absolute()]
  return f"{type(e).__name__}: {e}" + (f" (line {lines[-1]})" if lines else "")


def _check_paper(paper, file: Path) -> None:
  from jaxad.evaluate.report import METRIC_ORDER
  if paper is None:
    return
  if not isinstance(paper, dict) or not isinstance(paper.get("source"), str):
    raise ConfigError(f"{file}: 'paper' must be a dict with a 'source' text and metric values")
  for key, value in paper.items():
    if key == "source":
      continue
    if key not in METRIC_ORDER:
      raise ConfigError(f"{file}: paper metric {key!r} is not a report metric; known: {', '.join(METRIC_ORDER)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
      raise ConfigError(f"{file}: paper {key}={value!r} must be a number in [0, 1] (reports are not ×100)")


def _check_run(run, file: Path) -> dict:
  """The run section with each value checked against its RunConfig field's type (a list for a tuple
  field becomes a tuple); a wrong type is a ConfigError naming the field, not a failure deep in the run."""
  if not isinstance(run, dict):
    raise ConfigError(f"{file}: 'run' must be a dict of run fields {{name: value}}, got {run!r}")
  hints = typing.get_type_hints(RunConfig)
  unknown = sorted(map(str, set(run) - set(hints)))
  if unknown:
    raise ConfigError(f"{file}: unknown run field(s) {', '.join(unknown)}; known: {', '.join(sorted(hints))}")
  checked = {}
  for key, value in run.items():
    hint = hints[key]
    kinds = [typing.get_origin(k) or k for k in (typing.get_args(hint) if isinstance(hint, types.UnionType) else
                                                 (hint,))]  # e.g. [int, NoneType], [tuple]
    if tuple in kinds and isinstance(value, list) and all(isinstance(v, str) for v in value):
      value = tuple(value)
    if not any(_is_a(value, kind) for kind in kinds):
      want = " or ".join(_KIND_NAMES[k] for k in kinds)
      example = f" (one category: ({value!r},))" if tuple in kinds and isinstance(value, str) else ""
      raise ConfigError(f"{file}: run field {key!r} must be {want}, got {value!r}{example}")
    checked[key] = value
  return checked


_KIND_NAMES = {type(None): "None", tuple: "a tuple of texts", int: "an integer", float: "a number", str: "a text",
               bool: "True or False", dict: "a dict"}


def _is_a(value, kind) -> bool:
  if kind is type(None):
    return value is None
  if isinstance(value, bool) or kind is bool:  # True is an int to Python, not to a run field
    return isinstance(value, bool) and kind is bool
  if kind is float:
    return isinstance(value, (int, float))
  if kind is tuple:
    return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
  return isinstance(value, kind)


def load_experiment(spec: str) -> dict:
  path, _, arg = spec.partition(":")
  file = Path(path)
  if not file.exists():
    raise ConfigError(f"experiment file {file} does not exist")
  if not file.is_file() or file.suffix != ".py":
    raise ConfigError(f"experiment file {file} is not a Python file (experiments/*.py)")
  module_spec = importlib.util.spec_from_file_location(f"jaxad_experiment_{file.stem}", file)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:
    raise ConfigError(f"experiment file {file} failed to load: {_describe(e, file)}") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"experiment file {file} has no get_config(arg) function")
  accepted = getattr(module, "ARGS", None)  # optional: the arguments the file knows
  if accepted is not None and (arg or None) not in accepted:
    names = ", ".join("none" if a is None else repr(a) for a in accepted)
    raise ConfigError(f"experiment file {file}: unknown argument {arg!r}; it takes {names}")
  try:
    cfg = module.get_config(arg or None)
  except ConfigError:
    raise
  except Exception as e:
    raise ConfigError(f"experiment file {file}: get_config({arg or None!r}) failed: {_describe(e, file)}") from None
  if not isinstance(cfg, dict) or not set(cfg) <= {"run", "set", "sweep", "notes", "paper"}:
    raise ConfigError(f"{file}: get_config must return a dict with keys run/set (and optionally sweep, notes, "
                      f"paper)")
  _check_paper(cfg.get("paper"), file)
  if "sweep" in cfg:
    check_section(cfg["sweep"], file)
  cfg["run"] = _check_run(cfg.get("run", {}), file)
  settings = cfg.get("set", {})
  if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
    raise ConfigError(f"{file}: 'set' must be a dict of model settings {{name: value}}, got {settings!r}")
  cfg["set"] = _as_text(settings)
  if "category_settings" in cfg.get("run", {}):
    from jaxad.run import check_category_settings
    try:
      check_category_settings(cfg["run"]["category_settings"])
    except ConfigError as e:
      raise ConfigError(f"{file}: {e}") from None
    cfg["run"]["category_settings"] = {p: _as_text(v) for p, v in cfg["run"]["category_settings"].items()}
  return cfg


def _as_text(settings: dict) -> dict[str, str]:
  """Settings as `--set` gives them: text, sequences comma-joined."""
  return {k: str(v) if not isinstance(v, (tuple, list)) else ",".join(map(str, v)) for k, v in settings.items()}
