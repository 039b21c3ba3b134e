"""SimpleNet's train step and patch scores against the official training loop, transcribed in torch.

DonaldRR/SimpleNet is not a package, so the reference is a transcription of its `Projection`
(pre_proj=1), `Discriminator` (dsc_layers=2), `_train_discriminator` and `_predict` (methods.md
§2.3–2.8), with the official optimisers and numbers written out literally: AdamW(lr·0.1 = 1e-4,
torch's default decay 0.01) for the adaptor, Adam(2e-4, weight_decay=1e-5, coupled L2) for the
discriminator, margin 0.5, σ 0.015. Both sides start from the same weights and add the same noise
(jaxad's draw for the step key, handed to torch), so three steps must agree in losses, parameters,
BatchNorm running statistics (momentum 0.1, unbiased variance) and the final scores −D.
This checks jaxad's config defaults against the literals as well as the porting traps (Dense
layout, BatchNorm over cat(true, fake) with torch's running-statistics rule, clip gradients).
The adaptor bias and the discriminator's first bias get no gradient (the BatchNorm after them
removes any shift), so Adam moves them by rounding noise, in both implementations: they are
compared within that noise, and the test asserts that their gradient is zero.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from jaxad.models.simplenet import config as cfg  # noqa: E402
from jaxad.models.simplenet import steps  # noqa: E402
from jaxad.models.simplenet.anomaly import gaussian_noise  # noqa: E402
from jaxad.models.simplenet.loss import truncated_l1  # noqa: E402

pytestmark = pytest.mark.parity

C, HIDDEN, B, H, W = 32, 16, 2, 4, 4
STEPS = 3


class OfficialProjection(torch.nn.Module):
  """pre_proj=1, layer_type=0: one Linear C → C."""

  def __init__(self, c):
    super().__init__()
    self.layers = torch.nn.Sequential()
    self.layers.add_module("0fc", torch.nn.Linear(c, c))

  def forward(self, x):
    return self.layers(x)


class OfficialDiscriminator(torch.nn.Module):
  """dsc_layers=2: Linear → BatchNorm1d → LeakyReLU(0.2) → Linear without bias."""

  def __init__(self, c, hidden):
    super().__init__()
    self.body = torch.nn.Sequential()
    self.body.add_module("block1", torch.nn.Sequential(torch.nn.Linear(c, hidden), torch.nn.BatchNorm1d(hidden),
                                                       torch.nn.LeakyReLU(0.2)))
    self.tail = torch.nn.Linear(hidden, 1, bias=False)

  def forward(self, x):
    return self.tail(self.body(x))


def _t(x):
  return torch.from_numpy(np.array(x, np.float32))


def _load(proj, dsc, params, batch_stats):
  a, d = params["adaptor"]["fc"], params["discriminator"]
  with torch.no_grad():
    proj.layers[0].weight.copy_(_t(a["kernel"]).T)
    proj.layers[0].bias.copy_(_t(a["bias"]))
    lin, bn = dsc.body.block1[0], dsc.body.block1[1]
    lin.weight.copy_(_t(d["fc"]["kernel"]).T)
    lin.bias.copy_(_t(d["fc"]["bias"]))
    bn.weight.copy_(_t(d["bn"]["scale"]))
    bn.bias.copy_(_t(d["bn"]["bias"]))
    bn.running_mean.copy_(_t(batch_stats["discriminator"]["bn"]["mean"]))
    bn.running_var.copy_(_t(batch_stats["discriminator"]["bn"]["var"]))
    dsc.tail.weight.copy_(_t(d["tail"]["kernel"]).T)


def _official_step(proj, dsc, proj_opt, dsc_opt, feats_rows, noise_rows, th=0.5):
  """One iteration of `_train_discriminator` (mix_noise=1) with the given noise."""
  proj.train()
  dsc.train()
  dsc_opt.zero_grad()
  proj_opt.zero_grad()
  true_feats = proj(feats_rows)
  fake_feats = true_feats + noise_rows
  scores = dsc(torch.cat([true_feats, fake_feats]))
  true_scores, fake_scores = scores[:len(true_feats)], scores[len(fake_feats):]
  loss = torch.clip(-true_scores + th, min=0).mean() + torch.clip(fake_scores + th, min=0).mean()
  loss.backward()
  proj_opt.step()
  dsc_opt.step()
  return float(loss.detach())


def test_three_train_steps_and_scores_match_the_official_loop():
  static = cfg.resolve(cfg.Static(pretrain_embed_dim=C, target_embed_dim=C, dsc_hidden=HIDDEN, image_size=(32, 32)))
  hp = cfg.Hparams()
  rng = np.random.default_rng(0)
  feats = [jnp.asarray(rng.normal(size=(B, H, W, C)).astype(np.float32)) for _ in range(STEPS + 1)]
  state = steps.init(static, jax.random.key(0), hp, feats[0], 1)
  initial_kernel = np.asarray(state.params["adaptor"]["fc"]["kernel"])

  def loss(params):
    out, _ = steps.forward_train(static, {"params": params, "batch_stats": state.batch_stats}, feats[0],
                                 jax.random.key(1), hp.noise_std)
    return truncated_l1(out["true_scores"], out["fake_scores"], hp.margin)[0]

  grads = jax.grad(loss)(state.params)
  largest = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads))
  zero_gradient = {"adaptor bias": grads["adaptor"]["fc"]["bias"], "dsc bias": grads["discriminator"]["fc"]["bias"]}
  for name, g in zero_gradient.items():
    assert float(jnp.abs(g).max()) < 1e-5 * largest, name

  proj, dsc = OfficialProjection(C), OfficialDiscriminator(C, HIDDEN)
  _load(proj, dsc, state.params, state.batch_stats)
  lr = 1e-3  # SimpleNet.load's default; run.sh does not set it
  proj_opt = torch.optim.AdamW(proj.parameters(), lr * .1)
  dsc_opt = torch.optim.Adam(dsc.parameters(), lr=0.0002, weight_decay=1e-5)

  step = jax.jit(lambda s, f, k: steps.train_step(static, s, f, None, k, hp, 1))
  for i in range(STEPS):
    key = jax.random.fold_in(jax.random.key(1), i)
    noise = gaussian_noise(key, jnp.zeros((B, H, W, C), jnp.float32), hp.noise_std)
    state, metrics = step(state, feats[i], key)
    ref_loss = _official_step(proj, dsc, proj_opt, dsc_opt, _t(feats[i]).reshape(-1, C), _t(noise).reshape(-1, C))
    assert 0.1 < ref_loss  # the margin is active: a loss of 0 would test nothing
    np.testing.assert_allclose(float(metrics["loss"]), ref_loss, rtol=1e-5, err_msg=f"step {i}")

  a, d = state.params["adaptor"]["fc"], state.params["discriminator"]
  stats = state.batch_stats["discriminator"]["bn"]
  lin, bn = dsc.body.block1[0], dsc.body.block1[1]
  tight = {
      "adaptor kernel": (a["kernel"], proj.layers[0].weight.T), "dsc kernel": (d["fc"]["kernel"], lin.weight.T),
      "bn scale": (d["bn"]["scale"], bn.weight), "bn bias": (d["bn"]["bias"], bn.bias),
      "tail": (d["tail"]["kernel"], dsc.tail.weight.T), "running var": (stats["var"], bn.running_var),
  }
  for name, (ours, ref) in tight.items():
    np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy(), rtol=1e-4, atol=2e-6, err_msg=name)
  # the zero-gradient biases: Adam moves them by rounding noise, at most ~lr per step on each side
  for name, (ours, ref, lr_) in {"adaptor bias": (a["bias"], proj.layers[0].bias, 1e-4),
                                 "dsc bias": (d["fc"]["bias"], lin.bias, 2e-4)}.items():
    np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy(), atol=2 * STEPS * lr_, err_msg=name)
  # the running mean follows those biases' drift (through the first Linear); the variance does not
  np.testing.assert_allclose(np.asarray(stats["mean"]), bn.running_mean.numpy(), atol=2e-3, err_msg="running mean")
  assert np.abs(np.asarray(a["kernel"]) - initial_kernel).max() > 1e-4  # three steps of lr 1e-4 moved the adaptor

  # `_predict`: −D(projection(features)), discriminator in eval mode (running statistics), with the
  # noise-driven biases and running mean aligned to jaxad's
  with torch.no_grad():
    proj.layers[0].bias.copy_(_t(a["bias"]))
    lin.bias.copy_(_t(d["fc"]["bias"]))
    bn.running_mean.copy_(_t(stats["mean"]))
  proj.eval()
  dsc.eval()
  with torch.no_grad():
    ref_scores = -dsc(proj(_t(feats[STEPS]).reshape(-1, C))).reshape(B, H, W).numpy()
  ours = np.asarray(steps.patch_scores(static, state, feats[STEPS]))
  np.testing.assert_allclose(ours, ref_scores, rtol=1e-5, atol=1e-6)
