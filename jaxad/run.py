"""fit → validate → test for one method over one or more categories (what `jaxad fit` runs).

Workdir layout: `<workdir>/<category>/` holds checkpoints/, metrics.jsonl, provenance.json,
config.json, validation.json (score statistics of the validation split, used for
thresholds; never the test set), report.{json,csv,md}, test_scores.csv (each member's score and
map maximum per test image) and overlays/*.png; the workdir root
holds summary.{json,csv,md} across categories (and, from `jaxad fit --config` with an
experiment's paper numbers, paper_comparison.{json,md}).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
from pathlib import Path

import numpy as np

from jaxad import atomic, config as config_lib
from jaxad.errors import ConfigError, JaxadError
from jaxad.evaluate import evaluator, report
from jaxad.models import get_method
from jaxad.train import loop
from jaxad.train.state import stack_members


@dataclasses.dataclass
class RunConfig:
  """Everything `jaxad fit` needs besides the method's own Static/Hparams."""

  model: str = "supersimplenet"
  data: str = "embedded"
  # layout options of `read_dataset` (format, normal_dir, abnormal_dir, mask_dir, mask_suffix, normal_test_dir,
  # num_segmented, segmented_percent, supervised): the dataset flags of `jaxad fit`, or an experiment file's run section
  data_options: dict = dataclasses.field(default_factory=dict)
  categories: tuple[str, ...] = ()  # empty: every category of the dataset
  workdir: str = "runs/default"
  data_seed: int = 0
  val_fraction: float = 0.1  # normal training images held out for validation; 0: all train (no threshold)
  max_steps: int | None = None
  chunk: int = 25
  ckpt_every: int = 500
  eval_batch_size: int = 16
  overlays: int = 12
  progress: bool = True
  # {category pattern (fnmatch): {setting: value}}: settings for the categories a pattern matches, over the
  # run's (later patterns win; `--set` wins over both), e.g. SensumSODF's {"softgel_*": {"image_size": (144, 144)}}
  category_settings: dict = dataclasses.field(default_factory=dict)


def list_categories(data: str, data_options: dict | None = None) -> list[str]:
  from jaxad.data.readers import list_categories as _list
  if data == "embedded":
    from jaxad.data.embedded import build_embedded
    from jaxad.data.sources import default_cache_root
    return _list(build_embedded(default_cache_root() / "embedded"), "mvtec")
  if data.startswith("tfds:"):
    raise ConfigError("give --category for TFDS datasets (one builder config per category)")
  return _list(data, **(data_options or {}))


def build_static(model: str, overrides: dict[str, str], base=None, *, check_hparams: bool = True):
  """(method, resolved static, hparams) of `model` with `overrides`; a sweep checks its members' hparams itself."""
  method = get_method(model)
  static = config_lib.apply_overrides(base or method.static_cls(), overrides)
  static = method.resolve(static)
  hp = config_lib.apply_overrides(method.default_hparams(static), overrides)
  if check_hparams:
    method.check_hparams(hp)
  return method, static, hp


def load_splits(run: RunConfig, method, static, category: str | None) -> dict:
  """The train, validation and test splits of one category, preprocessed for `static`.

  With `val_fraction=0` every training image trains (as the SimpleNet and SuperSimpleNet
  references) and, unless the dataset has its own validation folder, validation is None.
  """
  from jaxad.train.data import check_train_labels, load_split  # grain only where splits are read from a dataset
  prep = method.preprocessing(static)
  kw = dict(val_fraction=run.val_fraction, seed=run.data_seed, progress=run.progress, **run.data_options)
  validation = load_split(run.data, category, "validation", static.image_size, prep, allow_empty=run.val_fraction == 0,
                          **kw)
  if validation is None and method.calibrate is not None:
    raise ConfigError(f"{method.name} calibrates on the validation split, so val_fraction must be above 0")
  train = load_split(run.data, category, "train", static.image_size, prep, **kw)
  check_train_labels(train, supervised=getattr(static, "supervised", None), model=method.name, data_spec=run.data,
                     category=category)
  return {"train": train, "validation": validation,
          "test": load_split(run.data, category, "test", static.image_size, prep, with_components=True,
                             original_masks=evaluator.scores_at_original_size(static), **kw)}


