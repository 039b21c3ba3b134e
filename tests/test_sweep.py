"""Sweeps (jaxad.sweep): chunked, sharded, padded and resumed sweeps equal one program; frozen members;
static points; tables and plots; extracted members.

A toy method (a conv + BatchNorm head on fixed random features, AdamW through
inject_hyperparams) compiles in about a second, so every sweep here trains its real engine
path (loop.fit, run_category, checkpoints, metrics) on the embedded dataset in seconds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxad import metrics, models
from jaxad.cli import main
from jaxad.errors import ConfigError
from jaxad.evaluate import report
from jaxad.models.method import Method
from jaxad.run import RunConfig, load_trained
from jaxad.sweep import memory, plan as plan_lib
from jaxad.sweep.runner import SweepOptions, run_sweep
from jaxad.train import optim
from jaxad.train.state import TrainState, index_member


# ---- a toy method -------------------------------------------------------------------------
# Plain jnp (one random draw per init and per step: XLA:CPU compiles each threefry call slowly)
# and module-level functions (the engine's compiled functions are cached per features_fn).

@dataclasses.dataclass(frozen=True)
class ToyStatic:
  image_size: tuple[int, int] = (32, 32)
  hidden: int = 4
  batch_size: int = 4
  epochs: int = 2
  cache_features: bool = True


@flax.struct.dataclass
class ToyHparams:
  noise_std: float = 0.5
  lr: float = 1e-2
  wd: float = 1e-4
  seed: int = 0


PROJ = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)


def toy_features(proj, images_BxHxWx3):
  x = jax.image.resize(images_BxHxWx3, (images_BxHxWx3.shape[0], 8, 8, 3), "linear")
  return jnp.tanh(x @ proj)


def _frozen(static):
  return toy_features, jnp.asarray(PROJ)


def _head(static, params, batch_stats, feats_BxHxWxC, train: bool):
  """3×3 conv (no bias) → BatchNorm → ReLU → 1×1 conv: map logits (B, H, W) and new batch statistics."""
  x = jax.lax.conv_general_dilated(feats_BxHxWxC, params["w1"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  if train:
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    batch_stats = {"mean": 0.9 * batch_stats["mean"] + 0.1 * mean, "var": 0.9 * batch_stats["var"] + 0.1 * var}
  else:
    mean, var = batch_stats["mean"], batch_stats["var"]
  x = jax.nn.relu((x - mean) / jnp.sqrt(var + 1e-5) * params["gamma"] + params["beta"])
  return x @ params["w2"] + params["b2"], batch_stats


def _init(static, key, hp, feats_BxHxWxC, spe):
  c, h = feats_BxHxWxC.shape[-1], static.hidden
  draw = jax.random.uniform(key, (9 * c * h + h,), minval=-1.0, maxval=1.0)
  params = {"w1": draw[:9 * c * h].reshape(3, 3, c, h) / np.sqrt(9 * c), "gamma": jnp.ones(h),
            "beta": jnp.zeros(h), "w2": draw[9 * c * h:] / np.sqrt(h), "b2": jnp.zeros(())}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats={"mean": jnp.zeros(h), "var": jnp.ones(h)},
                    opt_state=optim.torch_adamw(hp.lr, hp.wd).init(params), alive=jnp.ones((), bool))


def _train_step(static, state, feats_BxHxWxC, batch, key, hp, spe):
  b, h, w, c = feats_BxHxWxC.shape
  draw = jax.random.uniform(key, (b, 3))  # small: XLA:CPU compile time grows with the draw's size
  corner = jnp.floor(draw[:, :2] * (h - 3)).astype(jnp.int32)[:, :, None, None]  # (B, 2, 1, 1)
  rows, cols = jnp.arange(h)[None, :, None], jnp.arange(w)[None, None, :]
  mask_BxHxW = ((rows >= corner[:, 0]) & (rows < corner[:, 0] + 3) & (cols >= corner[:, 1]) &
                (cols < corner[:, 1] + 3)).astype(jnp.float32)
  pattern = jnp.sin(jnp.arange(h * w * c).reshape(h, w, c) * 0.37)
  noise = jnp.sin(pattern[None] * 5.0 + draw[:, 2, None, None, None] * 6.28) * np.sqrt(2.0)
  noised = feats_BxHxWxC + mask_BxHxW[..., None] * hp.noise_std * noise

  def loss_fn(params):
    logits, batch_stats = _head(static, params, state.batch_stats, noised, True)
    bce = jnp.maximum(logits, 0) - logits * mask_BxHxW + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return bce.mean(), batch_stats

  (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  tx = optim.torch_adamw(hp.lr, hp.wd)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = jax.tree.map(lambda p, u: p + u, state.params, updates)
  return state.replace(step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state), {"loss": loss}


def _predict(static, state, feats_BxHxWxC, image_hw):
  logits, _ = _head(static, state.params, state.batch_stats, feats_BxHxWxC, False)
  maps = jax.image.resize(logits, (logits.shape[0], *image_hw), "linear")
  return {"score": maps.max(axis=(1, 2)), "anomaly_map": maps, "map_score": maps.max(axis=(1, 2))}


def _preprocessing(static):
  from jaxad.data.transforms import PreprocessConfig
  return PreprocessConfig(image_resize="cv2-bilinear", mask_resize="nearest")


METHOD = Method(name="toy_sweep", static_cls=ToyStatic, hparams_cls=ToyHparams, resolve=lambda s: s,
                default_hparams=lambda s: ToyHparams(), check_hparams=lambda hp: None, preprocessing=_preprocessing,
                steps_per_epoch=lambda s, n: max(n // s.batch_size, 1),
                total_steps=lambda s, n: s.epochs * max(n // s.batch_size, 1), make_frozen=_frozen, init=_init,
                train_step=_train_step, predict=_predict)

GRID = {"noise_std": ["0.25", "0.5", "1.0"], "seed": ["0", "1"]}
QUIET = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
  """Registers the toy method; unoptimised XLA for this module (halves the compile time of its programs)."""
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(models._MODULES, "toy_sweep", __name__)
    yield
  jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="module")
def embedded_root(tmp_path_factory):
  from jaxad.data.embedded import build_embedded
  root = tmp_path_factory.mktemp("embedded")
  build_embedded(root, image_size=64, categories=("brick",), n_train=12, n_test_good=4, n_test_per_defect=2)
  return root


def _run_cfg(root, workdir, **kw):
  return RunConfig(model="toy_sweep", data=str(root), categories=("brick",), workdir=str(workdir), progress=False,
                   overlays=0, **kw)


def _sweep(root, workdir, grid=GRID, **options):
  return run_sweep(_run_cfg(root, workdir), {}, grid, SweepOptions(**options), log=QUIET)


@pytest.fixture(scope="module")
def reference(embedded_root, tmp_path_factory):
  """The 6 members as one unsharded program."""
  workdir = tmp_path_factory.mktemp("reference")
  return workdir, _sweep(embedded_root, workdir, shard=False)


@pytest.fixture(scope="module")
def chunked(embedded_root, tmp_path_factory):
  """The same sweep with a memory budget that holds 2 members per chunk (from the compiled memory analysis)."""
  from jaxad.run import load_splits
  static, hp = ToyStatic(), ToyHparams()
  run_cfg = _run_cfg(embedded_root, "unused")
  train = load_splits(run_cfg, METHOD, static, "brick")["train"]
  est = memory.estimate(METHOD, static, hp, train, _frozen(static), data_seed=0, steps_per_call=run_cfg.chunk,
                        eval_batch_size=run_cfg.eval_batch_size, budget=(1, "configured"), members_needed=2)
  workdir = tmp_path_factory.mktemp("chunked")
  budget = est.shared_bytes + int(2.5 * est.member_bytes)
  return workdir, _sweep(embedded_root, workdir, shard=False, memory_budget_bytes=budget), est


def _metrics(rows):
  return {r["member"]: {k: v for k, v in r.items() if k not in ("group",)} for r in rows}


def _assert_rows_equal(rows, ref_rows, tol=1e-5):
  got, want = _metrics(rows), _metrics(ref_rows)
  assert set(got) == set(want)
  for m in want:
    for k, v in want[m].items():
      assert got[m][k] == (pytest.approx(v, abs=tol) if isinstance(v, float) else v), (m, k)


def _member_params(workdir, member):
  gdir, slot = _location(workdir, member)
  _, _, _, states, _, _ = load_trained(gdir / "brick")
  return index_member(states, slot)


def _location(workdir, member):
  from jaxad.sweep.runner import member_location
  return member_location(workdir, member)


def _assert_states_close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


# ---- tests --------------------------------------------------------------------------------

def test_chunking_arithmetic():
  assert plan_lib.chunking(6, 100, 1) == (6, 1, 1)
  assert plan_lib.chunking(6, 2, 1) == (2, 1, 3)
  assert plan_lib.chunking(10, 8, 1) == (5, 1, 2)  # balanced chunks: 5 + 5, not 8 + 2
  assert plan_lib.chunking(6, 100, 4) == (8, 4, 1)  # padded to a multiple of the devices
  assert plan_lib.chunking(6, 2, 4) == (4, 4, 2)  # at least one member per device
  assert plan_lib.chunking(3, 100, 4) == (3, 3, 1)  # fewer members than devices: no padding
  groups = plan_lib.plan_point(0, [10, 11, 12, 13, 14, 15], 4, 4, n_points=1)
  assert [(g.members, g.slots, g.dir) for g in groups] == [((10, 11, 12, 13), 4, "p0c0"), ((14, 15), 4, "p0c1")]
  assert plan_lib.padded([1, 2], 4) == [1, 2, 2, 2]


def test_memory_estimate(chunked):
  _, _, est = chunked
  assert est.exact and est.member_bytes > 0 and est.shared_bytes > 0  # 2 members do not fit 1 byte: M = 2 compiled
  # The cached train features (11 × 8 × 8 × 4 float32) are shared, not per member.
  assert est.shared_bytes >= 11 * 8 * 8 * 4 * 4
  fits_five = est.shared_bytes + 5 * est.member_bytes + 1
  assert memory.Estimate(est.shared_bytes, est.member_bytes, fits_five, "configured", True).members_per_device() == 5


def test_chunked_equals_one_program(reference, chunked):
  ref_dir, ref_rows = reference
  workdir, rows, _ = chunked
  stored = json.loads((workdir / "sweep.json").read_text())
  assert [g["members"] for g in stored["points"]["0"]["groups"]] == [[0, 1], [2, 3], [4, 5]]
  assert stored["points"]["0"]["memory"]["members_per_device"] == 2
  assert sorted({r["group"] for r in rows}) == ["p0c0", "p0c1", "p0c2"]
  _assert_rows_equal(rows, ref_rows)
  for m in (0, 3, 5):
    _assert_states_close(_member_params(workdir, m), _member_params(ref_dir, m))


def test_chunks_of_a_category_share_its_train_features(embedded_root, tmp_path, monkeypatch, reference):
  """The frozen features of the train split are computed once per category, not once per chunk."""
  from jaxad.train import loop
  calls, real = [], loop.compute_features
  monkeypatch.setattr(loop, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
  rows = _sweep(embedded_root, tmp_path / "chunks", shard=False, members_per_chunk=2)
  assert len({r["group"] for r in rows}) == 3 and len(calls) == 1
  _assert_rows_equal(rows, reference[1])


def test_sharded_equals_unsharded(embedded_root, tmp_path, reference):
  assert len(jax.local_devices()) == 4
  ref_dir, ref_rows = reference
  rows = _sweep(embedded_root, tmp_path / "sharded")  # 6 members padded to 8 slots on 4 devices
  stored = json.loads((tmp_path / "sharded" / "sweep.json").read_text())
  assert stored["points"]["0"]["groups"][0]["slots"] == 8 and stored["points"]["0"]["groups"][0]["devices"] == 4
  assert len(rows) == 6  # padding slots are not reported
  _assert_rows_equal(rows, ref_rows)
  _, _, _, states, _, _ = load_trained(tmp_path / "sharded" / "brick")
  assert len(jax.tree.leaves(states)[0]) == 8
  for m in (0, 5):
    _assert_states_close(index_member(states, m), _member_params(ref_dir, m))


def test_frozen_members_are_reported_and_do_not_disturb_others(embedded_root, tmp_path, reference):
  _, ref_rows = reference
  grid = {"noise_std": ["0.25", "nan"], "seed": ["0", "1"]}
  # Chunks of 2 on one device: the second chunk holds only non-finite members (it must not stop the sweep).
  rows = _sweep(embedded_root, tmp_path / "nan", grid=grid, shard=False, members_per_chunk=2)
  by_member = {r["member"]: r for r in rows}
  assert [by_member[m]["alive"] for m in range(4)] == [True, True, False, False]
  assert all(np.isfinite(by_member[m]["image_auroc"]) for m in range(4))  # frozen at their last finite state
  ref = {(r["noise_std"], r["seed"]): r for r in ref_rows}
  for m in (0, 1):
    want = ref[(0.25, m)]
    assert by_member[m]["image_auroc"] == pytest.approx(want["image_auroc"], abs=1e-6)
    assert by_member[m]["aupro"] == pytest.approx(want["aupro"], abs=1e-6)
  best = json.loads((tmp_path / "nan" / "sweep_best.json").read_text())
  assert len(best) == 1 and best[0]["alive"] and best[0]["member"] in (0, 1)


def test_static_points_tables_and_plots_from_an_experiment_sweep_section(embedded_root, tmp_path, capsys):
  exp = tmp_path / "toy_experiment.py"
  exp.write_text("def get_config(arg=None):\n"
                 "  return {'run': {'model': 'toy_sweep', 'categories': ('brick',)}, 'set': {'hidden': 4},\n"
                 "          'sweep': {'grid': {'image_size': [(32, 32), (16, 16)], 'noise_std': [0.5]},\n"
                 "                    'members_per_chunk': 2}}\n")
  workdir = tmp_path / "static"
  args = ["sweep", "--config", str(exp), "--data", str(embedded_root), "--workdir", str(workdir), "--no-progress",
          "--grid", "seed=0:2", "--no-shard"]
  assert main(args) == 0
  printed = capsys.readouterr().out
  assert "4 members in 2 static point(s)" in printed and "mean ± std over seeds" in printed
  for group, size in (("p0c0", [32, 32]), ("p1c0", [16, 16])):
    record = json.loads((workdir / group / "brick" / "config.json").read_text())
    assert record["static"]["image_size"] == size and record["hparams"]["seed"] == [0, 1]
  with open(workdir / "sweep_results.csv") as f:
    table = list(csv.DictReader(f))
  assert len(table) == 4 and [int(r["member"]) for r in table] == list(range(4))
  for col in ("image_size", "seed", "noise_std", "alive", "image_auroc", "pixel_auroc", "aupro", "image_f1_max",
              "pixel_f1_max"):
    assert col in table[0]
  assert [(r["image_size"], r["seed"]) for r in table] == [("32,32", "0"), ("32,32", "1"), ("16,16", "0"),
                                                            ("16,16", "1")]
  assert (workdir / "sweep_results.md").read_text().count("\n") == 4 + 2
  best = json.loads((workdir / "sweep_best.json").read_text())
  assert len(best) == 1 and best[0]["image_auroc"] == max(float(r["image_auroc"]) for r in table)
  seeds = json.loads((workdir / "sweep_seeds.json").read_text())  # per image size: mean ± std over seeds 0, 1
  assert [(r["image_size"], r["noise_std"], r["seeds"]) for r in seeds] == [("32,32", 0.5, 2), ("16,16", 0.5, 2)]
  for r in seeds:
    pair = [float(t["aupro"]) for t in table if t["image_size"] == r["image_size"]]
    assert r["aupro"] == pytest.approx(np.mean(pair), abs=1e-6)
    assert r["aupro_std"] == pytest.approx(np.std(pair, ddof=1), abs=1e-6)
  for r, group in zip(seeds, ("p0c0", "p1c0")):  # each image size's two seeds scored as one ensemble
    scores = report.read_image_scores(workdir / group / "brick" / "test_scores.csv")
    assert sorted(scores) == [0, 1] and len(scores[0]["label"]) == 4 + 2 * 3  # 4 good, 2 per defect type
    member_auroc = [metrics.image_auroc(scores[m]["score"], scores[m]["label"]) for m in (0, 1)]
    assert member_auroc == pytest.approx([float(t["image_auroc"]) for t in table if t["image_size"] == r["image_size"]])
    assert r["ensemble_image_auroc"] == metrics.image_auroc((scores[0]["score"] + scores[1]["score"]) / 2,
                                                            scores[0]["label"])
  plots = sorted(p.name for p in (workdir / "plots").glob("*.png"))
  assert plots == ["image_size.png", "seed.png"]  # every metric against each field with several values
  with Image.open(workdir / "plots" / "image_size.png") as im:
    assert im.size == (3 * 378, 2 * 288)  # 2 × 3 metric panels
  # Non-sweepable settings and malformed tuples are one-line errors.
  assert main(["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--grid", "image_size=32,32",
               "--workdir", str(tmp_path / "bad")]) == 2
  assert "separate values that contain commas with ';'" in capsys.readouterr().err
  assert main(["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--grid", "data_seed=0,1",
               "--workdir", str(tmp_path / "bad")]) == 2


def test_interrupted_sweep_resumes(embedded_root, tmp_path, monkeypatch, chunked):
  from jaxad.sweep import runner
  _, chunked_rows, _ = chunked
  workdir = tmp_path / "resumed"
  calls = []
  real = runner.run_category

  def interrupted(*args, **kw):
    if len(calls) == 2:
      raise KeyboardInterrupt
    calls.append(1)
    return real(*args, **kw)

  monkeypatch.setattr(runner, "run_category", interrupted)
  with pytest.raises(KeyboardInterrupt):
    _sweep(embedded_root, workdir, shard=False, members_per_chunk=2)
  assert (workdir / "p0c1" / "brick" / "report.json").exists() and not (workdir / "p0c2").exists()
  monkeypatch.setattr(runner, "run_category", lambda *a, **kw: calls.append(a) or real(*a, **kw))
  calls.clear()
  rows = _sweep(embedded_root, workdir, shard=False, members_per_chunk=2)
  assert len(calls) == 1  # only the unfinished chunk trains
  _assert_rows_equal(rows, chunked_rows)
  with pytest.raises(ConfigError, match="different sweep"):
    _sweep(embedded_root, workdir, grid={"seed": ["0", "1"]}, shard=False)


def test_extracted_member_tests_and_predicts_like_the_sweep(embedded_root, tmp_path, chunked, capsys):
  workdir, rows, _ = chunked
  member = 3  # second slot of chunk p0c1
  out = tmp_path / "member3"
  assert main(["extract", "--workdir", str(workdir), "--member", str(member), "--out", str(out)]) == 0
  record = json.loads((out / "brick" / "config.json").read_text())
  assert record["hparams"]["seed"] == [1] and record["hparams"]["noise_std"] == [0.5]
  extracted = load_trained(out / "brick")[3]
  assert len(jax.tree.leaves(extracted)[0]) == 1
  _assert_states_close(index_member(extracted, 0), _member_params(workdir, member))
  assert main(["test", "--workdir", str(out)]) == 0
  tested = json.loads((out / "brick" / "test_report.json").read_text())
  assert len(tested) == 1
  want = next(r for r in rows if r["member"] == member)
  for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"):
    assert tested[0][k] == pytest.approx(want[k], abs=1e-6), k
  tested_scores = report.read_image_scores(out / "brick" / "test_scores.csv")[0]
  swept_scores = report.read_image_scores(workdir / "p0c1" / "brick" / "test_scores.csv")[1]
  assert list(tested_scores["file"]) == list(swept_scores["file"])
  np.testing.assert_allclose(tested_scores["score"], swept_scores["score"], rtol=1e-5, atol=1e-6)
  images = sorted((Path(embedded_root) / "brick" / "test").rglob("*.png"))[:2]
  assert main(["predict", "--workdir", str(out), "--out", str(tmp_path / "pred"), *map(str, images)]) == 0
  assert len(json.loads((tmp_path / "pred" / "scores.json").read_text())) == 2
  assert main(["extract", "--workdir", str(workdir), "--member", "9", "--out", str(tmp_path / "x")]) == 2
  assert "no member 9" in capsys.readouterr().err
  # A second extraction into the same folder is refused before anything is written.
  assert main(["extract", "--workdir", str(workdir), "--member", "0", "--out", str(out)]) == 2
  assert "already holds" in capsys.readouterr().err
  assert json.loads((out / "brick" / "config.json").read_text())["hparams"]["seed"] == [1]


def test_a_sweep_takes_per_category_settings_shared_by_its_categories():
  """A sweep compiles one program per grid point: categories that need different settings are refused."""
  from jaxad.errors import ConfigError
  from jaxad.run import RunConfig
  from jaxad.sweep.runner import _shared_category_settings
  settings = {"capsule_*": {"image_size": "40,24"}, "softgel_*": {"image_size": "24,24"}}
  one = RunConfig(categories=("capsule_0", "capsule_1"), category_settings=settings)
  assert _shared_category_settings(one) == {"image_size": "40,24"}
  with pytest.raises(ConfigError, match="capsule_0 and softgel_0 need different settings"):
    _shared_category_settings(RunConfig(categories=("capsule_0", "softgel_0"), category_settings=settings))


def test_a_member_that_diverges_midway_is_reported_without_metrics(embedded_root, tmp_path, reference):
  """lr 1e30: a first step leaves huge but finite parameters, a later one a non-finite loss. The member is
  frozen at that last finite state, which predicts non-finite maps: it is reported (alive false, no
  metrics) and the other member's results are those of its run in the reference sweep."""
  _, ref_rows = reference
  rows = _sweep(embedded_root, tmp_path / "div", grid={"lr": ["0.01", "1e30"], "seed": ["0"]}, shard=False)
  assert [r["alive"] for r in rows] == [True, False]
  assert not any(k in rows[1] for k in ("image_auroc", "pixel_auroc", "aupro"))
  want = next(r for r in ref_rows if (r["noise_std"], r["seed"]) == (0.5, 0))  # lr 0.01 is the default
  for k in ("image_auroc", "pixel_auroc", "aupro"):
    assert rows[0][k] == pytest.approx(want[k], abs=1e-6), k
  best = json.loads((tmp_path / "div" / "sweep_best.json").read_text())
  assert [b["member"] for b in best] == [0]


