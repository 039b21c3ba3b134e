"""EfficientAD training: frozen teacher, hard loss vs torch.quantile, validation-only quantiles,
determinism, penalty stream, teacher loading through the weights registry, distillation, and an
end-to-end `jaxad fit` smoke run. 64-px images, C = 8 (the AE code conv shrinks to 2×2)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.errors import ConfigError, WeightsError
from jaxad.models.efficient_ad import config as cfg
from jaxad.models.efficient_ad import steps
from jaxad.models.efficient_ad.loss import hard_feature_loss
from jaxad.models.efficient_ad import penalty
from jaxad.models.efficient_ad.penalty import PenaltyStream, grayscale_uint8, nelson_transform
from jaxad.models.efficient_ad.teacher import load_teacher, random_teacher
from jaxad.train.loop import SplitData
from jaxad.train.state import stack_members

from fake_datasets import mvtec_loco

SIDE, C = 64, 8


def _static(**kw):
  return cfg.resolve(cfg.Static(image_size=(SIDE, SIDE), out_channels=C, teacher="random", **kw))


def _images(n, seed=0):
  return np.random.default_rng(seed).normal(size=(n, SIDE, SIDE, 3)).astype(np.float32)


def _split(images):
  n = len(images)
  return SplitData(image=images, mask=np.zeros((n, SIDE, SIDE), np.float32), label=np.zeros(n, np.int32),
                   is_segmented=np.ones(n, bool))


@pytest.fixture(scope="module")
def trained():
  """Two members (seeds 1, 1) prepared on 4 train images, with one jitted train step."""
  static = _static()
  hps = stack_members([cfg.Hparams(seed=1), cfg.Hparams(seed=1)])
  x = jnp.asarray(_images(1))
  states = jax.jit(jax.vmap(lambda k, hp: steps.init(static, k, hp, x, 4)))(
      jax.vmap(jax.random.key)(jnp.asarray([1, 1], jnp.uint32)), hps)
  states = steps.prepare_state(static, states, _split(_images(4, seed=1)))

  def step(state, key, batch):
    """One train step, plus the gradient of its loss with respect to the teacher (one compile)."""
    def loss_of_teacher(teacher):
      frozen = dict(state.batch_stats, teacher=teacher)
      return steps.train_step(static, state.replace(batch_stats=frozen), x, batch, key, cfg.Hparams(), 4)[1]["loss"]

    new, metrics = steps.train_step(static, state, x, batch, key, cfg.Hparams(), 4)
    return new, metrics, jax.grad(loss_of_teacher)(state.batch_stats["teacher"])

  return static, states, jax.jit(step), x


def _member(states, m):
  return jax.tree.map(lambda a: a[m], states)


def test_prepare_state_installs_teacher_and_statistics(trained):
  static, states, _, _ = trained
  teacher = random_teacher("s", C)["params"]
  np.testing.assert_array_equal(states.batch_stats["teacher"]["conv1"]["kernel"][1], teacher["conv1"]["kernel"])
  out = steps._nets(static)[0].apply({"params": teacher}, jnp.asarray(_images(4, seed=1)))
  mean = out.mean(axis=(1, 2)).mean(0)
  std = jnp.sqrt(jnp.square(out - mean).mean(axis=(1, 2)).mean(0))  # nelson: two passes
  np.testing.assert_allclose(states.batch_stats["mean"][0], mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(states.batch_stats["std"][0], std, rtol=1e-5)


def test_teacher_gets_no_gradient_and_stays_fixed(trained):
  _, states, step, _ = trained
  state = _member(states, 0)
  batch = {"penalty": jnp.full((1, SIDE, SIDE, 3), 128, jnp.uint8)}
  new, metrics, teacher_grads = step(state, jax.random.key(3), batch)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(teacher_grads))
  assert set(new.params) == {"student", "ae"}
  for a, b in zip(jax.tree.leaves(new.batch_stats), jax.tree.leaves(state.batch_stats)):
    np.testing.assert_array_equal(a, b)
  changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params))]
  assert all(changed)  # student and AE (through L_AE and L_STAE) both train
  assert np.isfinite(float(metrics["loss"])) and float(metrics["penalty"]) > 0


def test_a_step_without_its_penalty_images_is_refused(trained):
  """A missing batch["penalty"] would silently drop L_pen from the loss (a hand-written loop's easy slip)."""
  static, states, _, x = trained
  with pytest.raises(ConfigError, match=r"needs batch\['penalty'\].*method.step_inputs"):
    steps.train_step(static, _member(states, 0), x, {}, jax.random.key(0), cfg.Hparams(), 4)


def test_same_seed_same_result_and_seed_matters(trained):
  static, states, step, x = trained
  a, b = _member(states, 0), _member(states, 1)
  np.testing.assert_array_equal(a.params["ae"]["encoder"]["enconv1"]["kernel"],
                                b.params["ae"]["encoder"]["enconv1"]["kernel"])
  batch = {"penalty": jnp.zeros((1, SIDE, SIDE, 3), jnp.uint8)}
  for i in range(2):
    a = step(a, jax.random.key(i), batch)[0]
    b = step(b, jax.random.key(i), batch)[0]
  for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(u, v)
  other = jax.jit(lambda k: steps.init(static, k, cfg.Hparams(seed=2), x, 4))(jax.random.key(2))
  assert not np.array_equal(other.params["student"]["conv1"]["kernel"], a.params["student"]["conv1"]["kernel"])


def test_a_vmapped_step_equals_each_member_stepped_alone(trained):
  """Sweeps vmap the step over members: its dropout and augmentation draws must not depend on the
  batching, so that a sweep member reproduces the run of its seed alone (RBG keys did not)."""
  static, states, _, x = trained
  batch = {"penalty": jnp.zeros((1, SIDE, SIDE, 3), jnp.uint8)}
  keys = jax.vmap(jax.random.key)(jnp.asarray([3, 4], jnp.uint32))
  step = lambda s, k: steps.train_step(static, s, x, batch, k, cfg.Hparams(), 4)[0]
  both = jax.jit(jax.vmap(step))(states, keys)
  for m in range(2):
    alone = jax.jit(step)(_member(states, m), keys[m])
    for u, v in zip(jax.tree.leaves(alone.params), jax.tree.leaves(_member(both, m).params)):
      np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p_hard", [0.999, 0.9, 0.5])
def test_hard_loss_matches_torch_quantile(p_hard):
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  d = np.square(rng.normal(size=(1, 7, 9, 40))).astype(np.float32)
  d.reshape(-1)[:50] = d.reshape(-1)[50]  # ties at some value
  t = torch.from_numpy(d)
  q = torch.quantile(t.flatten(), p_hard)
  expected = float(torch.mean(t[t >= q]))
  np.testing.assert_allclose(float(jax.jit(hard_feature_loss, static_argnums=1)(jnp.asarray(d), p_hard)), expected,
                             rtol=1e-6)


def test_quantiles_come_from_the_given_validation_images(trained):
  static, states, _, _ = trained
  hps = stack_members([cfg.Hparams(), cfg.Hparams(quantile_a=0.5)])
  val = _split(_images(3, seed=7))
  calibrated = steps.calibrate(static, states, hps, val, batch_size=2)
  map_st, map_ae = steps.raw_maps(static, _member(states, 0), jnp.asarray(val.image))
  from jaxad.models.efficient_ad.normalization import postprocess_maps
  map_st, map_ae = postprocess_maps(map_st, map_ae, (SIDE, SIDE))
  mn = calibrated.batch_stats["map_norm"]
  np.testing.assert_allclose(mn["qa_st"][0], np.quantile(np.asarray(map_st), 0.9), rtol=1e-5)
  np.testing.assert_allclose(mn["qb_ae"][0], np.quantile(np.asarray(map_ae), 0.995), rtol=1e-5)
  np.testing.assert_allclose(mn["qa_ae"][1], np.quantile(np.asarray(map_ae), 0.5), rtol=1e-5)
  other = steps.calibrate(static, states, hps, _split(_images(3, seed=8)))
  assert float(other.batch_stats["map_norm"]["qb_st"][0]) != float(mn["qb_st"][0])


def test_penalty_stream_is_deterministic_per_step(tmp_path):
  stream = PenaltyStream("bundled", (32, 48), pool=6, seed=0)
  a, b = stream(np.arange(5, 25)), stream(np.arange(5, 25))
  np.testing.assert_array_equal(a["penalty"], b["penalty"])
  assert a["penalty"].shape == (20, 1, 32, 48, 3) and a["penalty"].dtype == np.uint8
  np.testing.assert_array_equal(stream(np.arange(7, 9))["penalty"], a["penalty"][2:4])
  assert "skimage.data.astronaut" in stream.provenance["photos"]
  # the pool is made once per process and shared read-only; threads change nothing in the crops
  again = PenaltyStream("bundled", (32, 48), pool=6, seed=0)
  assert again.images is stream.images and not stream.images.flags.writeable
  photos = list(penalty.bundled_photos().values())
  np.testing.assert_array_equal(penalty.random_crops(photos, 9, (20, 24), np.random.default_rng(4)),
                                penalty.random_crops(photos, 9, (20, 24), np.random.default_rng(4), threads=False))

  from PIL import Image
  rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)
  Image.fromarray(rgb).save(tmp_path / "a.png")
  folder = PenaltyStream(str(tmp_path), (16, 16), pool=4, seed=0)
  assert folder.provenance["penalty"] == "folder" and folder.provenance["pool"] == 1
  np.testing.assert_array_equal(folder.images[0], nelson_transform(rgb, (16, 16)))
  gray = [np.array_equal(p[0, ..., 0], p[0, ..., 1]) for p in folder(np.arange(400))["penalty"]]
  assert 0.25 < np.mean(gray) < 0.35  # RandomGrayscale(p=0.3) of a colour image
  pil_gray = np.asarray(Image.fromarray(rgb).convert("L"))
  np.testing.assert_array_equal(grayscale_uint8(rgb[None])[0, ..., 1], pil_gray)


