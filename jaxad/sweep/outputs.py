"""Sweep outputs: one table of every member × category, the best member per category, metric plots,
and, when seeds are swept, each setting's mean and spread over its seeds and its seeds' ensemble.

Files in the sweep's workdir: `sweep_results.{json,csv,md}` (hyperparameters, group, `alive`,
metrics), `sweep_best.{json,csv,md}`, `sweep_seeds.{json,csv,md}` (only with two or more seeds) and
`plots/<field>.png` (every metric against that swept field). The best member is chosen by a
test-split metric: it is a tuning report, not an unbiased estimate of the chosen setting (the
validation split holds normal images only, so it cannot rank members by AUROC).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from jaxad import atomic, metrics as metrics_lib
from jaxad.evaluate import report

ENSEMBLE_SCORES = dict(zip(report.ENSEMBLE_METRICS, ("score", "map_score")))  # metric → image score it averages
PLOT_METRICS = ("image_auroc", "image_auroc_map_max", "image_f1_max", "pixel_auroc", "pixel_f1_max", "aupro")


def best_per_category(rows: list[dict], metric: str) -> list[dict]:
  """The alive member with the highest finite `metric` in each category (first one on ties)."""
  best: dict[str, dict] = {}
  for row in rows:
    value = row.get(metric)
    if not row.get("alive", True) or not isinstance(value, float) or not math.isfinite(value):
      continue
    current = best.get(row["category"])
    if current is None or value > current[metric]:
      best[row["category"]] = row
  return [{"selected_by": metric, **best[c]} for c in dict.fromkeys(r["category"] for r in rows) if c in best]


def seed_ensemble(members: list[dict], category: str, scores: dict) -> dict[str, float]:
  """Image AUROC of the mean over `members` (one setting's seeds) of their test image scores and of
  their map maxima: the seeds used as one ensemble (M× the inference cost; no test labels used to
  combine). {} unless two or more alive members have finite scores and the test split has both classes."""
  got = [s for r in members if r.get("alive", True) and (s := scores.get((category, r["member"]))) is not None
         and all(np.isfinite(s[c]).all() for c in ENSEMBLE_SCORES.values())]
  if len(got) < 2 or len(set(got[0]["label"].tolist())) < 2:
    return {}
  return {name: metrics_lib.image_auroc(np.mean([s[column] for s in got], axis=0), got[0]["label"])
          for name, column in ENSEMBLE_SCORES.items()}


def over_seeds(rows: list[dict], fields: list[str], select: str | None = None, scores: dict | None = None
               ) -> list[dict]:
  """Each setting's metrics as mean and sample standard deviation (n − 1) over its seeds; [] unless
  `seed` is among `fields` with two or more values.

  A setting is one combination of the other swept fields. Per setting there is a row per category
  and, with several categories, a `mean` row: each seed's mean over the categories, then the mean
  and spread of those over the seeds (the way papers report "mean over categories ± std over
  seeds"). Rows count the setting's `seeds` and how many of them `diverged` (a `mean` row: in any
  category); metrics average the alive members' finite values (a seed without one leaves that
  metric's `mean` row out), and a spread needs two such values. With `select` and two or more
  settings, `best` marks each category's setting with the highest mean `select` over its seeds
  (a choice that, unlike `best_per_category`, does not reward a lucky seed). With `scores`
  ({(category, member): test image scores}, jaxad.sweep.runner.collect_rows), each row also has its seeds'
  `seed_ensemble` AUROCs, `ensemble_image_auroc{,_map_max}` (a `mean` row: their mean over the categories).
  """
  if "seed" not in fields or len({r["seed"] for r in rows}) < 2:
    return []
  setting_fields = [f for f in fields if f != "seed"]
  categories = list(dict.fromkeys(r["category"] for r in rows))
  settings: dict[tuple, list[dict]] = {}
  for row in rows:
    settings.setdefault(tuple(row[f] for f in setting_fields), []).append(row)
  metrics = [m for m in report.METRIC_ORDER if any(isinstance(r.get(m), float) for r in rows)]

  def value(row, metric):
    v = row.get(metric)
    return v if row.get("alive", True) and isinstance(v, float) and math.isfinite(v) else None

  def summary(label: dict, per_seed: dict[str, list[float]], seeds: int, diverged: int) -> dict:
    out = {**label, "seeds": seeds, "diverged": diverged}
    for metric in metrics:
      values = per_seed[metric]
      if values:
        out[metric] = float(np.mean(values))
        if len(values) > 1:
          out[f"{metric}_std"] = float(np.std(values, ddof=1))
    return out

  table = []
  for key, members in settings.items():
    setting = dict(zip(setting_fields, key))
    by_category = {c: [r for r in members if r["category"] == c] for c in categories}
    ensembles = {c: seed_ensemble(sel, c, scores) if scores else {} for c, sel in by_category.items()}
    for c, sel in by_category.items():
      per_seed = {m: [v for r in sel if (v := value(r, m)) is not None] for m in metrics}
      table.append({**summary({**setting, "category": c}, per_seed, len(sel),
                              sum(not r.get("alive", True) for r in sel)), **ensembles[c]})
    if len(categories) > 1:
      seeds = sorted({r["seed"] for r in members})
      per_seed = {}
      for m in metrics:
        cells = [[value(r, m) for r in members if r["seed"] == s] for s in seeds]
        per_seed[m] = [float(np.mean(c)) for c in cells if len(c) == len(categories) and None not in c]
      mean_row = summary({**setting, "category": "mean"}, per_seed, len(seeds),
                         len({r["seed"] for r in members if not r.get("alive", True)}))
      if all(ensembles.values()):
        mean_row.update({k: float(np.mean([e[k] for e in ensembles.values()])) for k in ENSEMBLE_SCORES})
      table.append(mean_row)
  if select and len(settings) > 1:
    for category in dict.fromkeys(r["category"] for r in table):
      group = [r for r in table if r["category"] == category]
      top = max((r for r in group if select in r), key=lambda r: r[select], default=None)
      for r in group:
        r["best"] = r is top
  return table


def seeds_markdown(table: list[dict]) -> str:
  """`over_seeds` rows as a Markdown table with "mean ± std" cells."""
  spreads = {f"{m}_std" for m in report.METRIC_ORDER}
  cells = []
  for row in table:
    cell = {k: v for k, v in row.items() if k not in spreads and k not in report.METRIC_ORDER}
    for metric in (m for m in report.METRIC_ORDER if m in row):
      std = row.get(f"{metric}_std")
      cell[metric] = f"{row[metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")
    cells.append(cell)
  return report.markdown_table(cells)


def write(rows: list[dict], fields: list[str], out_dir: str | Path, select: str, scores: dict | None = None
          ) -> dict[str, list[Path]]:
  """Writes the results table, the best-per-category table, the over-seeds table (when seeds are
  swept; with seed ensembles from `scores`) and the plots; returns the paths."""
  out = Path(out_dir)
  paths = {"results": list(report.write_tables(rows, out, stem="sweep_results").values())}
  paths["best"] = list(report.write_tables(best_per_category(rows, select), out, stem="sweep_best").values())
  seeds = over_seeds(rows, fields, select, scores)
  if seeds:
    paths["seeds"] = list(report.write_tables(seeds, out, stem="sweep_seeds", markdown=seeds_markdown(seeds)).values())
  paths["plots"] = plot_metrics(rows, fields, out / "plots")
  return paths


def plot_metrics(rows: list[dict], fields: list[str], out_dir: str | Path) -> list[Path]:
  """`<out_dir>/<field>.png` for each swept field with several values: one panel per metric with
  every member's value (one colour per category) and the category's mean over the other fields."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  from matplotlib.ticker import MaxNLocator

  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  metrics = [m for m in PLOT_METRICS if any(isinstance(r.get(m), float) for r in rows)]
  categories = list(dict.fromkeys(r["category"] for r in rows))
  paths = []
  for field in fields:
    values = list(dict.fromkeys(r[field] for r in rows))
    if len(values) < 2 or not metrics:
      continue
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    order = sorted(values) if numeric else values
    xpos = {v: (float(v) if numeric else i) for i, v in enumerate(order)}
    cols = min(3, len(metrics))
    n_rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * n_rows), dpi=90)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.9, wspace=0.3, hspace=0.45)
    for i, metric in enumerate(metrics):
      ax = fig.add_subplot(n_rows, cols, i + 1)
      for c, category in enumerate(categories):
        sel = [r for r in rows if r["category"] == category and isinstance(r.get(metric), float)]
        color = f"C{c % 10}"
        ax.scatter([xpos[r[field]] for r in sel], [r[metric] for r in sel], s=12, alpha=0.6, color=color)
        means = [(xpos[v], float(np.mean(ys))) for v in order
                 for ys in [[r[metric] for r in sel if r[field] == v and math.isfinite(r[metric])]] if ys]
        if means:
          ax.plot(*zip(*means), color=color, label=str(category))
      if numeric and min(order) > 0 and max(order) / min(order) >= 100:
        ax.set_xscale("log")
      if not numeric:
        ax.set_xticks(range(len(order)), [str(v) for v in order])
      elif all(isinstance(v, int) for v in order):  # seeds, epochs: no 0.25 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
      ax.set_title(metric, fontsize=9)
      ax.set_xlabel(field, fontsize=8)
      ax.tick_params(labelsize=7)
      ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"metrics against {field} (line: mean over the other swept fields)", fontsize=10)
    path = out / f"{field}.png"
    tmp = atomic.temporary_beside(path)
    fig.savefig(tmp)
    tmp.replace(path)
    paths.append(path)
  return paths
