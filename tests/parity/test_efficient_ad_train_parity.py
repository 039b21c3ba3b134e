"""EfficientAD training path against anomalib 2.7.0 and torchvision (parity extra).

* `steps.step_losses` (the Method's loss path: teacher from the state, μ/σ normalisation, student
  on [x, x_aug, P] as one batch, penalty image from uint8) against anomalib
  `EfficientAdModel.compute_losses` with the same weights, image, augmented image and penalty
  image (AE dropout off): the four losses L_hard, L_pen, L_AE, L_STAE; L_hard and L_pen are
  recomputed from anomalib's own teacher/student outputs with `torch.quantile`.
* `steps.train_step` (two optimiser steps) against anomalib's training forward and
  `EfficientAd.configure_optimizers` (torch Adam with coupled L2 over student + AE, its StepLR stepped
  per iteration as nelson's loop does; Lightning would step it per epoch), with `max_steps=2` so that
  the second step runs at the decayed learning rate.
* `augment.color_adjust` against torchvision's functional brightness / contrast / saturation.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("anomalib")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel, EfficientAdModelSize  # noqa: E402
from torchvision.transforms.v2 import functional as TF  # noqa: E402

from jaxad.models.efficient_ad import config as cfg  # noqa: E402
from jaxad.models.efficient_ad import steps  # noqa: E402
from jaxad.models.efficient_ad.augment import color_adjust  # noqa: E402
from jaxad.models.efficient_ad.convert import convert_efficient_ad  # noqa: E402
from jaxad.models.efficient_ad.model import imagenet_normalize  # noqa: E402

pytestmark = pytest.mark.parity
TOL = 1e-4


def _nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def test_step_losses_match_anomalib():
  torch.manual_seed(0)
  model = EfficientAdModel(teacher_out_channels=384, model_size=EfficientAdModelSize.S, padding=False,
                           pad_maps=True).eval()
  with torch.no_grad():
    model.mean_std["mean"].copy_(0.05 * torch.randn(1, 384, 1, 1))
    model.mean_std["std"].copy_(0.02 + 0.05 * torch.rand(1, 384, 1, 1))
  conv = convert_efficient_ad({k: v.detach().numpy() for k, v in model.state_dict().items()})
  rng = np.random.default_rng(0)
  image, augmented = rng.random((2, 1, 256, 256, 3)).astype(np.float32)
  penalty_uint8 = rng.integers(0, 256, (1, 256, 256, 3), np.uint8)

  model.choose_random_aug_image = lambda _: _nchw(augmented)
  x, penalty = _nchw(image), _nchw(penalty_uint8.astype(np.float32) / 255.0)
  with torch.no_grad():
    teacher = model._normalize_teacher(model.teacher(x))  # anomalib normalises the [0, 1] input inside
    student = model.student(x)
    distance_st = (teacher - student[:, :384]) ** 2
    ref_st, ref_ae, ref_stae = (float(v) for v in model.compute_losses(x, penalty, distance_st))
    q = torch.quantile(distance_st.flatten(), 0.999)
    ref_hard = float(distance_st[distance_st >= q].mean())
    ref_penalty = float((model.student(penalty)[:, :384] ** 2).mean())

  static = cfg.resolve(cfg.Static(teacher="random", dropout=0.0))
  frozen = {"teacher": conv["teacher"]["params"], "mean": jnp.asarray(conv["mean"]), "std": jnp.asarray(conv["std"])}
  params = {"student": conv["student"]["params"], "ae": conv["ae"]["params"]}
  fn = jax.jit(lambda p, f, a, b, c: steps.step_losses(static, p, f, a, b, c, jax.random.key(0), 0.999))
  _, parts = fn(params, frozen, imagenet_normalize(jnp.asarray(image)), imagenet_normalize(jnp.asarray(augmented)),
                jnp.asarray(penalty_uint8))
  errors = {name: abs(float(parts[name]) - ref) / abs(ref) for name, ref in
            (("hard", ref_hard), ("penalty", ref_penalty), ("st", ref_st), ("ae", ref_ae), ("stae", ref_stae))}
  print({k: f"{v:.1e}" for k, v in errors.items()})
  assert max(errors.values()) <= TOL, errors


def test_train_steps_match_anomalib(monkeypatch):
  """Two steps from the same weights, images, augmented images and penalty images (AE dropout off):
  the losses of each step and the student and AE weights after both. Adam's first steps move every
  element by about ±lr whatever its gradient's size, so an element whose gradient is rounding noise
  can differ by up to 2·lr: weights are compared at their 99.9th percentile (within 2e-6; dropping the
  weight decay gives 2e-4, dropping the StepLR decay 9e-5) and, in full, within 3·lr."""
  import types

  from anomalib.models.image.efficient_ad.lightning_model import EfficientAd

  torch.manual_seed(1)
  model = EfficientAdModel(teacher_out_channels=384, model_size=EfficientAdModelSize.S, padding=False,
                           pad_maps=True).train()
  for module in model.modules():
    if isinstance(module, torch.nn.Dropout):
      module.p = 0.0
  with torch.no_grad():
    model.mean_std["mean"].copy_(0.05 * torch.randn(1, 384, 1, 1))
    model.mean_std["std"].copy_(0.02 + 0.05 * torch.rand(1, 384, 1, 1))
  # A copy: the torch steps below update the weights in place, and .numpy() shares their memory.
  conv = convert_efficient_ad({k: v.detach().numpy().copy() for k, v in model.state_dict().items()})
  n_steps, lr = 2, 1e-4
  module = types.SimpleNamespace(model=model, lr=lr, weight_decay=1e-5,
                                 trainer=types.SimpleNamespace(max_epochs=-1, max_steps=n_steps))
  config = EfficientAd.configure_optimizers(module)
  optimizer, scheduler = config["optimizer"], config["lr_scheduler"]
  rng = np.random.default_rng(2)
  images, augmented = rng.random((2, n_steps, 1, 256, 256, 3)).astype(np.float32)
  penalty_uint8 = rng.integers(0, 256, (n_steps, 1, 256, 256, 3), np.uint8)

  ref_losses = []
  for i in range(n_steps):
    model.choose_random_aug_image = lambda _, a=augmented[i]: _nchw(a)
    parts = model(batch=_nchw(images[i]), batch_imagenet=_nchw(penalty_uint8[i].astype(np.float32) / 255.0))
    loss = sum(parts)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    ref_losses.append(float(loss.detach()))
  ref = convert_efficient_ad({k: v.detach().numpy() for k, v in model.state_dict().items()})

  static = cfg.resolve(cfg.Static(teacher="random", dropout=0.0, train_steps=n_steps))
  hp = cfg.Hparams(lr=lr, weight_decay=1e-5)
  feats = [imagenet_normalize(jnp.asarray(x)) for x in images]
  state = steps.init(static, jax.random.key(0), hp, feats[0], 1)
  params = {"student": conv["student"]["params"], "ae": conv["ae"]["params"]}
  frozen = dict(state.batch_stats, teacher=conv["teacher"]["params"], mean=jnp.asarray(conv["mean"]),
                std=jnp.asarray(conv["std"]))
  state = state.replace(params=params, batch_stats=frozen)  # fresh Adam moments do not depend on the values
  held = {}  # the augmented image of the step being traced (replaces the random colour augmentation)
  monkeypatch.setattr(steps, "augment_ae_input", lambda key, x, lo, hi: held["aug"])

  def step(state, x, aug, batch, key):
    held["aug"] = aug
    return steps.train_step(static, state, x, batch, key, hp, 1)

  step = jax.jit(step)
  losses = []
  for i in range(n_steps):
    state, metrics = step(state, feats[i], imagenet_normalize(jnp.asarray(augmented[i])),
                          {"penalty": jnp.asarray(penalty_uint8[i])}, jax.random.key(i))
    losses.append(float(metrics["loss"]))
  np.testing.assert_allclose(losses, ref_losses, rtol=TOL)

  ours = {"student": state.params["student"], "ae": state.params["ae"]}
  theirs = {"student": ref["student"]["params"], "ae": ref["ae"]["params"]}
  start = {"student": conv["student"]["params"], "ae": conv["ae"]["params"]}
  assert jax.tree.structure(ours) == jax.tree.structure(theirs) == jax.tree.structure(start)
  moved, worst = [], {}
  leaves = zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree.leaves(theirs), jax.tree.leaves(start))
  for (path, a), b, s in leaves:
    diff = np.abs(np.asarray(a) - b)
    moved.append(np.median(np.abs(b - s)))
    worst[jax.tree_util.keystr(path)] = (float(np.percentile(diff, 99.9)), float(diff.max()))
  print({k: f"{p:.1e}/{m:.1e}" for k, (p, m) in worst.items()})
  assert min(moved) > 0.5 * lr, "the reference weights did not move by ~lr: the comparison would be vacuous"
  assert max(p for p, _ in worst.values()) <= 2e-6, worst
  assert max(m for _, m in worst.values()) <= 3 * lr, worst


def test_color_adjust_matches_torchvision():
  rng = np.random.default_rng(1)
  images = rng.random((6, 16, 20, 3)).astype(np.float32)
  choice = np.array([0, 1, 2, 0, 1, 2])
  factor = np.array([0.8, 0.85, 0.9, 1.1, 1.15, 1.2], np.float32)
  ours = np.asarray(color_adjust(jnp.asarray(images), jnp.asarray(choice), jnp.asarray(factor)))
  adjust = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
  for i in range(len(images)):
    ref = adjust[choice[i]](_nchw(images[i:i + 1]), float(factor[i])).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours[i:i + 1], ref, atol=2e-6)
