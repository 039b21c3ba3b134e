"""SuperSimpleNet in jaxad against anomalib 2.7.0 (`SupersimplenetModel`, `SSNLoss`, `AnomalyGenerator`,
and three training steps with the lightning model's optimiser).

The anomalib model is built with random backbone weights (nothing is downloaded), its BatchNorm
statistics are made non-trivial, and all its weights are copied into jaxad: the backbone through
`jaxad.nn.convert.convert_state_dict` and a converted-weights file read by `make_frozen`, the
heads through `convert_heads`. jaxad is configured as anomalib: `feature_align_corners=False`,
`perlin_rescale_if_empty=True`, no-overlap noise. Errors are max|jaxad − anomalib| / max|anomalib|.
"""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("anomalib")
pytest.importorskip("timm")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxad.models.supersimplenet import anomaly, steps  # noqa: E402
from jaxad.models.supersimplenet import config as cfg  # noqa: E402
from jaxad.models.supersimplenet.convert import convert_heads, load_supersimplenet_checkpoint  # noqa: E402
from jaxad.models.supersimplenet.loss import ssn_loss  # noqa: E402
from jaxad.models.supersimplenet.model import SuperSimpleNetHeads  # noqa: E402
from jaxad.nn.convert import convert_state_dict  # noqa: E402
from jaxad.nn.weights import save_converted  # noqa: E402
from jaxad.ops.perlin import perlin_masks, perlin_noise, LATTICE  # noqa: E402
from jaxad.train.state import TrainState  # noqa: E402

pytestmark = pytest.mark.parity

BACKBONE_PREFIX = "feature_extractor.feature_extractor.feature_extractor."
SMALL_HW = (72, 104)  # layer2 9×13, layer3 5×7: non-integer upscaling ratios, 18×26 feature grid


def rel_err(actual, reference) -> float:
  actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(actual - reference).max() / np.abs(reference).max())


def nchw_to_nhwc(x) -> np.ndarray:
  return np.asarray(x).transpose(0, 2, 3, 1)


def _randomise_batch_norms(module, generator) -> None:
  for bn in module.modules():
    if isinstance(bn, torch.nn.BatchNorm2d):
      n = bn.num_features
      bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
      bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
      bn.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
      bn.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def _calibrate(bn, pre_activations, generator) -> None:
  """Running statistics near the batch's own (activations O(1), sigmoid not saturated), perturbed."""
  n = bn.num_features
  mean = pre_activations.mean(dim=(0, 2, 3))
  var = pre_activations.var(dim=(0, 2, 3))
  bn.weight.copy_(torch.rand(n, generator=generator) + 0.5)
  bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
  bn.running_mean.copy_(mean + 0.2 * var.sqrt() * torch.randn(n, generator=generator))
  bn.running_var.copy_(var * (torch.rand(n, generator=generator) + 0.5))


@pytest.fixture(scope="module")
def anomalib_model():
  """anomalib's eval-mode SupersimplenetModel with random weights and non-trivial BatchNorm statistics."""
  from anomalib.models.components import TimmFeatureExtractor

  original_init = TimmFeatureExtractor.__init__

  def offline_init(self, *args, **kwargs):
    kwargs["pre_trained"] = False
    original_init(self, *args, **kwargs)

  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setattr(TimmFeatureExtractor, "__init__", offline_init)
    from anomalib.models.image.supersimplenet.torch_model import SupersimplenetModel
    torch.manual_seed(0)
    model = SupersimplenetModel().eval()
  generator = torch.Generator().manual_seed(1)
  with torch.no_grad():
    _randomise_batch_norms(model.feature_extractor, generator)
    feats = model.feature_extractor(torch.randn(2, 3, *SMALL_HW, generator=generator))
    adapted = model.adaptor(feats)
    seg_head, cls_conv = model.segdec.seg_head, model.segdec.cls_conv
    _calibrate(seg_head[1], seg_head[0](adapted), generator)
    map_logits = seg_head(adapted)
    _calibrate(cls_conv[1], cls_conv[0](torch.cat([feats, map_logits], 1)), generator)
  return model


