"""EfficientAD as a `Method`: teacher statistics, train step, map quantiles, predict (methods.md §4).

EfficientAD trains on raw images: its frozen teacher also runs on the augmented image inside
the step, so the engine's "frozen features" are the images themselves (cached on device) and
the teacher lives in the state's non-trained collection (`state.batch_stats`):

  {"teacher": PDN params, "mean": (C,), "std": (C,),
   "map_norm": {qa_st, qb_st, qa_ae, qb_ae, scale, weight_st, weight_ae}}

`prepare_state` loads the teacher and fits μ, σ over the train images before step 0;
`step_inputs` streams the penalty images; `calibrate` fits the map quantiles on the
validation split after training (never the test split). Deviations: package README.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxad.models.efficient_ad import config as cfg
from jaxad.models.efficient_ad import normalization as norm
from jaxad.models.efficient_ad.augment import augment_ae_input
from jaxad.models.efficient_ad.loss import efficient_ad_losses
from jaxad.models.efficient_ad.model import IMAGENET_MEAN, IMAGENET_STD, build_networks
from jaxad.models.method import Method
from jaxad.train import optim
from jaxad.train.state import TrainState

_STATS_BATCH = 16


def _nets(static: cfg.Static):
  return build_networks(static.size, static.out_channels, static.padding, static.dropout)


def preprocessing(static: cfg.Static):
  """nelson: torchvision Resize((256, 256)) on PIL images (= "pil-bilinear"), no crop."""
  from jaxad.data.transforms import PreprocessConfig
  return PreprocessConfig(image_resize=static.image_resize, mask_resize="nearest")


def steps_per_epoch(static: cfg.Static, n_train: int) -> int:
  return max(n_train // static.batch_size, 1)


def total_steps(static: cfg.Static, n_train: int) -> int:
  del n_train  # A fixed number of iterations (70,000), not epochs.
  return static.train_steps


def _images(frozen_vars, images_BxHxWx3):
  del frozen_vars
  return images_BxHxWx3


def make_frozen(static: cfg.Static):
  """The "features" are the images (the teacher runs inside the step, from the state)."""
  del static
  return _images, {}


def _optimizer(static: cfg.Static, hp: cfg.Hparams) -> optax.GradientTransformation:
  """torch Adam with coupled L2 over student + AE; StepLR(int(0.95·steps), 0.1) stepped per iteration."""
  step_size = max(int(static.lr_decay_fraction * static.train_steps), 1)
  return optim.with_schedule(optim.torch_adam(hp.lr, hp.weight_decay),
                             optim.step_factor(step_size, static.lr_decay_gamma))


def _map_norm(hp: cfg.Hparams) -> dict:
  f32 = lambda v: jnp.asarray(v, jnp.float32)
  return {"qa_st": f32(0.0), "qb_st": f32(1.0), "qa_ae": f32(0.0), "qb_ae": f32(1.0), "scale": f32(hp.map_scale),
          "weight_st": f32(hp.weight_st), "weight_ae": f32(hp.weight_ae)}


def init(static: cfg.Static, key, hp: cfg.Hparams, feats_BxHxWx3, steps_per_epoch_: int) -> TrainState:
  """Student and AE with PyTorch-default init; teacher zeros and μ = 0, σ = 1 until `prepare_state`."""
  del steps_per_epoch_
  teacher, student, ae = _nets(static)
  x = feats_BxHxWx3[:1]
  k_student, k_ae = jax.random.split(key)
  params = {"student": student.init(k_student, x)["params"], "ae": ae.init(k_ae, x)["params"]}
  teacher_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(teacher.init, key, x)["params"])
  c = static.out_channels
  frozen = {"teacher": teacher_zeros, "mean": jnp.zeros((c,), jnp.float32), "std": jnp.ones((c,), jnp.float32),
            "map_norm": _map_norm(hp)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=frozen,
                    opt_state=_optimizer(static, hp).init(params), alive=jnp.ones((), bool))


def teacher_statistics(static: cfg.Static, teacher_variables, images_NxHxWx3: np.ndarray):
  """Channel μ, σ of the teacher outputs over the images (nelson two passes or anomalib Σy, Σy²)."""
  teacher = _nets(static)[0]
  forward = jax.jit(lambda v, x: teacher.apply(v, x))
  batches = [jnp.asarray(images_NxHxWx3[i:i + _STATS_BATCH]) for i in range(0, len(images_NxHxWx3), _STATS_BATCH)]
  if static.teacher_stats == "anomalib":
    sums = [norm.channel_sums(forward(teacher_variables, x)) for x in batches]
    total, total_sq = sum(s[0] for s in sums), sum(s[1] for s in sums)
    return norm.mean_std_one_pass(total, total_sq, sum(s[2] for s in sums))
  image_means = jnp.concatenate([forward(teacher_variables, x).mean(axis=(1, 2)) for x in batches])
  mean = image_means.mean(axis=0)
  sq = jnp.concatenate([jnp.square(forward(teacher_variables, x) - mean).mean(axis=(1, 2)) for x in batches])
  return mean, jnp.sqrt(sq.mean(axis=0))


def prepare_state(static: cfg.Static, states_M: TrainState, train) -> TrainState:
  """Loads the teacher (`Static.teacher`) and its μ, σ over the train images into every member."""
  from jaxad.models.efficient_ad.teacher import load_teacher

  variables = load_teacher(static.teacher, static.size, static.out_channels)
  mean, std = teacher_statistics(static, variables, train.image)
  m = int(states_M.step.shape[0])
  tile = lambda x: jnp.broadcast_to(jnp.asarray(x), (m, *jnp.shape(x)))
  frozen = dict(states_M.batch_stats, teacher=jax.tree.map(tile, variables["params"]), mean=tile(mean),
                std=tile(std))
  return states_M.replace(batch_stats=frozen)


def step_inputs(static: cfg.Static, data_seed: int):
  """The penalty image stream (penalty.py), or None for penalty=none."""
  if static.penalty == "none":
    return None
  from jaxad.models.efficient_ad.penalty import PenaltyStream
  return PenaltyStream(static.penalty, static.image_size, static.penalty_pool, data_seed, static.batch_size)


def _normalize_uint8(images_uint8):
  x = images_uint8.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def _teacher_norm(static: cfg.Static, frozen: dict, images_BxHxWx3):
  out = _nets(static)[0].apply({"params": frozen["teacher"]}, images_BxHxWx3)
  return jax.lax.stop_gradient(norm.normalize_teacher(out, frozen["mean"], frozen["std"]))


def train_step(static: cfg.Static, state: TrainState, feats_BxHxWx3, batch, key, hp: cfg.Hparams,
               steps_per_epoch_: int):
  """One Adam step of student + AE: L_hard + L_pen + L_AE + L_STAE (teacher frozen, AE not detached)."""
  del steps_per_epoch_
  _, student, ae = _nets(static)
  images = feats_BxHxWx3
  b = images.shape[0]
  k_aug, k_dropout = jax.random.split(key)
  images_aug = augment_ae_input(k_aug, images, hp.aug_min, hp.aug_max)
  teacher_all = _teacher_norm(static, state.batch_stats, jnp.concatenate([images, images_aug]))
  student_in = [images, images_aug]
  if "penalty" in batch:
    student_in.append(_normalize_uint8(batch["penalty"]))

  def loss_fn(params):
    student_all = student.apply({"params": params["student"]}, jnp.concatenate(student_in))
    ae_aug = ae.apply({"params": params["ae"]}, images_aug, deterministic=False, rngs={"dropout": k_dropout})
    penalty = student_all[2 * b:] if len(student_in) == 3 else None
    return efficient_ad_losses(teacher_all[:b], student_all[:b], penalty, teacher_all[b:], ae_aug,
                               student_all[b:2 * b], hp.p_hard)

  (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = _optimizer(static, hp).update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state)
  return new_state, dict(loss=loss, grad_norm=optax.tree.norm(grads), **parts)


def raw_maps(static: cfg.Static, state: TrainState, images_BxHxWx3):
  """(map_ST, map_AE), each (B, h, w) on the PDN grid, eval mode."""
  _, student, ae = _nets(static)
  teacher_out = _teacher_norm(static, state.batch_stats, images_BxHxWx3)
  student_out = student.apply({"params": state.params["student"]}, images_BxHxWx3)
  ae_out = ae.apply({"params": state.params["ae"]}, images_BxHxWx3)
  return norm.raw_maps(teacher_out, student_out, ae_out)


def _pad_maps(static: cfg.Static) -> bool:
  return static.pad_maps and not static.padding


def calibrate(static: cfg.Static, states_M: TrainState, hps_M, val, batch_size: int = _STATS_BATCH) -> TrainState:
  """q_a, q_b of the ST and AE maps over the validation images, per member (the quantile inputs
  are the maps as post-processed: resized for "anomalib", raw for "nelson")."""
  size = tuple(static.image_size)

  def processed(state, images):
    map_st, map_ae = raw_maps(static, state, images)
    return norm.postprocess_maps(map_st, map_ae, size, postprocess=static.postprocess, pad_maps=_pad_maps(static))

  fn = jax.jit(jax.vmap(processed, in_axes=(0, None)))
  parts = [jax.device_get(fn(states_M, jnp.asarray(val.image[i:i + batch_size])))
           for i in range(0, len(val.image), batch_size)]
  st = jnp.asarray(np.concatenate([p[0] for p in parts], axis=1))
  ae = jnp.asarray(np.concatenate([p[1] for p in parts], axis=1))

  def quantiles(map_st, map_ae, hp):
    qa_st, qb_st = norm.map_quantiles(map_st, hp.quantile_a, hp.quantile_b)
    qa_ae, qb_ae = norm.map_quantiles(map_ae, hp.quantile_a, hp.quantile_b)
    return dict(qa_st=qa_st, qb_st=qb_st, qa_ae=qa_ae, qb_ae=qb_ae)

  q = jax.jit(jax.vmap(quantiles))(st, ae, hps_M)
  frozen = dict(states_M.batch_stats, map_norm=dict(states_M.batch_stats["map_norm"], **q))
  return states_M.replace(batch_stats=frozen)


def predict(static: cfg.Static, state: TrainState, feats_BxHxWx3, image_hw: tuple[int, int]):
  """Combined normalised map at `image_hw` (0.5·ST + 0.5·AE); image score = its maximum."""
  map_st, map_ae = raw_maps(static, state, feats_BxHxWx3)
  mn = state.batch_stats["map_norm"]
  amap = norm.anomaly_map(map_st, map_ae, mn, tuple(image_hw), postprocess=static.postprocess,
                          pad_maps=_pad_maps(static), weight_st=mn["weight_st"], weight_ae=mn["weight_ae"],
                          scale=mn["scale"])
  score = amap.max(axis=(1, 2))
  return {"score": score, "anomaly_map": amap, "map_score": score}


METHOD = Method(
    name="efficient_ad",
    static_cls=cfg.Static,
    hparams_cls=cfg.Hparams,
    resolve=cfg.resolve,
    default_hparams=cfg.default_hparams,
    preprocessing=preprocessing,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    make_frozen=make_frozen,
    init=init,
    train_step=train_step,
    predict=predict,
    prepare_state=prepare_state,
    step_inputs=step_inputs,
    calibrate=calibrate,
)
