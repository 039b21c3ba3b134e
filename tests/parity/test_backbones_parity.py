"""Flax backbones vs torchvision ResNets and timm EfficientNet-Lite with identical weights."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxad.nn import backbones, convert, efficientnet_lite, torch_checkpoint, weights  # noqa: E402

pytestmark = pytest.mark.parity

STAGES = ("layer1", "layer2", "layer3")
TOLERANCE = 1e-5  # max |jax − torch| / max |torch|, per stage, float32 with "highest" matmul precision.


def _relative_error(got, want) -> float:
  return float(np.abs(np.asarray(got) - want).max() / np.abs(want).max())


def _randomise_batch_norm(model, seed: int) -> None:
  gen = torch.Generator().manual_seed(seed)
  for module in model.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      n = module.num_features
      module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
      module.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
      module.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
      module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def _nchw(x_BxHxWxC: np.ndarray):
  return torch.from_numpy(np.ascontiguousarray(x_BxHxWxC.transpose(0, 3, 1, 2)))


def _nhwc(t) -> np.ndarray:
  return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2"])
def test_resnet_matches_torchvision(arch):
  torch.manual_seed(0)
  model = getattr(torchvision.models, arch)(weights=None).eval()
  _randomise_batch_norm(model, seed=1)
  variables = jax.device_put(convert.convert_state_dict(arch, {k: v.numpy() for k, v in model.state_dict().items()}))
  module = backbones.BACKBONES[arch].build(STAGES, jnp.float32)
  apply = jax.jit(module.apply)
  rng = np.random.default_rng(0)
  for hw in [(64, 64), (72, 40)]:
    images = rng.standard_normal((2, *hw, 3)).astype(np.float32)
    with torch.no_grad():
      x = model.maxpool(model.relu(model.bn1(model.conv1(_nchw(images)))))
      want = {}
      for stage in STAGES:
        x = getattr(model, stage)(x)
        want[stage] = _nhwc(x)
    got = apply(variables, images)
    for stage in STAGES:
      assert got[stage].shape == want[stage].shape
      assert _relative_error(got[stage], want[stage]) <= TOLERANCE, (arch, hw, stage)


def _lukemelas_to_timm(state_dict, model) -> dict:
  """ml-illustrated (lukemelas) keys -> timm keys; block positions read from the timm model itself."""
  positions = [(g, i) for g, stage in enumerate(model.blocks) for i in range(len(stage))]
  top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
  depthwise_separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
  inverted_residual = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                       "_project_conv": "conv_pwl", "_bn2": "bn3"}
  out = {}
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[0] == "_blocks":
      g, i = positions[int(parts[1])]
      names = depthwise_separable if g == 0 else inverted_residual
      new = f"blocks.{g}.{i}.{names[parts[2]]}.{'.'.join(parts[3:])}"
    else:
      new = f"{top[parts[0]]}.{'.'.join(parts[1:])}"
    out[new] = torch.from_numpy(np.array(value))
  return out


def _timm_stages_and_logits(model, x) -> tuple[dict, np.ndarray]:
  """timm EfficientNet forward, keeping the outputs of block groups 1, 2, 4, 6 (strides 4..32)."""
  x = model.bn1(model.conv_stem(x))
  stages = {}
  for g, blocks in enumerate(model.blocks):
    x = blocks(x)
    for name, group in efficientnet_lite.STAGE_GROUPS.items():
      if group == g:
        stages[name] = _nhwc(x)
  return stages, model.forward_head(model.bn2(model.conv_head(x))).numpy()


# Sizes mix even and odd sides: TF "SAME" pads (0, 1) on even and (1, 1) on odd inputs of a stride-2 conv.
@pytest.mark.parametrize("arch, timm_name, padding, bn_eps, hw", [
  ("efficientnet_lite0", "tf_efficientnet_lite0", "same", 1e-3, (64, 67)),
  ("efficientnet_lite2", "tf_efficientnet_lite2", "same", 1e-3, (66, 81)),
  # timm's non-TF variant (symmetric padding, eps 1e-5) with the same weights: the other padding mode.
  ("efficientnet_lite0", "efficientnet_lite0", "symmetric", 1e-5, (72, 40)),
])
def test_efficientnet_lite_matches_timm(arch, timm_name, padding, bn_eps, hw):
  state_dict = torch_checkpoint.load_state_dict(weights.resolve(arch))
  model = timm.create_model(timm_name, pretrained=False).eval()
  model.load_state_dict(_lukemelas_to_timm(state_dict, model), strict=True)
  variables = convert.convert_state_dict(arch, state_dict)
  stage_names = tuple(efficientnet_lite.STAGE_GROUPS)
  module = efficientnet_lite.EfficientNetLite(efficientnet_lite.LITE_CONFIGS[arch], stages=stage_names,
                                              padding=padding, bn_eps=bn_eps)
  images = np.random.default_rng(0).standard_normal((2, *hw, 3)).astype(np.float32)
  with torch.no_grad():
    want, want_logits = _timm_stages_and_logits(model, _nchw(images))
  got, logits = jax.jit(lambda v, x: (module.apply(v, x), module.apply(v, x, method=module.classify)))(
      variables, images)
  for stage in stage_names:
    assert got[stage].shape == want[stage].shape
    assert _relative_error(got[stage], want[stage]) <= TOLERANCE, (arch, hw, stage)
  assert _relative_error(logits, want_logits) <= TOLERANCE


def test_converter_accepts_timm_names():
  state_dict = torch_checkpoint.load_state_dict(weights.resolve("efficientnet_lite0"))
  model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
  timm_state = {k: v.numpy() for k, v in _lukemelas_to_timm(state_dict, model).items()}
  from_timm = jax.tree.leaves_with_path(convert.convert_state_dict("efficientnet_lite0", timm_state))
  from_lukemelas = jax.tree.leaves_with_path(convert.convert_state_dict("efficientnet_lite0", state_dict))
  assert [p for p, _ in from_timm] == [p for p, _ in from_lukemelas]
  for (_, a), (_, b) in zip(from_timm, from_lukemelas):
    np.testing.assert_array_equal(a, b)
