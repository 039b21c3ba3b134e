"""Result tables (JSON, CSV, Markdown), per-image score files and heatmap overlay pictures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from jaxad import atomic
from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD

METRIC_ORDER = ("image_auroc", "image_ap", "image_f1_max", "image_auroc_official", "image_ap_official",
                "image_auroc_map_max", "pixel_auroc", "pixel_ap",
                "pixel_f1_max", "aupro", "image_auroc_logical", "image_auroc_structural", "image_auroc_loco",
                "au_spro_logical", "au_spro_structural", "au_spro")
ENSEMBLE_METRICS = ("ensemble_image_auroc", "ensemble_image_auroc_map_max")  # sweep_seeds: AUROC of the seeds' mean
IMAGE_SCORE_COLUMNS = ("member", "file", "defect_type", "label", "score", "map_score")  # write_image_scores


def _columns(rows: list[dict]) -> list[str]:
  keys: list[str] = []
  for row in rows:
    for k in row:
      if k not in keys:
        keys.append(k)
  metric_keys = [c for k in METRIC_ORDER + ENSEMBLE_METRICS if k in keys for c in (k, f"{k}_std")
                 if c in keys]  # metrics last, a spread beside its mean
  return [k for k in keys if k not in metric_keys] + metric_keys


def markdown_table(rows: list[dict], digits: int = 4) -> str:
  cols = _columns(rows)
  fmt = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
  return "\n".join(lines)


def with_mean(rows: list[dict], label_key: str = "category") -> list[dict]:
  """Appends a 'mean' row averaging every numeric column."""
  if len(rows) < 2:
    return rows
  mean = {label_key: "mean"}
  for c in _columns(rows):
    vals = [r[c] for r in rows if isinstance(r.get(c), float)]
    if vals and len(vals) == len(rows):
      mean[c] = float(np.mean(vals))
  return rows + [mean]


def paper_comparison(summary: list[dict], paper: dict) -> list[dict] | None:
  """Rows (metric, paper, jaxad, difference) comparing a run's mean row (its only row for a
  one-category dataset) with an experiment file's `paper` numbers; None without such a row."""
  means = [r for r in summary if r.get("category") == "mean"]
  row = means[0] if means else (summary[0] if len(summary) == 1 else None)
  if row is None:
    return None
  rows = []
  for metric in METRIC_ORDER:
    if metric in paper and isinstance(row.get(metric), float):
      rows.append({"metric": metric, "paper": float(paper[metric]), "jaxad": row[metric],
                   "difference": row[metric] - float(paper[metric])})
  return rows


def write_tables(rows: list[dict], out_dir: str | Path, stem: str = "report", markdown: str | None = None
                 ) -> dict[str, Path]:
  """`<stem>.{csv,md,json}` of `rows`; `markdown` replaces the default Markdown table."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "md": out / f"{stem}.md"}
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=_columns(rows))
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(paths["csv"], text.getvalue())
  atomic.write_text(paths["md"], (markdown_table(rows) if markdown is None else markdown) + "\n")
  atomic.write_text(paths["json"], json.dumps(rows, indent=2))  # last: a run's report.json marks it finished
  return paths


def write_image_scores(out_dir: str | Path, split, preds: dict, stem: str = "test_scores") -> Path:
  """`<stem>.csv`: every member's image score and map maximum on each image of `split`, with the image's
  file, defect type and label; one row per member × image (for per-image analysis and seed ensembles)."""
  n = len(split.label)
  files = split.file_name or [str(i) for i in range(n)]
  kinds = split.defect_type or [""] * n
  text = io.StringIO(newline="")
  writer = csv.writer(text)
  writer.writerow(IMAGE_SCORE_COLUMNS)
  for m, (score_N, map_score_N) in enumerate(zip(np.asarray(preds["score"]), np.asarray(preds["map_score"]))):
    writer.writerows((m, files[i], kinds[i], int(split.label[i]), float(score_N[i]), float(map_score_N[i]))
                     for i in range(n))
  return atomic.write_text(Path(out_dir) / f"{stem}.csv", text.getvalue())


def read_image_scores(path: str | Path) -> dict[int, dict[str, np.ndarray]]:
  """`write_image_scores`' file as {member: {"file", "defect_type", "label", "score", "map_score": arrays}}."""
  with Path(path).open(newline="") as f:
    rows = list(csv.DictReader(f))
  out: dict[int, dict[str, list]] = {}
  for row in rows:
    cols = out.setdefault(int(row["member"]), {c: [] for c in IMAGE_SCORE_COLUMNS[1:]})
    for c in IMAGE_SCORE_COLUMNS[1:]:
      cols[c].append(row[c])
  types = {"file": str, "defect_type": str, "label": np.int32, "score": np.float64, "map_score": np.float64}
  return {m: {c: np.asarray(v, dtype=types[c]) for c, v in cols.items()} for m, cols in out.items()}