def run_category(run: RunConfig, method, static, hps_M, category: str | None, log=print, *, workdir=None,
                 splits: dict | None = None, frozen=None, mesh=None, raise_non_finite: bool = True,
                 shared_features: dict | None = None) -> list[dict]:
  """Trains M members on one category, fits validation statistics, evaluates on test.

  Sweeps (jaxad.sweep) pass their member chunk's `workdir`, the `splits`, `frozen` backbone and cached train
  features (`shared_features`, see `loop.fit`) shared by its chunks, the device `mesh` and
  `raise_non_finite=False` (frozen members are reported).
  """
  label = category or "default"  # a dataset of one category
  workdir = Path(workdir) if workdir is not None else Path(run.workdir) / label
  frozen = frozen or method.make_frozen(static)  # before the data: missing backbone weights fail at once
  splits = splits or load_splits(run, method, static, category)
  train = splits["train"]
  record = {**settings_record(run, method, static, hps_M), "category": category, "n_train": len(train)}

  def start():  # once loop.fit has accepted the folder's checkpoint (a refused rerun changes nothing)
    for stale in workdir.glob("report.*"):  # a report exists only for the run that finished last (sweep resume)
      stale.unlink()
    atomic.write_text(workdir / "config.json", json.dumps(record, indent=2))

  check_same_run(workdir, record)
  log(f"[{label}] training {method.name} ({int(np.shape(hps_M.seed)[0])} member(s)) on {len(train)} images")
  states = loop.fit(method, static, hps_M, train, workdir, data_seed=run.data_seed, max_steps=run.max_steps,
                    chunk=run.chunk, ckpt_every=run.ckpt_every, progress=run.progress, config_record=record,
                    frozen=frozen, mesh=mesh, raise_non_finite=raise_non_finite, on_start=start,
                    shared_features=shared_features)
  features_fn, frozen_vars = frozen
  predict_fn = evaluator.make_predict_fn(method, static, features_fn, tuple(static.image_size), mesh)

  val = splits["validation"]
  if method.calibrate is not None:
    states = method.calibrate(static, states, hps_M, val)
    _save_calibrated(workdir, states)
  write_validation_statistics(workdir, predict_fn, states, frozen_vars, val, run.eval_batch_size, log)

  test = splits["test"]
  log(f"[{label}] testing on {len(test.label)} images")
  preds = evaluator.predict_split(predict_fn, states, frozen_vars, test.image, run.eval_batch_size, run.progress)
  rows = evaluator.score_members(preds, test, method.official_image_scores)
  for m in (m for m, r in enumerate(rows) if not r):
    log(f"[{label}] member {m}: non-finite predictions (its training diverged); no metrics")
  hp_rows = _member_hparams(hps_M)
  rows = [{"category": label, "member": m, **hp_rows[m], **r} for m, r in enumerate(rows)]
  report.save_member_overlays(workdir, test, preds, run.overlays)
  report.write_image_scores(workdir, test, preds)
  report.write_tables(rows, workdir)  # last: report.json marks the run finished (a sweep's resume skips it)
  return rows


def settings_record(run: RunConfig, method, static, hps_M) -> dict:
  """What config.json records of a run's settings (`run_category` adds the category and training-set size)."""
  return {"run": config_lib.to_record(run), **loop.model_record(method, static, hps_M)}


def finished(workdir: Path, run: RunConfig, method, static, hps_M) -> bool:
  """Whether `workdir` holds this run, finished: its report.json exists (written last; a run deletes it when it
  starts) and that run had the same step limit. Checkpoints of another run there are a ConfigError."""
  check_same_run(workdir, settings_record(run, method, static, hps_M))
  if not (workdir / "report.json").exists() or not (workdir / "config.json").exists():
    return False
  return json.loads((workdir / "config.json").read_text())["run"].get("max_steps") == run.max_steps


# which training images a checkpoint saw (not the dataset's path: a moved dataset resumes)
RESUMED_RUN_FIELDS = ("data_options", "data_seed", "val_fraction")


