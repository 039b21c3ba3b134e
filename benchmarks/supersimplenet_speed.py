"""SuperSimpleNet speed: training steps/s (M = 1 and stacked sweeps) and inference latency/throughput.

Usage:  python benchmarks/supersimplenet_speed.py [--quick] [--out benchmarks/results/supersimplenet_speed.json]

Random weights (speed does not depend on their values), WideResNet-50-2 at 256×256 as the
paper setting (`--quick`: tiny backbone at 64×64 for a CPU smoke run). Training uses the
engine's compiled step over cached frozen features (the default path) and, separately,
with the backbone run inside the step. Each timing follows a warm-up call (compilation is
reported separately); `block_until_ready` ends every timed region. Baseline for the ratios:
M = 1 in the same run (a sweep of M members vs M separate runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxad import provenance
from jaxad.evaluate.evaluator import make_predict_fn
from jaxad.models import get_method
from jaxad.models.supersimplenet import config as cfg
from jaxad.train import loop
from jaxad.train.state import stack_members


def timed(fn, *args, repeats: int):
  t0 = time.perf_counter()
  out = fn(*args)
  jax.block_until_ready(out)
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  return first, times


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny backbone, 64×64, few repeats (CPU smoke run)")
  parser.add_argument("--members", default="1,4", help="sweep sizes M to time")
  parser.add_argument("--out", default="benchmarks/results/supersimplenet_speed.json")
  args = parser.parse_args()

  method = get_method("supersimplenet")
  if args.quick:
    static = cfg.resolve(cfg.Static(backbone="tiny_test", backbone_weights="random", image_size=(64, 64), batch_size=8,
                                    seg_hidden=64, cls_hidden=16))
    repeats, n_train, latency_runs, members = 3, 16, 10, [1, 4]
  else:
    static = cfg.resolve(cfg.Static(backbone_weights="random"))
    repeats, n_train, latency_runs, members = 20, 64, 200, [int(m) for m in args.members.split(",")]
  h, w = static.image_size
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(n_train, h, w, 3)), jnp.float32)
  features_fn, frozen_vars = method.make_frozen(static)
  trainer = loop.Trainer(method, static, n_train, features_fn)
  feats = loop.compute_features(trainer.features, frozen_vars, np.asarray(images))
  cache = {"feats": feats, "mask": jnp.zeros((n_train, h, w)), "label": jnp.zeros(n_train, jnp.int32),
           "is_segmented": jnp.ones(n_train, bool)}
  rows = []
  k = 10 if loop.use_scan() else 1
  idx = jnp.asarray(np.stack([np.arange(static.batch_size) for _ in range(k)]))
  base = None
  for m in members:
    hps = stack_members([cfg.Hparams(seed=i) for i in range(m)])
    holder = {"s": trainer.init_states(hps, feats[:1])}

    def step():
      holder["s"], metrics = trainer.run_steps(holder["s"], hps, cache, idx, cached=True)
      return metrics

    first, times = timed(step, repeats=repeats)
    per_step = statistics.median(times) / k
    base = base or per_step
    rows.append({"what": "train step (cached features)", "members": m, "batch": static.batch_size,
                 "ms_per_step": per_step * 1e3, "model_steps_per_s": m / per_step,
                 "time_vs_M1": per_step / base, "compile_s": first})
  # Backbone inside the step (no cache), M = 1.
  hps = stack_members([cfg.Hparams()])
  holder = {"s": trainer.init_states(hps, feats[:1])}
  batch = {"image": images[None, :static.batch_size],
           **{key: v[None, :static.batch_size] for key, v in cache.items() if key != "feats"}}

  def image_step():
    holder["s"], metrics = trainer.run_steps(holder["s"], hps, frozen_vars, batch, cached=False)
    return metrics

  first, times = timed(image_step, repeats=repeats)
  rows.append({"what": "train step (backbone in step)", "members": 1, "batch": static.batch_size,
               "ms_per_step": statistics.median(times) * 1e3, "model_steps_per_s": 1 / statistics.median(times),
               "compile_s": first})
  # Inference: features + heads + upsample + blur + sigmoid, compiled once per batch shape.
  predict = make_predict_fn(method, static, features_fn, (h, w))
  states1 = holder["s"]
  for batch_size in (1, 16, 64):
    x = images[:batch_size] if batch_size <= n_train else jnp.tile(images, (batch_size // n_train + 1, 1, 1, 1))[:batch_size]
    runs = latency_runs if batch_size == 1 else max(repeats, 10)
    first, times = timed(predict, states1, frozen_vars, x, repeats=runs)
    med = statistics.median(times)
    rows.append({"what": "inference", "members": 1, "batch": batch_size, "ms_per_batch": med * 1e3,
                 "images_per_s": batch_size / med, "compile_s": first})
  record = {"benchmark": "supersimplenet_speed", "quick": args.quick, "image_size": [h, w],
            "backbone": static.backbone, "provenance": provenance.collect(), "rows": rows}
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(record, indent=2))
  cols = ["what", "members", "batch", "ms_per_step", "model_steps_per_s", "time_vs_M1", "ms_per_batch", "images_per_s",
          "compile_s"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols) + " |")
  table = "\n".join(lines)
  out.with_suffix(".md").write_text(f"device: {record['provenance']['device_kind']}\n\n{table}\n")
  print(f"device: {record['provenance']['device_kind']}, jax {record['provenance']['versions']['jax']}")
  print(table)


if __name__ == "__main__":
  main()
