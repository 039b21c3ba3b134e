"""`jaxad predict` / `jaxad export` outputs: sweep member numbers, --out inside an input folder, unique
overlay names, and predict_array compiling once for any image count."""

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from jaxad.cli import main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  """(embedded data root, sweep workdir): 3 members in chunks of 2, so p0c1 holds member 2 and one padding slot."""
  from jaxad.data.embedded import build_embedded
  root = tmp_path_factory.mktemp("embedded")
  build_embedded(root, image_size=64, categories=("brick",), n_train=8, n_test_good=2, n_test_per_defect=1)
  workdir = tmp_path_factory.mktemp("sweep")
  assert main(["sweep", "--config", "experiments/supersimplenet_mvtec.py:smoke", "--data", str(root),
               "--workdir", str(workdir), "--grid", "seed=0:3", "--members-per-chunk", "2", "--no-shard",
               "--max-steps", "2", "--no-progress"]) == 0
  groups = json.loads((workdir / "sweep.json").read_text())["points"]["0"]["groups"]
  assert [(g["dir"], g["members"], g["slots"]) for g in groups] == [("p0c0", [0, 1], 2), ("p0c1", [2], 2)]
  return root, workdir


def _scores(out: Path) -> dict:
  return {r["file"]: r["score"] for r in json.loads((out / "scores.json").read_text())}


def _predict(workdir, member, out, images) -> int:
  return main(["predict", "--workdir", str(workdir), "--member", str(member), "--out", str(out), "--batch-size", "2",
               *map(str, images)])


def test_member_of_a_sweep_workdir_is_the_sweeps_number(sweep, tmp_path):
  root, workdir = sweep
  images = sorted((root / "brick" / "test").rglob("*.png"))[:2]
  assert _predict(workdir, 2, tmp_path / "global", images) == 0
  assert _predict(workdir / "p0c1", 0, tmp_path / "slot", images) == 0
  assert _predict(workdir / "p0c0", 0, tmp_path / "other", images) == 0
  assert _scores(tmp_path / "global") == _scores(tmp_path / "slot") != _scores(tmp_path / "other")
  out = tmp_path / "m2.jaxad"
  assert main(["export", "--workdir", str(workdir), "--member", "2", "--out", str(out)]) == 0
  meta = json.loads(zipfile.ZipFile(out).read("meta.json"))
  assert meta["member"] == 2 and meta["sweep_slot"] == 0


def test_a_padding_slot_of_a_sweep_chunk_is_refused(sweep, tmp_path, capsys):
  root, workdir = sweep
  images = sorted((root / "brick" / "test").rglob("*.png"))[:1]
  assert _predict(workdir / "p0c1", 1, tmp_path / "padding", images) == 2
  err = capsys.readouterr().err
  assert "padding" in err and "sweep member(s) 2" in err and f"--workdir {workdir}" in err
  assert not (tmp_path / "padding").exists()
  assert main(["export", "--workdir", str(workdir / "p0c1"), "--member", "1", "--out", str(tmp_path / "x")]) == 2
  assert "padding" in capsys.readouterr().err


def _test_folder(root, tmp_path) -> Path:
  folder = tmp_path / "test"
  shutil.copytree(root / "brick" / "test", folder)  # crack/000.png, good/000.png, good/001.png …
  return folder


def test_out_inside_an_input_folder_is_not_scored(sweep, tmp_path):
  root, workdir = sweep
  folder = _test_folder(root, tmp_path)
  n = len(list(folder.rglob("*.png")))
  out = folder / "pred"
  for _ in range(2):  # the second run must not score the first run's overlays
    assert _predict(workdir / "p0c0", 0, out, [folder]) == 0
    rows = json.loads((out / "scores.json").read_text())
    assert len(rows) == n and not any("pred" in Path(r["file"]).parts for r in rows)
  # A file under --out named directly is taken.
  shutil.copy(folder / "good" / "000.png", out / "again.png")
  assert _predict(workdir / "p0c0", 0, out, [folder, out / "again.png"]) == 0
  assert len(json.loads((out / "scores.json").read_text())) == n + 1


def test_overlays_of_files_with_one_name_do_not_overwrite_each_other(sweep, tmp_path):
  root, workdir = sweep
  folder = _test_folder(root, tmp_path)
  n = len(list(folder.rglob("*.png")))
  assert _predict(workdir / "p0c0", 0, tmp_path / "a", [folder]) == 0
  overlays = sorted(p.name for p in (tmp_path / "a" / "overlays").glob("*.png"))
  assert len(overlays) == n and any(name.startswith("crack__000_score") for name in overlays), overlays
  assert len(set(_scores(tmp_path / "a"))) == n  # rows hold the full paths
  # Files given directly are named after themselves; equal names get a suffix.
  direct = [folder / "good" / "000.png", folder / "crack" / "000.png", folder / "good" / "001.png"]
  assert _predict(workdir / "p0c0", 0, tmp_path / "b", direct) == 0
  overlays = sorted(p.name.rsplit("_score", 1)[0] for p in (tmp_path / "b" / "overlays").glob("*.png"))
  assert overlays == ["000", "000-2", "001"]


def test_predict_array_compiles_once_for_any_image_count(sweep):
  from jaxad.infer import InferenceEngine
  from jaxad.run import load_trained, select_member
  _, workdir = sweep
  method, static, _, states, frozen, _ = load_trained(workdir / "p0c0" / "brick")
  engine = InferenceEngine(method, static, states, frozen)
  images = np.random.default_rng(0).integers(0, 256, (11, 40, 48, 3), dtype=np.uint8)
  full = engine.predict_array(images, batch_size=4)
  for n in (1, 3, 2, 11, 4):
    out = engine.predict_array(images[:n], batch_size=4)
    assert out["score"].shape == (2, n) and out["anomaly_map"].shape[:2] == (2, n)
    np.testing.assert_allclose(out["score"], full["score"][:, :n], rtol=1e-5, atol=1e-6)
  assert engine.compiled_count() == 1
  one = InferenceEngine(method, static, select_member(states, 1, workdir), frozen).predict_array(images[:3], 4)
  np.testing.assert_allclose(one["score"][0], full["score"][1, :3], rtol=1e-5, atol=1e-6)
