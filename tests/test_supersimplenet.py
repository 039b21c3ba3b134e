"""SuperSimpleNet: generator, losses, gradients and the engine's invariants on tiny shapes."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.errors import ConfigError
from jaxad.models import get_method
from jaxad.models.supersimplenet import config as cfg
from jaxad.models.supersimplenet.anomaly import generate_anomalies
from jaxad.models.supersimplenet.loss import focal_elementwise, ssn_loss
from jaxad.models.supersimplenet.model import SuperSimpleNetHeads
from jaxad.ops.perlin import perlin_masks
from jaxad.train import loop
from jaxad.train.state import index_member, stack_members

from fake_datasets import tiny_frozen

METHOD = get_method("supersimplenet")
STATIC = cfg.resolve(cfg.Static(image_size=(32, 32), batch_size=4, epochs=2, seg_hidden=8, cls_hidden=4))


@pytest.fixture(scope="module")
def frozen():
  return tiny_frozen(grid=16)


def test_perlin_masks_binary_and_half_empty():
  masks = np.asarray(perlin_masks(jax.random.key(0), 1000, (64, 64), 0.2))
  assert set(np.unique(masks)) <= {0.0, 1.0}
  empty = (masks.reshape(1000, -1).max(1) == 0).mean()
  assert 0.45 < empty < 0.62  # 50 % forced empty + masks that are empty by chance
  higher = np.asarray(perlin_masks(jax.random.key(0), 1000, (64, 64), 0.6))
  assert higher.mean() < masks.mean()
  np.testing.assert_array_equal(masks, np.asarray(perlin_masks(jax.random.key(0), 1000, (64, 64), 0.2)))


def test_noise_only_inside_mask():
  key = jax.random.key(3)
  rng = np.random.default_rng(0)
  feats = jnp.asarray(rng.normal(size=(6, 16, 16, 5)), jnp.float32)
  adapted = feats * 2.0
  masks = jnp.zeros((6, 16, 16))
  noised_f, noised_a, new_masks, labels = generate_anomalies(
      key, feats, adapted, masks, jnp.zeros(6), noise_std=0.5, perlin_threshold=0.2, overlap=True)
  diff_a = np.abs(np.asarray(noised_a - jnp.concatenate([adapted, adapted]))).max(-1)
  diff_f = np.abs(np.asarray(noised_f - jnp.concatenate([feats, feats]))).max(-1)
  inside = np.asarray(new_masks) > 0
  assert inside.any() and (~inside).any()
  assert np.all(diff_a[~inside] == 0) and np.all(diff_a[inside] > 0)
  np.testing.assert_allclose(diff_f, diff_a, atol=1e-6)  # JIMS: same noise on raw features
  np.testing.assert_array_equal(np.asarray(labels), inside.reshape(12, -1).any(1).astype(np.float32))


def test_no_overlap_keeps_real_defects_clean():
  masks = jnp.zeros((4, 16, 16)).at[:, :8].set(1.0)
  adapted = jnp.ones((4, 16, 16, 3))
  _, noised, new_masks, labels = generate_anomalies(
      jax.random.key(0), None, adapted, masks, jnp.ones(4), noise_std=1.0, perlin_threshold=-2.0, overlap=False,
      p_empty=0.0)
  delta = np.abs(np.asarray(noised) - 1.0).max(-1)
  assert np.all(delta[:, :8] == 0) and np.all(delta[:, 8:] > 0)
  assert np.all(np.asarray(new_masks) == 1) and np.all(np.asarray(labels) == 1)


def test_loss_hand_case():
  maps = jnp.array([[[-1.0, 0.2], [0.7, -0.4]]])
  masks = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])
  score, label = jnp.array([0.3]), jnp.array([1.0])
  total, parts = ssn_loss(maps, score, masks, label, margin=0.5, gamma=4.0)
  assert parts["l1_normal"] == pytest.approx((0.0 + 0.7) / 2)
  assert parts["l1_anomalous"] == pytest.approx((0.0 + 0.9) / 2)
  p = 1 / (1 + np.exp(-0.3))
  assert parts["focal_score"] == pytest.approx(-np.log(p) * (1 - p) ** 4, rel=1e-5)
  assert total == pytest.approx(sum(float(v) for v in parts.values()), rel=1e-6)


def test_jims_loss_reduces_to_icpr_and_ignores_unsegmented():
  rng = np.random.default_rng(0)
  maps = jnp.asarray(rng.normal(size=(4, 5, 5)), jnp.float32)
  masks = jnp.asarray(rng.random((4, 5, 5)) > 0.7, jnp.float32)
  scores, labels = jnp.asarray(rng.normal(size=4), jnp.float32), jnp.ones(4)
  icpr, _ = ssn_loss(maps, scores, masks, labels, margin=0.5, gamma=4.0)
  jims, _ = ssn_loss(maps, scores, masks, labels, margin=0.5, gamma=4.0, is_segmented_N=jnp.ones(4),
                     pixel_weights_NxHxW=jnp.ones((4, 5, 5)))
  assert jims == pytest.approx(float(icpr), rel=1e-6)
  seg = jnp.array([1.0, 1.0, 0.0, 0.0])
  _, a = ssn_loss(maps, scores, masks, labels, margin=0.5, gamma=4.0, is_segmented_N=seg)
  _, b = ssn_loss(maps.at[2:].set(99.0), scores, masks, labels, margin=0.5, gamma=4.0, is_segmented_N=seg)
  for k in ("l1_normal", "l1_anomalous", "focal_map"):
    assert a[k] == pytest.approx(float(b[k]), rel=1e-6)


def test_focal_matches_definition():
  x = jnp.array([-3.0, 0.0, 2.5])
  y = jnp.array([0.0, 1.0, 1.0])
  p = 1 / (1 + np.exp(-np.asarray(x)))
  bce = -(np.asarray(y) * np.log(p) + (1 - np.asarray(y)) * np.log(1 - p))
  pt = p * np.asarray(y) + (1 - p) * (1 - np.asarray(y))
  np.testing.assert_allclose(focal_elementwise(x, y, 4.0), bce * (1 - pt) ** 4, rtol=1e-5)


@pytest.mark.parametrize("stop_grad", [True, False])
def test_stop_grad_blocks_cls_loss_into_seg_head(stop_grad):
  model = SuperSimpleNetHeads(stop_grad=stop_grad, seg_hidden=8, cls_hidden=4)
  feats = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 5)), jnp.float32)
  variables = model.init(jax.random.key(0), feats)

  def cls_loss(params):
    (_, score), _ = model.apply({**variables, "params": params}, feats, True, mutable=["batch_stats"])
    return jnp.sum(score)

  grads = jax.grad(cls_loss)(variables["params"])
  seg_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["seg_head"]))
  assert (seg_norm == 0.0) == stop_grad


def test_no_gradient_reaches_the_backbone(frozen, train_data):
  features_fn, proj = frozen
  trainer = loop.Trainer(METHOD, STATIC, 8, features_fn)
  feats = features_fn(proj, jnp.asarray(train_data.image[:4]))
  states = trainer.init_states(stack_members([cfg.Hparams(seed=0)]), feats[:1])
  batch = {"mask": jnp.zeros((4, 32, 32)), "label": jnp.zeros(4, jnp.int32), "is_segmented": jnp.ones(4, bool)}

  def loss_of_backbone(p):
    f = jax.lax.stop_gradient(features_fn(p, jnp.asarray(train_data.image[:4])))
    _, metrics = METHOD.train_step(STATIC, index_member(states, 0), f, batch, jax.random.key(0), cfg.Hparams(), 2)
    return metrics["loss"]

  g = jax.grad(loss_of_backbone)(proj)
  assert float(jnp.abs(g).max()) == 0.0


PRE_BN_BIASES = ("['seg_head']['conv1']['bias']", "['cls_head']['conv']['bias']")


def _fit(tmp_path, name, hps, frozen, train_data, **kw):
  return loop.fit(METHOD, STATIC, stack_members(hps), train_data, tmp_path / name, frozen=frozen, chunk=2,
                  ckpt_every=2, progress=False, **kw)


def test_stacked_equals_separate_runs_and_nan_member_is_isolated(tmp_path, frozen, train_data):
  hps = [cfg.Hparams(seed=1), cfg.Hparams(seed=2, noise_std=0.05), cfg.Hparams(seed=3, lr_heads=float("nan"))]
  stacked = _fit(tmp_path, "stacked", hps, frozen, train_data, max_steps=4)
  assert np.asarray(stacked.alive).tolist() == [True, True, False]
  feats = frozen[0](frozen[1], jnp.asarray(train_data.image))
  for m in (0, 1):
    alone = _fit(tmp_path, f"alone{m}", [hps[m]], frozen, train_data, max_steps=4)
    flat_s = jax.tree_util.tree_flatten_with_path(index_member(stacked.params, m))[0]
    flat_a = dict(jax.tree_util.tree_flatten_with_path(index_member(alone.params, 0))[0])
    for path, value in flat_s:
      name = jax.tree_util.keystr(path)
      # A conv bias followed by BatchNorm has a zero gradient up to rounding, which Adam
      # normalises to ±lr: such biases follow float noise and cancel in every output.
      if name in PRE_BN_BIASES:
        continue
      np.testing.assert_allclose(value, flat_a[path], rtol=1e-5, atol=1e-6, err_msg=name)
    # Eval-mode BatchNorm subtracts running means that averaged those drifting biases, so
    # outputs (logits of order 1) carry the amplified rounding noise of vmapped vs unbatched
    # kernels (a few 1e-4).
    out_s = METHOD.predict(STATIC, index_member(stacked, m), feats, (32, 32))
    out_a = METHOD.predict(STATIC, index_member(alone, 0), feats, (32, 32))
    for k in out_s:
      np.testing.assert_allclose(out_s[k], out_a[k], rtol=2e-3, atol=1e-3, err_msg=k)


def test_init_seed_sets_the_initial_parameters_and_seed_the_training_randomness(tmp_path, frozen, train_data):
  """Members (seed, init_seed): (0, -1), (1, 0), (0, 0), (1, -1). init_seed = seed is the default; a member
  with another seed but init_seed 0 starts from member 0's parameters and trains on other noise."""
  hps = [cfg.Hparams(seed=0), cfg.Hparams(seed=1, init_seed=0), cfg.Hparams(seed=0, init_seed=0), cfg.Hparams(seed=1)]
  features_fn, proj = frozen
  feats = features_fn(proj, jnp.asarray(train_data.image[:1]))
  start = loop.Trainer(METHOD, STATIC, 8, features_fn).init_states(stack_members(hps), feats).params
  trained = _fit(tmp_path, "w", hps, frozen, train_data, max_steps=2).params

  def same(tree, a, b):
    return all(np.array_equal(x[a], x[b]) for x in jax.tree.leaves(tree))

  assert same(start, 0, 1) and same(start, 0, 2) and not same(start, 0, 3)
  assert same(trained, 0, 2)
  assert not same(trained, 0, 1) and not same(trained, 1, 3)
  with pytest.raises(ConfigError, match="init_seed must be"):
    cfg.check_hparams(cfg.Hparams(init_seed=-2))