def test_a_rerun_never_reports_results_of_other_settings(embedded_root, tmp_path, monkeypatch):
  from jaxad import run as run_lib
  from jaxad.checkpoint import Checkpointer
  workdir = tmp_path / "rerun"
  grid = {"noise_std": ["0.25", "0.5"], "seed": ["0", "1"]}

  def sweep(g=grid, workdir=workdir, **run_kw):
    return run_sweep(_run_cfg(embedded_root, workdir, **run_kw), {}, g, SweepOptions(shard=False), log=QUIET)

  sweep(max_steps=2)
  # The grid's order numbers the members: reordered, it is another sweep.
  with pytest.raises(ConfigError, match="order of the grid"):
    sweep({"seed": grid["seed"], "noise_std": grid["noise_std"]}, max_steps=2)
  # A smaller step limit cannot reuse the checkpoints of the longer run, and refusing changes nothing.
  finished = {p.name: p.read_bytes() for p in (workdir / "brick").glob("*.*")}
  with pytest.raises(ConfigError, match="past this run's 1 steps"):
    sweep(max_steps=1)
  assert {p.name: p.read_bytes() for p in (workdir / "brick").glob("*.*")} == finished
  # An extension interrupted while training is not taken for finished (its start removed the old report).
  monkeypatch.setattr(run_lib.loop, "fit", lambda *a, on_start, **k: on_start() or (_ for _ in ()).throw(
      KeyboardInterrupt()))
  with pytest.raises(KeyboardInterrupt):
    sweep(max_steps=3)
  monkeypatch.undo()
  assert not (workdir / "brick" / "report.json").exists()
  sweep(max_steps=3)
  ckpt = Checkpointer(workdir / "brick")
  assert ckpt.latest_step() == 3
  ckpt.close()
  # A folder that holds another run (here a one-member fit) is refused, not adopted or overwritten.
  fit_dir = tmp_path / "fit"
  run_lib.run(_run_cfg(embedded_root, fit_dir, max_steps=2), {}, log=QUIET)
  with pytest.raises(ConfigError, match="holds checkpoints of another run"):
    sweep(workdir=fit_dir, max_steps=2)
  # A fit into a folder trained with other settings or data split is refused (it resumed from that run's
  # checkpoint and reported its model under the new settings); a larger step limit trains on.
  finished = {p.name: p.read_bytes() for p in (fit_dir / "brick").glob("*.*")}
  for overrides, run_kw, differs in (({"noise_std": "1.0"}, {}, "hparams.noise_std"),
                                     ({}, {"data_seed": 1}, "run.data_seed"),
                                     ({"hidden": "8"}, {"val_fraction": 0.2}, "static.hidden, run.val_fraction")):
    with pytest.raises(ConfigError, match=f"settings that differ from this run's: {differs}"):
      run_lib.run(_run_cfg(embedded_root, fit_dir, max_steps=2, **run_kw), overrides, log=QUIET)
  assert {p.name: p.read_bytes() for p in (fit_dir / "brick").glob("*.*")} == finished
  rows = run_lib.run(_run_cfg(embedded_root, fit_dir, max_steps=3), {}, log=QUIET)
  # The same fit again reads its finished category back: no training, no evaluation.
  monkeypatch.setattr(run_lib, "run_category", lambda *a, **k: pytest.fail("a finished category ran again"))
  assert run_lib.run(_run_cfg(embedded_root, fit_dir, max_steps=3), {}, log=QUIET) == rows