def check_same_run(workdir: Path, record: dict) -> None:
  """ConfigError when `workdir` holds checkpoints of another run (other model, settings, members or training
  data): resuming from them would report that run's model under this run's settings."""
  ckpts = workdir / "checkpoints"
  if not (workdir / "config.json").exists() or not ckpts.is_dir() or not any(ckpts.iterdir()):
    return
  stored = json.loads((workdir / "config.json").read_text())
  want = json.loads(json.dumps(record))
  defaults = config_lib.to_record(RunConfig())  # fields older config.json files lack
  differs = loop.settings_differences(stored, want)
  differs += [f"run.{k}" for k in RESUMED_RUN_FIELDS
              if stored.get("run", {}).get(k, defaults[k]) != want["run"].get(k, defaults[k])]
  if differs:
    raise ConfigError(f"{workdir} holds checkpoints of another run (settings that differ from this run's: "
                      f"{', '.join(differs)}); use another --workdir, or delete that folder to start over")


def _save_calibrated(workdir: Path, states) -> None:
  """Replaces the final checkpoint by the calibrated states (`jaxad test`/`predict` load those)."""
  from jaxad.checkpoint import Checkpointer
  ckpt = Checkpointer(workdir)
  step = ckpt.latest_step()
  ckpt.replace(step, states, {**ckpt.restore_meta(step), "calibrated_on": "validation"})
  ckpt.close()


def write_validation_statistics(workdir: Path, predict_fn, states, frozen_vars, val, batch_size: int, log=print):
  """validation.json (the score thresholds of `predict` and `export`); none without a validation split."""
  if val is None:
    log(f"[{workdir.name}] no validation split (val_fraction=0): predict and export give scores without a threshold")
    return
  val_preds = evaluator.predict_split(predict_fn, states, frozen_vars, val.image, batch_size)
  atomic.write_text(workdir / "validation.json", json.dumps(validation_statistics(val_preds), indent=2))


def validation_statistics(preds: dict) -> dict:
  """Per-member quantiles of validation (normal) image scores and map values: thresholds come from here."""
  out = {}
  with np.errstate(invalid="ignore"):  # a diverged member's non-finite values give NaN quantiles
    for key in ("score", "map_score"):
      v = preds[key]
      out[key] = {f"q{q}": np.quantile(v, q / 100, axis=1).tolist() for q in (50, 90, 99, 100)}
    maps = preds["anomaly_map"].reshape(preds["anomaly_map"].shape[0], -1)
    out["anomaly_map"] = {f"q{q}": np.quantile(maps, q / 100, axis=1).tolist() for q in (50, 99, 99.9)}
  return out


def _member_hparams(hps_M) -> list[dict]:
  fields = {k: np.asarray(v) for k, v in dataclasses.asdict(hps_M).items()}
  m = len(fields["seed"])
  varying = [k for k, v in fields.items() if m > 1 and not np.all(v == v[0])]
  # float32 storage: report the 7 significant digits the value was given with.
  as_py = lambda v: float(f"{v:.7g}") if isinstance(v, float) else v
  return [{k: as_py(fields[k][i].item()) for k in varying} for i in range(m)]


def category_overrides(category_settings: dict, category: str | None) -> dict:
  """The settings of every pattern in `category_settings` that `category` matches, later ones winning."""
  out = {}
  for pattern, values in category_settings.items():
    if category is not None and fnmatch.fnmatchcase(category, pattern):
      out.update(values)
  return out


def check_category_settings(category_settings) -> None:
  """{pattern: {model setting: value}}; run settings (workdir, data, ...) are one per run, so refused."""
  if not isinstance(category_settings, dict) or not all(
      isinstance(k, str) and isinstance(v, dict) for k, v in category_settings.items()):
    raise ConfigError(f"category_settings must map category patterns to dicts of settings, got {category_settings!r}")
  run_keys = {f.name for f in dataclasses.fields(RunConfig)}
  for pattern, values in category_settings.items():
    if set(values) & run_keys:
      raise ConfigError(f"category_settings[{pattern!r}] sets {sorted(set(values) & run_keys)}: run settings hold "
                        "for the whole run; only model settings can differ by category")