def test_streamed_penalty_images_follow_a_shuffled_pass_over_the_folder(tmp_path):
  """penalty_pool=0 (nelson): step t reads file permutation(epoch)[t mod n] with nelson's transform, every
  pass covers each file once, and the prefetched chunks equal the images made directly."""
  from PIL import Image
  rng = np.random.default_rng(0)
  files = []
  for i in range(5):
    files.append(rng.integers(0, 256, (20 + i, 30, 3), np.uint8))
    Image.fromarray(files[-1]).save(tmp_path / f"{i}.png")
  expected = [nelson_transform(f, (8, 8)) for f in files]

  stream = PenaltyStream(str(tmp_path), (8, 8), pool=0, seed=3)
  assert stream.images is None and stream.provenance["pool"] == 0
  chunks = [stream(np.arange(start, start + 4))["penalty"] for start in (0, 4, 8, 12)]  # 3 prefetched
  images = np.concatenate(chunks)[:, 0]
  assert np.array_equal(images, PenaltyStream(str(tmp_path), (8, 8), pool=0, seed=3)(np.arange(16))["penalty"][:, 0])
  colour = [not np.array_equal(x[..., 0], x[..., 1]) for x in images]
  which = [next(i for i, e in enumerate(expected) if np.array_equal(x, e) or np.array_equal(x, grayscale_uint8(e[None])[0]))
           for x in images]
  assert sorted(which[:5]) == sorted(which[5:10]) == list(range(5))  # each pass: every file once
  assert which[:5] != which[5:10] and any(colour) and not all(colour)  # reshuffled per pass; grayscale p 0.3
  assert not np.array_equal(images, PenaltyStream(str(tmp_path), (8, 8), pool=0, seed=4)(np.arange(16))["penalty"][:, 0])

  bundled = PenaltyStream("bundled", (16, 16), pool=0, seed=0)
  a = bundled(np.arange(10, 16))["penalty"]
  np.testing.assert_array_equal(bundled(np.arange(13, 16))["penalty"], a[3:])
  assert len({x.tobytes() for x in a[:, 0]}) == 6  # one fresh crop per step