def test_resume_equals_uninterrupted_bitwise(tmp_path, frozen, train_data):
  hps = [cfg.Hparams(seed=5)]
  full = _fit(tmp_path, "full", hps, frozen, train_data, max_steps=6)
  log = tmp_path / "resumed" / "metrics.jsonl"
  log.parent.mkdir()
  log.write_text('{"step": 2, "loss": [1.0]}\n')  # left by a run killed before its first checkpoint
  _fit(tmp_path, "resumed", hps, frozen, train_data, max_steps=2)
  with open(log, "a") as f:
    f.write('{"step": 3, "loss"')  # a line cut short by a kill mid-append
  resumed = _fit(tmp_path, "resumed", hps, frozen, train_data, max_steps=6)
  assert int(resumed.step[0]) == 6
  assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == \
      [json.loads(line)["step"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_of_other_members_is_refused_not_resumed(tmp_path, frozen, train_data):
  """loop.fit (the Python API's trainer) resumes only the members its checkpoint holds."""
  _fit(tmp_path, "w", [cfg.Hparams(seed=5)], frozen, train_data, max_steps=2)
  with pytest.raises(ConfigError, match=r"holds a checkpoint of another run .*: hparams.noise_std\)"):
    _fit(tmp_path, "w", [cfg.Hparams(seed=5, noise_std=0.05)], frozen, train_data, max_steps=4)
  assert int(_fit(tmp_path, "w", [cfg.Hparams(seed=5)], frozen, train_data, max_steps=4).step[0]) == 4


def test_non_finite_loss_stops_single_run(tmp_path, frozen, train_data):
  with pytest.raises(loop.NonFiniteLossError, match="non-finite"):
    _fit(tmp_path, "nan", [cfg.Hparams(noise_std=float("nan"))], frozen, train_data, max_steps=2)


def test_config_resolution():
  jims_sup = cfg.resolve(cfg.Static(variant="jims", supervised=True))
  assert (jims_sup.adapt_cls_features, jims_sup.stop_grad, jims_sup.clip_grad_norm, jims_sup.dilate,
          jims_sup.distance_transform, jims_sup.mask_align_corners) == (False, False, 1.0, 7, (3.0, 2.0), True)
  icpr = cfg.resolve(cfg.Static())
  assert (icpr.adapt_cls_features, icpr.stop_grad, icpr.clip_grad_norm, icpr.overlap) == (True, True, None, True)
  assert dataclasses.replace(cfg.default_hparams(jims_sup)).perlin_threshold == 0.6


@pytest.mark.parametrize("variant", ["icpr", "jims"])
def test_bfloat16_training_tracks_float32(frozen, train_data, variant):
  """compute_dtype=bfloat16: float32 parameters, BatchNorm statistics and AdamW; the losses of a few
  steps from the same state stay close to float32's."""
  features_fn, proj = frozen
  feats = features_fn(proj, jnp.asarray(train_data.image[:4]))
  batch = {"mask": jnp.zeros((4, 32, 32)), "label": jnp.zeros(4), "is_segmented": jnp.ones(4)}
  losses = {}
  for dtype in ("float32", "bfloat16"):
    static = dataclasses.replace(STATIC, variant=variant, compute_dtype=dtype, adapt_cls_features=None,
                                 mask_align_corners=None)
    static = cfg.resolve(static)
    hp = METHOD.default_hparams(static)
    state = METHOD.init(static, jax.random.key(0), hp, feats, 2)
    step = jax.jit(lambda s, k: METHOD.train_step(static, s, feats, batch, k, hp, 2))
    trace = []
    for i in range(5):
      state, metrics = step(state, jax.random.key(i))
      trace.append(float(metrics["loss"]))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.params, state.batch_stats, state.opt_state))
               if jnp.issubdtype(x.dtype, jnp.floating))
    losses[dtype] = np.array(trace)
  assert not np.array_equal(losses["float32"], losses["bfloat16"])
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)
  with pytest.raises(Exception, match="compute_dtype"):
    cfg.resolve(dataclasses.replace(STATIC, compute_dtype="float16"))


