"""Readers that turn a dataset root in its published layout into `SampleRef` splits.

Every reader returns `{"train": [...], "validation": [...], "test": [...]}` of `SampleRef`s
sorted by (defect type, file name) — the order of SimpleNet's loader (methods.md §2.1).
Readers only list files and check that the expected ones exist (KSDD2 also reads its masks
to tell normal from anomalous images); decoding happens in `jaxad.data.images.load_sample`.

Layouts:

* MVTec AD (and jaxad's embedded dataset): `<category>/train/good`, `test/<defect>`,
  `ground_truth/<defect>/<stem>_mask.png`.
* MVTec LOCO AD: as MVTec plus `validation/good` (its validation split); masks are
  folders `ground_truth/<defect>/<stem>/000.png, 001.png, ...`, united.
* VisA: `split_csv/1cls.csv` with columns object, split, label, image, mask; label is
  "normal" or "anomaly"; paths relative to the root; anomalous images get defect type "bad"
  (as anomalib's converted VisA layout); masks are nonzero where defective.
* KSDD2: `train/*.png`, `test/*.png`, each with a `<stem>_GT.png` mask; an image is
  anomalous when its mask has a nonzero pixel (SuperSimpleNet supervised protocol, §3.9). The
  images are the ones the archive's split file `split_weakly_<N>.pyb` lists (jaxad.data.ksdd2),
  or every image in the folders when the root has no split files.
* SensumSODF: `<object>/{negative,positive}/data/NNN.png`, masks `positive/annotation/`,
  and the SuperSimpleNet authors' 3-fold split files `sensum_splits/` (jaxad.data.sensum);
  a category is an object and a fold, e.g. `capsule_0`.
* Folder (like anomalib's Folder): a normal folder, optional abnormal, mask and normal-test
  folders.

Splits. Test images never enter train or validation. Validation is a seeded held-out
fraction of the *normal* training images (MVTec has no validation folder; EfficientAD's
nelson code holds out 10 % of train, §4.5, as many as here: n − int(0.9·n)), except for MVTec
LOCO, which has its own. The
held-out images are the ones whose SHA-256 of f"{seed}:{salt}:{file_name}" is smallest, so
the choice is exact in size, independent of file-system listing order, and stable when files
are added. Deviation kept opt-in: `val_from_test=True` makes validation a copy of the test
split (anomalib's `ValSplitMode.SAME_AS_TEST`, which its EfficientAD uses for the map
quantiles); training then keeps all its images and a dataset's own validation folder is not
used. A caller that sets it must report it.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import math
import os
from pathlib import Path

from jaxad.data import ksdd2, sensum
from jaxad.data.images import load_mask_file
from jaxad.data.records import SampleRef
from jaxad.errors import ConfigError, DataError

FORMATS = ("auto", "mvtec", "mvtec_loco", "visa", "ksdd2", "sensum", "folder", "embedded")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
GOOD = "good"
VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ("object", "split", "label", "image", "mask")
KSDD2_MASK_SUFFIX = "_GT"
# Options each reader accepts besides root, category, val_fraction, seed and val_from_test.
_FORMAT_OPTIONS = {
    "mvtec": (),
    "mvtec_loco": (),
    "visa": (),
    "ksdd2": ("supervised", "num_segmented"),
    "sensum": ("supervised", "segmented_percent"),
    "folder": ("normal_dir", "abnormal_dir", "mask_dir", "normal_test_dir", "mask_suffix",
               "normal_test_fraction"),
}

Splits = dict[str, list[SampleRef]]


# ----------------------------------------------------------------------------- helpers


def _list_images(folder: Path, *, exclude_suffix: str | None = None) -> list[Path]:
  """Image files directly in `folder` (not hidden), sorted by name; [] if it does not exist."""
  if not folder.is_dir():
    return []
  files = []
  for entry in folder.iterdir():
    if entry.name.startswith(".") or entry.suffix.lower() not in IMAGE_EXTENSIONS:
      continue
    if entry.is_symlink() and not entry.exists():
      raise DataError(f"{entry} is a broken symbolic link (its target {os.readlink(entry)} does not exist)")
    if not entry.is_file():
      continue
    if exclude_suffix and entry.stem.endswith(exclude_suffix):
      continue
    files.append(entry)
  return sorted(files, key=lambda p: p.name)


def _subfolders(folder: Path) -> list[Path]:
  if not folder.is_dir():
    return []
  return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda p: p.name)


def _relative(path: Path, base: Path) -> str:
  return Path(os.path.relpath(path, base)).as_posix()


def _seeded_order(names: list[str], seed: int, salt: str) -> list[str]:
  """`names` ordered by SHA-256 of (seed, salt, name): a seeded shuffle independent of input order."""
  def key(name: str) -> tuple[str, str]:
    return hashlib.sha256(f"{seed}:{salt}:{name}".encode()).hexdigest(), name
  return sorted(names, key=key)


def _held_out_count(total: int, fraction: float) -> int:
  """total − ⌊(1 − fraction)·total⌋ (nelson's EfficientAD split: train = int(0.9·n)), at least 1 when
  fraction > 0, and always leaving one image behind."""
  if fraction <= 0 or total < 2:
    return 0
  return min(max(total - math.floor((1.0 - fraction) * total), 1), total - 1)


def _check_fraction(name: str, value: float) -> None:
  if not 0.0 <= float(value) < 1.0:
    raise ConfigError(f"{name} must be in [0, 1), got {value}")


def _sorted(refs: list[SampleRef]) -> list[SampleRef]:
  return sorted(refs, key=lambda r: (r.defect_type, r.file_name))


def _with_split(refs: list[SampleRef], split: str) -> list[SampleRef]:
  return [dataclasses.replace(r, split=split) for r in refs]


def _normal_ref(path: Path, base: Path, split: str) -> SampleRef:
  return SampleRef(image_path=str(path.resolve()), mask_paths=(), label=0, defect_type=GOOD,
                   split=split, is_segmented=True, file_name=_relative(path, base))


def _anomalous_ref(path: Path, base: Path, split: str, defect_type: str, mask_paths: tuple[Path, ...],
                   is_segmented: bool = True) -> SampleRef:
  return SampleRef(image_path=str(path.resolve()), mask_paths=tuple(str(m.resolve()) for m in mask_paths),
                   label=1, defect_type=defect_type, split=split, is_segmented=is_segmented,
                   file_name=_relative(path, base))


def _require_train_images(images: list[Path], folder: Path) -> None:
  if not images:
    raise DataError(f"no training images in {folder} (empty or missing folder; expected "
                    f"{', '.join(IMAGE_EXTENSIONS)} files)")


def _finish(train: list[SampleRef], test: list[SampleRef], own_validation: list[SampleRef] | None,
            *, val_fraction: float, seed: int, val_from_test: bool) -> Splits:
  """Builds the validation split (see the module docstring) and sorts all three."""
  if val_from_test:
    validation = _with_split(test, "validation")
  elif own_validation is not None:
    validation = own_validation
  else:
    normal_names = [r.file_name for r in train if r.label == 0]
    count = _held_out_count(len(normal_names), val_fraction)
    held_out = set(_seeded_order(normal_names, seed, "validation")[:count])
    validation = _with_split([r for r in train if r.file_name in held_out], "validation")
    train = [r for r in train if r.file_name not in held_out]
  return {"train": _sorted(train), "validation": _sorted(validation), "test": _sorted(test)}


# ----------------------------------------------------------------------------- MVTec AD / LOCO


def read_mvtec(category_root: str | os.PathLike, *, val_fraction: float = 0.1, seed: int = 0,
               val_from_test: bool = False) -> Splits:
  """Reads one MVTec AD category (also jaxad's embedded dataset).

  Raises:
    DataError: no training images, no test folder, or a defect image without its mask.
  """
  base = Path(category_root)
  _check_fraction("val_fraction", val_fraction)
  train_folder = base / "train" / GOOD
  train_images = _list_images(train_folder)
  _require_train_images(train_images, train_folder)
  train = [_normal_ref(p, base, "train") for p in train_images]

  def mask_of(image: Path, defect: str) -> tuple[Path, ...]:
    mask = base / "ground_truth" / defect / f"{image.stem}_mask.png"
    if not mask.is_file():
      raise DataError(f"defect image {image} has no mask: expected {mask}")
    return (mask,)
  test = _mvtec_test_refs(base, "MVTec", mask_of)
  return _finish(train, test, None, val_fraction=val_fraction, seed=seed, val_from_test=val_from_test)


def _mvtec_test_refs(base: Path, dataset: str, masks_of) -> list:
  """The test split of an MVTec-layout category: test/<defect>/<image>, `good` normal; `masks_of(image, defect)`
  gives a defect image's mask files (or raises DataError)."""
  test_folder = base / "test"
  if not test_folder.is_dir():
    raise DataError(f"{dataset} category {base} has no test folder {test_folder}")
  return [_normal_ref(image, base, "test") if folder.name == GOOD
          else _anomalous_ref(image, base, "test", folder.name, masks_of(image, folder.name))
          for folder in _subfolders(test_folder) for image in _list_images(folder)]


def read_mvtec_loco(category_root: str | os.PathLike, *, val_fraction: float = 0.1, seed: int = 0,
                    val_from_test: bool = False) -> Splits:
  """Reads one MVTec LOCO AD category; its `validation/good` folder is the validation split.

  `val_fraction` is unused (kept for a uniform signature).

  Raises:
    DataError: no training images, no test folder, or a defect image without mask PNGs.
  """
  del val_fraction
  base = Path(category_root)
  train_folder = base / "train" / GOOD
  train_images = _list_images(train_folder)
  _require_train_images(train_images, train_folder)
  train = [_normal_ref(p, base, "train") for p in train_images]
  validation = [_normal_ref(p, base, "validation") for p in _list_images(base / "validation" / GOOD)]

  def masks_of(image: Path, defect: str) -> tuple[Path, ...]:
    mask_folder = base / "ground_truth" / defect / image.stem
    masks = tuple(_list_images(mask_folder))
    if not masks:
      raise DataError(f"defect image {image} has no mask: expected PNG files (000.png, ...) in {mask_folder}")
    return masks
  test = _mvtec_test_refs(base, "MVTec LOCO", masks_of)
  return _finish(train, test, validation, val_fraction=0.0, seed=seed, val_from_test=val_from_test)


# ----------------------------------------------------------------------------- VisA


def _visa_rows(root: Path) -> list[tuple[int, dict[str, str]]]:
  """(line number, row) pairs of VisA's split CSV, with its columns checked."""
  csv_path = root / VISA_SPLIT_CSV
  if not csv_path.is_file():
    raise DataError(f"VisA split file {csv_path} does not exist")
  try:
    with open(csv_path, newline="", encoding="utf-8") as f:
      reader = csv.DictReader(f)
      missing = [c for c in VISA_COLUMNS if c not in (reader.fieldnames or ())]
      if missing:
        raise DataError(f"VisA split file {csv_path} lacks columns {missing} (has {reader.fieldnames})")
      rows = [(reader.line_num, row) for row in reader]
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"VisA split file {csv_path} is not a readable CSV: {e}") from None
  for line, row in rows:
    short = [c for c in ("object", "split", "label", "image") if row.get(c) is None]
    if short:
      raise DataError(f"{csv_path} line {line}: the row has no {', '.join(short)} field(s) "
                      f"({sum(v is not None for v in row.values())} fields, expected {len(reader.fieldnames)})")
  return rows


def read_visa(root: str | os.PathLike, category: str, *, val_fraction: float = 0.1, seed: int = 0,
              val_from_test: bool = False) -> Splits:
  """Reads one VisA category from `split_csv/1cls.csv` (file names relative to `<root>/<category>`).

  Raises:
    DataError: a missing CSV/column, a bad split or label value, a missing file, or an
      anomalous image without a mask.
  """
  root = Path(root)
  _check_fraction("val_fraction", val_fraction)
  csv_path = root / VISA_SPLIT_CSV
  base = root / category
  splits: dict[str, list[SampleRef]] = {"train": [], "test": []}
  for line, row in _visa_rows(root):
    if row["object"] != category:
      continue
    split, label = row["split"].strip(), row["label"].strip()
    where = f"{csv_path} line {line}"
    if split not in splits:
      raise DataError(f"{where}: split {split!r} is not 'train' or 'test'")
    if label not in ("normal", "anomaly"):
      raise DataError(f"{where}: label {label!r} is not 'normal' or 'anomaly'")
    image = root / row["image"].strip()
    if not image.is_file():
      raise DataError(f"{where}: image {image} does not exist")
    if label == "normal":
      splits[split].append(_normal_ref(image, base, split))
      continue
    mask_name = (row["mask"] or "").strip()
    if not mask_name:
      raise DataError(f"{where}: anomalous image {image} has no mask in the CSV")
    mask = root / mask_name
    if not mask.is_file():
      raise DataError(f"{where}: mask {mask} of image {image} does not exist")
    splits[split].append(_anomalous_ref(image, base, split, "bad", (mask,)))
  if not splits["train"]:
    raise DataError(f"no training images for VisA category {category!r} in {csv_path}")
  return _finish(splits["train"], splits["test"], None, val_fraction=val_fraction, seed=seed,
                 val_from_test=val_from_test)


# ----------------------------------------------------------------------------- KSDD2


def read_ksdd2(root: str | os.PathLike, *, val_fraction: float = 0.1, seed: int = 0, val_from_test: bool = False,
               supervised: bool = True, num_segmented: int | None = None) -> Splits:
  """Reads KolektorSDD2 (`train/`, `test/`, masks `<stem>_GT.png`); reads every mask once.

  With the archive's split files (`split_weakly_<N>.pyb`, jaxad.data.ksdd2) in the root, the
  images are the ones the file for `num_segmented` lists, as in SuperSimpleNet's official
  reader; without them, every image in the folders.

  Args:
    root: the KSDD2 root.
    val_fraction: fraction of the normal training images held out for validation.
    seed: seed of the validation choice (and of the `num_segmented` choice without split files).
    val_from_test: validation = copy of test (see module docstring).
    supervised: keep anomalous images in train (SuperSimpleNet's supervised protocol); when
      False, train keeps only normal images (the anomalous ones are dropped, test unchanged).
    num_segmented: mixed supervision: how many training positives keep their masks
      (`is_segmented=True`); the others are weakly labelled (image label only, no mask
      paths). Read from `split_weakly_<N>.pyb` (N = 0, 16, 53, 126, 246 in the archive), or,
      without split files, a seeded choice. None: every positive is segmented (the largest
      N; SSN's KSDD2 setting is 246, all). The ICPR reader drops the unsegmented positives;
      JIMS keeps them as weak labels, as here. The test split holds the positives the file
      marks segmented (all of them in the archive's files), as the official reader.

  Raises:
    DataError: missing folders, a split file that is unreadable or lists a missing image, an
      image without its `_GT` mask, or no training images.
    ConfigError: `num_segmented` is negative, larger than the positives, or set without supervision.
  """
  base = Path(root)
  _check_fraction("val_fraction", val_fraction)
  if num_segmented is not None and not supervised:
    raise ConfigError("num_segmented applies to supervised training only (supervised=False was given)")
  if num_segmented is not None and num_segmented < 0:
    raise ConfigError(f"num_segmented must be at least 0, got {num_segmented}")
  split_file = ksdd2.choose_split_file(base, num_segmented)
  if split_file is None:
    splits = {split: _ksdd2_listed(base, split) for split in ("train", "test")}
  else:
    entries = dict(zip(("train", "test"), ksdd2.read_split_file(split_file)))
    splits = {split: _ksdd2_from_split_file(base, split, entries[split], split_file) for split in entries}
  train = splits["train"]
  if not supervised:
    train = [r for r in train if r.label == 0]
  elif split_file is None and num_segmented is not None:
    positives = [r.file_name for r in train if r.label == 1]
    if num_segmented > len(positives):
      raise ConfigError(f"num_segmented={num_segmented} but {base / 'train'} has {len(positives)} anomalous images")
    segmented = set(_seeded_order(positives, seed, "segmented")[:num_segmented])
    train = [r if r.label == 0 or r.file_name in segmented else _weakly_labelled(r) for r in train]
  return _finish(train, splits["test"], None, val_fraction=val_fraction, seed=seed, val_from_test=val_from_test)


def _weakly_labelled(ref: SampleRef) -> SampleRef:
  return dataclasses.replace(ref, mask_paths=(), is_segmented=False)


def _ksdd2_ref(image: Path, base: Path, split: str) -> SampleRef:
  mask = image.parent / f"{image.stem}{KSDD2_MASK_SUFFIX}.png"
  if not mask.is_file():
    raise DataError(f"image {image} has no mask: expected {mask}")
  if load_mask_file(mask).any():
    return _anomalous_ref(image, base, split, "defect", (mask,))
  return _normal_ref(image, base, split)


def _ksdd2_listed(base: Path, split: str) -> list[SampleRef]:
  folder = base / split
  images = _list_images(folder, exclude_suffix=KSDD2_MASK_SUFFIX)
  if split == "train":
    _require_train_images(images, folder)
  elif not images:
    raise DataError(f"KSDD2 test folder {folder} has no images")
  return [_ksdd2_ref(image, base, split) for image in images]


def _ksdd2_from_split_file(base: Path, split: str, entries: list[tuple[str, bool]], split_file: Path) -> list[SampleRef]:
  refs = []
  for name, segmented in entries:
    image = base / split / f"{name}.png"
    if not image.is_file():
      raise DataError(f"{ksdd2.WHAT} {split_file} lists {split} image {name!r}, but {image} does not exist")
    ref = _ksdd2_ref(image, base, split)
    if ref.label == 1 and not segmented:
      if split == "test":
        continue
      ref = _weakly_labelled(ref)
    refs.append(ref)
  if split == "train" and not refs:
    raise DataError(f"{ksdd2.WHAT} {split_file} lists no training images")
  return refs


# ----------------------------------------------------------------------------- SensumSODF


def read_sensum(root: str | os.PathLike, category: str, *, val_fraction: float = 0.1, seed: int = 0,
                val_from_test: bool = False, supervised: bool = True, segmented_percent: int | None = None) -> Splits:
  """Reads one object and fold of SensumSODF through the SSN authors' split files (jaxad.data.sensum).

  Args:
    root: the SensumSODF root (holds `capsule/`, `softgel/` and `sensum_splits/`).
    category: `<object>_<fold>`, e.g. "capsule_0".
    val_fraction, seed, val_from_test: as for the other readers (validation is held out
      from the fold's normal training images).
    supervised: keep the defective images in train (SuperSimpleNet's supervised protocol);
      when False, train keeps only normal images (test unchanged).
    segmented_percent: which training positives file to read, `pos_<percent>.pckl`; the
      positives it marks unsegmented are weakly labelled (image label only, no mask). None:
      100, the papers' supervised setting. (The ICPR reader drops unsegmented positives
      instead; JIMS keeps them as weak labels, as here.)

  The test split holds the positives `pos.pckl` marks segmented, as the official reader.

  Raises:
    DataError: a missing or unreadable split file, or a listed image or mask that is missing.
    ConfigError: `segmented_percent` outside [0, 100], or set without supervision.
  """
  base = Path(root)
  _check_fraction("val_fraction", val_fraction)
  if segmented_percent is not None and not supervised:
    raise ConfigError("segmented_percent applies to supervised training only (supervised=False was given)")
  percent = 100 if segmented_percent is None else segmented_percent
  if not 0 <= percent <= 100:
    raise ConfigError(f"segmented_percent must be in [0, 100], got {segmented_percent}")
  obj, fold = sensum.parse_category(base, category)
  splits: dict[str, list[SampleRef]] = {}
  for split in ("train", "test"):
    negatives, positives = sensum.split_entries(base, obj, fold, split, percent)
    refs = [_normal_ref(sensum.image_file(base, obj, False, i), base, split) for i, _ in negatives]
    if split == "test":
      positives = [(i, True) for i, segmented in positives if segmented]
    elif not supervised:
      positives = []
    for i, segmented in positives:
      image = sensum.image_file(base, obj, True, i)
      masks = (sensum.image_file(base, obj, True, i, annotation=True),) if segmented else ()
      refs.append(_anomalous_ref(image, base, split, "defect", masks, is_segmented=segmented))
    splits[split] = refs
  if not any(r.label == 0 for r in splits["train"]):
    raise DataError(f"the SensumSODF split files of {category} in {base / sensum.SPLITS_DIR} list no normal "
                    f"training images")
  return _finish(splits["train"], splits["test"], None, val_fraction=val_fraction, seed=seed,
                 val_from_test=val_from_test)


# ----------------------------------------------------------------------------- Folder


def read_folder(root: str | os.PathLike, *, normal_dir: str, abnormal_dir: str | None = None,
                mask_dir: str | None = None, normal_test_dir: str | None = None, mask_suffix: str = "",
                normal_test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0,
                val_from_test: bool = False) -> Splits:
  """Reads a custom dataset of plain folders (anomalib's Folder layout); folders are relative to root.

  Args:
    root: dataset root; file names are relative to it.
    normal_dir: normal images (training, and test when `normal_test_dir` is None).
    abnormal_dir: anomalous test images (defect type "abnormal").
    mask_dir: masks of the anomalous images, matched by stem: `<stem><mask_suffix>.<ext>`.
      Without it, anomalous images are weakly labelled (`is_segmented=False`).
    normal_test_dir: normal test images; when None, a seeded `normal_test_fraction` of
      `normal_dir` goes to test instead of train.
    mask_suffix: e.g. "_mask" for `ground_truth/001_mask.png`.
    normal_test_fraction: fraction of normal images moved to test when no normal_test_dir.
    val_fraction, seed, val_from_test: as for the other readers.

  Raises:
    DataError: a folder is missing or empty, or an anomalous image has no mask in `mask_dir`.
  """
  base = Path(root)
  _check_fraction("val_fraction", val_fraction)
  _check_fraction("normal_test_fraction", normal_test_fraction)

  def folder(name: str, role: str) -> Path:
    path = base / name
    if not path.is_dir():
      raise DataError(f"{role} folder {path} does not exist")
    return path

  normal_folder = folder(normal_dir, "normal")
  normal_images = _list_images(normal_folder)
  _require_train_images(normal_images, normal_folder)
  normals = [_normal_ref(p, base, "train") for p in normal_images]
  if normal_test_dir is not None:
    test = [_normal_ref(p, base, "test") for p in _list_images(folder(normal_test_dir, "normal test"))]
    train = normals
  else:
    count = _held_out_count(len(normals), normal_test_fraction)
    to_test = set(_seeded_order([r.file_name for r in normals], seed, "test")[:count])
    train = [r for r in normals if r.file_name not in to_test]
    test = _with_split([r for r in normals if r.file_name in to_test], "test")
  if abnormal_dir is not None:
    masks_by_stem = {}
    if mask_dir is not None:
      masks_by_stem = {p.stem: p for p in _list_images(folder(mask_dir, "mask"))}
    for image in _list_images(folder(abnormal_dir, "abnormal")):
      if mask_dir is None:
        test.append(_anomalous_ref(image, base, "test", "abnormal", (), is_segmented=False))
        continue
      mask = masks_by_stem.get(f"{image.stem}{mask_suffix}")
      if mask is None:
        raise DataError(f"anomalous image {image} has no mask: expected "
                        f"{base / mask_dir / (image.stem + mask_suffix)}.png (or another image extension)")
      test.append(_anomalous_ref(image, base, "test", "abnormal", (mask,)))
  return _finish(train, test, None, val_fraction=val_fraction, seed=seed, val_from_test=val_from_test)


# ----------------------------------------------------------------------------- dispatch


def _canonical_format(fmt: str) -> str:
  if fmt not in FORMATS:
    raise ConfigError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}")
  return "mvtec" if fmt == "embedded" else fmt


