"""`jaxad data`: inspect datasets, draw a contact sheet, build the embedded synthetic dataset.

  jaxad data download [NAME [DIR]] [--keep-archive]      fetch, check and unpack a public dataset
  jaxad data info ROOT [--format F] [--category C]       per-category counts and sizes
  jaxad data sheet ROOT --out PNG [--category C]         images with red mask overlays
  jaxad data build-embedded DIR [--seed S] [--size N]    write the synthetic MVTec-format set
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMAT_CHOICES = ("auto", "mvtec", "mvtec_loco", "visa", "ksdd2", "sensum", "folder", "embedded")


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("root", metavar="ROOT", help="dataset root folder (or one MVTec / LOCO category folder)")
  parser.add_argument("--category", default=None, help="category name (default: all for info; required "
                      "for sheet when the dataset has several)")
  parser.add_argument("--val-fraction", type=float, default=0.1,
                      help="fraction of normal training images held out for validation (default 0.1)")
  parser.add_argument("--seed", type=int, default=0, help="seed of the validation hold-out (default 0)")
  add_layout_arguments(parser)


def add_layout_arguments(parser: argparse.ArgumentParser) -> None:
  """The dataset layout flags (format, KSDD2, SensumSODF and folder options), shared with `fit` and `sweep`."""
  parser.add_argument("--format", default="auto", choices=FORMAT_CHOICES,
                      help="dataset layout (default: detect it; 'folder' needs --normal-dir)")
  supervision = parser.add_argument_group("KSDD2 and SensumSODF options")
  supervision.add_argument("--unsupervised", action="store_true",
                           help="keep only normal images in train (default: anomalous ones stay, supervised)")
  supervision.add_argument("--num-segmented", type=int, default=None,
                           help="KSDD2 mixed supervision: training positives that keep their masks, read from "
                           "split_weakly_<N>.pyb (default: all)")
  supervision.add_argument("--segmented-percent", type=int, default=None,
                           help="SensumSODF mixed supervision: read the split file pos_<percent>.pckl (default: 100)")
  folder = parser.add_argument_group("folder options (format 'folder', paths relative to the dataset root)")
  folder.add_argument("--normal-dir", default=None, help="folder of normal images")
  folder.add_argument("--abnormal-dir", default=None, help="folder of anomalous test images")
  folder.add_argument("--mask-dir", default=None, help="folder of masks, matched to anomalous images by stem")
  folder.add_argument("--mask-suffix", default=None, help="mask stem suffix, e.g. _mask")
  folder.add_argument("--normal-test-dir", default=None,
                      help="folder of normal test images (default: a seeded 20%% of --normal-dir)")


def layout_options(args: argparse.Namespace) -> dict:
  """`read_dataset`'s layout keyword arguments from the parsed layout flags (only those given)."""
  options = {} if args.format == "auto" else {"format": args.format}
  if args.unsupervised:
    options["supervised"] = False
  flags = ("num_segmented", "segmented_percent", "normal_dir", "abnormal_dir", "mask_dir", "mask_suffix",
           "normal_test_dir")
  options.update({name: getattr(args, name) for name in flags if getattr(args, name) is not None})
  return options


def _read_options(args: argparse.Namespace) -> dict:
  """Keyword arguments for read_dataset from the parsed flags (only those given)."""
  return {"format": args.format, "val_fraction": args.val_fraction, "seed": args.seed, **layout_options(args)}


def _print_summary(root: str, categories: list[str] | None, options: dict) -> None:
  from jaxad.data.summary import dataset_summary, format_summary
  print(format_summary(dataset_summary(root, categories=categories, **options)))


def _dataset_root(spec: str) -> str:
  """The folder of a dataset spec: "embedded" is generated (once, cached) as `fit --data embedded` does."""
  from jaxad.data.sources import EMBEDDED, default_cache_root
  if spec != EMBEDDED or Path(spec).exists():
    return spec
  from jaxad.data.embedded import build_embedded
  return str(build_embedded(default_cache_root() / EMBEDDED))


