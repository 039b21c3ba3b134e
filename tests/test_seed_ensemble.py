"""benchmarks/seed_ensemble.py: per-member and mean-score image AUROC from `jaxad predict` folders and from
runs' test_scores.csv."""

import csv
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def ens(load_benchmark):
  return load_benchmark("seed_ensemble")


FILES = ["t/good/0.png", "t/good/1.png", "t/crack/0.png", "t/hole/0.png"]


def _write(folder: Path, scores, map_scores=None, files=FILES) -> Path:
  folder.mkdir()
  with (folder / "scores.csv").open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "score", "map_score", "anomalous"])
    for name, s, m in zip(files, scores, map_scores or scores):
      w.writerow([name, s, m, True])
  return folder


def test_members_and_their_mean_are_scored_overall_and_per_defect_type(ens, tmp_path):
  # member a ranks the crack below both normals; member b ranks the hole below one; their mean ranks both above
  a = _write(tmp_path / "a", [0.0, 0.2, -1.0, 3.0], map_scores=[0.0, 1.0, 2.0, 3.0])
  b = _write(tmp_path / "b", [0.0, 0.2, 3.0, 0.1], map_scores=[0.0, 1.0, 2.0, 3.0])
  table = ens.ensemble_table([a, b])
  assert table["score"][str(a)] == {"all": 0.5, "crack": 0.0, "hole": 1.0}
  assert table["score"][str(b)] == {"all": 0.75, "crack": 1.0, "hole": 0.5}
  assert table["score"]["mean"] == {"all": 1.0, "crack": 1.0, "hole": 1.0}  # means 0, 0.2, 1.0, 1.55
  assert table["map_score"]["mean"]["all"] == 1.0
  assert "| score | mean | 1.000 | 1.000 | 1.000 |" in ens.markdown(table)


def test_folders_over_other_images_or_without_scores_are_named(ens, tmp_path):
  a = _write(tmp_path / "a", [0, 1, 2, 3])
  other = _write(tmp_path / "other", [0, 1, 2, 3], files=["t/good/0.png", "t/good/9.png", "t/crack/0.png", "t/hole/0.png"])
  with pytest.raises(SystemExit, match="other.*other images"):
    ens.ensemble_table([a, other])
  with pytest.raises(SystemExit, match="missing.*scores.csv: not found"):
    ens.ensemble_table([a, tmp_path / "missing"])
  only_good = _write(tmp_path / "good_only", [0, 1], files=["t/good/0.png", "t/good/1.png"])
  with pytest.raises(SystemExit, match="normal .* and anomalous"):
    ens.ensemble_table([only_good])


def test_member_slots_of_a_runs_test_scores_file(ens, tmp_path):
  from jaxad.evaluate import report
  from jaxad.train.loop import SplitData
  split = SplitData(image=np.zeros((4, 2, 2, 3), np.float32), mask=np.zeros((4, 2, 2), np.float32),
                    label=np.array([0, 0, 1, 1], np.int32), is_segmented=np.ones(4, bool), file_name=FILES,
                    defect_type=["good", "good", "crack", "hole"])
  score = np.array([[0.0, 0.2, -1.0, 3.0], [0.0, 0.2, 3.0, 0.1], [9.0, 9.0, 0.0, 0.0]])  # slot 2: all wrong
  path = report.write_image_scores(tmp_path, split, {"score": score, "map_score": score})
  table = ens.ensemble_table([path], members=[0, 1])  # the same two members as the folders above
  assert table["score"][f"{path}#0"] == {"all": 0.5, "crack": 0.0, "hole": 1.0}
  assert table["score"]["mean"] == {"all": 1.0, "crack": 1.0, "hole": 1.0}
  assert ens.ensemble_table([path])["score"][f"{path}#2"]["all"] == 0.0  # default: every slot
  with pytest.raises(SystemExit, match="no member slot \\[5\\]"):
    ens.ensemble_table([path], members=[5])
  with pytest.raises(SystemExit, match="nothing.csv: not a readable test_scores.csv"):
    ens.ensemble_table([tmp_path / "nothing.csv"])