def _is_category_root(path: Path) -> bool:
  return (path / "train").is_dir() and (path / "test").is_dir()


def _check_root(root: str | os.PathLike) -> Path:
  path = Path(root).expanduser()
  if not path.exists():
    raise DataError(f"dataset root {path} does not exist")
  if not path.is_dir():
    raise DataError(f"dataset root {path} is not a folder")
  return path


def detect_format(root: str | os.PathLike) -> str:
  """Guesses the layout of `root`: "visa", "sensum", "ksdd2", "mvtec_loco" or "mvtec".

  A root may be a whole MVTec / LOCO dataset or a single category folder.

  Raises:
    DataError: the root does not exist or matches no known layout.
  """
  root = _check_root(root)
  if (root / VISA_SPLIT_CSV).is_file():
    return "visa"
  if sensum.is_sensum_root(root):
    return "sensum"
  if (root / "train").is_dir() and any(
      p.stem.endswith(KSDD2_MASK_SUFFIX) for p in _list_images(root / "train")):
    return "ksdd2"
  candidates = [root] if _is_category_root(root) else [p for p in _subfolders(root) if (p / "train").is_dir()]
  if candidates:
    return "mvtec_loco" if any((p / "validation").is_dir() for p in candidates) else "mvtec"
  raise DataError(
      f"cannot tell the layout of dataset root {root}: expected MVTec AD (<category>/train/good), MVTec LOCO "
      f"(<category>/validation/good), VisA ({VISA_SPLIT_CSV}), SensumSODF ({sensum.SPLITS_DIR}/) or KSDD2 "
      f"(train/*{KSDD2_MASK_SUFFIX}.png); "
      f"pass the format explicitly (format 'folder' with normal_dir=... for plain folders)")