def test_sweep_cli_refuses_bad_chunk_sizes(embedded_root, tmp_path, capsys):
  assert main(["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--grid", "seed=0:2",
               "--members-per-chunk", "0", "--workdir", str(tmp_path / "zero")]) == 2
  assert "--members-per-chunk must be at least 1, got 0" in capsys.readouterr().err
  assert main(["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--grid", "seed=0:2", "--exact",
               "--members-per-chunk", "2", "--workdir", str(tmp_path / "exact")]) == 2
  assert "--exact trains one member at a time" in capsys.readouterr().err


def test_a_group_planned_for_more_devices_than_present_runs_on_one():
  from jaxad.sweep.runner import _mesh
  logged = []
  group = lambda devices: plan_lib.Group("p0c0", 0, (0, 1), 8, devices, ".")  # noqa: E731
  assert _mesh(group(8), True, logged.append) is None and "planned for 8 devices; 4 present" in logged[0]
  assert _mesh(group(4), False, logged.append) is None  # --no-shard on resume
  assert _mesh(group(4), True, logged.append).devices.size == 4


def test_processes_share_a_sweep_through_the_workdir(embedded_root, tmp_path, chunked):
  """Process p of 3 trains chunks p, p + 3, …; the one that finds every chunk done writes the tables."""
  _, chunked_rows, _ = chunked
  workdir = tmp_path / "shared"
  for proc in (2, 0):
    assert _sweep(embedded_root, workdir, shard=False, members_per_chunk=2, processes=(3, proc)) is None
    assert not (workdir / "sweep_results.json").exists()
  assert sorted(p.name for p in workdir.glob("p0c*")) == ["p0c0", "p0c2"]  # p0c1 is process 1's
  rows = _sweep(embedded_root, workdir, shard=False, members_per_chunk=2, processes=(3, 1))
  _assert_rows_equal(rows, chunked_rows)
  assert json.loads((workdir / "sweep_results.json").read_text()) == rows