@pytest.fixture(scope="module")
def jax_side(anomalib_model, tmp_path_factory):
  """(backbone weights file for `make_frozen`, head variables)."""
  import timm

  model = anomalib_model
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
  # timm's features_only network stops after layer3; the converter wants the whole ResNet.
  with torch.device("meta"):
    full_shapes = {k: tuple(v.shape) for k, v in timm.create_model("wide_resnet50_2").state_dict().items()}
  absent = {k: np.zeros(s, np.float32) for k, s in full_shapes.items() if k not in backbone}
  assert all(k.startswith(("layer4.", "fc.")) for k in absent)
  tree = convert_state_dict("wide_resnet50_2", {**backbone, **absent})
  tree = {col: {k: v for k, v in sub.items() if not k.startswith(("layer4", "fc"))} for col, sub in tree.items()}
  path = save_converted(tree, tmp_path_factory.mktemp("ssn") / "wrn.safetensors", source_sha256="0" * 64,
                        source_name="anomalib-random", extra_meta={"arch": "wide_resnet50_2"})
  return str(path), convert_heads(state)


def _forward_with_intermediates(model, images):
  """anomalib's eval forward, plus what its feature extractor and segdec module returned."""
  captured = []
  hooks = [part.register_forward_hook(lambda module, args, output: captured.append(output))
           for part in (model.feature_extractor, model.segdec)]
  try:
    with torch.inference_mode():
      final = model(images)
  finally:
    for hook in hooks:
      hook.remove()
  return final, captured


@pytest.fixture(scope="module")
def jax_features(jax_side):
  """jaxad's frozen feature function (`make_frozen`) on the copied backbone, jitted, and its variables."""
  static = cfg.resolve(cfg.Static(feature_align_corners=False, backbone_weights=jax_side[0]))
  features_fn, frozen_vars = steps.make_frozen(static)
  return jax.jit(features_fn), frozen_vars


@pytest.mark.parametrize("shape,adapt_cls", [((1, 256, 256), False), ((2, *SMALL_HW), False),
                                             ((2, *SMALL_HW), True)])
