"""SuperSimpleNet as a `Method`: frozen features, init, train step, predict (methods.md §3).

The one file that combines model, anomaly generator, loss and optimiser.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxad.models.method import Method
from jaxad.models.supersimplenet import config as cfg
from jaxad.models.supersimplenet.anomaly import duplicate, generate_anomalies
from jaxad.models.supersimplenet.loss import ssn_loss
from jaxad.models.supersimplenet.model import SuperSimpleNetHeads
from jaxad.ops.blur import torchvision_gaussian_blur
from jaxad.ops.resize import resize
from jaxad.train import optim
from jaxad.train.state import TrainState


def _model(static: cfg.Static) -> SuperSimpleNetHeads:
  return SuperSimpleNetHeads(adapt_cls_features=static.adapt_cls_features, stop_grad=static.stop_grad,
                             seg_hidden=static.seg_hidden, cls_hidden=static.cls_hidden)


def preprocessing(static: cfg.Static):
  """Official: OpenCV bilinear (= torch bilinear, uint8 rounding), nearest masks; anomalib: antialias."""
  from jaxad.data.transforms import PreprocessConfig
  image_resize = "torch-bilinear-antialias" if static.image_antialias else "cv2-bilinear"
  return PreprocessConfig(image_resize=image_resize, mask_resize="nearest")


def steps_per_epoch(static: cfg.Static, n_train: int) -> int:
  """⌈n / batch⌉: the official DataLoader keeps an epoch's last, smaller batch (⌊n / batch⌋ with drop_last)."""
  return max(n_train // static.batch_size, 1) if static.drop_last else -(-n_train // static.batch_size)


def total_steps(static: cfg.Static, n_train: int) -> int:
  return static.epochs * steps_per_epoch(static, n_train)


def make_frozen(static: cfg.Static):
  """The frozen backbone + upscaling front-end (layer2 and layer3 at 2× layer2's grid)."""
  from jaxad.nn.features import supersimplenet_features
  from jaxad.nn.frozen import frozen_backbone

  stages_fn, variables = frozen_backbone(static.backbone, static.layers, static.backbone_weights)

  def features_fn(frozen_vars, images_BxHxWx3):
    stages = stages_fn(frozen_vars, images_BxHxWx3)
    return supersimplenet_features(stages, layers=tuple(static.layers), align_corners=static.feature_align_corners)

  return features_fn, variables


def _optimizer(static: cfg.Static, hp: cfg.Hparams, steps_per_epoch_: int) -> optax.GradientTransformation:
  groups = optax.multi_transform(
      {"adaptor": optim.torch_adamw(hp.lr_adaptor, hp.wd_adaptor),
       "heads": optim.torch_adamw(hp.lr_heads, hp.wd_heads)},
      lambda params: {k: jax.tree.map(lambda _: "adaptor" if k == "adaptor" else "heads", v)
                      for k, v in params.items()})
  milestones = [int(f * static.epochs) for f in static.lr_milestones]
  tx = optim.with_schedule(groups, optim.multistep_factor(milestones, static.lr_gamma, steps_per_epoch_))
  if static.clip_grad_norm:
    tx = optax.chain(optax.clip_by_global_norm(static.clip_grad_norm), tx)
  return tx


def prepare_train(static: cfg.Static, train, data_seed: int):
  """Supervised settings expand the split and sample balanced epochs (supervised.py)."""
  if not static.supervised:
    return train, None
  from jaxad.models.supersimplenet import supervised
  return supervised.prepare_train(static, train, data_seed)


def init(static: cfg.Static, key, hp: cfg.Hparams, feats_BxHxWxC, steps_per_epoch_: int) -> TrainState:
  variables = _model(static).init(key, feats_BxHxWxC[:1], train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables["batch_stats"],
                    opt_state=_optimizer(static, hp, steps_per_epoch_).init(params), alive=jnp.ones((), bool))


def downsample_masks(masks_BxHxW, size, align_corners: bool):
  """Bilinear resize to the feature grid, then ≥ 0.5 → 1 (DestSeg's downsampling)."""
  small = resize(masks_BxHxW.astype(jnp.float32), size, "bilinear", align_corners=align_corners, channels_last=False)
  return (small >= 0.5).astype(jnp.float32)


def train_step(static: cfg.Static, state: TrainState, feats_BxHxWxC, batch, key, hp: cfg.Hparams,
               steps_per_epoch_: int):
  model = _model(static)
  grid = feats_BxHxWxC.shape[1:3]
  masks = downsample_masks(batch["mask"], grid, static.mask_align_corners)
  labels = batch["label"].astype(jnp.float32)
  seg = batch.get("is_segmented")
  seg = None if seg is None else duplicate(seg.astype(jnp.float32))
  weights = batch.get("loss_weight")
  if weights is not None:
    weights = duplicate(resize(weights, grid, "bilinear", align_corners=True, channels_last=False))

  dtype = jnp.dtype(static.compute_dtype)  # the networks' dtype; anomalies, losses and statistics are float32

  def loss_fn(params):
    variables = {"params": jax.tree.map(lambda p: p.astype(dtype), params), "batch_stats": state.batch_stats}
    adapted = model.apply(variables, feats_BxHxWxC.astype(dtype), method=SuperSimpleNetHeads.adapt)
    noised_feats, noised_adapted, masks2, labels2 = generate_anomalies(
        key, None if static.adapt_cls_features else feats_BxHxWxC, adapted.astype(jnp.float32), masks, labels,
        noise_std=hp.noise_std, perlin_threshold=hp.perlin_threshold, overlap=static.overlap,
        p_empty=static.perlin_p_empty, rescale_if_empty=static.perlin_rescale_if_empty)
    cls_feats = noised_adapted if static.adapt_cls_features else noised_feats
    (map_logits, score_logits), updates = model.apply(
        variables, noised_adapted.astype(dtype), cls_feats.astype(dtype), True, method=SuperSimpleNetHeads.segdec,
        mutable=["batch_stats"])
    map_logits, score_logits = map_logits.astype(jnp.float32), score_logits.astype(jnp.float32)
    loss, parts = ssn_loss(map_logits, score_logits, masks2, labels2, margin=hp.trunc_margin, gamma=hp.focal_gamma,
                           is_segmented_N=seg, pixel_weights_NxHxW=weights)
    return loss, (parts, updates["batch_stats"])

  (loss, (parts, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  tx = _optimizer(static, hp, steps_per_epoch_)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state)
  metrics = dict(loss=loss, grad_norm=optax.tree.norm(grads), **parts)
  return new_state, metrics


def predict(static: cfg.Static, state: TrainState, feats_BxHxWxC, image_hw: tuple[int, int]):
  """Map: logits → bilinear upsample → torchvision blur (25, σ 4); score: the cls logit.

  The official outputs are the sigmoids of these. jaxad keeps the logits: sigmoid saturates to
  exactly 1.0 in float32 for logits above ~16.6, which turns confident rankings into ties, while
  every ranking metric is otherwise unchanged by the monotone sigmoid (`official_image_scores`
  gives the official ranking of the image scores, reported alongside).
  """
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  map_logits, score_logits = _model(static).apply(variables, feats_BxHxWxC, train=False)
  up = resize(map_logits, image_hw, "bilinear", align_corners=False, channels_last=False)
  anomaly_map = torchvision_gaussian_blur(up, static.blur_kernel, static.blur_sigma)
  return {"score": score_logits, "anomaly_map": anomaly_map, "map_score": anomaly_map.max(axis=(1, 2))}


def official_image_scores(scores_N: np.ndarray) -> np.ndarray:
  """SuperSimpleNet's official image scores: float32 sigmoid of the logits, min-max normalised over the
  test set in float32 (eval.py). Saturated logits (above ~16.6) all become 1.0, so they tie."""
  x = np.asarray(scores_N, np.float32)
  one = np.float32(1)
  with np.errstate(over="ignore"):  # exp(-x) → inf for very negative logits: sigmoid 0, as torch
    s = one / (one + np.exp(-x))
  lo, hi = s.min(), s.max()
  return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)  # one value: all tie (torch: NaN)


METHOD = Method(
    name="supersimplenet",
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
    prepare_train=prepare_train,
    official_image_scores=official_image_scores,
)

