"""EfficientAD building blocks: shapes, decoder sizes, parameter counts, losses, map normalisation, converter."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.errors import ConfigError, WeightsError
from jaxad.models.efficient_ad import config as cfg
from jaxad.models.efficient_ad.convert import convert_efficient_ad, convert_teacher
from jaxad.models.efficient_ad.loss import efficient_ad_losses, hard_feature_loss
from jaxad.models.efficient_ad.model import AutoEncoder, build_networks, decoder_sizes
from jaxad.models.efficient_ad.normalization import (anomaly_map, map_quantiles, mean_std_one_pass,
                                                     mean_std_two_pass, channel_sums)


def _shapes_and_count(net, hw):
  x = jnp.zeros((1, *hw, 3), jnp.float32)
  variables = jax.eval_shape(net.init, jax.random.key(0), x)
  out = jax.eval_shape(net.apply, variables, x)
  return out.shape, sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables))


@pytest.mark.parametrize("size,teacher_count,student_count", [("s", 2_694_144, 4_267_392),
                                                              ("m", 8_026_624, 11_615_488)])
@pytest.mark.parametrize("padding,side", [(False, 56), (True, 64)])
def test_shapes_and_param_counts(size, teacher_count, student_count, padding, side):
  teacher, student, ae = build_networks(size, 384, padding)
  assert _shapes_and_count(teacher, (256, 256)) == ((1, side, side, 384), teacher_count)
  assert _shapes_and_count(student, (256, 256)) == ((1, side, side, 768), student_count)
  assert _shapes_and_count(ae, (256, 256)) == ((1, side, side, 384), 1_096_320)


def test_decoder_sizes_follow_anomalib():
  assert decoder_sizes((256, 256), False) == [(3, 3), (8, 8), (15, 15), (32, 32), (63, 63), (127, 127), (56, 56)]
  assert decoder_sizes((256, 256), True)[-1] == (64, 64)
  assert decoder_sizes((320, 256), False) == [(4, 3), (10, 8), (19, 15), (40, 32), (79, 63), (159, 127), (72, 56)]
  teacher, _, ae = build_networks("s", 8, False)
  assert _shapes_and_count(ae, (320, 256))[0] == (1, 72, 56, 8)
  assert _shapes_and_count(teacher, (320, 256))[0] == (1, 72, 56, 8)


def _numpy_variables(net, x, rng):
  """Random variables of the right shapes without `init` (threefry compiles slowly on CPU; dropout uses rbg)."""
  shapes = jax.eval_shape(net.init, jax.random.key(0), x)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.05, s.shape), jnp.float32), shapes)


def test_dropout_only_in_training():
  ae = AutoEncoder(out_channels=4)
  x = jnp.asarray(np.random.default_rng(1).random((1, 256, 256, 3)), jnp.float32)
  variables = _numpy_variables(ae, x, np.random.default_rng(0))
  apply = jax.jit(ae.apply, static_argnames="deterministic")
  eval_out = apply(variables, x)
  np.testing.assert_array_equal(eval_out, apply(variables, x, deterministic=True))
  train_a = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(2, impl="rbg")})
  train_b = apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(3, impl="rbg")})
  assert not np.allclose(train_a, eval_out) and not np.allclose(train_a, train_b)


def test_hard_loss_uses_exactly_elements_above_quantile():
  values = np.arange(1.0, 11.0, dtype=np.float32)  # 1..10; 0.75-quantile (linear) = 7.75
  rng = np.random.default_rng(0)
  d = rng.permutation(values).reshape(2, 5)
  assert float(jnp.quantile(jnp.asarray(d).ravel(), 0.75, method="linear")) == pytest.approx(7.75)
  assert float(hard_feature_loss(jnp.asarray(d), 0.75)) == pytest.approx((8 + 9 + 10) / 3)
  # Ties at the threshold are included (≥).
  assert float(hard_feature_loss(jnp.asarray([1.0, 5.0, 5.0, 5.0]), 0.5)) == pytest.approx(5.0)
  big = rng.gamma(1.0, size=(1, 7, 9, 33)).astype(np.float32)
  q = np.quantile(big, 0.999, method="linear")
  np.testing.assert_allclose(float(hard_feature_loss(jnp.asarray(big))), big[big >= q].mean(), rtol=1e-6)


def test_losses_and_gradient_through_ae():
  rng = np.random.default_rng(1)
  t, t_aug, a = (jnp.asarray(rng.normal(size=(1, 4, 4, 3)), jnp.float32) for _ in range(3))
  s, s_pen, s_aug = (jnp.asarray(rng.normal(size=(1, 4, 4, 6)), jnp.float32) for _ in range(3))
  total, parts = efficient_ad_losses(t, s, s_pen, t_aug, a, s_aug)
  np.testing.assert_allclose(parts["penalty"], np.mean(np.square(s_pen[..., :3])), rtol=1e-6)
  np.testing.assert_allclose(parts["stae"], np.mean(np.square(a - s_aug[..., 3:])), rtol=1e-6)
  np.testing.assert_allclose(total, parts["st"] + parts["ae"] + parts["stae"], rtol=1e-6)
  grad_a = jax.grad(lambda a_: efficient_ad_losses(t, s, s_pen, t_aug, a_, s_aug)[1]["stae"])(a)
  assert np.abs(grad_a).sum() > 0  # the AE output is not detached in L_STAE


def test_teacher_stats_and_quantiles():
  rng = np.random.default_rng(2)
  batches = [jnp.asarray(rng.normal(3.0, 2.0, size=(2, 5, 5, 4)), jnp.float32) for _ in range(3)]
  sums = [channel_sums(b) for b in batches]
  one = mean_std_one_pass(sum(s[0] for s in sums), sum(s[1] for s in sums), sum(s[2] for s in sums))
  two = mean_std_two_pass(lambda: iter(batches))
  stacked = np.concatenate([np.asarray(b) for b in batches]).reshape(-1, 4)
  for mean, std in (one, two):
    np.testing.assert_allclose(mean, stacked.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, stacked.std(0), rtol=1e-4)
  maps = [jnp.asarray(rng.random((1, 6, 6)), jnp.float32) for _ in range(2)]
  q_a, q_b = map_quantiles(maps)
  flat = np.concatenate([np.ravel(m) for m in maps])
  np.testing.assert_allclose([q_a, q_b], np.quantile(flat, [0.9, 0.995], method="linear"), rtol=1e-6)


def test_anomaly_map_postprocessing_orders():
  map_st = jnp.full((1, 2, 2), 3.0)
  map_ae = jnp.full((1, 2, 2), 5.0)
  quantiles = dict(qa_st=1.0, qb_st=2.0, qa_ae=1.0, qb_ae=3.0)
  # interior: 0.5·0.1·(3−1)/1 + 0.5·0.1·(5−1)/2 = 0.2
  anomalib = anomaly_map(map_st, map_ae, quantiles, (10, 10), postprocess="anomalib")
  nelson = anomaly_map(map_st, map_ae, quantiles, (10, 10), postprocess="nelson")
  np.testing.assert_allclose(anomalib[0, 5, 5], 0.2, rtol=1e-6)
  np.testing.assert_allclose(nelson[0, 5, 5], 0.2, rtol=1e-6)
  # border: anomalib normalises the padded zeros (0.5·0.1·(−1) + 0.5·0.1·(−1/2) = −0.075), nelson pads with 0.
  np.testing.assert_allclose(anomalib[0, 0, 0], -0.075, rtol=1e-6)
  np.testing.assert_allclose(nelson[0, 0, 0], 0.0, atol=1e-7)
  with pytest.raises(ConfigError):
    anomaly_map(map_st, map_ae, quantiles, (10, 10), postprocess="other")


def _random_state_dict(size, channels, rng):
  teacher, student, ae = build_networks(size, channels)
  state = {}
  for prefix, net in (("teacher.", teacher), ("student.", student), ("ae.", ae)):
    params = jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((1, 256, 256, 3)))["params"]
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
      names = [p.key for p in path]
      shape = leaf.shape
      torch_shape = (shape[3], shape[2], shape[0], shape[1]) if names[-1] == "kernel" else shape
      key = prefix + ".".join(names[:-1]) + (".weight" if names[-1] == "kernel" else ".bias")
      state[key] = rng.normal(size=torch_shape).astype(np.float32)
  state["mean_std.mean"] = rng.normal(size=(1, channels, 1, 1)).astype(np.float32)
  state["mean_std.std"] = rng.random((1, channels, 1, 1)).astype(np.float32)
  for q in ("qa_st", "qb_st", "qa_ae", "qb_ae"):
    state[f"quantiles.{q}"] = np.float32(rng.random())
  return state


def test_converter_round_trip_and_errors():
  rng = np.random.default_rng(3)
  state = _random_state_dict("m", 8, rng)
  out = convert_efficient_ad({"model." + k: v for k, v in state.items()})
  assert (out["size"], out["out_channels"]) == ("m", 8)
  np.testing.assert_array_equal(out["student"]["params"]["conv6"]["kernel"],
                                state["student.conv6.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(out["ae"]["params"]["decoder"]["deconv8"]["bias"], state["ae.decoder.deconv8.bias"])
  np.testing.assert_array_equal(out["std"], state["mean_std.std"].ravel())
  assert out["quantiles"]["qb_ae"] == state["quantiles.qb_ae"]
  teacher = convert_teacher({k[len("teacher."):]: v for k, v in state.items() if k.startswith("teacher.")})
  assert teacher["size"] == "m" and set(teacher["params"]["params"]) == {f"conv{i}" for i in range(1, 7)}

  broken = dict(state)
  del broken["ae.encoder.enconv3.bias"]
  broken["student.conv2.weight"] = np.zeros((3, 3, 3, 3), np.float32)
  broken["extra.weight"] = np.zeros(1, np.float32)
  with pytest.raises(WeightsError) as info:
    convert_efficient_ad(broken, source="ckpt.pth")
  err = info.value
  assert err.missing == ["ae.encoder.enconv3.bias"] and err.unexpected == ["extra.weight"]
  assert len(err.misshaped) == 1 and err.misshaped[0].startswith("student.conv2.weight")
  assert "ckpt.pth" in str(err)


def test_config_defaults_and_validation():
  static, hparams = cfg.Static(), cfg.Hparams()
  assert (static.size, static.padding, static.image_size, static.out_channels) == ("s", False, (256, 256), 384)
  assert (hparams.lr, hparams.weight_decay, hparams.p_hard) == (1e-4, 1e-5, 0.999)
  assert cfg.validate(static) is static
  with pytest.raises(ConfigError):
    cfg.validate(cfg.Static(size="l"))
