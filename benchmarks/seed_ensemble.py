"""Image AUROC of each member and of their average: do several seeds scored together beat one?

Reads the `scores.csv` of `jaxad predict` runs over the same test images (one folder per member,
e.g. `jaxad predict --workdir SWEEP --member M --out DIR TEST_FOLDER`). An image is normal when its
parent folder is `good` (MVTec layout), anomalous otherwise, and its defect type is that folder.
Prints and writes (--out, JSON) the image AUROC of each member's `score` (the model's image score)
and `map_score` (the map maximum), the same for the mean over members (an ensemble: no test labels
used, M× the inference cost), and per defect type (its images against all normal ones).

  python benchmarks/seed_ensemble.py PRED_DIR PRED_DIR [...] [--out ensemble.json]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from jaxad import metrics
from jaxad.evaluate import report

SCORE_COLUMNS = ("score", "map_score")


def read_scores(folder: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
  """(files, {column: scores_N}) from `<folder>/scores.csv`; clear errors for a bad folder."""
  path = Path(folder) / "scores.csv"
  if not path.is_file():
    raise SystemExit(f"{path}: not found (expected the output folder of `jaxad predict`)")
  with path.open(newline="") as f:
    rows = list(csv.DictReader(f))
  missing = [c for c in ("file", *SCORE_COLUMNS) if not rows or c not in rows[0]]
  if missing:
    raise SystemExit(f"{path}: no rows or missing columns {missing}")
  return [r["file"] for r in rows], {c: np.array([float(r[c]) for r in rows]) for c in SCORE_COLUMNS}


def defect_types(files: list[str]) -> list[str]:
  """The parent folder of each file: 'good' for normal images."""
  return [Path(f).parent.name for f in files]


def aurocs(scores_N: np.ndarray, kinds: list[str]) -> dict[str, float]:
  """Image AUROC over all images (key 'all') and per defect type (its images against the normal ones)."""
  kinds_N = np.array(kinds)
  normal_N = kinds_N == "good"
  out = {"all": metrics.image_auroc(scores_N, ~normal_N)}
  for kind in sorted(set(kinds) - {"good"}):
    sel_N = normal_N | (kinds_N == kind)
    out[kind] = metrics.image_auroc(scores_N[sel_N], kinds_N[sel_N] == kind)
  return out


def ensemble_table(folders: list[str | Path]) -> dict:
  """{column: {member folder or 'mean': {'all' | defect type: AUROC}}} for folders over the same images."""
  loaded = [read_scores(d) for d in folders]
  files = loaded[0][0]
  for d, (other, _) in zip(folders[1:], loaded[1:]):
    if other != files:
      raise SystemExit(f"{d}: scores.csv lists other images than {folders[0]} (score the same test folder)")
  kinds = defect_types(files)
  if "good" not in kinds or len(set(kinds)) < 2:
    raise SystemExit(f"{folders[0]}: the images need normal ('good' folder) and anomalous ones")
  table = {}
  for column in SCORE_COLUMNS:
    per = {str(d): aurocs(scores[column], kinds) for d, (_, scores) in zip(folders, loaded)}
    per["mean"] = aurocs(np.mean([scores[column] for _, scores in loaded], axis=0), kinds)
    table[column] = per
  return table


def markdown(table: dict) -> str:
  rows = [{"scores": column, "member": member, **values} for column, per in table.items() for member, values in per.items()]
  return report.markdown_table(rows, digits=3)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("folders", nargs="+", help="output folders of `jaxad predict` (scores.csv each)")
  parser.add_argument("--out", help="JSON file for the table")
  args = parser.parse_args(argv)
  table = ensemble_table(args.folders)
  print(markdown(table))
  if args.out:
    Path(args.out).write_text(json.dumps({"folders": args.folders, "auroc": table}, indent=1))


if __name__ == "__main__":
  main()
