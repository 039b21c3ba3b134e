"""SimpleNet as a `Method`: frozen features, init, train step, predict (methods.md §2).

The one file that combines front-end, adaptor, noise generator, discriminator, loss and
optimisers. Deviations from DonaldRR/SimpleNet are listed in this package's README.md. An
epoch is ⌈n / batch⌉ steps, the last one smaller, as the official DataLoader (`drop_last=True`:
⌊n / batch⌋ full batches, one compiled shape).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxad.models.method import Method
from jaxad.models.simplenet import config as cfg
from jaxad.models.simplenet.anomaly import fake_features
from jaxad.models.simplenet.loss import truncated_l1
from jaxad.models.simplenet.model import SimpleNetHeads
from jaxad.ops.blur import scipy_gaussian_filter
from jaxad.ops.resize import resize
from jaxad.train import optim
from jaxad.train.state import TrainState


def _model(static: cfg.Static) -> SimpleNetHeads:
  return SimpleNetHeads(dsc_hidden=static.dsc_hidden)


def preprocessing(static: cfg.Static):
  """PIL bilinear resize of the shorter side, center crop; test masks resized like images, then == 1."""
  from jaxad.data.transforms import PreprocessConfig
  return PreprocessConfig(image_resize="pil-bilinear", resize_shorter=static.resize_shorter,
                          mask_resize="pil-bilinear-is-one")


def steps_per_epoch(static: cfg.Static, n_train: int) -> int:
  """⌈n / batch⌉: the official DataLoader keeps an epoch's last, smaller batch (⌊n / batch⌋ with drop_last)."""
  return max(n_train // static.batch_size, 1) if static.drop_last else -(-n_train // static.batch_size)


def total_steps(static: cfg.Static, n_train: int) -> int:
  """meta_epochs × gan_epochs passes over the train set (160 officially)."""
  return static.meta_epochs * static.gan_epochs * steps_per_epoch(static, n_train)


def make_frozen(static: cfg.Static):
  """The frozen backbone + SimpleNet's patch aggregation (unfold 3×3 → upsample → pool to 1536)."""
  from jaxad.nn.features import simplenet_patch_features
  from jaxad.nn.frozen import frozen_backbone

  stages_fn, variables = frozen_backbone(static.backbone, static.layers, static.backbone_weights)

  def features_fn(frozen_vars, images_BxHxWx3):
    stages = stages_fn(frozen_vars, images_BxHxWx3)
    return simplenet_patch_features(stages, layers=static.layers, patchsize=static.patchsize,
                                    pretrain_dim=static.pretrain_embed_dim, target_dim=static.target_embed_dim)

  return features_fn, variables


def _optimizer(hp: cfg.Hparams) -> optax.GradientTransformation:
  """AdamW for the adaptor, Adam with coupled L2 for the discriminator; constant learning rates.

  The official cosine schedule is created but only stepped with `--cos_lr`, which run.sh does not set.
  """
  return optax.multi_transform(
      {"adaptor": optim.torch_adamw(hp.lr_adaptor, hp.wd_adaptor),
       "discriminator": optim.torch_adam(hp.lr_dsc, hp.wd_dsc)},
      lambda params: {k: jax.tree.map(lambda _: k, v) for k, v in params.items()})


def init(static: cfg.Static, key, hp: cfg.Hparams, feats_BxHxWxC, steps_per_epoch_: int) -> TrainState:
  del steps_per_epoch_  # Constant learning rates.
  variables = _model(static).init(key, feats_BxHxWxC[:1], train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                    opt_state=_optimizer(hp).init(params), alive=jnp.ones((), bool))


def forward_train(static: cfg.Static, variables, feats_BxHxWxC, key, noise_std):
  """One training forward pass.

  Returns ({"adapted", "fake", "true_scores", "fake_scores"}, new batch_stats): the adaptor runs
  on the raw features, the noise is added to its output, and the discriminator sees
  cat(true, fake) in train mode (BatchNorm statistics over all 2·B·H·W patches).
  """
  model = _model(static)
  adapted = model.apply(variables, feats_BxHxWxC, method=SimpleNetHeads.adapt)
  fake = fake_features(key, adapted, noise_std)
  scores, updates = model.apply(variables, jnp.concatenate([adapted, fake], axis=0), True,
                                method=SimpleNetHeads.discriminate, mutable=["batch_stats"])
  b = feats_BxHxWxC.shape[0]
  out = dict(adapted=adapted, fake=fake, true_scores=scores[:b], fake_scores=scores[b:])
  return out, updates["batch_stats"]


def train_step(static: cfg.Static, state: TrainState, feats_BxHxWxC, batch, key, hp: cfg.Hparams,
               steps_per_epoch_: int):
  """One Adam/AdamW step of adaptor and discriminator on one batch (labels and masks unused)."""
  del batch, steps_per_epoch_  # Unsupervised: only the (normal) features are used.

  def loss_fn(params):
    out, batch_stats = forward_train(static, {"params": params, "batch_stats": state.batch_stats},
                                     feats_BxHxWxC, key, hp.noise_std)
    loss, parts = truncated_l1(out["true_scores"], out["fake_scores"], hp.margin)
    return loss, (parts, batch_stats)

  (loss, (parts, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = _optimizer(hp).update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  return new_state, dict(loss=loss, grad_norm=optax.tree.norm(grads), **parts)


def patch_scores(static: cfg.Static, state: TrainState, feats_BxHxWxC):
  """−D(adaptor(feats)) on the feature grid (B, H, W): higher = more anomalous."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  return -_model(static).apply(variables, feats_BxHxWxC, train=False)


def predict(static: cfg.Static, state: TrainState, feats_BxHxWxC, image_hw: tuple[int, int]):
  """Score: max of −D over the patch grid (before upsampling); map: bilinear upsample, scipy-style blur."""
  scores_BxHxW = patch_scores(static, state, feats_BxHxWxC)
  up = resize(scores_BxHxW, tuple(image_hw), "bilinear", align_corners=False, channels_last=False)
  anomaly_map = scipy_gaussian_filter(up, static.blur_sigma, static.blur_truncate)
  return {"score": scores_BxHxW.max(axis=(1, 2)), "anomaly_map": anomaly_map,
          "map_score": anomaly_map.max(axis=(1, 2))}


METHOD = Method(
    name="simplenet",
    static_cls=cfg.Static,
    hparams_cls=cfg.Hparams,
    resolve=cfg.resolve,
    default_hparams=cfg.default_hparams,
    check_hparams=cfg.check_hparams,
    preprocessing=preprocessing,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    make_frozen=make_frozen,
    init=init,
    train_step=train_step,
    predict=predict,
    run=lambda run_cfg, overrides, log=print: _protocol_run(run_cfg, overrides, log),
)


def _protocol_run(run_cfg, overrides, log):
  from jaxad.models.simplenet import protocol  # Imports the engine's run module; kept lazy.
  return protocol.run(run_cfg, overrides, log)
