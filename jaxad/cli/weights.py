"""`jaxad weights`: list, download, inspect and convert pretrained weights.

  jaxad weights list                                  known weights, sizes, sources, cache state
  jaxad weights download NAME [--cache-dir DIR]       fetch into the cache and check the sha256
  jaxad weights convert FILE_OR_NAME --out OUT [--arch ARCH] [--no-head]
                                                      PyTorch checkpoint -> Flax safetensors
  jaxad weights info NAME_OR_FILE                     source, sha256, tensor names and shapes
"""

from __future__ import annotations

import argparse
from pathlib import Path

_CACHE_HELP = "cache root (default: $JAXAD_CACHE or ~/.cache/jaxad; files go to weights/ under it)"


def _size_text(record) -> str:
  if record.size_bytes:
    return f"{record.size_bytes / 2**20:.1f} MiB"
  return f"~{record.approx_mib:.0f} MiB" if record.approx_mib else "?"


def _source_text(record) -> str:
  if record.package:
    return f"pip: {record.package[0].replace('_', '-')}"
  host = record.url.split("/")[2]
  return f"{host} (zip: {record.archive_member})" if record.archive_member else host


def _list(args: argparse.Namespace) -> int:
  from jaxad.nn import weights

  rows = [("NAME", "SIZE", "SOURCE", "CACHED")]
  for name, record in weights.KNOWN_WEIGHTS.items():
    where = weights.cached_path(name, args.cache_dir)
    cached = "no" if where is None else ("packaged" if record.package else "yes")
    rows.append((name, _size_text(record), _source_text(record), cached))
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  for row in rows:
    print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
  print(f"\ncache: {weights.cache_dir_path(args.cache_dir)}")
  return 0


def _download(args: argparse.Namespace) -> int:
  from jaxad.nn import weights

  path = weights.download(args.name, args.cache_dir, progress=not args.quiet)
  print(f"{args.name}: {path}")
  return 0


def _convert(args: argparse.Namespace) -> int:
  from jaxad.errors import WeightsError
  from jaxad.nn import weights
  from jaxad.nn.convert import convert_state_dict
  from jaxad.nn.torch_checkpoint import load_state_dict

  source = weights.resolve(args.source, args.cache_dir)
  arch = args.arch
  if arch is None:
    if args.source not in weights.KNOWN_WEIGHTS:
      raise WeightsError(f"--arch is required when converting a file ({source}) rather than a known weights name")
    arch = weights.KNOWN_WEIGHTS[args.source].arch
  variables = convert_state_dict(arch, load_state_dict(source), head=not args.no_head, source=str(source))
  out = weights.save_converted(variables, args.out, source_sha256=weights.sha256_file(source),
                               source_name=str(args.source), extra_meta={"arch": arch, "head": str(not args.no_head)})
  print(f"wrote {out} ({arch}, from {source})")
  return 0


def _print_arrays(arrays: dict) -> None:
  total = sum(int(a.size) for a in arrays.values())
  print(f"tensors: {len(arrays)}, elements: {total:,}")
  width = max(len(k) for k in arrays)
  for key, array in arrays.items():
    print(f"  {key.ljust(width)}  {str(array.dtype):9} {tuple(array.shape)}")


def _info(args: argparse.Namespace) -> int:
  from jaxad.errors import WeightsError
  from jaxad.nn import weights
  from jaxad.nn.torch_checkpoint import load_state_dict

  known = args.source in weights.KNOWN_WEIGHTS and not Path(args.source).expanduser().is_file()
  if known:  # what the registry says, whether or not the file is here
    record = weights.KNOWN_WEIGHTS[args.source]
    print(f"name: {args.source}\narch: {record.arch}\nlicense: {record.license}\nabout: {record.description}")
    print(f"source: {record.url or 'a packaged file'}\nexpected sha256: {record.sha256}")
  try:
    source = weights.resolve(args.source, args.cache_dir)
  except WeightsError as e:
    if not known:
      raise
    print(f"file: not available ({e})")
    return 0
  state = load_state_dict(source)
  print(f"file: {source}\nsha256: {weights.sha256_file(source)}")
  if source.suffix == ".safetensors":
    try:
      for key, value in weights.load_converted(source)[1].items():
        print(f"{key}: {value}")
    except WeightsError:
      pass  # A plain safetensors checkpoint, not a converted file.
  _print_arrays(state)
  return 0


def register(subparsers) -> None:
  """Adds `jaxad weights {list,download,convert,info}`."""
  parser = subparsers.add_parser("weights", help="list, download, inspect and convert pretrained weights",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="weights_command", metavar="SUBCOMMAND", required=True)

  listing = commands.add_parser("list", help="table of known weights: size, source, whether they are cached")
  listing.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
  listing.set_defaults(func=_list)

  download = commands.add_parser("download", help="download known weights into the cache, checking the sha256")
  download.add_argument("name", metavar="NAME", help="a name shown by `jaxad weights list`")
  download.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
  download.add_argument("--quiet", action="store_true", help="no progress display")
  download.set_defaults(func=_download)

  convert = commands.add_parser("convert", help="convert a PyTorch checkpoint to a Flax variables file")
  convert.add_argument("source", metavar="FILE_OR_NAME", help="checkpoint file or known weights name")
  convert.add_argument("--arch", default=None,
                       help="architecture, e.g. wide_resnet50_2 (default: the known name's architecture)")
  convert.add_argument("--out", required=True, metavar="OUT", help="output .safetensors file")
  convert.add_argument("--no-head", action="store_true",
                       help="skip the classification head (neither required nor converted)")
  convert.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
  convert.set_defaults(func=_convert)

  info = commands.add_parser("info", help="show a checkpoint's source, sha256 and tensor names/shapes")
  info.add_argument("source", metavar="NAME_OR_FILE", help="known weights name or checkpoint file")
  info.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
  info.set_defaults(func=_info)