def test_two_concurrent_processes_equal_one(embedded_root, tmp_path, chunked):
  """Two OS processes started at once on one workdir (as on two hosts): same members, same results."""
  import os
  import subprocess
  import sys
  chunked_dir, chunked_rows, _ = chunked
  script = tmp_path / "sweep_process.py"
  script.write_text(
      "import sys\n"
      f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
      "import jax\n"
      "jax.config.update('jax_disable_most_optimizations', True)\n"
      "from jaxad import models\n"
      "from jaxad.cli import main\n"
      "models._MODULES['toy_sweep'] = 'test_sweep'\n"
      "sys.exit(main(sys.argv[1:]))\n")
  workdir = tmp_path / "two"
  args = ["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--category", "brick", "--no-shard",
          "--grid", "noise_std=0.25,0.5,1.0", "--grid", "seed=0,1", "--members-per-chunk", "2", "--workdir",
          str(workdir), "--no-progress", "--num-processes", "2", "--process-id"]
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
  procs = [subprocess.Popen([sys.executable, str(script), *args, str(p)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for p in (0, 1)]
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert "members 0–1" in outputs[0] and "members 4–5" in outputs[0] and "members 2–3" in outputs[1]
  _assert_rows_equal(json.loads((workdir / "sweep_results.json").read_text()), chunked_rows)
  for m in (0, 3, 5):  # process 1's checkpoints as well as process 0's
    _assert_states_close(_member_params(workdir, m), _member_params(chunked_dir, m))


def test_process_numbers_from_flags_or_the_launcher():
  from jaxad.sweep.processes import resolve
  assert resolve(None, None, False) == (1, 0)
  assert resolve(4, 3, False) == (4, 3)
  assert resolve(None, None, True, {"SLURM_PROCID": "2", "SLURM_NTASKS": "8"}) == (8, 2)
  assert resolve(None, None, True, {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}) == (2, 1)
  assert resolve(2, 0, True, {"SLURM_PROCID": "5", "SLURM_NTASKS": "8"}) == (2, 0)  # the flags win
  with pytest.raises(ConfigError, match="found no launcher's variables"):
    resolve(None, None, True, {})
  with pytest.raises(ConfigError, match="together"):
    resolve(2, None, False)
  with pytest.raises(ConfigError, match=r"process 2 of 2 \(the index must be in 0..count-1\)"):
    resolve(2, 2, False)
  with pytest.raises(ConfigError, match="SLURM's SLURM_NTASKS='x'"):
    resolve(None, None, True, {"SLURM_PROCID": "0", "SLURM_NTASKS": "x"})


def test_sweep_cli_needs_chunk_size_with_several_processes(embedded_root, tmp_path, capsys):
  assert main(["sweep", "--data", str(embedded_root), "--model", "toy_sweep", "--grid", "seed=0:2",
               "--num-processes", "2", "--process-id", "1", "--workdir", str(tmp_path / "p")]) == 2
  assert "with several processes give --members-per-chunk" in capsys.readouterr().err


def test_a_replaced_checkpoint_survives_a_kill_at_any_point(tmp_path):
  """Checkpointer.replace (EfficientAD's calibrated states) swaps folders by renames; a kill between them
  leaves the old checkpoint (restored by the next Checkpointer) or the new one, never a damaged step."""
  import os
  from jaxad.checkpoint import Checkpointer
  like = {"w": np.zeros(3, np.float32)}
  old, new = {"w": np.ones(3, np.float32)}, {"w": np.full(3, 2.0, np.float32)}

  def fresh(name):
    ckpt = Checkpointer(tmp_path / name)
    ckpt.save(2, {"w": np.zeros(3, np.float32)}, {"step": 2})
    ckpt.save(4, old, {"step": 4})
    return ckpt

  def restored(name):
    ckpt = Checkpointer(tmp_path / name)
    step = ckpt.latest_step()
    state, meta = ckpt.restore(step, like)
    ckpt.close()
    return step, float(state["w"][0]), meta

  ckpt = fresh("done")
  ckpt.replace(4, new, {"step": 4, "calibrated_on": "validation"})
  ckpt.close()
  assert restored("done") == (4, 2.0, {"step": 4, "calibrated_on": "validation"})
  assert sorted(p.name for p in (tmp_path / "done").iterdir()) == ["checkpoints"]
  # killed after the old step was moved aside, before the new one was moved in
  fresh("mid").close()
  os.rename(tmp_path / "mid" / "checkpoints" / "4", tmp_path / "mid" / ".checkpoint_replaced_4")
  assert restored("mid") == (4, 1.0, {"step": 4})
  # killed after the swap, before the old one was removed
  ckpt = fresh("late")
  ckpt.replace(4, new, {"step": 4})
  ckpt.close()
  (tmp_path / "late" / ".checkpoint_replaced_4").mkdir()
  assert restored("late")[:2] == (4, 2.0) and not (tmp_path / "late" / ".checkpoint_replaced_4").exists()


def test_a_chunk_killed_while_saving_overlays_is_redone(embedded_root, tmp_path, monkeypatch):
  """report.json, which marks a chunk finished, is written after the overlays and the other tables."""
  from jaxad.evaluate import report
  real = report.save_member_overlays

  def killed(*a, **kw):
    raise KeyboardInterrupt
  grid = {"seed": ["0", "1"]}
  workdir = tmp_path / "overlays"
  run_cfg = dataclasses.replace(_run_cfg(embedded_root, workdir, max_steps=2), overlays=1)
  monkeypatch.setattr(report, "save_member_overlays", killed)
  with pytest.raises(KeyboardInterrupt):
    run_sweep(run_cfg, {}, grid, SweepOptions(shard=False), log=QUIET)
  assert not (workdir / "brick" / "report.json").exists()
  monkeypatch.setattr(report, "save_member_overlays", real)
  run_sweep(run_cfg, {}, grid, SweepOptions(shard=False), log=QUIET)
  assert {p.name for p in (workdir / "brick").glob("report.*")} == {"report.json", "report.csv", "report.md"}
  assert len(list((workdir / "brick" / "overlays").rglob("*.png"))) == 2
