"""Times every jaxad.metrics function on N random 256×256 anomaly maps (default 1,000 = 65 M pixels).

Maps are smooth (32×32 noise upsampled bilinearly, like real patch-based maps) with raised
elliptical blobs; half of the images are anomalous with 1-4 blobs each. Prints a table and
writes JSON (device, versions, settings, wall and CPU seconds and value per metric) to --out.
The metrics are single-threaded numpy, so CPU seconds are the better figure on a busy machine.

  python benchmarks/metrics_bench.py [--num-images 1000] [--size 256] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
import scipy

import jaxad
from jaxad import metrics
from jaxad.ops.resize import resize_matrix


def make_data(num_images: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns (maps_NxHxW float32, masks_NxHxW bool)."""
  rng = np.random.default_rng(seed)
  up = resize_matrix(32, size).astype(np.float32)
  noise = rng.random((num_images, 32, 32), dtype=np.float32)
  maps = np.einsum("hi,nij,wj->nhw", up, noise, up)
  masks = np.zeros(maps.shape, bool)
  yy, xx = np.mgrid[:size, :size]
  for i in range(num_images // 2):
    for _ in range(rng.integers(1, 5)):
      cy, cx = rng.uniform(0, size, 2)
      ry, rx = rng.uniform(size / 64, size / 8, 2)
      masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    maps[i][masks[i]] += np.float32(0.5)
  return maps, masks


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-images", type=int, default=1000, help="number of maps")
  parser.add_argument("--size", type=int, default=256, help="map height and width")
  parser.add_argument("--seed", type=int, default=0, help="data seed")
  parser.add_argument("--out", default="benchmarks/results/metrics.json", help="JSON output path")
  args = parser.parse_args()

  maps, masks = make_data(args.num_images, args.size, args.seed)
  scores = maps.reshape(len(maps), -1).max(1)
  labels = masks.any((1, 2))
  timings: dict[str, dict[str, float]] = {}

  def timed(name, fn, *fn_args):
    start, start_cpu = time.perf_counter(), time.process_time()
    value = fn(*fn_args)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    timings[name] = {"seconds": seconds, "cpu_seconds": cpu_seconds}
    if isinstance(value, float):
      timings[name]["value"] = value
    print(f"{name:<22} {seconds:9.3f} {cpu_seconds:9.3f}"
          + (f"   {value:.6f}" if isinstance(value, float) else ""), flush=True)
    return value

  print(f"{len(maps)} maps of {args.size}x{args.size} = {maps.size / 1e6:.1f} M pixels, "
        f"{int(labels.sum())} anomalous images")
  print(f"{'metric':<22} {'wall s':>9} {'cpu s':>9}   value")
  timed("image_auroc", metrics.image_auroc, scores, labels)
  timed("image_ap", metrics.image_ap, scores, labels)
  timed("image_f1_max", metrics.image_f1_max, scores, labels)
  timed("pixel_auroc", metrics.pixel_auroc, maps, masks)
  timed("pixel_ap", metrics.pixel_ap, maps, masks)
  timed("pixel_f1_max", metrics.pixel_f1_max, maps, masks)
  components = timed("connected_components", metrics.connected_components, masks)
  print(f"  ({int(components.max())} regions)")
  timed("aupro", metrics.aupro, maps, components)
  timed("compute_all", metrics.compute_all, scores, labels, maps, masks)

  result = {
      "benchmark": "metrics",
      "device": {"cpu": cpu_name(), "cores": os.cpu_count(), "platform": platform.platform(),
                 "load_average_1min_at_end": os.getloadavg()[0]},
      "versions": {"python": platform.python_version(), "numpy": np.__version__,
                   "scipy": scipy.__version__, "jaxad": jaxad.__version__},
      "settings": {"num_images": args.num_images, "size": args.size, "seed": args.seed,
                   "pixels": int(maps.size), "regions": int(components.max())},
      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
      "metrics": timings,
  }
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"peak RSS {result['peak_rss_gib']:.2f} GiB; wrote {out}")


if __name__ == "__main__":
  main()
