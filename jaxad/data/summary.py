"""Per-category counts of a dataset (what `jaxad data info` prints).

Image sizes come from the file headers only (PIL opens lazily), so this stays quick on full
datasets; unreadable headers are reported as DataError naming the file.
"""

from __future__ import annotations

import os
from typing import TypedDict

from PIL import Image

from jaxad.data.readers import list_categories, read_dataset
from jaxad.errors import DataError


class SummaryRow(TypedDict):
  category: str
  train: int
  train_anomalous: int
  validation: int
  test_good: int
  test_anomalous: int
  defect_types: list[str]
  image_sizes: list[tuple[int, int]]  # distinct (H, W)


def _image_size(path: str) -> tuple[int, int]:
  try:
    with Image.open(path) as img:
      width, height = img.size
  except Exception as e:  # Unidentified, truncated header, permission ...
    raise DataError(f"image file {path} cannot be opened: {type(e).__name__}: {e}") from None
  return height, width


def dataset_summary(root: str | os.PathLike, format: str = "auto", *,  # noqa: A002
                    categories: list[str] | None = None, **read_options) -> list[SummaryRow]:
  """One row per category (one row named "-" for single-category layouts).

  Args:
    root: dataset root.
    format: as `read_dataset`.
    categories: restrict to these categories (default: all).
    **read_options: passed to `read_dataset` (val_fraction, seed, layout options).
  """
  names = categories if categories is not None else (list_categories(root, format, **read_options) or [None])
  rows = []
  for name in names:
    splits = read_dataset(root, format=format, category=name, **read_options)
    test = splits["test"]
    all_refs = [r for refs in splits.values() for r in refs]
    rows.append(SummaryRow(
        category=name or "-",
        train=len(splits["train"]),
        train_anomalous=sum(r.label for r in splits["train"]),
        validation=len(splits["validation"]),
        test_good=sum(1 for r in test if r.label == 0),
        test_anomalous=sum(r.label for r in test),
        defect_types=sorted({r.defect_type for r in all_refs if r.label == 1}),
        image_sizes=sorted({_image_size(r.image_path) for r in all_refs}),
    ))
  return rows


def _format_sizes(sizes: list[tuple[int, int]], shown: int = 3) -> str:
  if not sizes:
    return "-"
  if len(sizes) <= shown:
    return ", ".join(f"{h}x{w}" for h, w in sizes)
  heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
  return f"{len(sizes)} sizes, {min(heights)}-{max(heights)} x {min(widths)}-{max(widths)}"


def format_summary(rows: list[SummaryRow]) -> str:
  """A plain-text table of `dataset_summary` rows."""
  header = ("category", "train", "train anom.", "val", "test good", "test anom.", "defect types", "image sizes (HxW)")
  lines = [header]
  for row in rows:
    lines.append((
        row["category"], str(row["train"]), str(row["train_anomalous"]), str(row["validation"]),
        str(row["test_good"]), str(row["test_anomalous"]), ", ".join(row["defect_types"]) or "-",
        _format_sizes(row["image_sizes"])))
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
  text.insert(1, "  ".join("-" * width for width in widths))
  return "\n".join(text)
