"""Batch-1 latency of jaxad's EfficientAD-S under several XLA GPU settings: where do the milliseconds go?

Usage:  python benchmarks/latency_probe.py [--model efficient_ad_s] [--dtype bfloat16] [--iters 500]
            [--out benchmarks/results/latency_probe.json]

On an H100 (commits 2dafd24 / 17581f7, `results/inference_vs_torch_h100.md`) jaxad's EfficientAD-S took 1.07 ms at batch 1 in bfloat16, against 0.61 ms for
`torch.compile(mode="reduce-overhead")` (CUDA graphs) and the 0.5 ms target, while its
throughput was 1.4× torch's: the gap is per-launch cost, not arithmetic (76 GFLOP are ~0.2 ms on
the card). Each setting below runs in its own process (XLA reads its flags once) and reports the
median latency of the compiled inference engine (`inference_vs_torch.jaxad_efficient_ad`: float
input, so no pre-processing; maps at the model size) and the number of kernels-to-be in the compiled
program (fusions + custom calls: convolutions, GEMMs) and the host time of a call (until dispatch
returns), for the parameters passed as arguments and baked in as constants (`constant_params=True`:
one argument per call instead of one per parameter array). Settings: XLA's defaults; command buffers
(CUDA graphs) off; command buffers for every command type with no minimum graph size. Baseline: the
default setting with parameters as arguments, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

SETTINGS = {
    "default": "",
    "command buffers off": "--xla_gpu_enable_command_buffer=",
    "command buffers, all types, min size 1": ("--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,"
                                               "CUDNN,CONDITIONAL,WHILE --xla_gpu_graph_min_graph_size=1"),
}


def kernel_count(compiled) -> dict:
  """Fusions and custom calls in the entry computation of a compiled program (≈ kernel launches)."""
  text = compiled.as_text()
  entry = text[text.find("ENTRY"):]
  return {"fusions": len(re.findall(r"= \S+ fusion\(", entry)),
          "custom_calls": len(re.findall(r"custom-call\(", entry))}


def measure(model: str, dtype: str, iters: int) -> dict:
  """Runs in the child process: batch-1 latency of the engine and its kernel count."""
  import jax
  import numpy as np

  sys.path.insert(0, str(Path(__file__).parent))
  import inference_vs_torch as ivt

  s = ivt.parse_args(["--models", model, "--dtypes", dtype]).settings
  x = jax.device_put(np.random.default_rng(0).random((1, s.ead_size, s.ead_size, 3)).astype(np.float32))
  out = {"device": str(jax.devices()[0].device_kind), "jax": jax.__version__}
  for key, const in (("engine", False), ("engine_const", True)):
    engine, *_ = ivt.jaxad_efficient_ad(s, model[-1], dtype, const)
    for _ in range(min(50, iters)):  # warm-up after compiling
      r = engine(x)
    jax.block_until_ready(r)
    times, host = [], []
    for _ in range(iters):
      t0 = time.perf_counter()
      r = engine(x)
      host.append(time.perf_counter() - t0)  # the call's host time: dispatch returns before the device is done
      jax.block_until_ready(r)
      times.append(time.perf_counter() - t0)
    out[key] = {"latency_ms": statistics.median(times) * 1e3, "p10_ms": float(np.percentile(times, 10)) * 1e3,
                "dispatch_us": statistics.median(host) * 1e6,
                "arguments": len(jax.tree.leaves(engine.lower(x).args_info))}
  out["kernels"] = kernel_count(engine.lower(x).compile())
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--model", default="efficient_ad_s", choices=("efficient_ad_s", "efficient_ad_m"))
  p.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
  p.add_argument("--iters", type=int, default=500)
  p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_probe.json"))
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(measure(args.model, args.dtype, args.iters)))
    return 0
  rows = []
  for name, flags in SETTINGS.items():
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()}
    cmd = [sys.executable, __file__, "--child", "--model", args.model, "--dtype", args.dtype,
           "--iters", str(args.iters)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
      rows.append({"setting": name, "xla_flags": flags, "error": res.stderr.strip().splitlines()[-1:]})
    else:
      rows.append({"setting": name, "xla_flags": flags, **json.loads(res.stdout.strip().splitlines()[-1])})
    print(rows[-1], flush=True)
  base = next((r["engine"]["latency_ms"] for r in rows if r["setting"] == "default" and "engine" in r), None)
  device = next((r["device"] for r in rows if "device" in r), "?")
  lines = [f"{args.model} {args.dtype} on {device}, batch 1, median of {args.iters}; ratio = latency / default "
           "setting with parameters as arguments (the settings are XLA GPU flags: on other devices the rows "
           "repeat one setting)", "",
           "| setting | ms, params as arguments | ratio | ms, params as constants | ratio "
           "| dispatch µs (arguments / constants) | fusions | custom calls |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    if "error" in r:
      lines.append(f"| {r['setting']} | fails: {r['error']} | | | | | | |")
      continue
    cells = []
    for key in ("engine", "engine_const"):
      e = r[key]["latency_ms"]
      cells += [f"{e:.3f}", "" if base is None else f"{e / base:.2f}"]
    dispatch = f"{r['engine']['dispatch_us']:.0f} / {r['engine_const']['dispatch_us']:.0f}"
    lines.append(f"| {r['setting']} | {' | '.join(cells)} | {dispatch} | {r['kernels']['fusions']} | "
                 f"{r['kernels']['custom_calls']} |")
  table = "\n".join(lines)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps({"benchmark": "latency_probe", "model": args.model, "dtype": args.dtype, "rows": rows},
                                 indent=2))
  args.out.with_suffix(".md").write_text(table + "\n")
  print(table)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
