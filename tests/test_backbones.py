"""Backbones: stage shapes, converter round trip and error lists, weight loading/caching, and
ImageNet classification with the real EfficientNet-Lite0 weights (no torch needed)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image
from skimage import data

from jaxad.data import transforms
from jaxad.errors import ConfigError, DataError, WeightsError
from jaxad.nn import backbones, convert, efficientnet_lite, torch_checkpoint, weights

STAGES = ("layer1", "layer2", "layer3", "layer4")


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_stage_shapes_and_strides(name, hw=(72, 41)):
  spec = backbones.BACKBONES[name]
  module = spec.build(STAGES, jnp.float32)
  images = jax.ShapeDtypeStruct((2, *hw, 3), jnp.float32)
  out, _ = jax.eval_shape(module.init_with_output, jax.random.key(0), images)
  assert tuple(out) == STAGES
  for stage, feats in out.items():
    stride = spec.stage_strides[stage]
    assert feats.shape == (2, math.ceil(hw[0] / stride), math.ceil(hw[1] / stride), spec.stage_channels[stage])


def test_only_requested_stages_are_built():
  spec = backbones.BACKBONES["wide_resnet50_2"]
  images = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
  params = jax.eval_shape(spec.build(("layer2", "layer3"), jnp.float32).init, jax.random.key(0), images)["params"]
  assert "layer3_5" in params and not any(k.startswith("layer4") or k == "fc" for k in params)
  count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
  assert count == 24_862_528  # methods.md §1.1: conv weights + BN affine up to layer3.


@pytest.mark.parametrize("name", ["tiny_test", "resnet18"])
def test_random_backbone_runs(name):
  module, variables = backbones.load_backbone(name, ("layer2", "layer3"), weights="random")
  images = np.random.default_rng(1).standard_normal((2, 64, 48, 3), np.float32)
  feats = jax.jit(lambda v, x: backbones.apply_backbone(module, v, x, ("layer2", "layer3")))(variables, images)
  channels = backbones.BACKBONES[name].stage_channels
  assert feats["layer2"].shape == (2, 8, 6, channels["layer2"])
  assert feats["layer3"].shape == (2, 4, 3, channels["layer3"])
  assert all(bool(jnp.isfinite(f).all()) and float(jnp.abs(f).max()) > 0 for f in feats.values())


def test_apply_backbone_stops_gradients_and_checks_input():
  module, variables = backbones.load_backbone("tiny_test", ("layer2",))
  images = jnp.asarray(np.random.default_rng(0).standard_normal((1, 32, 32, 3), np.float32))
  grad = jax.grad(lambda x: backbones.apply_backbone(module, variables, x, ("layer2",))["layer2"].sum())(images)
  assert not np.any(np.asarray(grad))
  with pytest.raises(DataError, match="B, H, W, 3"):
    backbones.apply_backbone(module, variables, images[0], ("layer2",))
  with pytest.raises(ConfigError, match="layer3"):
    backbones.apply_backbone(module, variables, images, ("layer3",))


def test_bfloat16_compute_keeps_float32_params():
  module, variables = backbones.load_backbone("tiny_test", ("layer1",), dtype=jnp.bfloat16)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  assert module.apply(variables, jnp.ones((1, 16, 16, 3)))["layer1"].dtype == jnp.bfloat16


# --- converter ---------------------------------------------------------------------------------

def _to_torchvision(variables) -> dict[str, np.ndarray]:
  """Flax ResNet variables -> torchvision state dict (written independently of the converter)."""
  leaf_names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  module_names = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}
  out = {}
  for (_, *path, leaf), value in traverse_util.flatten_dict(variables).items():
    parts = [p.replace("_", ".") if p.startswith("layer") else module_names.get(p, p) for p in path]
    value = np.asarray(value)
    if leaf == "kernel":
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    out[".".join(parts + [leaf_names[leaf]])] = value
  return out


@pytest.fixture(scope="module")
def resnet18_variables():
  module = backbones.BACKBONES["resnet18"].build(STAGES, jnp.float32)
  return jax.tree.map(np.asarray, backbones.random_variables(module, seed=3, method="classify"))


def test_converter_round_trip(resnet18_variables):
  state_dict = _to_torchvision(resnet18_variables)
  assert "layer2.0.downsample.1.running_var" in state_dict and "fc.weight" in state_dict
  state_dict["bn1.num_batches_tracked"] = np.array(7)
  converted = convert.convert_state_dict("resnet18", state_dict)
  expected = traverse_util.flatten_dict(resnet18_variables)
  got = traverse_util.flatten_dict(converted)
  assert got.keys() == expected.keys()
  for key in expected:
    np.testing.assert_array_equal(got[key], expected[key])
  headless = convert.convert_state_dict("resnet18", {k: v for k, v in state_dict.items() if not k.startswith("fc.")},
                                        head=False)
  assert "fc" not in headless["params"] and "layer4_1" in headless["params"]


def test_converter_lists_every_mismatch(resnet18_variables):
  state_dict = _to_torchvision(resnet18_variables)
  del state_dict["layer1.0.conv1.weight"], state_dict["layer3.1.bn2.running_var"]
  state_dict["extra.weight"] = np.zeros(3, np.float32)
  state_dict["layer4.9.conv1.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  state_dict["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
  state_dict["fc.bias"] = np.zeros((10,), np.float32)
  with pytest.raises(convert.StateDictMismatchError) as info:
    convert.convert_state_dict("resnet18", {f"module.{k}": v for k, v in state_dict.items()}, source="ckpt.pth")
  err = info.value
  assert isinstance(err, WeightsError)
  assert err.missing == ["layer1.0.conv1.weight", "layer3.1.bn2.running_var"]
  assert err.unexpected == ["extra.weight", "layer4.9.conv1.weight"]
  assert [m.split()[0] for m in err.misshaped] == ["conv1.weight", "fc.bias"]
  message = str(err)
  assert "ckpt.pth" in message and "(64, 3, 7, 7)" in message
  assert all(k in message for k in err.missing + err.unexpected)


def test_converter_rejects_unknown_arch():
  with pytest.raises(WeightsError, match="no converter"):
    convert.convert_state_dict("vgg16", {})


# --- loading, caching -------------------------------------------------------------------------

def test_load_backbone_converts_once_and_caches(tmp_path):
  module, variables = backbones.load_backbone("efficientnet_lite0", ("layer1",), cache_dir=tmp_path)
  assert set(variables["params"]) == {"conv_stem", "bn_stem", "blocks_0_0", "blocks_1_0", "blocks_1_1"}
  cached = tmp_path / "weights" / "converted" / "efficientnet_lite0.safetensors"
  tree, meta = weights.load_converted(cached)
  assert meta["source_sha256"] == weights.KNOWN_WEIGHTS["efficientnet_lite0"].sha256
  assert meta["arch"] == "efficientnet_lite0" and "classifier" in tree["params"]
  tree["params"]["conv_stem"]["kernel"] = tree["params"]["conv_stem"]["kernel"] * 0 + 0.5
  weights.save_converted(tree, cached, source_sha256=meta["source_sha256"], source_name="efficientnet_lite0",
                         extra_meta={"arch": "efficientnet_lite0"})
  _, from_cache = backbones.load_backbone("efficientnet_lite0", ("layer1",), cache_dir=tmp_path)
  assert float(from_cache["params"]["conv_stem"]["kernel"][0, 0, 0, 0]) == 0.5  # read from the cache
  _, explicit = backbones.load_backbone("efficientnet_lite0", ("layer1",), weights=cached)
  assert float(explicit["params"]["conv_stem"]["kernel"][0, 0, 0, 0]) == 0.5


def test_load_backbone_errors(tmp_path):
  with pytest.raises(ConfigError, match="unknown backbone"):
    backbones.load_backbone("vgg", cache_dir=tmp_path)
  with pytest.raises(ConfigError, match="stages"):
    backbones.load_backbone("resnet18", ("layer5",), cache_dir=tmp_path)
  with pytest.raises(WeightsError, match="no weights are registered"):
    backbones.load_backbone("resnet50", cache_dir=tmp_path)
  with pytest.raises(WeightsError, match="are for 'efficientnet_lite0'"):
    backbones.load_backbone("efficientnet_lite2", weights="efficientnet_lite0", cache_dir=tmp_path)
  with pytest.raises(WeightsError, match="jaxad weights download"):
    backbones.load_backbone("wide_resnet50_2", cache_dir=tmp_path)
  with pytest.raises(WeightsError, match="neither an existing file"):
    backbones.load_backbone("resnet18", weights=tmp_path / "nothing.pth", cache_dir=tmp_path)
  lite2 = weights.resolve("efficientnet_lite2")
  with pytest.raises(convert.StateDictMismatchError, match="does not match efficientnet_lite0"):
    backbones.load_backbone("efficientnet_lite0", weights=lite2, cache_dir=tmp_path)


# --- real EfficientNet-Lite0 weights -------------------------------------------------------------

@pytest.fixture(scope="module")
def lite0_variables():
  state_dict = torch_checkpoint.load_state_dict(weights.resolve("efficientnet_lite0"))
  return state_dict, convert.convert_state_dict("efficientnet_lite0", state_dict)


@pytest.fixture(scope="module")
def images_224():
  """chelsea (cat), coffee (espresso), astronaut, rocket: RGB in [0, 1], bilinear-resized to 224×224."""
  images = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
  resized = [np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR)) for img in images]
  return np.stack(resized).astype(np.float32) / 255.0


def _normalise(images, mean, std):
  return (images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def test_lite0_classifies_real_images(lite0_variables, images_224):
  _, variables = lite0_variables
  spec = backbones.BACKBONES["efficientnet_lite0"]
  images = _normalise(images_224[:2], spec.input_mean, spec.input_std)
  probs = {}
  for padding in ("same", "symmetric"):
    module = efficientnet_lite.EfficientNetLite(efficientnet_lite.LITE_CONFIGS["efficientnet_lite0"], padding=padding)
    logits = jax.jit(lambda v, x, m=module: m.apply(v, x, method=m.classify))(variables, images)
    probs[padding] = np.asarray(jax.nn.softmax(logits))
  cat, coffee = probs["same"]
  assert 281 <= int(np.argmax(cat)) <= 285  # tabby / tiger cat / Persian / Siamese / Egyptian cat
  assert {967, 968} & set(np.argsort(-coffee)[:3].tolist())  # espresso / cup
  # The TF-trained weights want TF "SAME" padding: more confident on the true classes than symmetric.
  true_same = probs["same"][0, 281:286].sum() * probs["same"][1, 967:969].sum()
  true_symmetric = probs["symmetric"][0, 281:286].sum() * probs["symmetric"][1, 967:969].sum()
  assert true_same > true_symmetric


def test_lite0_expects_tf_input_normalisation(lite0_variables, images_224):
  """Stem activations on natural images match the stem BN's running variance for TF's (x·255−127)/128,
  and are ~3× too large with the ImageNet mean/std."""
  state_dict, variables = lite0_variables
  running_var = state_dict["_bn0.running_var"]
  alive = running_var > 1e-3
  kernel = variables["params"]["conv_stem"]["kernel"]

  def log_var_ratio(mean, std):
    x = _normalise(images_224, mean, std)
    y = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return float(np.mean(np.log(np.asarray(y.var(axis=(0, 1, 2)))[alive] / running_var[alive])))

  tf_style = log_var_ratio(backbones.TF_LITE_MEAN, backbones.TF_LITE_STD)
  imagenet = log_var_ratio(transforms.IMAGENET_MEAN, transforms.IMAGENET_STD)
  assert abs(tf_style) < 0.6 and imagenet > 1.0
