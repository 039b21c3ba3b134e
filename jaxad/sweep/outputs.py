"""Sweep outputs: one table of every member × category, the best member per category, metric plots.

Files in the sweep's workdir: `sweep_results.{json,csv,md}` (hyperparameters, group, `alive`,
metrics), `sweep_best.{json,csv,md}` and `plots/<field>.png` (every metric against that swept
field). The best member is chosen by a test-split metric: it is a tuning report, not an
unbiased estimate of the chosen setting (the validation split holds normal images only, so it
cannot rank members by AUROC).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from jaxad import atomic
from jaxad.evaluate import report

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


def write(rows: list[dict], fields: list[str], out_dir: str | Path, select: str) -> dict[str, list[Path]]:
  """Writes the results table, the best-per-category table and the plots; returns the paths."""
  out = Path(out_dir)
  paths = {"results": list(report.write_tables(rows, out, stem="sweep_results").values())}
  paths["best"] = list(report.write_tables(best_per_category(rows, select), out, stem="sweep_best").values())
  paths["plots"] = plot_metrics(rows, fields, out / "plots")
  return paths


def plot_metrics(rows: list[dict], fields: list[str], out_dir: str | Path) -> list[Path]:
  """`<out_dir>/<field>.png` for each swept field with several values: one panel per metric with
  every member's value (one colour per category) and the category's mean over the other fields."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

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
