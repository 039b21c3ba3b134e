"""Frozen-backbone throughput: images/s of `apply_backbone` (to layer3) per backbone, batch size and dtype.

Method: random weights (`load_backbone(..., weights="random")`; the numbers do not depend on the
values), input already on the device, one jitted function per configuration. Each configuration is
timed twice in the same run: with its BatchNorms folded into the convs, as `jaxad.nn.frozen` runs
the backbones, and as loaded (conv, then BatchNorm: the baseline); the table gives both and the
ratio folded / as loaded (above 1: folding is faster). Compile time is
measured separately (`lower().compile()`), then `--warmup` calls, then `--iters` timed calls, each
ended with `block_until_ready`; the median call time gives images/s. Results go to a JSON file
(with device, versions, XLA flags and matmul precision) and a Markdown table beside it.

  python benchmarks/backbone_throughput.py                 # 256×256, batch 1/16/64, float32 + bfloat16
  python benchmarks/backbone_throughput.py --quick         # CPU smoke run: batch 1/2, fewer iterations
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import flax
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from jaxad.nn import backbones
from jaxad.nn.fold import fold_batch_norms

STAGES = ("layer2", "layer3")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--backbones", nargs="+", default=["wide_resnet50_2", "efficientnet_lite0"],
                      help="registered backbone names to time")
  parser.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                      help="batch sizes (default 1 16 64; 1 2 with --quick)")
  parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES),
                      help="computation dtypes (parameters stay float32)")
  parser.add_argument("--size", type=int, default=256, help="square input side in pixels")
  parser.add_argument("--warmup", type=int, default=None, help="untimed calls after compiling (default 2; 1 quick)")
  parser.add_argument("--iters", type=int, default=None, help="timed calls (default 20; 3 with --quick)")
  parser.add_argument("--quick", action="store_true", help="small batches and few iterations, for CPU")
  parser.add_argument("--out", type=Path, default=Path("benchmarks/results/backbones.json"),
                      help="JSON output; a .md table is written beside it")
  args = parser.parse_args(argv)
  args.batch_sizes = args.batch_sizes or ([1, 2] if args.quick else [1, 16, 64])
  args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
  args.iters = args.iters or (3 if args.quick else 20)
  return args


def time_config(name: str, dtype_name: str, batch: int, size: int, warmup: int, iters: int) -> dict:
  """Compile and time one (backbone, dtype, batch) configuration, folded and as loaded."""
  module, variables = backbones.load_backbone(name, STAGES, weights="random", dtype=DTYPES[dtype_name])
  spec = backbones.get_spec(name)
  row = time_form(module, variables, name, dtype_name, batch, size, warmup, iters)
  if spec.bn_eps is not None:
    folded = spec.build(STAGES, DTYPES[dtype_name], folded=True)
    unfolded = row
    row = time_form(folded, fold_batch_norms(variables, spec.bn_eps), name, dtype_name, batch, size, warmup, iters)
    row.update(unfolded_images_per_s=unfolded["images_per_s"], unfolded_compile_s=unfolded["compile_s"],
               folded_vs_unfolded=round(row["images_per_s"] / unfolded["images_per_s"], 3),
               arrays=len(jax.tree.leaves(fold_batch_norms(variables, spec.bn_eps))),
               unfolded_arrays=len(jax.tree.leaves(variables)))
  return row


def time_form(module, variables, name: str, dtype_name: str, batch: int, size: int, warmup: int, iters: int) -> dict:
  images = jax.device_put(np.random.default_rng(0).standard_normal((batch, size, size, 3), np.float32))
  forward = jax.jit(lambda v, x: backbones.apply_backbone(module, v, x, STAGES))
  start = time.perf_counter()
  compiled = forward.lower(variables, images).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    jax.block_until_ready(compiled(variables, images))
  times = []
  for _ in range(iters):
    start = time.perf_counter()
    jax.block_until_ready(compiled(variables, images))
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  return {"backbone": name, "stages": list(STAGES), "dtype": dtype_name, "batch": batch, "size": size,
          "compile_s": round(compile_s, 3), "median_call_s": round(median, 6), "min_call_s": round(min(times), 6),
          "images_per_s": round(batch / median, 2), "iters": iters}


def environment() -> dict:
  device = jax.devices()[0]
  return {"device": f"{device.platform}:{getattr(device, 'device_kind', '?')}", "device_count": jax.device_count(),
          "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "numpy": np.__version__, "python": platform.python_version(),
          "machine": platform.machine(), "cpu_count": os.cpu_count(),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "matmul_precision": str(jax.config.jax_default_matmul_precision)}


def markdown(env: dict, results: list[dict]) -> str:
  lines = [f"Backbone throughput on {env['device']} (jax {env['jax']}, flax {env['flax']}; "
           f"input {results[0]['size']}×{results[0]['size']}, stages {'+'.join(STAGES)})", "",
           "| backbone | dtype | batch | images/s (folded) | median call (ms) | compile (s) "
           "| images/s as loaded | folded / as loaded |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in results:
    base = (f"{r['unfolded_images_per_s']:.1f} | {r['folded_vs_unfolded']:.2f}" if "unfolded_images_per_s" in r
            else "– | –")
    lines.append(f"| {r['backbone']} | {r['dtype']} | {r['batch']} | {r['images_per_s']:.1f} | "
                 f"{1000 * r['median_call_s']:.1f} | {r['compile_s']:.1f} | {base} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  env = environment()
  results = []
  for name in args.backbones:
    for dtype_name in args.dtypes:
      for batch in args.batch_sizes:
        result = time_config(name, dtype_name, batch, args.size, args.warmup, args.iters)
        print(f"{name:20s} {dtype_name:8s} batch {batch:3d}: {result['images_per_s']:9.2f} images/s "
              f"(compile {result['compile_s']:.1f} s)", file=sys.stderr, flush=True)
        results.append(result)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps({"environment": env, "quick": args.quick, "results": results}, indent=1) + "\n")
  table = markdown(env, results)
  args.out.with_suffix(".md").write_text(table)
  print(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
