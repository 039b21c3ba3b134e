"""`jaxad fit`: train a method on one or more categories, then evaluate on the test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from jaxad import atomic


WORKDIR_HELP = "output folder (default: the --config file's workdir, else runs/<model>_<data>)"


def add_common(p: argparse.ArgumentParser, workdir_help: str = WORKDIR_HELP) -> None:
  from jaxad.cli.data import add_layout_arguments
  p.add_argument("--model", default=None, help="method: supersimplenet (default), simplenet or efficient_ad")
  p.add_argument("--data", default=None,
                 help="dataset root (MVTec AD, MVTec LOCO, VisA, KSDD2 or folder layout), tfds:<name>, "
                      "or 'embedded' (default)")
  p.add_argument("--category", action="append", default=None,
                 help="category to use (repeatable); default: every category")
  p.add_argument("--backbone", default=None, help="backbone name, e.g. wide_resnet50_2, efficientnet_lite0")
  p.add_argument("--workdir", default=None, help=workdir_help)
  p.add_argument("--config", default=None, help="experiment file (experiments/*.py) whose get_config() sets defaults")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a setting of the model (Static or Hparams field) or of the run, e.g. epochs=40")
  add_layout_arguments(p)


def register(subparsers) -> None:
  p = subparsers.add_parser("fit", help="train and evaluate a model", description=__doc__)
  add_common(p)
  p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.set_defaults(func=main)


def resolve_run(args):
  """(RunConfig, overrides) from the command line and an optional experiment file.

  Also applies `--max-steps` and `--no-progress` when the subcommand has them.
  """
  import dataclasses
  from jaxad import config as config_lib
  from jaxad.cli.data import layout_options
  from jaxad.errors import ConfigError
  from jaxad.experiments_loader import load_experiment
  from jaxad.run import RunConfig

  overrides: dict[str, str] = {}
  run = RunConfig()
  if args.config:
    exp = load_experiment(args.config)
    overrides.update(exp.get("set", {}))
    run = dataclasses.replace(run, **exp.get("run", {}))
  overrides.update(config_lib.parse_set_args(args.set))
  if "data_options" in overrides:
    raise ConfigError("data_options cannot be --set; give the dataset layout flags (--format, --normal-dir, ...) "
                      "or an experiment file's run['data_options']")
  if args.backbone:
    overrides["backbone"] = args.backbone
  if run.category_settings:  # the command line wins over an experiment's per-category settings
    from jaxad.run import check_category_settings
    check_category_settings(run.category_settings)
    given = set(config_lib.parse_set_args(args.set)) | ({"backbone"} if args.backbone else set())
    run = dataclasses.replace(run, category_settings={
        pattern: {k: v for k, v in values.items() if k not in given} for pattern, values in run.category_settings.items()})
  run_keys = {f.name for f in dataclasses.fields(RunConfig)}
  run = config_lib.apply_overrides(run, {k: v for k, v in overrides.items() if k in run_keys})
  model_overrides = {k: v for k, v in overrides.items() if k not in run_keys}
  updates = {}
  if args.model:
    updates["model"] = args.model
  if args.data:
    updates["data"] = args.data
  if args.category:
    updates["categories"] = tuple(args.category)
  if layout_options(args):
    updates["data_options"] = {**run.data_options, **layout_options(args)}
  run = dataclasses.replace(run, **updates)
  if getattr(args, "max_steps", None) is not None:
    run = dataclasses.replace(run, max_steps=args.max_steps)
  if run.max_steps is not None and run.max_steps < 1:
    raise ConfigError(f"max_steps must be at least 1, got {run.max_steps}")
  if getattr(args, "no_progress", False):
    run = dataclasses.replace(run, progress=False)
  if args.workdir:
    run = dataclasses.replace(run, workdir=args.workdir)
  elif run.workdir == RunConfig.workdir:
    tag = run.data.replace("/", "_").replace(":", "_").strip("_.")[-40:]
    run = dataclasses.replace(run, workdir=f"runs/{run.model}_{tag}")
  if run.data != "embedded" and not run.data.startswith("tfds:") and Path(run.data).expanduser().exists():
    run = dataclasses.replace(run, data=str(Path(run.data).expanduser().resolve()))  # `jaxad test` from anywhere
  return run, model_overrides


def compare_with_paper(args, rows: list[dict], workdir: str) -> None:
  """Writes and prints paper_comparison.* when the experiment file gives paper numbers and the run
  covered the experiment's categories (a `--category` subset is not compared). A `--max-steps` run is
  compared with a warning in the header; other `--set` changes are the user's to judge."""
  from jaxad.evaluate.report import markdown_table, paper_comparison
  from jaxad.experiments_loader import load_experiment

  paper = load_experiment(args.config).get("paper") if args.config else None
  if not paper:
    return
  if args.category:
    print(f"\nnot compared with {paper['source']}: --category trains a subset of the experiment's categories")
    return
  comparison = paper_comparison(rows, paper)
  if comparison:
    max_steps = getattr(args, "max_steps", None)
    note = ("" if max_steps is None else
            f"**Not a reproduction**: --max-steps {max_steps} stopped training before the paper's schedule ended.\n\n")
    text = f"Against {paper['source']} (difference = jaxad − paper):\n\n{note}{markdown_table(comparison)}\n"
    out = Path(workdir)
    atomic.write_text(out / "paper_comparison.md", text)
    atomic.write_text(out / "paper_comparison.json", json.dumps({"source": paper["source"], "max_steps": max_steps,
                                                                        "rows": comparison}, indent=2))
    print("\n" + text, end="")


def main(args) -> int:
  from jaxad.evaluate.report import markdown_table
  from jaxad.run import run as run_all

  run, overrides = resolve_run(args)
  rows = run_all(run, overrides)
  print(markdown_table(rows))
  compare_with_paper(args, rows, run.workdir)
  print(f"\nreports, overlays and checkpoints: {run.workdir}")
  return 0
