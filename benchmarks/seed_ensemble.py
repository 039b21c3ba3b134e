"""Image AUROC of each member and of their average: do several seeds scored together beat one?

Reads either the `scores.csv` of `jaxad predict` runs over the same test images (one folder per
member, e.g. `jaxad predict --workdir SWEEP --member M --out DIR TEST_FOLDER`; an image is normal
when its parent folder is `good`, MVTec layout, and its defect type is that folder), or the
`test_scores.csv` that `jaxad fit`, `jaxad test` and each sweep chunk write (every member slot in
it, or those given with --members; defect types and labels from the file). Prints and writes
(--out, JSON) the image AUROC of each member's `score` (the model's image score) and `map_score`
(the map maximum), the same for the mean over members (an ensemble: no test labels used, M× the
inference cost), and per defect type (its images against all normal ones). `jaxad sweep` reports
the overall ensemble AUROC of each setting's seeds itself (sweep_seeds); this adds the per-type view.

  python benchmarks/seed_ensemble.py PRED_DIR PRED_DIR [...] [--out ensemble.json]
  python benchmarks/seed_ensemble.py SWEEP/chip/test_scores.csv --members 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxad import metrics
from jaxad.evaluate import report

SCORE_COLUMNS = ("score", "map_score")


@dataclasses.dataclass
class Member:
  name: str  # the predict folder, or `<test_scores.csv>#<slot>`
  files: list[str]
  kinds: list[str]  # defect type per image; "good" for normal ones
  scores: dict[str, np.ndarray]  # SCORE_COLUMNS → (N,)


def read_predict_folder(folder: str | Path) -> Member:
  """One member from `<folder>/scores.csv` (`jaxad predict`); defect type = parent folder; clear errors."""
  path = Path(folder) / "scores.csv"
  if not path.is_file():
    raise SystemExit(f"{path}: not found (expected the output folder of `jaxad predict`)")
  with path.open(newline="") as f:
    rows = list(csv.DictReader(f))
  missing = [c for c in ("file", *SCORE_COLUMNS) if not rows or c not in rows[0]]
  if missing:
    raise SystemExit(f"{path}: no rows or missing columns {missing}")
  files = [r["file"] for r in rows]
  return Member(str(folder), files, [Path(f).parent.name for f in files],
                {c: np.array([float(r[c]) for r in rows]) for c in SCORE_COLUMNS})


def read_test_scores(path: str | Path, members: list[int] | None = None) -> list[Member]:
  """The given member slots (default: all) of a run's `test_scores.csv` (report.write_image_scores)."""
  path = Path(path)
  try:
    per_slot = report.read_image_scores(path)
  except (OSError, KeyError, ValueError) as e:
    raise SystemExit(f"{path}: not a readable test_scores.csv ({e})") from None
  unknown = sorted(set(members or []) - set(per_slot))
  if unknown:
    raise SystemExit(f"{path}: no member slot {unknown} (slots: {sorted(per_slot)})")
  out = []
  for m in members if members is not None else sorted(per_slot):
    s = per_slot[m]
    kinds = ["good" if label == 0 else kind for label, kind in zip(s["label"], s["defect_type"])]
    out.append(Member(f"{path}#{m}", list(s["file"]), kinds, {c: s[c] for c in SCORE_COLUMNS}))
  return out


def read_members(inputs: list[str | Path], members: list[int] | None = None) -> list[Member]:
  """Predict folders and test_scores.csv files (`members` picks slots of the latter)."""
  out = []
  for item in inputs:
    out += read_test_scores(item, members) if str(item).endswith(".csv") else [read_predict_folder(item)]
  return out


def aurocs(scores_N: np.ndarray, kinds: list[str]) -> dict[str, float]:
  """Image AUROC over all images (key 'all') and per defect type (its images against the normal ones)."""
  kinds_N = np.array(kinds)
  normal_N = kinds_N == "good"
  out = {"all": metrics.image_auroc(scores_N, ~normal_N)}
  for kind in sorted(set(kinds) - {"good"}):
    sel_N = normal_N | (kinds_N == kind)
    out[kind] = metrics.image_auroc(scores_N[sel_N], kinds_N[sel_N] == kind)
  return out


def ensemble_table(inputs: list[str | Path], members: list[int] | None = None) -> dict:
  """{column: {member name or 'mean': {'all' | defect type: AUROC}}} for members over the same images."""
  loaded = read_members(inputs, members)
  first = loaded[0]
  for other in loaded[1:]:
    if other.files != first.files:
      raise SystemExit(f"{other.name}: lists other images than {first.name} (score the same test images)")
  if "good" not in first.kinds or len(set(first.kinds)) < 2:
    raise SystemExit(f"{first.name}: the images need normal ('good' folder) and anomalous ones")
  table = {}
  for column in SCORE_COLUMNS:
    per = {m.name: aurocs(m.scores[column], first.kinds) for m in loaded}
    per["mean"] = aurocs(np.mean([m.scores[column] for m in loaded], axis=0), first.kinds)
    table[column] = per
  return table


def markdown(table: dict) -> str:
  rows = [{"scores": column, "member": member, **values}
          for column, per in table.items() for member, values in per.items()]
  return report.markdown_table(rows, digits=3)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("inputs", nargs="+", help="output folders of `jaxad predict` (scores.csv each) or runs' "
                      "test_scores.csv files")
  parser.add_argument("--members", type=int, nargs="+", help="member slots to take from each test_scores.csv")
  parser.add_argument("--out", help="JSON file for the table")
  args = parser.parse_args(argv)
  table = ensemble_table(args.inputs, args.members)
  print(markdown(table))
  if args.out:
    Path(args.out).write_text(json.dumps({"inputs": args.inputs, "members": args.members, "auroc": table}, indent=1))


if __name__ == "__main__":
  main()