def _info(args: argparse.Namespace) -> int:
  _print_summary(_dataset_root(args.root), [args.category] if args.category else None, _read_options(args))
  return 0


def _sheet(args: argparse.Namespace) -> int:
  from jaxad.data.sheet import contact_sheet
  options = _read_options(args)
  out = contact_sheet(_dataset_root(args.root), args.out, category=args.category, per_type=args.per_type,
                      size=args.size, **options)
  print(f"wrote {out}")
  return 0


def _download(args: argparse.Namespace) -> int:
  from jaxad.data import download
  if args.name is None:
    for name, record in download.DATASETS.items():
      print(f"{name:<11} {record.title}, {record.license}: {record.page}\n{'':<11} default folder "
            f"{download.default_destination(name)}")
    for name, text in download.NOT_DOWNLOADABLE.items():
      print(f"{name:<11} not downloadable: {text}")
    return 0
  record = download.get(args.name)
  dest = Path(args.dir) if args.dir else download.default_destination(args.name)
  if not download.completed(dest, args.name):
    print(f"{record.title} is licensed {record.license} by its authors ({record.page}); by downloading it you "
          f"accept that license. From {record.url}", file=sys.stderr)
  root = download.download_dataset(args.name, dest, keep_archive=args.keep_archive, progress=not args.quiet)
  from jaxad.data.readers import detect_format, list_categories
  fmt = detect_format(root)
  categories = list_categories(root, fmt)
  listed = f"{len(categories)} categories: {', '.join(categories)}" if categories else "one category"
  print(f"{record.title} is in {root} (format {fmt}, {listed})")
  return 0


def _build_embedded(args: argparse.Namespace) -> int:
  from jaxad.data.embedded import build_embedded
  kwargs = {"seed": args.seed, "overwrite": args.overwrite, "categories": args.categories}
  if args.size is not None:
    kwargs["image_size"] = args.size
  root = build_embedded(args.dir, **kwargs)
  print(f"built the embedded dataset in {root}")
  _print_summary(str(root), None, {"format": "mvtec"})
  return 0


def register(subparsers) -> None:
  """Adds `jaxad data {download,info,sheet,build-embedded}`."""
  parser = subparsers.add_parser("data", help="inspect datasets, draw contact sheets, build the embedded dataset",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

  fetch = commands.add_parser("download", help="fetch a public dataset, check its sha256 and unpack it "
                              "(no NAME: list them)")
  fetch.add_argument("name", metavar="NAME", nargs="?", default=None, help="mvtec_ad, mvtec_loco, visa or ksdd2")
  fetch.add_argument("dir", metavar="DIR", nargs="?", default=None,
                     help="the dataset root to create (default data/<folder>, where experiments/ look)")
  fetch.add_argument("--keep-archive", action="store_true", help="keep the downloaded archive beside DIR")
  fetch.add_argument("--quiet", action="store_true", help="no progress bars")
  fetch.set_defaults(func=_download)

  info = commands.add_parser("info", help="print per-category split counts, defect types and image sizes")
  _add_dataset_arguments(info)
  info.set_defaults(func=_info)

  sheet = commands.add_parser("sheet", help="write a PNG grid of test images per defect type, masks in red")
  _add_dataset_arguments(sheet)
  sheet.add_argument("--out", required=True, metavar="PNG", help="output PNG file")
  sheet.add_argument("--per-type", type=int, default=4, help="images per defect type (default 4)")
  sheet.add_argument("--size", type=int, default=128, help="tile side in pixels (default 128)")
  sheet.set_defaults(func=_sheet)

  build = commands.add_parser("build-embedded", help="write the small synthetic MVTec-format dataset and summarise it")
  build.add_argument("dir", metavar="DIR", help="output folder")
  build.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
  build.add_argument("--size", type=int, default=None, help="image side in pixels (default: the generator's)")
  build.add_argument("--categories", nargs="+", default=None, help="categories to build (default: all)")
  build.add_argument("--overwrite", action="store_true", help="replace an existing dataset in DIR")
  build.set_defaults(func=_build_embedded)