def test_official_image_scores_rank_as_the_reference_evaluation():
  """eval.py: torch.sigmoid of the cls logits, min-max over the test set (float32), then AUROC / AP.
  Logits above ~16.6 all become 1.0, so every normal/anomalous pair among them counts ½; the logits'
  own ranking has no such ties. jaxad reports both (image_auroc: logits; image_auroc_official: eval.py's)."""
  torch = pytest.importorskip("torch")
  from sklearn.metrics import average_precision_score, roc_auc_score
  import types
  from jaxad.evaluate.evaluator import score_members
  from jaxad.models.supersimplenet.steps import official_image_scores

  logits = np.array([-120.0, -3.0, 0.5, 16.0, 18.0, 25.0, 4.0, 17.0, 19.0, 40.0, 16.7], np.float32)
  labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
  s = torch.sigmoid(torch.from_numpy(logits))
  reference = ((s - s.min()) / (s.max() - s.min())).numpy()
  np.testing.assert_array_equal(official_image_scores(logits), reference)

  split = types.SimpleNamespace(label=labels, defect_type=["good"] * 6 + ["crack"] * 5, components=None,
                                mask=np.zeros((11, 4, 4), np.float32))
  split.mask[6:, 1:3, 1:3] = 1
  preds = {"score": logits[None], "map_score": logits[None], "anomaly_map": np.random.default_rng(0).random(
      (1, 11, 4, 4)).astype(np.float32)}
  (row,) = score_members(preds, split, official_image_scores)
  assert row["image_auroc_official"] == pytest.approx(roc_auc_score(labels, reference), abs=1e-12)
  assert row["image_ap_official"] == pytest.approx(average_precision_score(labels, reference), abs=1e-12)
  assert row["image_auroc"] == pytest.approx(roc_auc_score(labels, logits), abs=1e-12)
  assert row["image_auroc_official"] != pytest.approx(row["image_auroc"])  # saturated pairs count ½ each
  assert "image_auroc_official" not in score_members(preds, split)[0]
  assert get_method("supersimplenet").official_image_scores is official_image_scores
