"""Sweep tables (jaxad.sweep.outputs): each setting's mean ± std over its seeds, on hand-made rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxad.sweep import outputs


def _rows():
  """σ ∈ {0.5, 1.0} × seed ∈ {0, 1, 2} × two categories; σ = 1.0, seed 2 diverged on `b`."""
  rows, rng = [], np.random.default_rng(0)
  for category in ("a", "b"):
    for member, (sigma, seed) in enumerate((s, t) for s in (0.5, 1.0) for t in range(3)):
      dead = category == "b" and sigma == 1.0 and seed == 2
      rows.append({"category": category, "member": member, "noise_std": sigma, "seed": seed, "group": "p0c0",
                   "alive": not dead, "image_auroc": float(rng.random()), "aupro": float(rng.random())})
  return rows


def test_means_and_sample_stds_over_seeds_per_setting_and_category():
  rows = _rows()
  table = outputs.over_seeds(rows, ["noise_std", "seed"])
  assert [(r["noise_std"], r["category"]) for r in table] == [(0.5, "a"), (0.5, "b"), (0.5, "mean"),
                                                               (1.0, "a"), (1.0, "b"), (1.0, "mean")]
  assert all("seed" not in r for r in table)
  values = lambda cat, sigma, metric, alive=True: [r[metric] for r in rows if r["category"] == cat
                                                   and r["noise_std"] == sigma and (r["alive"] or not alive)]
  a05 = table[0]
  assert a05["seeds"] == 3 and a05["diverged"] == 0
  assert a05["image_auroc"] == pytest.approx(np.mean(values("a", 0.5, "image_auroc")))
  assert a05["image_auroc_std"] == pytest.approx(np.std(values("a", 0.5, "image_auroc"), ddof=1))
  # the diverged member is counted and left out of the mean
  b10 = table[4]
  assert b10["seeds"] == 3 and b10["diverged"] == 1
  assert b10["aupro"] == pytest.approx(np.mean(values("b", 1.0, "aupro")))
  # mean row: each seed's mean over the categories, then mean ± std over the seeds
  per_seed = [np.mean([r["aupro"] for r in rows if r["noise_std"] == 0.5 and r["seed"] == s]) for s in range(3)]
  assert table[2]["aupro"] == pytest.approx(np.mean(per_seed))
  assert table[2]["aupro_std"] == pytest.approx(np.std(per_seed, ddof=1))
  # σ = 1.0: seed 2 has no value on `b`, so its mean row rests on seeds 0 and 1
  per_seed = [np.mean([r["aupro"] for r in rows if r["noise_std"] == 1.0 and r["seed"] == s]) for s in range(2)]
  assert table[5]["aupro"] == pytest.approx(np.mean(per_seed)) and table[5]["diverged"] == 1


def test_best_setting_is_chosen_by_its_mean_over_seeds_not_by_one_lucky_seed():
  rows = _rows()
  for r in rows:  # σ 0.5 is better on average; σ 1.0 has the single best seed in every category
    r["image_auroc"] = {(0.5, 0): 0.90, (0.5, 1): 0.91, (0.5, 2): 0.92,
                        (1.0, 0): 0.99, (1.0, 1): 0.70, (1.0, 2): 0.71}[r["noise_std"], r["seed"]]
  assert {r["noise_std"] for r in outputs.best_per_category(rows, "image_auroc")} == {1.0}
  table = outputs.over_seeds(rows, ["noise_std", "seed"], "image_auroc")
  assert [(r["noise_std"], r["category"]) for r in table if r["best"]] == [(0.5, "a"), (0.5, "b"), (0.5, "mean")]
  # one setting: nothing to choose, no column
  assert all("best" not in r for r in outputs.over_seeds([r for r in rows if r["noise_std"] == 0.5],
                                                         ["noise_std", "seed"], "image_auroc"))


def test_no_seed_table_without_two_seeds(tmp_path):
  rows = [r for r in _rows() if r["seed"] == 0]
  assert outputs.over_seeds(rows, ["noise_std", "seed"]) == []
  assert outputs.over_seeds(_rows(), ["noise_std"]) == []
  outputs.write(rows, ["noise_std", "seed"], tmp_path, "image_auroc")
  assert not list(tmp_path.glob("sweep_seeds.*"))


def test_seed_tables_are_written_with_mean_and_std_side_by_side(tmp_path):
  rows = [r for r in _rows() if r["category"] == "a"]  # one category: no mean row
  paths = outputs.write(rows, ["noise_std", "seed"], tmp_path, "image_auroc")
  assert sorted(p.name for p in paths["seeds"]) == ["sweep_seeds.csv", "sweep_seeds.json", "sweep_seeds.md"]
  table = json.loads((tmp_path / "sweep_seeds.json").read_text())
  assert [r["category"] for r in table] == ["a", "a"]
  header = (tmp_path / "sweep_seeds.csv").read_text().splitlines()[0].split(",")
  assert header == ["noise_std", "category", "seeds", "diverged", "best", "image_auroc", "image_auroc_std",
                    "aupro", "aupro_std"]
  md = (tmp_path / "sweep_seeds.md").read_text().splitlines()
  assert md[0] == "| noise_std | category | seeds | diverged | best | image_auroc | aupro |"
  assert sum(r["best"] for r in table) == 1  # by the mean of write's `select`, image_auroc
  first = table[0]
  assert f"| {first['image_auroc']:.4f} ± {first['image_auroc_std']:.4f} |" in md[2]


def test_seed_ensemble_scores_the_mean_of_each_settings_seeds(tmp_path):
  """Each seed misranks a different anomalous image; their mean ranks every image right."""
  rows = _rows()
  label = np.array([0, 0, 0, 1, 1, 1])
  good = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 1.0])
  scores = {}
  for r in rows:
    score = good.copy()
    if r["seed"] < 2:
      score[3 + r["seed"]] = 0.25  # below two normal images: this seed alone has AUROC 7/9
    scores[r["category"], r["member"]] = {"label": label, "score": score, "map_score": good * (1 + r["seed"])}
  scores["b", 5]["score"][:] = np.nan  # σ = 1.0, seed 2 on `b`: the diverged member
  table = outputs.over_seeds(rows, ["noise_std", "seed"], scores=scores)
  by = {(r["noise_std"], r["category"]): r for r in table}
  assert by[0.5, "a"]["ensemble_image_auroc"] == 1.0 and by[0.5, "a"]["ensemble_image_auroc_map_max"] == 1.0
  # σ = 1.0 on `b` without the diverged seed 2: the mean of seeds 0 and 1 still places images 3 and 4
  # above every normal one ((0.25 + 0.8) / 2 > 0.3)
  assert by[1.0, "b"]["ensemble_image_auroc"] == 1.0
  scores["b", 3]["score"][3] = -1.0  # seed 0 now drags image 3 to (−1 + 0.8) / 2, below all three normal ones
  assert outputs.over_seeds(rows, ["noise_std", "seed"], scores=scores)[4]["ensemble_image_auroc"] == pytest.approx(6 / 9)
  assert by[0.5, "mean"]["ensemble_image_auroc"] == 1.0
  # a member without scores (a chunk evaluated before test_scores.csv existed) leaves too few seeds out
  only_one = {k: v for k, v in scores.items() if k[1] in (0, 3)}
  assert all("ensemble_image_auroc" not in r for r in outputs.over_seeds(rows, ["noise_std", "seed"],
                                                                           scores=only_one))
  outputs.write(rows, ["noise_std", "seed"], tmp_path, "image_auroc", scores)
  md = (tmp_path / "sweep_seeds.md").read_text().splitlines()
  assert md[0].endswith("| aupro | ensemble_image_auroc | ensemble_image_auroc_map_max |")
