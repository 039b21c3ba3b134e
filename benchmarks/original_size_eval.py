"""Host cost of scoring EfficientAD at each test image's original size (`eval_size=original`).

Usage:  python benchmarks/original_size_eval.py [--images 117] [--side 1024] [--input 256] [--loco]
            [--out benchmarks/results/original_size_eval_cpu.json]

One member's test metrics from synthetic 64×64 grid maps and masks (anomalous images with one
rectangle): `evaluator.original_size_metrics` (resize to --side, pixel metrics over all those
pixels) against the baseline, the default input-size scoring (`metrics.compute_all` on the maps
resized to --input, as `eval_size=input`). Each runs in its own process, which reports its wall
time and peak resident memory (getrusage, so it includes the interpreter and jax, ~0.3 GB).
The defaults are MVTec AD carpet's test split: 117 images of 1024².
With --loco the images are a third good, a third logical and a third structural anomalies, and a third
row adds MVTec LOCO AD's AU-sPRO (`evaluator.loco_au_spros`, one defect channel per anomalous image,
saturation half its area) to the original-size scoring: its own cost is that row against "original".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import types
from pathlib import Path


def _split(n: int, side: int, loco: bool = False):
  import numpy as np
  from jaxad.data.loco_channels import Channel
  rng = np.random.default_rng(0)
  grid = rng.random((n, 64, 64)).astype(np.float32)
  kinds = ["good", "logical_anomalies", "structural_anomalies"] if loco else ["good", ""]
  defect_type = [kinds[i % len(kinds)] for i in range(n)]
  masks, channels = [], []
  for kind in defect_type:
    mask = np.zeros((side, side), bool)
    if kind != "good":
      y, x = rng.integers(0, side - side // 8, 2)
      mask[y:y + side // 13, x:x + side // 17] = True
    masks.append(mask)
    pixels = np.flatnonzero(mask)
    channels.append((Channel(pixels, pixels.size // 2, "box"),) if pixels.size else ())
  label = np.array([kind != "good" for kind in defect_type], np.int32)
  return grid, types.SimpleNamespace(label=label, defect_type=defect_type, original_mask=masks,
                                     original_channels=channels if loco else None)


def _child(mode: str, n: int, side: int, input_side: int, loco: bool) -> None:
  import jax.numpy as jnp
  import numpy as np
  from jaxad import metrics
  from jaxad.evaluate import evaluator
  from jaxad.models.efficient_ad.normalization import resize_grid_map
  from jaxad.ops.resize import resize

  grid, split = _split(n, side, loco)
  if mode == "original":
    split.original_channels = None
  start = time.perf_counter()
  if mode in ("original", "original_spro"):
    row = evaluator.original_size_metrics(grid, split)
    assert ("au_spro" in row) == (mode == "original_spro")
  else:
    maps = np.asarray(resize_grid_map(jnp.asarray(grid), (input_side, input_side)))
    masks = np.stack([np.asarray(resize(m.astype(np.float32), (input_side, input_side), "nearest",
                                        channels_last=False)) > 0.5 for m in split.original_mask])
    metrics.compute_all(maps.max(axis=(1, 2)), split.label, maps, masks)
  seconds = time.perf_counter() - start
  peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux
  print(json.dumps({"mode": mode, "seconds": seconds, "peak_rss_gib": peak_gib}))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--images", type=int, default=117)
  p.add_argument("--side", type=int, default=1024, help="original image side (square)")
  p.add_argument("--input", type=int, default=256, help="network input side (the baseline's scoring size)")
  p.add_argument("--loco", action="store_true", help="MVTec LOCO AD kinds, and a row with its AU-sPRO")
  p.add_argument("--out", default=None, help="JSON output path")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.child:
    _child(args.child, args.images, args.side, args.input, args.loco)
    return
  rows = []
  for mode in ("input", "original") + (("original_spro",) if args.loco else ()):
    cmd = [sys.executable, __file__, "--child", mode, "--images", str(args.images), "--side", str(args.side),
           "--input", str(args.input)] + (["--loco"] if args.loco else [])
    rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
  base = rows[0]
  from jaxad import provenance
  pixels = args.images * args.side ** 2
  result = {"images": args.images, "side": args.side, "input": args.input, "loco": args.loco, "rows": rows,
            "time_ratio": rows[1]["seconds"] / base["seconds"],
            "memory_ratio": rows[1]["peak_rss_gib"] / base["peak_rss_gib"],
            # RSS above the baseline's, per test pixel: what original-size scoring adds.
            "extra_bytes_per_pixel": (rows[1]["peak_rss_gib"] - base["peak_rss_gib"]) * 2**30 / pixels,
            "device": platform.processor() or platform.machine(), "cpus": len(os.sched_getaffinity(0)),
            "provenance": provenance.collect()}
  print(f"{args.images} images, original {args.side}² vs input {args.input}²")
  print("| scoring | seconds | peak RSS (GiB) |\n|---|---|---|")
  for r in rows:
    print(f"| {r['mode']} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} |")
  print(f"original / input: time {result['time_ratio']:.1f}×, peak memory {result['memory_ratio']:.1f}×; "
        f"{result['extra_bytes_per_pixel']:.0f} extra bytes per test pixel")
  if args.loco:
    spro = rows[2]
    result.update(spro_time_ratio=spro["seconds"] / rows[1]["seconds"],
                  spro_memory_ratio=spro["peak_rss_gib"] / rows[1]["peak_rss_gib"],
                  spro_extra_bytes_per_pixel=(spro["peak_rss_gib"] - rows[1]["peak_rss_gib"]) * 2**30 / pixels)
    print(f"original with AU-sPRO / original: time {result['spro_time_ratio']:.2f}×, peak memory "
          f"{result['spro_memory_ratio']:.2f}×; {result['spro_extra_bytes_per_pixel']:.1f} extra bytes per test pixel")
  if args.out:
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
