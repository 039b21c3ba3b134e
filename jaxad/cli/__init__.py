"""The `jaxad` console command.

Each subcommand lives in its own module `jaxad/cli/<name>.py` exposing
`register(subparsers)`, which adds its parser and sets `func` (a callable taking the
parsed namespace and returning an exit code). Heavy imports (jax, models) happen inside
the handlers so that `jaxad --help` stays instant.

Commands that compile keep XLA's persistent compilation cache in `<$JAXAD_CACHE or
~/.cache/jaxad>/xla`, so a second `jaxad fit` of the same configuration skips most compilation
(`jaxad fit --model efficient_ad --data embedded --category brick --set image_size=64,64 --set
out_channels=16 --set teacher=random --set penalty=none --max-steps 2`, 2 CPU cores, whole command:
41 s with the cache off, 25 s with it warm).
`JAXAD_COMPILATION_CACHE=0` turns it off; a cache directory set through jax's own configuration
(`JAX_COMPILATION_CACHE_DIR`) is left as it is.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from jaxad.errors import JaxadError

# Explicit list (no discovery): the order is the order shown by `jaxad --help`.
COMMANDS = ("data", "weights", "fit", "sweep", "extract", "test", "predict", "export", "distill")
COMPILING = ("fit", "sweep", "test", "predict", "export", "distill")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jaxad",
      description="Industrial visual anomaly detection in JAX: SimpleNet, SuperSimpleNet, EfficientAD.",
  )
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for name in COMMANDS:
    importlib.import_module(f"jaxad.cli.{name}").register(subparsers)
  return parser


def enable_compilation_cache() -> str | None:
  """Points XLA's persistent compilation cache at `<$JAXAD_CACHE or ~/.cache/jaxad>/xla`; returns the
  directory in use (None: turned off by JAXAD_COMPILATION_CACHE=0)."""
  if os.environ.get("JAXAD_COMPILATION_CACHE", "1") == "0":
    return None
  import jax
  if not jax.config.jax_compilation_cache_dir:
    root = os.environ.get("JAXAD_CACHE") or Path.home() / ".cache" / "jaxad"
    jax.config.update("jax_compilation_cache_dir", str(Path(root).expanduser() / "xla"))
  return jax.config.jax_compilation_cache_dir


def main(argv: list[str] | None = None) -> int:
  command = None
  try:
    args = build_parser().parse_args(argv)
    command = args.command
    if command in COMPILING:
      enable_compilation_cache()
    return int(args.func(args) or 0)
  except JaxadError as e:  # A problem with the user's input: one clear line, no traceback.
    print(f"jaxad {command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:  # Ctrl-C: checkpoints are atomic, so the same command resumes
    import logging
    logging.getLogger("absl").setLevel(logging.CRITICAL)  # orbax's save threads, cut mid-save, log their errors
    resumes = " (the same command resumes from the last checkpoint)" if command in ("fit", "sweep") else ""
    print(f"\n{' '.join(filter(None, ('jaxad', command)))}: interrupted{resumes}", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