def denormalize(image_HxWx3: np.ndarray) -> np.ndarray:
  mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
  return np.clip((image_HxWx3 * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def overlay(image_uint8_HxWx3: np.ndarray, map_HxW: np.ndarray, mask_HxW: np.ndarray | None = None,
            vmin: float | None = None, vmax: float | None = None, alpha: float = 0.5) -> np.ndarray:
  """Jet heatmap blended over the image, ground-truth outline in white; returns uint8 (H, 2W, 3): image | overlay."""
  from matplotlib import colormaps
  lo = float(map_HxW.min()) if vmin is None else vmin
  hi = float(map_HxW.max()) if vmax is None else vmax
  norm = np.clip((map_HxW - lo) / max(hi - lo, 1e-12), 0, 1)
  heat = (colormaps["jet"](norm)[..., :3] * 255).astype(np.float32)
  blend = (1 - alpha) * image_uint8_HxWx3.astype(np.float32) + alpha * heat
  if mask_HxW is not None and mask_HxW.any():
    m = mask_HxW > 0
    edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
    blend[edge] = 255.0
  return np.concatenate([image_uint8_HxWx3, blend.clip(0, 255).astype(np.uint8)], axis=1)


def save_overlays(images_NxHxWx3: np.ndarray, maps_NxHxW: np.ndarray, masks_NxHxW, names: list[str],
                  scores_N: np.ndarray, out_dir: str | Path, max_images: int = 12) -> list[Path]:
  """Writes overlay PNGs for an even sample of the split (anomalous first); a shared colour scale."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  order = np.argsort(-(masks_NxHxW.reshape(len(masks_NxHxW), -1).max(1) if masks_NxHxW is not None else scores_N),
                     kind="stable")
  pick = order[np.linspace(0, len(order) - 1, min(max_images, len(order))).astype(int)]
  vmin, vmax = float(np.min(maps_NxHxW)), float(np.max(maps_NxHxW))
  paths = []
  for i in sorted(set(pick.tolist())):
    img = images_NxHxWx3[i]
    img = denormalize(img) if img.dtype != np.uint8 else img
    pic = overlay(img, maps_NxHxW[i], None if masks_NxHxW is None else masks_NxHxW[i], vmin, vmax)
    safe = names[i].replace("/", "__").rsplit(".", 1)[0]
    path = out / f"{safe}_score{scores_N[i]:.3f}.png"
    Image.fromarray(pic).save(path)
    paths.append(path)
  return paths


def save_member_overlays(out_dir: str | Path, split, preds: dict, max_images: int = 12,
                         folder: str = "overlays") -> None:
  """Overlays of every member's predictions on `split` in `out_dir/folder` (one sub-folder per member when
  M > 1); none, and no folder, when `max_images` is 0."""
  m_count = preds["score"].shape[0]
  for m in range(m_count if max_images > 0 else 0):
    out = Path(out_dir) / folder / (f"member{m}" if m_count > 1 else "")
    save_overlays(split.image, preds["anomaly_map"][m], split.mask, split.file_name, preds["score"][m], out,
                  max_images)
