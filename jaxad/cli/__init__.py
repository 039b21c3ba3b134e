"""The `jaxad` console command.

Each subcommand lives in its own module `jaxad/cli/<name>.py` exposing
`register(subparsers)`, which adds its parser and sets `func` (a callable taking the
parsed namespace and returning an exit code). Heavy imports (jax, models) happen inside
the handlers so that `jaxad --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from jaxad.errors import JaxadError

# Explicit list (no discovery): the order is the order shown by `jaxad --help`.
COMMANDS = ("data", "weights", "fit", "sweep", "extract", "test", "predict", "export", "distill")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxad",
      description="Industrial visual anomaly detection in JAX: SimpleNet, SuperSimpleNet, EfficientAD.",
  )
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for name in COMMANDS:
    importlib.import_module(f"jaxad.cli.{name}").register(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except JaxadError as e:  # A problem with the user's input: one clear line, no traceback.
    print(f"jaxad {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