def test_teacher_from_the_weights_registry(tmp_path, monkeypatch):
  torch = pytest.importorskip("torch")
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path))
  with pytest.raises(WeightsError, match="jaxad weights download efficientad_teacher_s"):
    load_teacher("efficientad_teacher_s", "s", 384)
  rng = np.random.default_rng(0)
  shapes = {"conv1": (128, 3, 4, 4), "conv2": (256, 128, 4, 4), "conv3": (256, 256, 3, 3), "conv4": (384, 256, 4, 4)}
  state = {}
  for name, shape in shapes.items():
    state[f"{name}.weight"] = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
    state[f"{name}.bias"] = torch.from_numpy(rng.normal(size=shape[:1]).astype(np.float32))
  member = tmp_path / "weights" / "efficientad_pretrained_weights" / "pretrained_teacher_small.pth"
  member.parent.mkdir(parents=True)
  torch.save(state, member)
  variables = load_teacher("efficientad_teacher_s", "s", 384)
  np.testing.assert_array_equal(variables["params"]["conv2"]["kernel"], state["conv2.weight"].numpy().transpose(2, 3, 1, 0))
  with pytest.raises(WeightsError, match="PDN-S"):
    load_teacher(str(member), "m", 384)


def test_distill_writes_a_loadable_teacher(tmp_path):
  from jaxad.models.efficient_ad.distill import DistillConfig, distill
  config = DistillConfig(out_channels=C, extractor="tiny_test", extractor_weights="random", image_size=SIDE, steps=3,
                         batch_size=2, stats_images=4, save_every=2)
  out = distill(config, tmp_path / "teacher.safetensors", log=lambda *_: None, progress=False)
  assert len(out["loss"]) == 3 and all(np.isfinite(out["loss"]))
  variables = load_teacher(str(out["out"]), "s", C)
  assert variables["params"]["conv4"]["kernel"].shape == (4, 4, 256, C)
  with pytest.raises(WeightsError):
    load_teacher(str(out["out"]), "m", C)


