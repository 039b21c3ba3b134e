"""`jaxad predict` / `jaxad export` outputs: sweep member numbers, --out inside an input folder, unique
overlay names, predict_array compiling once for any image count, images decoded batch by batch, and the
threshold compared in float32."""

import json
import shutil
import weakref
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


def _mixed_folder(root, tmp_path) -> Path:
  """The brick test images (64×64) and 8 more of two other sizes, the sizes interleaved in file order."""
  from PIL import Image
  folder = _test_folder(root, tmp_path)
  rng = np.random.default_rng(0)
  for i in range(8):
    Image.fromarray(rng.integers(0, 256, ((50, 70) if i % 2 else (40, 48)) + (3,), dtype=np.uint8)).save(
        folder / f"extra{i}.png")
  return folder


def test_predict_decodes_batch_by_batch_and_keeps_file_order(sweep, tmp_path, monkeypatch):
  from jaxad.data import images as images_lib
  from jaxad.infer import InferenceEngine
  from jaxad.run import load_trained
  root, workdir = sweep
  folder = _mixed_folder(root, tmp_path)
  files = sorted(folder.rglob("*.png"))
  events, alive = [], []  # alive: decoded images not yet freed, after each decode
  load_image, call = images_lib.load_image, InferenceEngine.__call__

  def counting_load_image(path):
    image = load_image(path)
    events.append("decode")
    weakref.finalize(image, events.append, "free")
    alive.append(events.count("decode") - events.count("free"))
    return image

  def logging_call(self, images_BxHxWx3):
    events.append("predict")
    return call(self, images_BxHxWx3)

  monkeypatch.setattr(images_lib, "load_image", counting_load_image)
  monkeypatch.setattr(InferenceEngine, "__call__", logging_call)
  out = tmp_path / "out"
  assert _predict(workdir / "p0c0", 0, out, [folder]) == 0  # --batch-size 2
  assert events.count("decode") == len(files) == 13 and events.count("predict") == 3 + 2 + 2  # 5 + 4 + 4 padded
  assert max(alive) <= 2, alive  # one batch being decoded at a time (the old code held all 13)
  assert events[:events.index("predict")].count("decode") == 4  # the first batch ran when two were decoded, not all
  assert not list(out.glob(".predict-*"))  # the temporary maps and display images are gone
  # Outputs are in file order, whatever the batching by size: as predicting each file alone.
  rows = json.loads((out / "scores.json").read_text())
  maps = np.load(out / "anomaly_maps.npy")
  assert [r["file"] for r in rows] == list(map(str, files)) and maps.shape == (13, 64, 64)
  method, static, _, states, frozen, _ = load_trained(workdir / "p0c0" / "brick")
  engine = InferenceEngine(method, static, states, frozen)
  for i, f in enumerate(files):
    ref = engine.predict_array(load_image(f)[None], 2)
    np.testing.assert_allclose([rows[i]["score"], rows[i]["map_score"]], [ref["score"][0, 0], ref["map_score"][0, 0]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[i], ref["anomaly_map"][0, 0], rtol=1e-5, atol=1e-6)


def test_the_threshold_is_compared_in_float32(sweep, tmp_path, monkeypatch, capsys):
  from jaxad.cli.predict import anomalous
  score = np.float32(-0.5185085)
  below = np.nextafter(np.float64(score), -np.inf)  # a float64 threshold just below the score, float32-equal to it
  assert np.float32(below) == score and np.float64(score) > below
  assert not anomalous([score], float(score))[0] and not anomalous([score], below)[0]
  assert not anomalous([score], float(below))[0]
  assert anomalous([score], float(np.nextafter(score, np.float32(-np.inf))))[0]  # one float32 step below
  # End to end: an image whose score equals the threshold after the cast is not anomalous.
  root, workdir = sweep
  images = sorted((root / "brick" / "test").rglob("*.png"))[:3]
  assert _predict(workdir / "p0c0", 0, tmp_path / "plain", images) == 0
  score = np.float32(json.loads((tmp_path / "plain" / "scores.json").read_text())[1]["score"])
  threshold = np.nextafter(np.float64(score), -np.inf)  # a float, as validation_threshold returns
  monkeypatch.setattr("jaxad.run.validation_threshold", lambda *args: threshold)
  for dtype in ("float32", "bfloat16"):
    out = tmp_path / dtype
    assert main(["predict", "--workdir", str(workdir / "p0c0"), "--out", str(out), "--dtype", dtype,
                 "--batch-size", "2", *map(str, images)]) == 0
    rows = json.loads((out / "scores.json").read_text())
    assert [r["anomalous"] for r in rows] == [np.float32(r["score"]) > np.float32(threshold) for r in rows]
    if dtype == "float32":
      assert rows[1]["score"] == score and rows[1]["anomalous"] is False
    assert ("from float32 scores: a bfloat16 score" in capsys.readouterr().out) == (dtype == "bfloat16")
  with pytest.raises(SystemExit):
    main(["predict", "--help"])
  assert "float32 validation scores" in " ".join(capsys.readouterr().out.split())


def test_testing_a_chunked_sweep_points_to_extract(sweep, capsys):
  _, workdir = sweep
  assert main(["test", "--workdir", str(workdir)]) == 2
  assert f"jaxad extract --workdir {workdir} --member N" in capsys.readouterr().err


def test_default_outputs_of_members_are_named_by_member(sweep):
  root, workdir = sweep
  images = sorted((root / "brick" / "test").rglob("*.png"))[:2]
  for member in (0, 1):
    assert main(["predict", "--workdir", str(workdir), "--member", str(member), *map(str, images)]) == 0
    assert main(["export", "--workdir", str(workdir), "--member", str(member)]) == 0
  chunk = workdir / "p0c0" / "brick"  # members 0 and 1 share this folder: neither overwrites the other's outputs
  assert _scores(chunk / "predictions_member0") != _scores(chunk / "predictions_member1")
  assert {p.name for p in chunk.glob("model_*.jaxad")} == {"model_float32_member0.jaxad", "model_float32_member1.jaxad"}