def _run_by_category_settings(run_cfg: RunConfig, overrides: dict, hps_list, log) -> list[dict]:
  """`run` once per group of categories with the same category settings, into one workdir and summary."""
  check_category_settings(run_cfg.category_settings)
  categories = list(run_cfg.categories) or list_categories(run_cfg.data, run_cfg.data_options) or [None]
  groups: dict[str, tuple[dict, list]] = {}
  for category in categories:
    settings = category_overrides(run_cfg.category_settings, category)
    groups.setdefault(json.dumps(settings, sort_keys=True, default=str), (settings, []))[1].append(category)
  rows = []
  for settings, group in groups.values():
    part = dataclasses.replace(run_cfg, categories=tuple(c for c in group if c is not None), category_settings={})
    rows += [r for r in run(part, {**overrides, **settings}, hps_list, log) if r.get("category") != "mean"]
  summary = report.with_mean(rows) if len(hps_list or [None]) == 1 else rows
  report.write_tables(summary, run_cfg.workdir, stem="summary")
  return summary


def run(run_cfg: RunConfig, overrides: dict[str, str], hps_list=None, log=print) -> list[dict]:
  """fit + test over the categories; writes per-category reports and the summary; returns all rows."""
  if run_cfg.category_settings:
    return _run_by_category_settings(run_cfg, overrides, hps_list, log)
  if hps_list is None and get_method(run_cfg.model).run is not None:
    return get_method(run_cfg.model).run(run_cfg, overrides, log)
  method, static, hp = build_static(run_cfg.model, overrides)
  config_lib.check_known(overrides, static, hp)
  hps_M = stack_members(hps_list or [hp])
  categories = list(run_cfg.categories) or list_categories(run_cfg.data, run_cfg.data_options) or [None]
  rows, frozen = [], None
  for category in categories:
    done = Path(run_cfg.workdir) / (category or "default")
    if finished(done, run_cfg, method, static, hps_M):
      log(f"[{category or 'default'}] finished earlier: its report is read back (`jaxad test` evaluates it again)")
      rows += json.loads((done / "report.json").read_text())
    else:
      frozen = frozen or method.make_frozen(static)  # the backbone is loaded once for all categories
      rows += run_category(run_cfg, method, static, hps_M, category, log=log, frozen=frozen)
  summary = report.with_mean(rows) if len(hps_list or [hp]) == 1 else rows
  report.write_tables(summary, run_cfg.workdir, stem="summary")
  return summary


def find_run_dir(workdir: str | Path, category: str | None) -> Path:
  """The trained run of `category` under `workdir`; without one, the only category there."""
  root = Path(workdir)
  if not root.is_dir():
    raise JaxadError(f"work directory {root} does not exist" if not root.exists() else f"{root} is not a folder")
  found = sorted(p.parent.name for p in root.glob("*/config.json"))
  if category:
    if not (root / category / "config.json").exists() and found:
      raise JaxadError(f"{root} has no trained category {category!r}; it holds {', '.join(found)}")
    return root / category
  if not found:
    from jaxad.sweep.plan import PLAN_FILE
    hint = (f"; for one member of this sweep, `jaxad extract --workdir {root} --member N --out DIR` makes such a run"
            if (root / PLAN_FILE).exists() else "")
    raise JaxadError(f"no trained category under {root} (no <category>/config.json); give --workdir of a "
                     f"`jaxad fit` run{hint}")
  if len(found) > 1:
    raise JaxadError(f"{root} holds {len(found)} categories ({', '.join(found)}); choose one with --category")
  return root / found[0]


def find_member(workdir: str | Path, category: str | None, member: int) -> tuple[Path, int, int | None]:
  """(category dir, slot on its M axis, sweep member number or None) of `--member` in `--workdir`.

  With a sweep workdir (sweep.json) `member` is the sweep's global member number. In a chunk
  folder of a sweep it is the slot there, and padding slots (copies of another member) are
  refused. Otherwise it is the index on the run's M axis.
  """
  from jaxad.sweep import plan as plan_lib
  from jaxad.sweep.runner import member_location
  root = Path(workdir)
  if (root / plan_lib.PLAN_FILE).exists():
    group_dir, slot = member_location(root, member)
    return find_run_dir(group_dir, category), slot, member
  run_dir = find_run_dir(root, category)
  parent = root.resolve().parent
  if (parent / plan_lib.PLAN_FILE).exists():
    groups = plan_lib.all_groups(read_json(parent / plan_lib.PLAN_FILE))
    group = next((g for g in groups if g.dir != "." and (parent / g.dir).resolve() == root.resolve()), None)
    if group is not None:
      if not 0 <= member < len(group.members):
        what = (f"padding (a copy of sweep member {group.members[-1]})" if 0 <= member < group.slots
                else "not one of its slots")
        raise ConfigError(f"--member {member} of sweep chunk {root} is {what}; that folder holds sweep member(s) "
                          f"{', '.join(map(str, group.members))}: give --workdir {parent} with the sweep's member "
                          f"number, e.g. --member {group.members[0]}")
      return run_dir, member, group.members[member]
  return run_dir, member, None