def _resolve_format(root: Path, fmt: str, options: dict) -> str:
  fmt = _canonical_format(fmt)
  if fmt == "auto":
    fmt = "folder" if "normal_dir" in options else detect_format(root)
  return fmt


def list_categories(root: str | os.PathLike, format: str = "auto", **options) -> list[str]:  # noqa: A002
  """Category names of a dataset, sorted; [] for single-category layouts (KSDD2, Folder).

  A single MVTec / LOCO category folder given as root lists just its own name. `options` are
  `read_dataset`'s layout options: with `normal_dir`, "auto" means the folder layout.
  """
  root = _check_root(root)
  fmt = _resolve_format(root, format, options)
  if fmt == "visa":
    return sorted({row["object"] for _, row in _visa_rows(root)})
  if fmt == "sensum":
    return sensum.list_categories(root)
  if fmt in ("mvtec", "mvtec_loco"):
    if _is_category_root(root):
      return [root.name]
    return [p.name for p in _subfolders(root) if (p / "train").is_dir() or (p / "test").is_dir()]
  return []


def _category_root(root: Path, fmt: str, category: str | None) -> Path:
  """The folder of the chosen MVTec / LOCO category (root itself if it is a category folder)."""
  if _is_category_root(root):
    if category not in (None, root.name):
      raise DataError(f"dataset root {root} is the single category {root.name!r}, not {category!r}")
    return root
  return root / _choose_category(root, fmt, category)