def test_distill_max_seconds_stops_early_and_saves_the_steps_done(tmp_path):
  from jaxad.models.efficient_ad.distill import DistillConfig, distill
  from jaxad.nn.weights import load_converted
  config = DistillConfig(out_channels=C, extractor="tiny_test", extractor_weights="random", image_size=SIDE, steps=50,
                         batch_size=2, stats_images=2, max_seconds=0.0)
  out = distill(config, tmp_path / "teacher.safetensors", log=lambda *_: None, progress=False)
  assert out["steps"] == len(out["loss"]) == 5  # the first check, after min(steps // 10, 50) steps
  assert load_converted(out["out"])[1]["distill_step"] == "5"


def test_distill_prefetch_yields_the_seeded_batches_in_order():
  from jaxad.models.efficient_ad.distill import DistillConfig, ImageStream
  stream = ImageStream(DistillConfig(image_size=64, batch_size=2, grayscale_p=0.5))
  got = list(stream.prefetch(range(5), workers=3))
  assert len(got) == 5
  for step, (big, small) in enumerate(got):
    want_big, want_small = stream.batch(step)
    np.testing.assert_array_equal(big, want_big)
    np.testing.assert_array_equal(small, want_small)


def test_fit_smoke_end_to_end(tmp_path):
  """`jaxad fit --model efficient_ad` (2 steps) in nelson's protocol: reports, penalty provenance,
  validation-only quantiles, test metrics at the original 128 px (not the 64 px input), and `jaxad test`
  reproducing them."""
  from jaxad.cli import main
  from jaxad.evaluate.evaluator import original_size_metrics
  from jaxad.infer import InferenceEngine
  from jaxad.run import load_trained
  from jaxad.train.data import load_split

  workdir = tmp_path / "run"
  rc = main(["fit", "--model", "efficient_ad", "--data", "embedded", "--category", "brick", "--workdir", str(workdir),
             "--max-steps", "2", "--no-progress", "--set", "teacher=random", "--set", f"image_size={SIDE}",
             "--set", f"out_channels={C}", "--set", "penalty_pool=8", "--set", "chunk=2",
             "--set", "postprocess=nelson", "--set", "eval_size=original"])
  assert rc == 0
  cat = workdir / "brick"
  assert (cat / "report.json").exists() and (workdir / "summary.json").exists()
  assert json.loads((cat / "provenance.json").read_text())["step_inputs"]["penalty"] == "bundled"
  method, static, hps, states, frozen, record = load_trained(cat)
  kw = dict(val_fraction=record["run"]["val_fraction"], seed=record["run"]["data_seed"])
  val = load_split("embedded", "brick", "validation", static.image_size, method.preprocessing(static), **kw)
  expected = steps.calibrate(static, states, hps, val).batch_stats["map_norm"]
  for name in ("qa_st", "qb_st", "qa_ae", "qb_ae"):
    np.testing.assert_allclose(states.batch_stats["map_norm"][name], expected[name], rtol=1e-6)

  test = load_split("embedded", "brick", "test", static.image_size, method.preprocessing(static),
                    original_masks=True, **kw)
  assert {m.shape for m in test.original_mask} == {(128, 128)} and test.mask.shape[1:] == (SIDE, SIDE)
  grid = InferenceEngine(method, static, states, frozen).predict_array(test.image)["grid_map"][0]
  (reported,) = json.loads((cat / "report.json").read_text())
  for name, value in original_size_metrics(grid, test).items():
    assert reported[name] == pytest.approx(value, abs=1e-6), name
  assert main(["test", "--workdir", str(workdir), "--overlays", "0"]) == 0
  (retested,) = json.loads((cat / "test_report.json").read_text())
  assert {k: retested[k] for k in ("image_auroc", "pixel_auroc", "aupro")} == pytest.approx(
      {k: reported[k] for k in ("image_auroc", "pixel_auroc", "aupro")}, abs=1e-6)

  # On MVTec LOCO AD (a fake category of the same name), `jaxad test` also reports the official AU-sPRO,
  # into a report of its own: the run's own test report stays.
  loco = mvtec_loco(tmp_path / "loco", category="brick")
  assert main(["test", "--workdir", str(workdir), "--data", str(loco), "--overlays", "0"]) == 0
  assert json.loads((cat / "test_report.json").read_text()) == [retested]
  (row,) = json.loads((cat / "test_report_on_loco.json").read_text())
  assert 0.0 <= row["au_spro_logical"] <= 1.0 and 0.0 <= row["au_spro_structural"] <= 1.0
  assert row["au_spro"] == pytest.approx((row["au_spro_logical"] + row["au_spro_structural"]) / 2)
  assert "image_auroc_loco" in row


