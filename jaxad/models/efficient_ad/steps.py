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

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxad.errors import ConfigError
from jaxad.models.efficient_ad import config as cfg
from jaxad.models.efficient_ad import normalization as norm
from jaxad.models.efficient_ad.augment import augment_ae_input
from jaxad.models.efficient_ad.loss import efficient_ad_losses
from jaxad.models.efficient_ad.model import build_networks, imagenet_normalize
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


def torch_default_params(key, shapes):
  """PyTorch-default conv init (weight and bias U(±1/√fan_in), fan_in = kh·kw·in) of a params tree
  of shape structs, from ONE threefry draw sliced per leaf: same distribution as Flax's
  per-layer init (model.py), compiled ~4× faster on XLA:CPU, and identical for identical keys."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  fan_in = {}
  for path, leaf in leaves:
    if path[-1].key == "kernel":
      fan_in[tuple(p.key for p in path[:-1])] = int(np.prod(leaf.shape[:-1]))
  total = sum(int(np.prod(leaf.shape)) for _, leaf in leaves)
  u = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
  out, start = [], 0
  for path, leaf in leaves:
    n = int(np.prod(leaf.shape))
    bound = 1.0 / np.sqrt(fan_in[tuple(p.key for p in path[:-1])])
    out.append(u[start:start + n].reshape(leaf.shape) * bound)
    start += n
  return jax.tree_util.tree_unflatten(jax.tree.structure(shapes), out)


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
  shapes = {name: jax.eval_shape(net.init, key, x)["params"] for name, net in
            (("teacher", teacher), ("student", student), ("ae", ae))}
  params = {"student": torch_default_params(k_student, shapes["student"]),
            "ae": torch_default_params(k_ae, shapes["ae"])}
  teacher_zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["teacher"])
  c = static.out_channels
  frozen = {"teacher": teacher_zeros, "mean": jnp.zeros((c,), jnp.float32), "std": jnp.ones((c,), jnp.float32),
            "map_norm": _map_norm(hp)}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=frozen,
                    opt_state=_optimizer(static, hp).init(params), alive=jnp.ones((), bool))


@functools.lru_cache(maxsize=8)
def _teacher_forward(static: cfg.Static):
  return jax.jit(_nets(static)[0].apply)


def teacher_statistics(static: cfg.Static, teacher_variables, images_NxHxWx3: np.ndarray):
  """Channel μ, σ of the teacher outputs over the images (nelson two passes or anomalib Σy, Σy²)."""
  forward = _teacher_forward(static)
  batches = [jnp.asarray(images_NxHxWx3[i:i + _STATS_BATCH]) for i in range(0, len(images_NxHxWx3), _STATS_BATCH)]
  if static.teacher_stats == "anomalib":
    sums = [norm.channel_sums(forward(teacher_variables, x)) for x in batches]
    total, total_sq = sum(s[0] for s in sums), sum(s[1] for s in sums)
    return norm.mean_std_one_pass(total, total_sq, sum(s[2] for s in sums))
  return norm.mean_std_two_pass(lambda: (forward(teacher_variables, x) for x in batches))


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
  return imagenet_normalize(images_uint8.astype(jnp.float32) / 255.0)


def _teacher_norm(static: cfg.Static, frozen: dict, images_BxHxWx3, dtype=jnp.float32):
  out = _nets(static)[0].apply({"params": _cast(frozen["teacher"], dtype)}, images_BxHxWx3.astype(dtype))
  return jax.lax.stop_gradient(norm.normalize_teacher(out.astype(jnp.float32), frozen["mean"], frozen["std"]))


def _cast(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype), tree)


def step_losses(static: cfg.Static, params, frozen: dict, images_BxHxWx3, images_aug_BxHxWx3, penalty_uint8,
                dropout_key, p_hard):
  """(total, parts) of one step for given images, augmented images and penalty images (uint8 or None).

  The teacher runs on [x, x_aug] and the student on [x, x_aug, P] as one batch each (same numbers
  as separate calls, fewer kernel launches); the AE runs in training mode (dropout). The networks
  run in `static.compute_dtype` (their outputs and the losses are float32).
  """
  _, student, ae = _nets(static)
  dtype = jnp.dtype(static.compute_dtype)
  b = images_BxHxWx3.shape[0]
  teacher_all = _teacher_norm(static, frozen, jnp.concatenate([images_BxHxWx3, images_aug_BxHxWx3]), dtype)
  student_in = [images_BxHxWx3, images_aug_BxHxWx3]
  if penalty_uint8 is not None:
    student_in.append(_normalize_uint8(penalty_uint8))
  student_all = student.apply({"params": _cast(params["student"], dtype)},
                              jnp.concatenate(student_in).astype(dtype)).astype(jnp.float32)
  ae_aug = ae.apply({"params": _cast(params["ae"], dtype)}, images_aug_BxHxWx3.astype(dtype), deterministic=False,
                    rngs={"dropout": dropout_key}).astype(jnp.float32)
  penalty = student_all[2 * b:] if penalty_uint8 is not None else None
  return efficient_ad_losses(teacher_all[:b], student_all[:b], penalty, teacher_all[b:], ae_aug,
                             student_all[b:2 * b], p_hard)


def train_step(static: cfg.Static, state: TrainState, feats_BxHxWx3, batch, key, hp: cfg.Hparams,
               steps_per_epoch_: int):
  """One Adam step of student + AE: L_hard + L_pen + L_AE + L_STAE (teacher frozen, AE not detached).

  `batch["penalty"]`: uint8 penalty images from `step_inputs` (required unless penalty="none"); the
  state must have been through `prepare_state` (the teacher and its μ, σ).
  """
  del steps_per_epoch_
  if static.penalty != "none" and "penalty" not in batch:  # trace time: a missing input would drop L_pen
    raise ConfigError(f"EfficientAD with penalty={static.penalty!r} needs batch['penalty'] (uint8 images from "
                      "method.step_inputs(static, data_seed)); set penalty='none' to train without it")
  # threefry draws: under a sweep's vmap each member's equal its run alone (RBG keys' did not)
  k_aug, k_dropout = jax.random.split(key)
  images_aug = augment_ae_input(k_aug, feats_BxHxWx3, hp.aug_min, hp.aug_max)
  loss_fn = lambda params: step_losses(static, params, state.batch_stats, feats_BxHxWx3, images_aug,
                                       batch.get("penalty"), k_dropout, hp.p_hard)
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


@functools.lru_cache(maxsize=8)
def _calibration_fns(static: cfg.Static):
  """jit(vmap) of (state, images) → post-processed maps, and of (maps, hp) → the four quantiles."""
  size = tuple(static.image_size)

  def processed(state, images):
    map_st, map_ae = raw_maps(static, state, images)
    return norm.postprocess_maps(map_st, map_ae, size, postprocess=static.postprocess, pad_maps=_pad_maps(static))

  def quantiles(map_st, map_ae, hp):
    qa_st, qb_st = norm.map_quantiles(map_st, hp.quantile_a, hp.quantile_b)
    qa_ae, qb_ae = norm.map_quantiles(map_ae, hp.quantile_a, hp.quantile_b)
    return dict(qa_st=qa_st, qb_st=qb_st, qa_ae=qa_ae, qb_ae=qb_ae)

  return jax.jit(jax.vmap(processed, in_axes=(0, None))), jax.jit(jax.vmap(quantiles))


def calibrate(static: cfg.Static, states_M: TrainState, hps_M, val, batch_size: int = _STATS_BATCH) -> TrainState:
  """q_a, q_b of the ST and AE maps over the validation images, per member (the quantile inputs
  are the maps as post-processed: resized for "anomalib", raw for "nelson")."""
  fn, quantiles = _calibration_fns(static)
  parts = [jax.device_get(fn(states_M, jnp.asarray(val.image[i:i + batch_size])))
           for i in range(0, len(val.image), batch_size)]
  st = jnp.asarray(np.concatenate([p[0] for p in parts], axis=1))
  ae = jnp.asarray(np.concatenate([p[1] for p in parts], axis=1))

  q = quantiles(st, ae, hps_M)
  frozen = dict(states_M.batch_stats, map_norm=dict(states_M.batch_stats["map_norm"], **q))
  return states_M.replace(batch_stats=frozen)


def predict(static: cfg.Static, state: TrainState, feats_BxHxWx3, image_hw: tuple[int, int]):
  """Combined normalised map at `image_hw` (0.5·ST + 0.5·AE); image score = its maximum.

  With `eval_size="original"` the output adds "grid_map" (B, 64, 64): the padded map before its
  resize, which the evaluator resizes to each test image's original size (nelson's protocol).
  """
  map_st, map_ae = raw_maps(static, state, feats_BxHxWx3)
  mn = state.batch_stats["map_norm"]
  weights = dict(weight_st=mn["weight_st"], weight_ae=mn["weight_ae"], scale=mn["scale"])
  if static.postprocess == "nelson":
    grid = norm.nelson_grid_map(map_st, map_ae, mn, pad_maps=_pad_maps(static), **weights)
    amap = norm.resize_grid_map(grid, tuple(image_hw))
  else:
    grid = None
    amap = norm.anomaly_map(map_st, map_ae, mn, tuple(image_hw), postprocess=static.postprocess,
                            pad_maps=_pad_maps(static), **weights)
  score = amap.max(axis=(1, 2))
  out = {"score": score, "anomaly_map": amap, "map_score": score}
  if static.eval_size == "original":
    out["grid_map"] = grid
  return out


METHOD = Method(
    name="efficient_ad",
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
    prepare_state=prepare_state,
    step_inputs=step_inputs,
    calibrate=calibrate,
)