def test_eval_forward_matches_anomalib(anomalib_model, jax_side, jax_features, shape, adapt_cls):
  model, head_vars = anomalib_model, jax_side[1]
  images = torch.randn(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(2))
  model.adapt_cls_features = adapt_cls
  final, (feats, (map_ref, score_ref)) = _forward_with_intermediates(model, images)

  static = cfg.resolve(cfg.Static(feature_align_corners=False, adapt_cls_features=adapt_cls, image_size=shape[1:]))
  features_fn, frozen_vars = jax_features
  feats_j = features_fn(frozen_vars, jnp.asarray(nchw_to_nhwc(images)))
  heads = SuperSimpleNetHeads(adapt_cls_features=adapt_cls, stop_grad=static.stop_grad)

  @jax.jit
  def logits_and_predict(variables, feats_BxHxWxC):
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables["batch_stats"], opt_state=None, alive=jnp.ones((), bool))
    return heads.apply(variables, feats_BxHxWxC), steps.predict(static, state, feats_BxHxWxC, tuple(shape[1:]))

  (map_j, score_j), out = logits_and_predict(head_vars, feats_j)

  errors = {
      "features": rel_err(feats_j, nchw_to_nhwc(feats)),
      "map_logits": rel_err(map_j, map_ref[:, 0]),
      "score_logit": rel_err(score_j, score_ref),
      # jaxad's predict returns logits; anomalib (and the official eval) their sigmoids.
      "anomaly_map": rel_err(jax.nn.sigmoid(out["anomaly_map"]), final.anomaly_map[:, 0]),
      "score": rel_err(jax.nn.sigmoid(out["score"]), final.pred_score),
  }
  print(f"\nSSN eval {shape} adapt_cls={adapt_cls}: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
  # Not saturated: the final comparison is informative.
  assert 0.02 < float(final.anomaly_map.mean()) < 0.98
  assert all(v <= 1e-4 for v in errors.values()), errors


OFFICIAL_NAMES = {"adaptor.": "feature_adaptor.", "segdec.seg_head.": "discriminator.seg.",
                  "segdec.cls_conv.": "discriminator.dec_head.", "segdec.cls_fc.": "discriminator.fc_score."}


def test_torch_saved_checkpoints_load(anomalib_model, jax_side, tmp_path):
  """An official-style `weights.pt` and a Lightning-style checkpoint, both written by torch.save."""
  state = anomalib_model.state_dict()
  heads = {k: v for k, v in state.items() if k.startswith(tuple(OFFICIAL_NAMES))}
  official = {}
  for key, value in heads.items():
    old = next(p for p in OFFICIAL_NAMES if key.startswith(p))
    official[OFFICIAL_NAMES[old] + key[len(old):]] = value
  torch.save(official, tmp_path / "weights.pt")
  lightning = {"model." + k: v for k, v in state.items() if not k.startswith("feature_extractor.")}
  lightning["model.feature_extractor.feature_extractor.feature_extractor.conv1.weight"] = torch.zeros(64, 3, 7, 7)
  torch.save({"state_dict": lightning, "epoch": 3, "global_step": 30}, tmp_path / "model.ckpt")
  expected = jax.tree.leaves(jax_side[1])
  for name in ("weights.pt", "model.ckpt"):
    loaded = jax.tree.leaves(load_supersimplenet_checkpoint(tmp_path / name))
    assert len(loaded) == len(expected)
    for a, b in zip(loaded, expected):
      np.testing.assert_array_equal(a, b)


def test_mask_downsampling_matches_anomalib():
  from anomalib.models.image.supersimplenet.torch_model import SupersimplenetModel

  masks = (np.random.default_rng(0).random((3, 37, 29)) > 0.6).astype(np.float32)
  ref = SupersimplenetModel.downsample_mask(torch.from_numpy(masks), 18, 13)[:, 0].numpy()
  ours = steps.downsample_masks(jnp.asarray(masks), (18, 13), align_corners=False)
  np.testing.assert_array_equal(np.asarray(ours), ref)


# ---- losses ----


_ssn_loss = jax.jit(functools.partial(ssn_loss, margin=0.5, gamma=4.0))


@pytest.mark.parametrize("masks_kind", ["random", "all_normal", "all_anomalous"])
def test_loss_matches_ssn_loss(masks_kind):
  from anomalib.models.image.supersimplenet.loss import SSNLoss

  rng = np.random.default_rng({"random": 0, "all_normal": 1, "all_anomalous": 2}[masks_kind])
  n, h, w = 6, 7, 5
  map_logits = rng.normal(0, 2, (n, h, w)).astype(np.float32)
  score_logits = rng.normal(0, 2, n).astype(np.float32)
  masks = {"random": (rng.random((n, h, w)) > 0.7), "all_normal": np.zeros((n, h, w)),
           "all_anomalous": np.ones((n, h, w))}[masks_kind].astype(np.float32)
  labels = (masks.reshape(n, -1).max(1) > 0).astype(np.float32)
  labels[0] = 1.0 - labels[0]  # a label that disagrees with its mask (labels are not derived from masks)

  loss_ref = SSNLoss()
  t_map, t_masks = torch.from_numpy(map_logits[:, None]), torch.from_numpy(masks[:, None])
  t_score, t_labels = torch.from_numpy(score_logits), torch.from_numpy(labels)
  ref_total = float(loss_ref(t_map, t_score, t_masks, t_labels))
  total, parts = _ssn_loss(jnp.asarray(map_logits), jnp.asarray(score_logits), jnp.asarray(masks),
                           jnp.asarray(labels))
  pairs = {
      "total": (total, ref_total),
      "trunc_l1": (parts["l1_normal"] + parts["l1_anomalous"], float(loss_ref.trunc_l1_loss(t_map, t_masks))),
      "focal_map": (parts["focal_map"], float(loss_ref.focal_loss(t_map, t_masks))),
      "focal_score": (parts["focal_score"], float(loss_ref.focal_loss(t_score, t_labels))),
  }
  errors = {k: abs(float(a) - b) / abs(b) for k, (a, b) in pairs.items()}
  print(f"\nSSN loss {masks_kind}: " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
  assert all(v <= 1e-6 for v in errors.values()), errors


# ---- Perlin noise and masks ----


@pytest.mark.parametrize("shape,scale", [((64, 64), (1, 1)), ((128, 32), (4, 16)), ((64, 64), (32, 32)),
                                         ((16, 64), (2, 8))])
def test_perlin_noise_equals_generate_perlin_noise(shape, scale):
  from anomalib.data.utils.generators.perlin import generate_perlin_noise

  torch.manual_seed(7)
  angles = (2 * torch.pi * torch.rand(scale[0] + 1, scale[1] + 1)).numpy()
  torch.manual_seed(7)
  ref = generate_perlin_noise(*shape, scale=scale, device=torch.device("cpu")).numpy()
  lattice = np.zeros((LATTICE, LATTICE), np.float32)
  lattice[: scale[0] + 1, : scale[1] + 1] = angles
  noise = jax.jit(perlin_noise, static_argnums=1)
  ours = noise(jnp.asarray(lattice), shape, int(np.log2(scale[0])), int(np.log2(scale[1])))
  assert np.abs(np.asarray(ours) - ref).max() <= 1e-5


def _anomalib_masks(grid, thresholds, n, patch):
  """anomalib's `generate_perlin` at each threshold, on the same n noise fields (generated once)."""
  from anomalib.models.image.supersimplenet import anomaly_generator as module

  recorded = []

  def record(**kwargs):  # on the CPU, as `device=None` would pick here, without probing CUDA every call
    recorded.append(generate(**kwargs, device=torch.device("cpu")))
    return recorded[-1]

  generate = module.generate_perlin_noise
  torch.manual_seed(0)
  masks = {}
  for i, threshold in enumerate(thresholds):
    replay = iter(list(recorded))
    patch.setattr(module, "generate_perlin_noise", record if i == 0 else lambda **_: next(replay))
    masks[threshold] = module.AnomalyGenerator(0.0, 0.015, threshold).generate_perlin(n, *grid)[:, 0].numpy()
  return masks


@pytest.mark.parametrize("grid", [(64, 64), (80, 29)])
def test_perlin_mask_statistics_match_anomalib(grid, monkeypatch):
  n, thresholds = 2000, (0.2, 0.6)
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # thousands of tiny ops: threads only add overhead
  try:
    with torch.inference_mode():
      ref = _anomalib_masks(grid, thresholds, n, monkeypatch)
  finally:
    torch.set_num_threads(threads)
  # One compilation per grid; the noise does not depend on the threshold, so vmap computes it once.
  draw = jax.jit(jax.vmap(lambda t: perlin_masks(jax.random.key(0), n, grid, t, rescale_if_empty=True)))
  ours_by_threshold = np.asarray(draw(jnp.asarray(thresholds)))
  for threshold, ours in zip(thresholds, ours_by_threshold):
    assert set(np.unique(ours)) <= {0.0, 1.0}
    for name, stat in (("empty", lambda m: m.reshape(n, -1).max(1) == 0),
                       ("coverage", lambda m: m.reshape(n, -1).mean(1))):
      a, b = stat(ours).astype(np.float64), stat(ref[threshold]).astype(np.float64)
      bound = 4 * np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
      print(f"\nPerlin {grid} thr {threshold} {name}: jaxad {a.mean():.4f} anomalib {b.mean():.4f} "
            f"(4 SE {bound:.4f})")
      assert abs(a.mean() - b.mean()) <= bound, (name, threshold, a.mean(), b.mean(), bound)


# ---- anomaly generator ----


@pytest.mark.parametrize("adapt_cls,overlap", [(True, False), (False, False), (False, True)])
def test_anomaly_generator_matches_anomalib(adapt_cls, overlap, monkeypatch):
  from anomalib.models.image.supersimplenet.anomaly_generator import AnomalyGenerator

  rng = np.random.default_rng(3)
  b, h, w, c, noise_std = 2, 6, 5, 4, 0.015
  feats = rng.normal(size=(b, h, w, c)).astype(np.float32)
  adapted = rng.normal(size=(b, h, w, c)).astype(np.float32)
  masks = np.zeros((b, h, w), np.float32)
  labels = np.zeros(b, np.float32)
  if not overlap:  # anomalib always keeps noise off real defects; jaxad does with overlap=False
    masks[0, 1:4, 2:4] = 1.0
    labels[0] = 1.0
  perlin = (rng.random((2 * b, h, w)) > 0.5).astype(np.float32)
  perlin[1] = 0.0  # a sample without synthetic anomaly
  perlin[2, 1:4, 2:4] = 1.0  # overlaps the real defect of its source sample
  z = rng.normal(size=(2 * b, h, w, c)).astype(np.float32)

  monkeypatch.setattr(anomaly, "perlin_masks", lambda key, n, shape, threshold, **_: jnp.asarray(perlin))
  monkeypatch.setattr(jax.random, "normal", lambda key, shape, dtype=jnp.float32: jnp.asarray(z.reshape(shape), dtype))
  ours = anomaly.generate_anomalies(jax.random.key(0), None if adapt_cls else jnp.asarray(feats),
                                    jnp.asarray(adapted), jnp.asarray(masks), jnp.asarray(labels),
                                    noise_std=noise_std, perlin_threshold=0.2, overlap=overlap)

  generator = AnomalyGenerator(0.0, noise_std, 0.2)
  monkeypatch.setattr(generator, "generate_perlin", lambda n, hh, ww: torch.from_numpy(perlin[:, None]).long())
  noise = torch.from_numpy((np.float32(noise_std) * z).transpose(0, 3, 1, 2).copy())
  monkeypatch.setattr(torch, "normal", lambda **kwargs: noise)
  to_torch = lambda x: torch.from_numpy(x.transpose(0, 3, 1, 2).copy())  # noqa: E731
  ref = generator(None if adapt_cls else to_torch(feats), to_torch(adapted), torch.from_numpy(masks[:, None]),
                  torch.from_numpy(labels))

  noised_feats, noised_adapted, new_masks, new_labels = ours
  if adapt_cls:
    assert noised_feats is None and ref[0] is None
  else:
    np.testing.assert_allclose(np.asarray(noised_feats), nchw_to_nhwc(ref[0]), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(np.asarray(noised_adapted), nchw_to_nhwc(ref[1]), rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(new_masks), ref[2][:, 0].numpy())
  np.testing.assert_array_equal(np.asarray(new_labels), ref[3].numpy())
  assert np.asarray(new_labels).tolist() == [1.0, 0.0, 1.0, 1.0]


# ---- train step ----


@pytest.mark.parametrize("supervised", [False, True], ids=["unsupervised", "supervised"])
def test_train_steps_match_anomalib(anomalib_model, jax_side, monkeypatch, supervised):
  """Three JIMS steps from the same weights, features, Perlin masks and noise: anomalib's training
  forward, `SSNLoss` and `configure_optimizers` (its AdamW groups) against jaxad's `train_step`.
  Supervised: one image with a defect mask, no stop-gradient between the heads, and the global
  gradient-norm clipping at 1 that anomalib asks Lightning for (`gradient_clip_val`). The biases whose shift the next training-mode BatchNorm removes get no gradient, so
  Adam moves them by rounding noise on both sides: the test asserts that gradient is zero and compares
  them within that noise. The BatchNorm running statistics match to rounding after the first step; later
  they follow the noise-moved weights, so the final ones are compared relative to their size.
  Adam also magnifies rounding differences wherever a gradient element is near zero, so weights are
  compared at their 99.9th percentile (a wrong learning rate or gradient moves most elements)."""
  import copy
  import types

  from anomalib.models.image.supersimplenet.lightning_model import Supersimplenet
  from anomalib.models.image.supersimplenet.loss import SSNLoss

  model = copy.deepcopy(anomalib_model).train()
  model.adapt_cls_features = False
  model.segdec.stop_grad = not supervised
  (optimizer,), _ = Supersimplenet.configure_optimizers(
      types.SimpleNamespace(model=model, trainer=types.SimpleNamespace(max_epochs=300)))
  loss_ref = SSNLoss()
  b, steps_n = 2, 3
  rng = np.random.default_rng(5)
  images = torch.from_numpy(rng.normal(size=(b, 3, *SMALL_HW)).astype(np.float32))
  masks, labels = torch.zeros(b, *SMALL_HW), torch.zeros(b)
  if supervised:
    masks[0, 20:44, 30:70], labels[0] = 1.0, 1.0
  with torch.no_grad():
    feats = jnp.asarray(nchw_to_nhwc(model.feature_extractor(images)))
  h, w, c = feats.shape[1:]

  static = cfg.resolve(cfg.Static(variant="jims", supervised=supervised, mask_align_corners=False,
                                  feature_align_corners=False, overlap=False, perlin_rescale_if_empty=True,
                                  image_size=SMALL_HW))
  assert (static.stop_grad, static.clip_grad_norm) == ((False, 1.0) if supervised else (True, None))
  hp = cfg.Hparams()
  head_vars = jax_side[1]
  state = steps.init(static, jax.random.key(0), hp, feats, 1)  # fresh Adam moments do not depend on the values
  state = state.replace(params=jax.tree.map(jnp.asarray, head_vars["params"]),
                        batch_stats=jax.tree.map(jnp.asarray, head_vars["batch_stats"]))
  batch = {"mask": jnp.asarray(masks.numpy()), "label": jnp.asarray(labels.numpy())}
  clip_norms = []

  draws = {}  # this step's Perlin masks and standard normals, handed to both sides
  monkeypatch.setattr(anomaly, "perlin_masks", lambda key, n, shape, threshold, **_: jnp.asarray(draws["perlin"]))
  monkeypatch.setattr(jax.random, "normal",
                      lambda key, shape, dtype=jnp.float32: jnp.asarray(draws["z"].reshape(shape), dtype))
  monkeypatch.setattr(model.anomaly_generator, "generate_perlin",
                      lambda n, hh, ww: torch.from_numpy(draws["perlin"][:, None]).long())
  monkeypatch.setattr(torch, "normal", lambda **kwargs: torch.from_numpy(
      (np.float32(hp.noise_std) * draws["z"]).transpose(0, 3, 1, 2).copy()))

  for i in range(steps_n):
    draws["perlin"] = (rng.random((2 * b, h, w)) > 0.6).astype(np.float32)
    draws["perlin"][1] = 0.0  # one sample without a synthetic anomaly
    draws["z"] = rng.normal(size=(2 * b, h, w, c)).astype(np.float32)
    state, metrics = steps.train_step(static, state, feats, batch, jax.random.key(i), hp, 1)
    optimizer.zero_grad()
    anomaly_map, score, masks2, labels2 = model(images=images, masks=masks, labels=labels)
    loss = loss_ref(pred_map=anomaly_map, pred_score=score, target_mask=masks2, target_label=labels2)
    loss.backward()
    if supervised:  # what Lightning does with gradient_clip_val=1 (norm of all the optimizer's gradients)
      clip_norms.append(float(torch.nn.utils.clip_grad_norm_(
          [p for group in optimizer.param_groups for p in group["params"]], 1.0)))
    if i == 0:  # anomalib's gradients, in jaxad's layout (buffers keep their values)
      grads = convert_heads({**{k: v.numpy() for k, v in model.state_dict().items()},
                             **{k: v.grad.numpy() for k, v in model.named_parameters() if v.grad is not None}})
    optimizer.step()
    np.testing.assert_allclose(float(metrics["loss"]), float(loss.detach()), rtol=1e-4, err_msg=f"step {i}")
    if i == 0:  # the first forward pass starts from identical weights: its BatchNorm update (momentum,
      # unbiased variance) must match to float rounding (measured: 2e-8 of the mean, 6e-8 of the variance)
      first_stats = convert_heads({k: v.detach().numpy() for k, v in model.state_dict().items()})["batch_stats"]
      for (path, mine), theirs in zip(jax.tree_util.tree_leaves_with_path(state.batch_stats),
                                      jax.tree.leaves(first_stats)):
        np.testing.assert_allclose(np.asarray(mine), theirs, rtol=0, atol=1e-6 * float(np.abs(theirs).max()),
                                   err_msg=f"step 0 {jax.tree_util.keystr(path)}")

  if supervised:
    assert max(clip_norms) > 1.0, clip_norms  # the clipping acts (gradients above norm 1), so it is compared
  ref = convert_heads({k: v.detach().numpy() for k, v in model.state_dict().items()})
  ours = {"params": state.params, "batch_stats": state.batch_stats}
  flat_grads = dict(jax.tree_util.tree_leaves_with_path(grads["params"]))
  largest = max(float(np.abs(g).max()) for g in flat_grads.values())
  report = {}
  for (path, mine), theirs in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(ref)):
    diff = np.abs(np.asarray(mine) - theirs)
    grad = float(np.abs(flat_grads[path[1:]]).max()) if path[0].key == "params" else None
    report[jax.tree_util.keystr(path)] = (float(diff.max()), float(np.quantile(diff, 0.999)),
                                          float(np.abs(theirs).max()), grad)
  print("\nSSN train-step parity (max diff, 99.9 % diff, max |ref|, max |grad|):")
  for k, v in report.items():
    print(f"  {k}: {v}")
  max_move = 2 * steps_n * max(hp.lr_adaptor, hp.lr_heads)  # Adam moves an element by at most ~lr per step
  for name, (top, bulk, scale, grad) in report.items():
    if grad is None:  # BatchNorm running statistics: after step 0 they follow weights that Adam's noise moved
      assert top <= 1e-3 * scale, name  # (below); 3e-4 of the scale on a 2-core AMD EPYC, < 1e-4 before
    elif grad < 1e-5 * largest:  # no gradient: moved by rounding noise only
      assert name.endswith("['bias']"), name  # only biases in front of a training-mode BatchNorm
      assert top <= max_move, name
    else:  # Adam turns rounding differences in a near-zero gradient into visible steps: few elements
      assert bulk <= 1e-6 + 1e-5 * scale and top <= max_move, name