def _choose_category(root: Path, fmt: str, category: str | None) -> str:
  available = list_categories(root, fmt)
  if not available:
    raise DataError(f"no categories found in dataset root {root}")
  if category is None:
    if len(available) == 1:
      return available[0]
    raise DataError(f"dataset root {root} holds {len(available)} categories; choose one of: {', '.join(available)}")
  if category not in available:
    raise DataError(f"unknown category {category!r} in dataset root {root}; available: {', '.join(available)}")
  return category


def read_dataset(root: str | os.PathLike, *, format: str = "auto", category: str | None = None,  # noqa: A002
                 val_fraction: float = 0.1, seed: int = 0, val_from_test: bool = False, **options) -> Splits:
  """Reads a dataset in any supported layout into train / validation / test `SampleRef` lists.

  Args:
    root: dataset root (for MVTec / LOCO also a single category folder).
    format: one of FORMATS; "auto" detects it ("folder" when `normal_dir` is given);
      "embedded" is MVTec AD's layout.
    category: category name; may be None when the dataset has only one.
    val_fraction: fraction of normal training images held out for validation (not LOCO).
    seed: seed of every seeded choice (validation, KSDD2 `num_segmented`, Folder test split).
    val_from_test: validation = copy of test (anomalib SAME_AS_TEST); callers must report it.
    **options: layout-specific options (`read_ksdd2`, `read_sensum`, `read_folder`).

  Returns:
    {"train": [...], "validation": [...], "test": [...]}, each sorted by (defect type, file name).

  Raises:
    DataError: wrong root, unknown or empty category, missing or unreadable files.
    ConfigError: unknown format or option, or an invalid option value.
  """
  root = _check_root(root)
  fmt = _resolve_format(root, format, options)
  unknown = sorted(set(options) - set(_FORMAT_OPTIONS[fmt]))
  if unknown:
    allowed = ", ".join(_FORMAT_OPTIONS[fmt]) or "none"
    raise ConfigError(f"options {unknown} do not apply to format {fmt!r} (allowed: {allowed})")
  common = dict(val_fraction=val_fraction, seed=seed, val_from_test=val_from_test)
  if fmt == "mvtec":
    return read_mvtec(_category_root(root, fmt, category), **common)
  if fmt == "mvtec_loco":
    return read_mvtec_loco(_category_root(root, fmt, category), **common)
  if fmt == "visa":
    return read_visa(root, _choose_category(root, fmt, category), **common)
  if fmt == "sensum":
    category = category if category is not None else _choose_category(root, fmt, None)
    return read_sensum(root, category, **common, **options)  # its own message for an unknown category
  if category is not None:
    raise DataError(f"{fmt} dataset {root} has no categories, got category {category!r}")
  if fmt == "ksdd2":
    return read_ksdd2(root, **common, **options)
  if "normal_dir" not in options:
    raise ConfigError("format 'folder' needs normal_dir=... (the folder of normal images)")
  return read_folder(root, **common, **options)
