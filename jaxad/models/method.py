"""The interface between a method and the engine: a frozen record of pure functions.

Every function works on ONE model (no M axis); the engine vmaps `init`, `train_step` and
`predict` over the sweep axis and computes the frozen features once per batch, shared by
all members. `static` is hashable (a jit static argument); `hp` is a pytree of scalars with an int
`seed` (the member's PRNG key) and, optionally, `init_seed` (≥ 0: the init's own key; -1: `seed`'s).

  resolve(static) -> static                       fills derived defaults, validates
  default_hparams(static) -> hp
  check_hparams(hp) -> None                       range checks of one member's scalars (ConfigError)
  preprocessing(static) -> dict                   image size and resize semantics for the data pipeline
  steps_per_epoch(static, n_train) -> int;  total_steps(static, n_train) -> int
  make_frozen(static) -> (features_fn, frozen_vars)   features_fn(frozen_vars, images_BxHxWx3) -> feats
  init(static, key, hp, feats, steps_per_epoch) -> TrainState
  train_step(static, state, feats, batch, key, hp, steps_per_epoch) -> (TrainState, metrics dict)
  predict(static, state, feats, image_hw) -> {"score": (B,), "anomaly_map": (B, H, W), "map_score": (B,)}
      and optionally "grid_map" (B, h, w): a map whose PyTorch-bilinear resize to any size is the anomaly
      map at that size; the evaluator then scores at each test image's original size (EfficientAD's
      `eval_size="original"`, nelson's protocol)
  prepare_train(static, train, data_seed) -> (train, sampler | None)   optional: expands the train
      split (augmented copies, loss weights) and gives sampler(epoch) -> indices of that epoch
  run(run_cfg, overrides, log) -> rows    optional: replaces `jaxad.run.run` for protocols the
      shared fit → validate → test does not cover (SimpleNet's official test-set selection); the
      method's `resolve` refuses those protocols' options, so sweeps take the shared engine
  prepare_state(static, states_M, train) -> states_M   optional: fills data-dependent state that is not
      trained (EfficientAD: the frozen teacher and its channel statistics over the train images)
      before step 0 of a fresh run (a resumed run restores it from the checkpoint)
  step_inputs(static, data_seed) -> stream | None   optional: per-step inputs from outside the train
      split (EfficientAD's penalty images); stream(steps) -> dict of host arrays with a leading
      len(steps) axis, deterministic in (data_seed, step); their entries join train_step's `batch`;
      a `provenance` attribute (dict), if present, goes into the run's provenance.json
  calibrate(static, states_M, hps_M, val) -> states_M   optional: fits post-training statistics on
      the validation split (EfficientAD's map quantiles); the result is saved as the final checkpoint
  official_image_scores(scores_N) -> scores_N   optional: the image scores as the reference evaluation
      ranks them, where that is not the raw score (SuperSimpleNet: float32 sigmoid, then min-max); the
      evaluator then adds image_auroc_official and image_ap_official
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  static_cls: type
  hparams_cls: type
  resolve: Callable
  default_hparams: Callable
  check_hparams: Callable
  preprocessing: Callable
  steps_per_epoch: Callable
  total_steps: Callable
  make_frozen: Callable
  init: Callable
  train_step: Callable
  predict: Callable
  prepare_train: Callable | None = None
  run: Callable | None = None
  prepare_state: Callable | None = None
  step_inputs: Callable | None = None
  calibrate: Callable | None = None
  official_image_scores: Callable | None = None
