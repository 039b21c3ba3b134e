"""MVTec LOCO AD's per-defect ground truth for its sPRO metric: channels and saturation areas.

Follows the dataset's official evaluation code (`mvtec_loco_ad_evaluation`, `src/image.py`):
* `<category>/defects_config.json` lists each defect type: `defect_name`, `pixel_value` (1..255),
  `saturation_threshold` and `relative_saturation` (a fraction in (0, 1] of the defect's area when
  true, an absolute pixel count, an int, when false).
* each PNG in `ground_truth/<kind>/<image id>/` is one channel: one defect, marked by exactly one
  positive pixel value (which names its type), 0 elsewhere. Channels are not split into connected
  components, and a channel may overlap another.
* saturation area = int(threshold · area) when relative, else min(threshold, area).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from jaxad.errors import DataError

DEFECTS_CONFIG = "defects_config.json"
KINDS = ("logical_anomalies", "structural_anomalies")


class DefectType(NamedTuple):
  name: str
  saturation_threshold: int | float
  relative: bool


class Channel(NamedTuple):
  """One annotated defect of one test image."""

  pixels: np.ndarray  # flat indices (row-major, into the image's H×W) of the defect's pixels, int64
  saturation_area: int  # pixels of overlap at which the defect counts as fully found (≥ 1)
  defect_name: str


def read_defects_config(path: str | os.PathLike) -> dict[int, DefectType]:
  """{pixel value: DefectType} from a `defects_config.json`, checked as the official code checks it.

  Raises:
    DataError: unreadable JSON, or an entry with missing keys or out-of-range values (file named).
  """
  path = Path(path)
  try:
    entries = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read the MVTec LOCO defects config {path}: {e}") from None
  if not isinstance(entries, list):
    raise DataError(f"{path}: expected a JSON list of defect entries, got {type(entries).__name__}")
  types: dict[int, DefectType] = {}
  for i, entry in enumerate(entries):
    where = f"{path}, entry {i}"
    keys = ("defect_name", "pixel_value", "saturation_threshold", "relative_saturation")
    if not isinstance(entry, dict) or not set(keys) <= set(entry):
      raise DataError(f"{where}: expected an object with keys {', '.join(keys)}")
    value, threshold, relative = entry["pixel_value"], entry["saturation_threshold"], entry["relative_saturation"]
    if not isinstance(value, int) or not 1 <= value <= 255:
      raise DataError(f"{where}: pixel_value must be an int in 1..255, got {value!r}")
    if not isinstance(relative, bool):
      raise DataError(f"{where}: relative_saturation must be true or false, got {relative!r}")
    if relative and not (isinstance(threshold, float) and 0.0 < threshold <= 1.0):
      raise DataError(f"{where}: a relative saturation_threshold must be a float in (0, 1], got {threshold!r}")
    if not relative and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1):
      raise DataError(f"{where}: an absolute saturation_threshold must be an int ≥ 1 (pixels), got {threshold!r}")
    types[value] = DefectType(str(entry["defect_name"]), threshold, relative)
  return types


def read_channel(path: str | os.PathLike, defect_types: dict[int, DefectType]) -> Channel:
  """One ground-truth PNG as a `Channel`.

  Raises:
    DataError: unreadable file, not single-channel, empty, more than one positive value, or a value
      the defects config does not list (file named).
  """
  try:
    with Image.open(path) as img:
      values = np.asarray(img)
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read the MVTec LOCO ground-truth channel {os.fspath(path)}: {e}") from None
  if values.ndim != 2 or not (np.issubdtype(values.dtype, np.integer) or values.dtype == bool):
    raise DataError(f"ground-truth channel {os.fspath(path)} must be a single-channel integer image, "
                    f"got shape {values.shape} and dtype {values.dtype}")
  present = np.unique(values)
  positive = present[present > 0]
  if positive.size != 1:
    what = "no defect pixel" if positive.size == 0 else f"{positive.size} defect values {positive[:5].tolist()}"
    raise DataError(f"ground-truth channel {os.fspath(path)} has {what}; the sPRO metric needs exactly one "
                    f"positive value per PNG (one defect)")
  value = int(positive[0])
  if value not in defect_types:
    raise DataError(f"ground-truth channel {os.fspath(path)} marks its defect with {value}, which its "
                    f"{DEFECTS_CONFIG} does not list (listed: {sorted(defect_types)})")
  defect = defect_types[value]
  pixels = np.flatnonzero(values)
  area = pixels.size
  if defect.relative:
    saturation = int(defect.saturation_threshold * area)
  else:
    saturation = min(int(defect.saturation_threshold), area)
  # The official code divides by 0 when int(fraction · area) is 0; one pixel of overlap saturates it here.
  return Channel(pixels, max(saturation, 1), defect.name)


def category_root(image_path: str, file_name: str) -> Path:
  """The dataset category folder of a `SampleRef` (its image path minus its category-relative name)."""
  image, relative = Path(image_path), Path(file_name)
  return Path(*image.parts[:len(image.parts) - len(relative.parts)])


def split_channels(refs) -> list[tuple[Channel, ...]] | None:
  """Per test image, its channels (empty for good images), or None when the split is not MVTec LOCO's
  (anomalies other than logical/structural) or its category has no defects config (a note on stderr)."""
  kinds = {r.defect_type for r in refs if r.label == 1}
  if not refs or kinds != set(KINDS):
    return None
  roots = {category_root(r.image_path, r.file_name) for r in refs}
  configs = {root: root / DEFECTS_CONFIG for root in roots}
  missing = [str(p) for p in configs.values() if not p.is_file()]
  if missing:
    print(f"note: no sPRO (MVTec LOCO's localisation metric): {', '.join(missing)} not found", file=sys.stderr)
    return None
  types = {root: read_defects_config(p) for root, p in configs.items()}
  root_of = lambda r: category_root(r.image_path, r.file_name)
  return [tuple(read_channel(p, types[root_of(r)]) for p in r.mask_paths) for r in refs]