def test_bfloat16_training_tracks_float32(trained):
  """compute_dtype=bfloat16: float32 parameters and optimiser, bfloat16 convolutions; the losses of a
  few steps from the same state stay close to float32's, and both descend."""
  static, states, _, x = trained
  state = _member(states, 0)
  batch = {"penalty": jnp.asarray(np.random.default_rng(5).integers(0, 256, (1, SIDE, SIDE, 3)), jnp.uint8)}
  losses = {}
  for dtype in ("float32", "bfloat16"):
    s = cfg.resolve(dataclasses.replace(static, compute_dtype=dtype))
    step = jax.jit(lambda st, k: steps.train_step(s, st, x, batch, k, cfg.Hparams(lr=1e-3), 4))
    st, trace = state, []
    for i in range(6):
      st, metrics = step(st, jax.random.key(i))
      trace.append(float(metrics["loss"]))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((st.params, st.opt_state))
               if jnp.issubdtype(leaf.dtype, jnp.floating))
    losses[dtype] = np.array(trace)
  f32, bf16 = losses["float32"], losses["bfloat16"]
  assert not np.array_equal(f32, bf16)  # really computed in bfloat16
  np.testing.assert_allclose(bf16, f32, rtol=0.05)
  assert f32[-1] < f32[0] and bf16[-1] < bf16[0]
  with pytest.raises(Exception, match="compute_dtype"):
    cfg.resolve(dataclasses.replace(static, compute_dtype="float16"))
