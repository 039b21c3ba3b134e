"""SensumSODF's 3-fold cross-validation split files (the SuperSimpleNet authors' `sensum_splits`).

Layout (SuperSimpleNet README; the images come from sensum.eu on request, the split files
from the authors' link):

  <root>/<object>/negative/data/NNN.png          normal images (NNN = sample id, 3 digits)
  <root>/<object>/positive/data/NNN.png          defective images
  <root>/<object>/positive/annotation/NNN.png    their masks
  <root>/sensum_splits/<object>/<fold>/train/neg.pckl, pos_<percent>.pckl
  <root>/sensum_splits/<object>/<fold>/test/neg.pckl, pos.pckl

Objects are capsule (836 normal / 153 defective) and softgel (846 / 345); folds 0, 1, 2.
Each split file is a pickled list of (sample id, is_segmented) pairs; `pos_<percent>.pckl`
marks that percentage of the training positives as segmented (mixed supervision; the
papers' supervised setting is 100). jaxad names a (object, fold) pair `<object>_<fold>`, as
the official training script names its runs, so each fold is one category of the dataset.

The files are read as plain data (`jaxad.data.plain_pickle`): a split file cannot run code.
"""

from __future__ import annotations

import re
from pathlib import Path

from jaxad.data import plain_pickle
from jaxad.errors import DataError

SPLITS_DIR = "sensum_splits"
_CATEGORY = re.compile(r"^(?P<object>.+)_(?P<fold>\d+)$")

Entries = list[tuple[int, bool]]


def read_split_file(path: Path) -> Entries:
  """The (sample id, is_segmented) pairs of one split file.

  Raises:
    DataError: the file is missing, is not a pickle of plain data, or does not hold a list of pairs.
  """
  what = "SensumSODF split file"
  return plain_pickle.sample_pairs(plain_pickle.load(path, what), path, what)


def is_sensum_root(root: Path) -> bool:
  return (root / SPLITS_DIR).is_dir()


def list_categories(root: Path) -> list[str]:
  """`<object>_<fold>` for every fold folder in the split files whose object folder exists, sorted."""
  names = []
  for object_dir in sorted(p for p in (root / SPLITS_DIR).iterdir() if p.is_dir() and not p.name.startswith(".")):
    if not (root / object_dir.name).is_dir():
      continue
    names += [f"{object_dir.name}_{fold.name}" for fold in sorted(object_dir.iterdir(), key=lambda p: p.name)
              if fold.is_dir() and fold.name.isdigit()]
  return names


def parse_category(root: Path, category: str) -> tuple[str, str]:
  """(object, fold) of a category name; the name must be one `list_categories` gives."""
  available = list_categories(root)
  match = _CATEGORY.match(category)
  if category not in available or match is None:
    hint = ""
    if category in {name.rsplit("_", 1)[0] for name in available}:
      hint = f" (a SensumSODF category is an object and a cross-validation fold, e.g. {category}_0)"
    raise DataError(f"unknown category {category!r} in SensumSODF root {root}{hint}; available: "
                    f"{', '.join(available) or 'none'}")
  return match["object"], match["fold"]


def split_entries(root: Path, obj: str, fold: str, split: str, segmented_percent: int) -> tuple[Entries, Entries]:
  """(normal, defective) entries of the train or test split of one object and fold."""
  folder = root / SPLITS_DIR / obj / fold / split
  if split == "test":
    pos_file = folder / "pos.pckl"
  else:
    pos_file = folder / f"pos_{segmented_percent}.pckl"
    if not pos_file.is_file() and folder.is_dir():
      present = sorted(int(m[1]) for p in folder.glob("pos_*.pckl") if (m := re.match(r"pos_(\d+)\.pckl$", p.name)))
      raise DataError(f"SensumSODF split file {pos_file} does not exist (segmented_percent={segmented_percent}); "
                      f"{folder} has segmented percents {present or 'none'}")
  return read_split_file(folder / "neg.pckl"), read_split_file(pos_file)


def image_file(root: Path, obj: str, positive: bool, sample_id: int, annotation: bool = False) -> Path:
  """The image (or, with `annotation`, the mask) of one sample of `obj`; raises DataError if it is missing."""
  kind = "positive" if positive else "negative"
  path = root / obj / kind / ("annotation" if annotation else "data") / f"{sample_id:03d}.png"
  if not path.is_file():
    raise DataError(f"the SensumSODF split files list {kind} sample {sample_id} of {obj}, but {path} does not exist")
  return path
