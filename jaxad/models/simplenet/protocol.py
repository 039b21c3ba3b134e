"""SimpleNet's official evaluation options, run outside the shared engine (opt-in, labelled).

* `select_on_test` — the official `SimpleNet.train()`: after every meta-epoch (`gan_epochs`
  passes) the model is evaluated ON THE TEST SET, and the one with the best image AUROC (ties:
  higher pixel AUROC) is kept and reported. This is model selection on the test set
  (DonaldRR/SimpleNet issue #7), so its numbers are optimistic; every row it writes says so in
  its `selection` column, and `selection.json` holds the per-meta-epoch test curve. This mode
  does not checkpoint while training (no resume); it saves the selected model at the end.
* `official_pro` — adds the official non-standard "PRO" (`pro.simplenet_pro`) as the column
  "simplenet_pro (non-standard)"; the standard `aupro` column stays.

The shared engine (`jaxad fit`, `jaxad.run.run_category`) trains and evaluates only the final
model with the standard metrics, so `config.resolve` refuses these flags there. This module
strips them, uses the shared pieces (data loading, frozen features, `loop.Trainer`, evaluator,
reports) and adds the official behaviour. Without the flags it is exactly `jaxad fit`.

  jaxad fit --model simplenet --data /data/mvtec_ad --category bottle \\
      --set select_on_test=true --set official_pro=true

It takes every option of `jaxad fit` (`--model` is always simplenet).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from jaxad import atomic
from jaxad.errors import ConfigError, JaxadError
from jaxad.models.simplenet import config as cfg
from jaxad.models.simplenet.pro import LABEL as PRO_LABEL

FLAGS = ("select_on_test", "official_pro")
LAST_MODEL = "last model"


def selection_label(meta_epochs: int) -> str:
  return f"best of {meta_epochs} on test (official; optimistic)"


def split_flags(overrides: dict[str, str]) -> tuple[dict[str, str], dict[str, bool]]:
  """(overrides without the protocol flags, {flag: bool})."""
  from jaxad import config as config_lib
  parsed = config_lib.apply_overrides(cfg.Static(), {k: v for k, v in overrides.items() if k in FLAGS})
  return {k: v for k, v in overrides.items() if k not in FLAGS}, {k: bool(getattr(parsed, k)) for k in FLAGS}


def _pixel_auroc_or_missing(maps, masks) -> float:
  """Pixel AUROC, or −1 when the masks hold one class only (as the official code reports)."""
  from jaxad import metrics
  masks = np.asarray(masks)
  if not masks.any() or masks.all():
    return -1.0
  return metrics.pixel_auroc(maps, masks)


def is_better(image_auroc: float, pixel_auroc: float, best: tuple[float, float] | None) -> bool:
  """The official rule: higher image AUROC, or equal image AUROC and higher pixel AUROC."""
  if best is None:
    return True
  return image_auroc > best[0] or (image_auroc == best[0] and pixel_auroc > best[1])


def fit_selecting_on_test(method, static, hps_M, train, test, frozen, predict_fn, *, data_seed: int = 0,
                          eval_batch_size: int = 16, log=print):
  """Trains M members meta-epoch by meta-epoch and keeps, per member, the best state on the test set.

  Same data order, keys and compiled step as `jaxad.train.loop.fit` (the last state equals fit's).

  Returns:
    (selected states_M, history: one dict per meta-epoch with per-member image/pixel AUROC).
  """
  import jax
  import jax.numpy as jnp
  from jaxad import metrics
  from jaxad.evaluate import evaluator
  from jaxad.train import loop

  features_fn, frozen_vars = frozen
  sampler = loop.uniform_sampler(len(train), data_seed)
  trainer = loop.Trainer(method, static, len(train), features_fn)
  feats = loop.compute_features(trainer.features, frozen_vars, train.image)
  cache = {"feats": feats, "mask": jnp.asarray(train.mask), "label": jnp.asarray(train.label),
           "is_segmented": jnp.asarray(train.is_segmented)}
  states = trainer.init_states(hps_M, feats[:1])
  best_states = jax.tree.map(jnp.copy, states)  # The train calls donate `states`.
  batch_size = min(static.batch_size, len(train))
  per_meta = static.gan_epochs * trainer.spe
  m = int(np.shape(hps_M.seed)[0])
  best: list[tuple[float, float] | None] = [None] * m
  history = []
  for meta in range(static.meta_epochs):
    step, end = meta * per_meta, (meta + 1) * per_meta
    while step < end:  # runs of one batch length (an epoch's last batch may be smaller)
      k = loop.same_length_steps(step, end - step, batch_size, trainer.spe, len(train))
      idx = jnp.asarray(np.stack([loop.batch_indices(sampler, s, batch_size, trainer.spe)
                                  for s in range(step, step + k)]))
      states, train_metrics = trainer.run_steps(states, hps_M, cache, idx, cached=True)
      step += k
    last_loss = train_metrics["loss"][-1]
    preds = evaluator.predict_split(predict_fn, states, frozen_vars, test.image, eval_batch_size)
    record = {"meta_epoch": meta + 1, "step": int((meta + 1) * per_meta),
              "loss": np.asarray(jax.device_get(last_loss)).tolist(),
              "image_auroc": [], "pixel_auroc": []}
    better = np.zeros(m, bool)
    for i in range(m):
      i_auroc = metrics.image_auroc(preds["score"][i], test.label)
      p_auroc = _pixel_auroc_or_missing(preds["anomaly_map"][i], test.mask)
      better[i] = is_better(i_auroc, p_auroc, best[i])
      if better[i]:
        best[i] = (i_auroc, p_auroc)
      record["image_auroc"].append(i_auroc)
      record["pixel_auroc"].append(p_auroc)
    record["selected"] = better.tolist()
    history.append(record)
    pick = jnp.asarray(better)
    best_states = jax.tree.map(lambda b, s: jnp.where(pick.reshape((-1,) + (1,) * (s.ndim - 1)), s, b),
                               best_states, states)
    log(f"  meta-epoch {meta + 1}/{static.meta_epochs}: test image AUROC {np.round(record['image_auroc'], 4)}, "
        f"pixel AUROC {np.round(record['pixel_auroc'], 4)} (best {[round(b[0], 4) for b in best]})")
  return best_states, history


def _load(run, method, static, category, split, **extra):
  from jaxad.train.data import check_train_labels, load_split
  data = load_split(run.data, category, split, static.image_size, method.preprocessing(static),
                    val_fraction=run.val_fraction, seed=run.data_seed, progress=run.progress,
                    **run.data_options, **extra)
  if split == "train":
    check_train_labels(data, supervised=None, model=method.name, data_spec=run.data, category=category)
  return data


def _run_selecting(run, method, static, hps_M, category, official_pro: bool, log):
  """select_on_test: train with per-meta-epoch test evaluation, then report like `jaxad fit`."""
  import jax
  from jaxad import config as config_lib
  from jaxad.checkpoint import Checkpointer
  from jaxad.evaluate import evaluator, report
  from jaxad.run import _member_hparams, write_validation_statistics
  from jaxad.train.loop import hparams_record

  if run.max_steps is not None:
    raise ConfigError("max_steps does not apply with select_on_test; lower meta_epochs or gan_epochs instead")
  workdir = Path(run.workdir) / (category or "default")
  ckpt = Checkpointer(workdir)
  try:
    if ckpt.latest_step() is not None:
      raise ConfigError(f"{workdir} already holds checkpoints; select_on_test does not resume: use a new --workdir")
    frozen = method.make_frozen(static)  # before the data: missing backbone weights fail at once
    train = _load(run, method, static, category, "train")
    test = _load(run, method, static, category, "test", with_components=True)
    record = {"run": config_lib.to_record(run), "model": method.name, "category": category, "n_train": len(train),
              "static": config_lib.to_record(static),
              "protocol": {"select_on_test": True, "official_pro": official_pro},
              "selection": selection_label(static.meta_epochs),
              "hparams": hparams_record(hps_M)}
    workdir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(workdir / "config.json", json.dumps(record, indent=2))
    features_fn, frozen_vars = frozen
    predict_fn = evaluator.make_predict_fn(method, static, features_fn, tuple(static.image_size))
    log(f"[{category}] training simplenet, selecting the best of {static.meta_epochs} meta-epochs ON THE TEST SET")
    states, history = fit_selecting_on_test(method, static, hps_M, train, test, frozen, predict_fn,
                                            data_seed=run.data_seed, eval_batch_size=run.eval_batch_size, log=log)
    (workdir / "selection.json").write_text(json.dumps(history, indent=2))
    step = history[-1]["step"]
    alive = np.asarray(jax.device_get(states.alive)).tolist()
    ckpt.save(step, states, {"config": record, "step": step, "alive": alive, "total_steps": step})
  finally:
    ckpt.close()

  val = _load(run, method, static, category, "validation", allow_empty=run.val_fraction == 0)
  write_validation_statistics(workdir, predict_fn, states, frozen_vars, val, run.eval_batch_size, log)
  preds = evaluator.predict_split(predict_fn, states, frozen_vars, test.image, run.eval_batch_size)
  rows = evaluator.score_members(preds, test)
  hp_rows = _member_hparams(hps_M)
  selected = [max((h["meta_epoch"] for h in history if h["selected"][m]), default=0) for m in range(len(rows))]
  rows = [{"category": category or "default", "member": m, **hp_rows[m], "selection": record["selection"],
           "selected_meta_epoch": selected[m], **r} for m, r in enumerate(rows)]
  if official_pro:
    _add_pro(rows, preds["anomaly_map"], test.mask)
  report.write_image_scores(workdir, test, preds)
  report.write_tables(rows, workdir)
  report.save_member_overlays(workdir, test, preds, run.overlays)
  return rows


def _add_pro(rows: list[dict], maps_MxNxHxW, masks_NxHxW) -> None:
  from jaxad.models.simplenet.pro import simplenet_pro
  for m, row in enumerate(rows):
    row[PRO_LABEL] = simplenet_pro(maps_MxNxHxW[m], masks_NxHxW)


def _run_last_with_pro(run, method, static, hps_M, category, log):
  """The shared engine's run, then the official PRO of the trained (last) model added to its report."""
  from jaxad.evaluate import evaluator, report
  from jaxad.run import load_trained, run_category

  rows = run_category(run, method, static, hps_M, category, log=log)
  workdir = Path(run.workdir) / (category or "default")
  _, static, _, states, (features_fn, frozen_vars), _ = load_trained(workdir)
  test = _load(run, method, static, category, "test")
  predict_fn = evaluator.make_predict_fn(method, static, features_fn, tuple(static.image_size))
  preds = evaluator.predict_split(predict_fn, states, frozen_vars, test.image, run.eval_batch_size)
  rows = [{**r, "selection": LAST_MODEL} for r in rows]
  _add_pro(rows, preds["anomaly_map"], test.mask)
  report.write_tables(rows, workdir)
  return rows


def run_category(run, method, static, hps_M, category, *, select_on_test: bool = False, official_pro: bool = False,
                 log=print) -> list[dict]:
  """`jaxad.run.run_category` with SimpleNet's official options (module docstring)."""
  from jaxad.run import run_category as engine_run_category

  if select_on_test:
    return _run_selecting(run, method, static, hps_M, category, official_pro, log)
  if official_pro:
    return _run_last_with_pro(run, method, static, hps_M, category, log)
  return engine_run_category(run, method, static, hps_M, category, log=log)


def run(run_cfg, overrides: dict[str, str], log=print) -> list[dict]:
  """Like `jaxad.run.run` for SimpleNet, with the protocol flags taken from `overrides`."""
  from jaxad import config as config_lib
  from jaxad.evaluate import report
  from jaxad.run import build_static, list_categories
  from jaxad.train.state import stack_members

  overrides, flags = split_flags(overrides)
  method, static, hp = build_static("simplenet", overrides)
  config_lib.check_known(overrides, static, hp)
  hps_M = stack_members([hp])
  categories = list(run_cfg.categories) or list_categories(run_cfg.data, run_cfg.data_options) or [None]
  rows = []
  for category in categories:
    rows += run_category(run_cfg, method, static, hps_M, category, log=log, **flags)
  summary = report.with_mean(rows)
  report.write_tables(summary, run_cfg.workdir, stem="summary")
  return summary


def main(argv: list[str] | None = None) -> int:
  from jaxad.cli import fit as fit_cli

  parser = argparse.ArgumentParser(prog="python -m jaxad.models.simplenet.protocol",
                                   description=__doc__.split("\n\n")[0])
  fit_cli.add_common(parser)
  parser.add_argument("--max-steps", type=int, default=None,
                      help="stop after this many steps (not with select_on_test)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  try:
    if args.model not in (None, "simplenet"):
      raise ConfigError(f"this runner is for simplenet only, got --model {args.model}")
    args.model = "simplenet"
    run_cfg, overrides = fit_cli.resolve_run(args)
    updates = {"model": "simplenet"}
    if args.max_steps is not None:
      updates["max_steps"] = args.max_steps
    if args.no_progress:
      updates["progress"] = False
    run_cfg = dataclasses.replace(run_cfg, **updates)
    from jaxad.evaluate.report import markdown_table
    rows = run(run_cfg, overrides)
  except JaxadError as e:
    print(f"simplenet protocol: error: {e}", file=sys.stderr)
    return 2
  print(markdown_table(rows))
  print(f"\nreports, overlays and checkpoints: {run_cfg.workdir}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
