"""`jaxad fit` → `jaxad test` → `jaxad predict` on the embedded dataset with a tiny backbone, and every experiment file."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxad import metrics
from jaxad.cli import main
from jaxad.evaluate.report import read_image_scores
from jaxad.experiments_loader import load_experiment

EXPERIMENTS = sorted(Path(__file__).parent.parent.glob("experiments/*.py"))


@pytest.fixture(scope="module")
def embedded_root(tmp_path_factory):
  from jaxad.data.embedded import build_embedded
  root = tmp_path_factory.mktemp("embedded")
  build_embedded(root, image_size=64, categories=("brick",), n_train=12, n_test_good=4, n_test_per_defect=2)
  return root


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_files_load(path):
  cfg = load_experiment(str(path))
  assert cfg["run"]["model"] and cfg["set"]
  if path.stem.startswith(("supersimplenet_mvtec", "supersimplenet_visa", "supersimplenet_ksdd2")):
    assert cfg["paper"]["image_auroc_official"] > 0.9  # eval.py's sigmoid scores, as the paper; as fractions
  if path.stem.startswith(("efficient_ad_mvtec", "efficient_ad_visa")):
    assert cfg["paper"]["image_auroc"] > 0.9  # paper numbers for paper_comparison.md, as fractions
  if path.stem == "efficient_ad_loco":
    assert cfg["paper"]["image_auroc_loco"] == 0.9  # the mean of the per-kind AUROCs, not the pooled one


def test_paper_comparison_of_the_mean_row(tmp_path, capsys):
  import argparse
  from jaxad.cli.fit import compare_with_paper
  exp = tmp_path / "exp.py"
  exp.write_text("def get_config(arg):\n  return {'set': {'epochs': 1}, "
                 "'paper': {'source': 'Paper 2024', 'image_auroc': 0.98, 'aupro': 0.9, 'pixel_ap': 0.5}}\n")
  rows = [{"category": "a", "image_auroc": 0.9, "aupro": 0.8}, {"category": "b", "image_auroc": 1.0, "aupro": 0.9},
          {"category": "mean", "image_auroc": 0.95, "aupro": 0.85}]
  compare_with_paper(argparse.Namespace(config=str(exp), category=None), rows, str(tmp_path))
  saved = json.loads((tmp_path / "paper_comparison.json").read_text())
  assert saved["source"] == "Paper 2024"
  assert [(r["metric"], r["paper"], r["jaxad"]) for r in saved["rows"]] == [("image_auroc", 0.98, 0.95),
                                                                           ("aupro", 0.9, 0.85)]
  assert saved["rows"][0]["difference"] == pytest.approx(-0.03)
  assert "Against Paper 2024" in capsys.readouterr().out
  (tmp_path / "paper_comparison.json").unlink()
  compare_with_paper(argparse.Namespace(config=str(exp), category=["a"]), rows[:1], str(tmp_path))
  assert not (tmp_path / "paper_comparison.json").exists()
  assert "not compared with Paper 2024: --category trains a subset" in capsys.readouterr().out


def test_fit_test_predict_cli(tmp_path, embedded_root, capsys, monkeypatch):
  workdir = tmp_path / "run"
  args = ["fit", "--config", "experiments/supersimplenet_mvtec.py:smoke", "--data", os.path.relpath(embedded_root),
          "--workdir", str(workdir), "--no-progress"]
  assert main(args) == 0
  out = capsys.readouterr().out
  assert "image_auroc" in out and "aupro" in out
  cat = workdir / "brick"
  report = json.loads((cat / "report.json").read_text())
  assert 0.0 <= report[0]["image_auroc"] <= 1.0 and 0.0 <= report[0]["aupro"] <= 1.0
  assert list((cat / "overlays").glob("*.png"))
  assert (workdir / "summary.md").exists()
  assert not (cat / "validation.json").exists()  # val_fraction 0: every training image trains, as the official code
  prov = json.loads((cat / "provenance.json").read_text())
  assert prov["versions"]["jax"] and prov["command"] and prov["cwd"] == os.getcwd()
  # Running fit again resumes from the final checkpoint (no further steps) and reproduces the report.
  assert main(args) == 0
  assert json.loads((cat / "report.json").read_text()) == report
  # A relative --data is recorded as an absolute path, so `jaxad test` works from any folder.
  assert json.loads((cat / "config.json").read_text())["run"]["data"] == str(embedded_root.resolve())

  fit_overlays = sorted((cat / "overlays").iterdir())
  fit_scores = read_image_scores(cat / "test_scores.csv")  # every test image's scores, one member
  assert list(fit_scores) == [0] and len(fit_scores[0]["file"]) == 10
  assert metrics.image_auroc(fit_scores[0]["score"], fit_scores[0]["label"]) == pytest.approx(report[0]["image_auroc"])
  monkeypatch.chdir(tmp_path)
  capsys.readouterr()
  assert main(["test", "--workdir", str(workdir), "--overlays", "2"]) == 0
  assert f"{cat}: test_report.{{json,csv,md}}, test_scores.csv, test_overlays/" in capsys.readouterr().out
  np.testing.assert_allclose(read_image_scores(cat / "test_scores.csv")[0]["score"], fit_scores[0]["score"],
                             rtol=1e-5, atol=1e-6)
  again = json.loads((cat / "test_report.json").read_text())
  assert again[0]["image_auroc"] == pytest.approx(report[0]["image_auroc"], abs=1e-6)
  assert len(list((cat / "test_overlays").glob("*.png"))) == 2 and sorted((cat / "overlays").iterdir()) == fit_overlays

  images = sorted((embedded_root / "brick" / "test").rglob("*.png"))[:3]
  out_dir = tmp_path / "pred"
  assert main(["predict", "--workdir", str(workdir), "--out", str(out_dir), *map(str, images)]) == 0
  scores = json.loads((out_dir / "scores.json").read_text())
  assert len(scores) == 3 and not any("anomalous" in r for r in scores)  # no validation threshold
  fit_score = dict(zip(fit_scores[0]["file"], fit_scores[0]["score"]))
  for image, row in zip(images, scores):  # the test split's scores, for the same files
    assert row["score"] == pytest.approx(fit_score[str(image.relative_to(embedded_root / "brick"))], rel=1e-5, abs=1e-6)
  assert len(list((out_dir / "overlays").glob("*.png"))) == 3


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
  assert main(["fit", "--data", str(tmp_path / "missing"), "--workdir", str(tmp_path / "w")]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert main(["fit", "--set", "no_such_field=1", "--workdir", str(tmp_path / "w")]) == 2
  assert "unknown setting" in capsys.readouterr().err
  assert main(["test", "--workdir", str(tmp_path)]) == 2


def test_sweep_cli_trains_members_and_tables_them(tmp_path, embedded_root, capsys):
  workdir = tmp_path / "sweep"
  assert main(["sweep", "--config", "experiments/supersimplenet_mvtec.py:smoke", "--data", str(embedded_root),
               "--workdir", str(workdir), "--no-progress", "--grid", "noise_std=0.01,0.1", "--grid", "seed=0:2"]) == 0
  rows = json.loads((workdir / "brick" / "report.json").read_text())
  assert len(rows) == 4 and {(r["noise_std"], r["seed"]) for r in rows} == {(0.01, 0), (0.01, 1), (0.1, 0), (0.1, 1)}
  assert "4 members" in capsys.readouterr().out
  assert main(["test", "--workdir", str(workdir)]) == 0  # a one-chunk sweep is one run of 4 members
  out = capsys.readouterr().out
  assert out.count("| brick |") == 4 and "| mean |" not in out  # no mean over members
  assert main(["sweep", "--data", str(embedded_root), "--grid", "image_size=64,128", "--workdir", str(workdir)]) == 2


def test_compiling_commands_keep_a_persistent_compilation_cache(tmp_path, monkeypatch):
  import jax

  from jaxad import cli
  before = jax.config.jax_compilation_cache_dir
  try:
    assert cli.enable_compilation_cache() is None  # JAXAD_COMPILATION_CACHE=0 (conftest)
    monkeypatch.setenv("JAXAD_COMPILATION_CACHE", "1")
    monkeypatch.setenv("JAXAD_CACHE", str(tmp_path))
    jax.config.update("jax_compilation_cache_dir", None)
    assert cli.enable_compilation_cache() == str(tmp_path / "xla")
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))  # the user's own setting wins
    assert cli.enable_compilation_cache() == str(tmp_path / "mine")
  finally:
    jax.config.update("jax_compilation_cache_dir", before)


def test_simplenet_sweeps_like_separate_runs(tmp_path, embedded_root, capsys):
  """SimpleNet's protocol options need its own runner; without them it sweeps on the shared engine. Member 1
  equals the separate run of its seed: kernels to float rounding and the same image AUROC; with --exact, bit
  for bit. Biases in front of a BatchNorm get gradients that are rounding noise (the BatchNorm cancels them),
  which Adam turns into steps of ±lr: they may differ by up to lr × steps, and the outputs by float rounding."""
  import jax
  import numpy as np
  from jaxad.run import load_trained
  from jaxad.train.state import index_member
  common = ["--config", "experiments/simplenet_mvtec.py:smoke", "--data", str(embedded_root), "--no-progress",
            "--max-steps", "3"]
  assert main(["sweep", *common, "--workdir", str(tmp_path / "sweep"), "--grid", "seed=0,1"]) == 0
  assert main(["fit", *common, "--workdir", str(tmp_path / "fit"), "--set", "seed=1"]) == 0
  swept = index_member(load_trained(tmp_path / "sweep" / "brick")[3], 1)
  alone = index_member(load_trained(tmp_path / "fit" / "brick")[3], 0)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(swept.params), jax.tree.leaves(alone.params)):
    bias_before_bn = jax.tree_util.keystr(path).endswith("['fc']['bias']")
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=3 * 2e-4 * 1.01 if bias_before_bn else 1e-6)
  rows = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
  single = json.loads((tmp_path / "fit" / "brick" / "report.json").read_text())[0]
  assert rows[1]["image_auroc"] == pytest.approx(single["image_auroc"], abs=1e-6)
  assert rows[1]["pixel_auroc"] == pytest.approx(single["pixel_auroc"], abs=2e-3)

  # --exact: each member runs fit's own program (one member, one device), so member 1 is the fit bit for bit;
  # split over two processes (here one after the other), as on a host with a process per device.
  capsys.readouterr()
  for process in ("1", "0"):
    assert main(["sweep", *common, "--workdir", str(tmp_path / "exact"), "--grid", "seed=0,1", "--exact",
                 "--num-processes", "2", "--process-id", process]) == 0
  assert "trains on one of the 4 devices it sees" in capsys.readouterr().err  # conftest forces 4 CPU devices
  plan = json.loads((tmp_path / "exact" / "sweep.json").read_text())["points"]["0"]["groups"]
  assert [(g["members"], g["slots"], g["devices"]) for g in plan] == [([0], 1, 1), ([1], 1, 1)]
  exact = load_trained(tmp_path / "exact" / "p0c1" / "brick")[3]
  for a, b in zip(jax.tree.leaves(exact), jax.tree.leaves(load_trained(tmp_path / "fit" / "brick")[3])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  exact_rows = json.loads((tmp_path / "exact" / "sweep_results.json").read_text())
  from jaxad.evaluate.report import METRIC_ORDER
  shared = [k for k in METRIC_ORDER if k in single]
  assert [exact_rows[1][k] for k in shared] == [single[k] for k in shared]
  capsys.readouterr()
  assert main(["sweep", *common, "--workdir", str(tmp_path / "protocol"), "--grid", "seed=0,1",
               "--set", "select_on_test=true"]) == 2
  assert "protocol options" in capsys.readouterr().err
