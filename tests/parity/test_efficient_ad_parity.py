"""EfficientAD in jaxad against anomalib 2.7.0 `EfficientAdModel` (S and M, padding=False, pad_maps=True).

The torch model is built offline with PyTorch-default random weights, non-zero `mean_std` buffers
and quantile buffers computed from its own validation maps; its state dict goes through
`convert_efficient_ad`. Compared at 256×256, batch 1, eval mode: teacher, student and AE outputs,
the map quantiles, the final combined normalised 256×256 map, and the three training losses
(anomalib `compute_losses` with a fixed augmented image and penalty image; AE dropout off).
Errors are max|jaxad − anomalib| / max|anomalib|.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("anomalib")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel, EfficientAdModelSize  # noqa: E402

from jaxad.models.efficient_ad import normalization as norm  # noqa: E402
from jaxad.models.efficient_ad.convert import convert_efficient_ad  # noqa: E402
from jaxad.models.efficient_ad.loss import efficient_ad_losses  # noqa: E402
from jaxad.models.efficient_ad.model import build_networks, imagenet_normalize  # noqa: E402

pytestmark = pytest.mark.parity

HW = (256, 256)
TOL = 1e-4


def rel_err(actual, reference) -> float:
  actual, reference = np.asarray(actual, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(actual - reference).max() / np.abs(reference).max())


def nchw(x_nhwc: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))


def nhwc(t) -> np.ndarray:
  return t.detach().numpy().transpose(0, 2, 3, 1)


def reference(size: str):
  """anomalib model (eval) with PyTorch-default random weights and non-zero `mean_std` buffers."""
  torch.manual_seed(0)
  model_size = EfficientAdModelSize.S if size == "s" else EfficientAdModelSize.M
  model = EfficientAdModel(teacher_out_channels=384, model_size=model_size, padding=False, pad_maps=True).eval()
  with torch.no_grad():
    model.mean_std["mean"].copy_(0.05 * torch.randn(1, 384, 1, 1))
    model.mean_std["std"].copy_(0.02 + 0.05 * torch.rand(1, 384, 1, 1))
    for i, name in enumerate(("qa_st", "qb_st", "qa_ae", "qb_ae")):
      model.quantiles[name].fill_(0.1 * (i + 1))
  return model


def convert(model):
  return convert_efficient_ad({k: v.detach().numpy() for k, v in model.state_dict().items()}, source="anomalib")


def jax_forward(size: str):
  teacher, student, ae = build_networks(size, 384, padding=False)

  @jax.jit
  def forward(variables, images_Bx256x256x3):
    x = imagenet_normalize(images_Bx256x256x3)
    t = teacher.apply(variables["teacher"], x)
    return t, norm.normalize_teacher(t, variables["mean"], variables["std"]), student.apply(variables["student"], x), \
        ae.apply(variables["ae"], x)

  return forward


def test_small_outputs_maps_and_losses_match_anomalib():
  model = reference("s")
  images = np.random.default_rng(0).random((3, *HW, 3)).astype(np.float32)
  x = nchw(images[:1])
  with torch.no_grad():  # quantile buffers from this image's maps, as anomalib's validation start
    ref_map_st, ref_map_ae = model.get_maps(x, normalize=False)
    for name, map_ in (("st", ref_map_st), ("ae", ref_map_ae)):
      model.quantiles[f"qa_{name}"].copy_(torch.quantile(map_.flatten(), 0.9))
      model.quantiles[f"qb_{name}"].copy_(torch.quantile(map_.flatten(), 0.995))
  conv = convert(model)
  assert (conv["size"], conv["out_channels"]) == ("s", 384)
  variables = {k: conv[k] for k in ("teacher", "student", "ae", "mean", "std")}
  t_raw, t_norm, s_out, ae_out = (np.asarray(a) for a in jax_forward("s")(variables, jnp.asarray(images)))
  captured = {}

  def keep_first_output(name):
    def hook(_module, _inputs, output) -> None:  # returns None: the output is not replaced
      captured.setdefault(name, output)
    return hook

  for name in ("teacher", "student", "ae"):
    getattr(model, name).register_forward_hook(keep_first_output(name))
  with torch.no_grad():
    ref_map = model(x).anomaly_map.numpy()[:, 0]  # runs teacher, student and ae once each on x
  ref_teacher, ref_student, ref_ae = (nhwc(captured[name]) for name in ("teacher", "student", "ae"))
  errors = dict(teacher=rel_err(t_raw[:1], ref_teacher), student=rel_err(s_out[:1], ref_student),
                ae=rel_err(ae_out[:1], ref_ae))

  map_st, map_ae = norm.raw_maps(t_norm[:1], s_out[:1], ae_out[:1])
  map_st, map_ae = norm.postprocess_maps(map_st, map_ae, HW, postprocess="anomalib", pad_maps=True)
  errors["map_st"] = rel_err(map_st, ref_map_st.numpy()[:, 0])
  errors["map_ae"] = rel_err(map_ae, ref_map_ae.numpy()[:, 0])
  qa_st, qb_st = norm.map_quantiles(map_st)
  qa_ae, qb_ae = norm.map_quantiles(map_ae)
  quantiles = {k: float(v.detach()) for k, v in model.quantiles.items()}
  for name, value in (("qa_st", qa_st), ("qb_st", qb_st), ("qa_ae", qa_ae), ("qb_ae", qb_ae)):
    errors[name] = abs(float(value) - quantiles[name]) / abs(quantiles[name])
  final = norm.anomaly_map(*norm.raw_maps(t_norm[:1], s_out[:1], ae_out[:1]), conv["quantiles"], HW,
                           postprocess="anomalib", pad_maps=True)
  errors["anomaly_map"] = rel_err(final, ref_map)

  # Losses: x = image 0, penalty = image 1, augmented = image 2 (anomalib's random choice fixed).
  penalty, augmented = nchw(images[1:2]), nchw(images[2:3])
  model.choose_random_aug_image = lambda _: augmented
  distance_st = (model._normalize_teacher(captured["teacher"]) - captured["student"][:, :384]) ** 2
  with torch.no_grad():
    ref_losses = model.compute_losses(x, penalty, distance_st)
  _, parts = efficient_ad_losses(t_norm[:1], s_out[:1], s_out[1:2], t_norm[2:3], ae_out[2:3], s_out[2:3])
  for name, ref in zip(("st", "ae", "stae"), ref_losses):
    errors[f"loss_{name}"] = abs(float(parts[name]) - float(ref)) / abs(float(ref))
  print({k: f"{v:.1e}" for k, v in errors.items()})
  assert max(errors.values()) <= TOL, errors


def test_medium_pdn_matches_anomalib():
  """PDN-M teacher and student (the AE, maps and losses do not depend on the size) at 128×128."""
  model = reference("m")
  conv = convert(model)
  assert (conv["size"], conv["out_channels"]) == ("m", 384)
  teacher, student, _ = build_networks("m", 384, padding=False)
  images = np.random.default_rng(1).random((1, 128, 128, 3)).astype(np.float32)
  x = imagenet_normalize(jnp.asarray(images))
  t_out = jax.jit(teacher.apply)(conv["teacher"], x)
  s_out = jax.jit(student.apply)(conv["student"], x)
  with torch.no_grad():
    ref_teacher, ref_student = nhwc(model.teacher(nchw(images))), nhwc(model.student(nchw(images)))
  errors = dict(teacher=rel_err(t_out, ref_teacher), student=rel_err(s_out, ref_student))
  print(errors)
  assert t_out.shape == (1, 24, 24, 384) and max(errors.values()) <= TOL, errors