def output_suffix(run_dir: Path, slot: int, sweep_member: int | None) -> str:
  """"_member<N>" for default output names of a member of a sweep or of a run of several members, else ""."""
  if sweep_member is not None:
    return f"_member{sweep_member}"
  seeds = read_json(run_dir / "config.json").get("hparams", {}).get("seed", [])  # a damaged file: load_trained says
  return f"_member{slot}" if len(seeds) > 1 else ""


def same_path(a: str, b: str) -> bool:
  """Whether two dataset specs name the same dataset (equal, or the same folder from here)."""
  return a == b or Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def read_json(path: Path) -> dict:
  """A run folder's JSON file; a damaged one is reported by name."""
  try:
    return json.loads(Path(path).read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise JaxadError(f"{path} is not valid JSON ({e}); the run folder is damaged") from None


def validation_threshold(category_dir: Path, member: int) -> float | None:
  """Member `member`'s score threshold: the 99th percentile of its validation scores (None without validation.json)."""
  path = Path(category_dir) / "validation.json"
  if not path.exists():
    return None
  try:
    return float(read_json(path)["score"]["q99"][member])
  except (KeyError, IndexError, TypeError):
    raise JaxadError(f"{path} has no score.q99 entry for member {member}; the run folder is damaged") from None


def select_member(states_M, member: int, category_dir: Path):
  """Member `member` of stacked states, still with its M axis (of 1); range-checked."""
  import jax
  m = int(jax.tree.leaves(states_M)[0].shape[0])
  if not 0 <= member < m:
    raise ConfigError(f"--member {member} is out of range: the run in {category_dir} has {m} member(s)")
  return jax.tree.map(lambda x: x[member:member + 1], states_M)


def load_trained(category_dir: str | Path):
  """(method, static, hps_M, states_M, (features_fn, frozen_vars), record) of a finished run."""
  import jax
  import jax.numpy as jnp
  from jaxad.checkpoint import Checkpointer

  category_dir = Path(category_dir)
  cfg_path = category_dir / "config.json"
  if not cfg_path.exists():
    raise JaxadError(f"{category_dir} is not a jaxad run folder (no config.json); give --workdir of a `jaxad fit` run")
  record = read_json(cfg_path)
  missing = [k for k in ("model", "static", "hparams") if k not in record]
  if missing:
    raise JaxadError(f"{cfg_path} lacks {', '.join(map(repr, missing))}; the run folder is damaged")
  method = get_method(record["model"])
  fields = {f.name for f in dataclasses.fields(method.static_cls)}
  static_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in record["static"].items() if k in fields}
  static = method.resolve(method.static_cls(**static_kw))
  hp_fields = record["hparams"]
  m = len(hp_fields["seed"])
  hps_M = stack_members([method.hparams_cls(**{k: v[i] for k, v in hp_fields.items()}) for i in range(m)])
  features_fn, frozen_vars = method.make_frozen(static)
  h, w = static.image_size
  example = jax.jit(features_fn)(frozen_vars, jnp.zeros((1, h, w, 3), jnp.float32))
  n_train = int(record.get("n_train", static.batch_size))
  trainer = loop.Trainer(method, static, n_train, features_fn)
  states = trainer.init_states(hps_M, example)
  ckpt = Checkpointer(category_dir)
  try:
    step = ckpt.latest_step()
    if step is None:
      raise JaxadError(f"no checkpoint in {category_dir / 'checkpoints'}; the run has not saved yet")
    states, _ = ckpt.restore(step, states)
  finally:
    ckpt.close()
  return method, static, hps_M, states, (features_fn, frozen_vars), record
