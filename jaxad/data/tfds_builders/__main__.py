"""`python -m jaxad.data.tfds_builders NAME --manual_dir DIR [...]`: builds array_record TFDS data."""

from __future__ import annotations

import argparse
import sys

from jaxad.data.tfds_builders import BUILDERS, build_tfds
from jaxad.errors import JaxadError


def _value(text: str) -> bool | int | float | str:
  """"true"/"false" → bool, numbers → int/float, anything else stays a string."""
  if text.lower() in ("true", "false"):
    return text.lower() == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def _options(pairs: list[str]) -> dict[str, bool | int | float | str]:
  options = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep or not key:
      raise SystemExit(f"--option expects key=value, got {pair!r}")
    options[key] = _value(value)
  return options


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxad.data.tfds_builders",
                                   description="Build jaxad TFDS datasets (array_record) without TensorFlow.")
  parser.add_argument("name", choices=sorted(BUILDERS), help="builder to run")
  parser.add_argument("--manual_dir", required=True, help="the manually downloaded, extracted dataset")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data folder (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  parser.add_argument("--categories", default=None, help="comma-separated categories (default: all found)")
  parser.add_argument("--format", default="auto", help="jaxad_folder only: read_dataset layout format")
  parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="jaxad_folder only: read_dataset layout option (repeatable)")
  parser.add_argument("--config_name", default=None, help="jaxad_folder only: config name of a single build")
  parser.add_argument("--overwrite", action="store_true", help="rebuild configs that already exist")
  args = parser.parse_args(argv)
  try:
    built = build_tfds(args.name, args.manual_dir, args.data_dir,
                       args.categories.split(",") if args.categories else None, format=args.format,
                       reader_options=_options(args.option), config_name=args.config_name, overwrite=args.overwrite)
  except JaxadError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for name in built:
    print(f"built tfds:{name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
