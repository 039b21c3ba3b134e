"""EfficientAD training path against anomalib 2.7.0 and torchvision (parity extra).

* `steps.step_losses` (the Method's loss path: teacher from the state, μ/σ normalisation, student
  on [x, x_aug, P] as one batch, penalty image from uint8) against anomalib
  `EfficientAdModel.compute_losses` with the same weights, image, augmented image and penalty
  image (AE dropout off): the four losses L_hard, L_pen, L_AE, L_STAE; L_hard and L_pen are
  recomputed from anomalib's own teacher/student outputs with `torch.quantile`.
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
