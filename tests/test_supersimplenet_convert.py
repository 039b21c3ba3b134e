"""SuperSimpleNet checkpoint conversion on synthetic state dicts (official and anomalib key names)."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.errors import WeightsError
from jaxad.models.supersimplenet.convert import (TABLES, StateDictMismatchError, convert_heads,
                                                 load_supersimplenet_checkpoint)
from jaxad.models.supersimplenet.model import SuperSimpleNetHeads

C, SEG_HIDDEN, CLS_HIDDEN = 6, 8, 4
TORCH_SHAPES = {  # official key -> torch shape
    "feature_adaptor.projection.weight": (C, C, 1, 1),
    "feature_adaptor.projection.bias": (C,),
    "discriminator.seg.0.weight": (SEG_HIDDEN, C, 1, 1),
    "discriminator.seg.0.bias": (SEG_HIDDEN,),
    "discriminator.seg.3.weight": (1, SEG_HIDDEN, 1, 1),
    "discriminator.dec_head.0.weight": (CLS_HIDDEN, C + 1, 5, 5),
    "discriminator.dec_head.0.bias": (CLS_HIDDEN,),
    "discriminator.fc_score.weight": (1, 2 * CLS_HIDDEN + 2),
    "discriminator.fc_score.bias": (1,),
    **{f"discriminator.seg.1.{name}": (SEG_HIDDEN,) for name in ("weight", "bias", "running_mean", "running_var")},
    **{f"discriminator.dec_head.1.{name}": (CLS_HIDDEN,) for name in ("weight", "bias", "running_mean",
                                                                      "running_var")},
}
TO_ANOMALIB = {"feature_adaptor.": "adaptor.", "discriminator.seg.": "segdec.seg_head.",
               "discriminator.dec_head.": "segdec.cls_conv.", "discriminator.fc_score.": "segdec.cls_fc."}


def official_state_dict(seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  state = {k: rng.normal(size=s).astype(np.float32) for k, s in TORCH_SHAPES.items()}
  state["discriminator.seg.1.num_batches_tracked"] = np.array(7, np.int64)
  return state


def anomalib_name(key: str) -> str:
  for old, new in TO_ANOMALIB.items():
    if key.startswith(old):
      return new + key[len(old):]
  raise KeyError(key)


def convert(state):
  return convert_heads(state, seg_hidden=SEG_HIDDEN, cls_hidden=CLS_HIDDEN)


def test_tables_cover_every_head_variable():
  assert set(TABLES["official"]) == set(TORCH_SHAPES)
  assert {anomalib_name(k) for k in TORCH_SHAPES} == set(TABLES["anomalib"])


def test_official_layouts_and_values():
  state = official_state_dict()
  variables = convert(state)
  params, stats = variables["params"], variables["batch_stats"]
  np.testing.assert_array_equal(params["adaptor"]["projection"]["kernel"],
                                state["feature_adaptor.projection.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["cls_head"]["conv"]["kernel"][1, 3],
                                state["discriminator.dec_head.0.weight"][:, :, 1, 3].T)
  np.testing.assert_array_equal(params["seg_head"]["conv2"]["kernel"][0, 0, :, 0],
                                state["discriminator.seg.3.weight"][0, :, 0, 0])
  np.testing.assert_array_equal(params["cls_head"]["fc"]["kernel"], state["discriminator.fc_score.weight"].T)
  np.testing.assert_array_equal(params["seg_head"]["bn"]["scale"], state["discriminator.seg.1.weight"])
  np.testing.assert_array_equal(stats["cls_head"]["bn"]["var"], state["discriminator.dec_head.1.running_var"])
  assert "conv2" not in stats["seg_head"] and "bias" not in params["seg_head"]["conv2"]

  # The variables fit the module, and the adaptor is the per-pixel linear map W x + b.
  feats = np.random.default_rng(1).normal(size=(2, 5, 4, C)).astype(np.float32)
  model = SuperSimpleNetHeads(seg_hidden=SEG_HIDDEN, cls_hidden=CLS_HIDDEN)
  adapted = model.apply(variables, jnp.asarray(feats), method=SuperSimpleNetHeads.adapt)
  expected = feats @ state["feature_adaptor.projection.weight"][:, :, 0, 0].T + state["feature_adaptor.projection.bias"]
  np.testing.assert_allclose(np.asarray(adapted), expected, rtol=1e-5, atol=1e-5)
  map_logits, scores = model.apply(variables, jnp.asarray(feats))
  assert map_logits.shape == (2, 5, 4) and scores.shape == (2,)


def test_anomalib_lightning_names_give_the_same_variables():
  state = official_state_dict()
  lightning = {"model." + anomalib_name(k): v for k, v in state.items() if "num_batches" not in k}
  lightning.update({
      "model.segdec.cls_conv.1.num_batches_tracked": np.array(3, np.int64),
      "model.feature_extractor.feature_extractor.feature_extractor.conv1.weight": np.zeros((64, 3, 7, 7)),
      "model.anomaly_map_generator.smoothing.kernel": np.ones((1, 1, 25, 25), np.float32),
      "post_processor._image_threshold": np.array(0.5, np.float32),
  })
  ours, reference = convert(lightning), convert(state)
  flat_ours = {k: v for k, v in _flatten(ours)}
  for key, value in _flatten(reference):
    np.testing.assert_array_equal(flat_ours[key], value)
  assert len(flat_ours) == len(list(_flatten(reference)))


def _flatten(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flatten(value, (*prefix, key))
    else:
      yield (*prefix, key), value


def test_mismatches_are_all_reported():
  state = official_state_dict()
  del state["discriminator.seg.1.running_mean"]
  state["discriminator.dec_head.1.running_var"] = np.ones((CLS_HIDDEN + 1,), np.float32)
  state["discriminator.fc_score.bias"] = np.ones((1,), np.int32)
  state["discriminator.extra.weight"] = np.ones((2,), np.float32)
  with pytest.raises(StateDictMismatchError) as info:
    convert_heads(state, seg_hidden=SEG_HIDDEN, cls_hidden=CLS_HIDDEN, source="weights.pt")
  error = info.value
  assert isinstance(error, WeightsError) and "weights.pt" in str(error)
  assert error.missing == ["discriminator.seg.1.running_mean"]
  assert error.unexpected == ["discriminator.extra.weight"]
  assert sorted(m.split()[0] for m in error.misshaped) == ["discriminator.dec_head.1.running_var",
                                                          "discriminator.fc_score.bias"]


def test_hidden_width_must_match():
  with pytest.raises(StateDictMismatchError) as info:
    convert_heads(official_state_dict(), seg_hidden=2 * SEG_HIDDEN, cls_hidden=CLS_HIDDEN)
  assert any(m.startswith("discriminator.seg.0.weight") for m in info.value.misshaped)


def test_foreign_state_dict_is_refused():
  with pytest.raises(WeightsError, match="no SuperSimpleNet head weights"):
    convert({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)})


def test_load_checkpoint_from_safetensors(tmp_path):
  safetensors_numpy = pytest.importorskip("safetensors.numpy")
  state = {k: v for k, v in official_state_dict().items() if "num_batches" not in k}
  path = tmp_path / "weights.safetensors"
  safetensors_numpy.save_file({anomalib_name(k): v for k, v in state.items()}, str(path))
  variables = load_supersimplenet_checkpoint(path, seg_hidden=SEG_HIDDEN, cls_hidden=CLS_HIDDEN)
  np.testing.assert_array_equal(variables["params"]["cls_head"]["fc"]["bias"], state["discriminator.fc_score.bias"])
  with pytest.raises(WeightsError):
    load_supersimplenet_checkpoint(tmp_path / "missing.pt")
