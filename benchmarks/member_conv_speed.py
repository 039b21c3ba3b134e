"""Member convolution speed: a vmapped conv's forward + both gradients, by batching mode.

Usage:  python benchmarks/member_conv_speed.py [--members 8] [--out benchmarks/results/member_conv_speed]

For the trainable convolutions of the sweepable methods (SuperSimpleNet's 5×5 cls conv and 1×1
seg/adaptor convs, the PDN's 4×4 convs, the autoencoder's 4×4 stride-2 convs), each of M members
with its own kernel and its own input, times `jit(vmap(grad))` of a conv layer:
- baseline "lax grouped": flax's nn.Conv (lax.conv_general_dilated) — XLA's grouped convolution;
- "member grouped" / "member unrolled": jaxad.ops.member_conv in each mode;
- "separate": one member's program, run M times (what M separate runs cost).
Ratios are against "lax grouped" measured in the same run. Writes JSON and Markdown with device and
versions. This is what chose jaxad.ops.member_conv's "auto" mode per backend.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxad import provenance
from jaxad.ops import member_conv

# name, batch, spatial, in channels, out channels, kernel, stride, padding
LAYERS = [
    ("ssn cls 5x5", 16, 16, 321, 32, 5, 1, "SAME"),
    ("ssn seg 1x1", 16, 16, 320, 256, 1, 1, "SAME"),
    ("pdn 4x4", 1, 64, 128, 256, 4, 1, ((3, 3), (3, 3))),
    ("ae enc 4x4/2", 1, 64, 32, 32, 4, 2, ((1, 1), (1, 1))),
]


def timed(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def bench_layer(spec, members: int, repeats: int) -> dict:
  name, batch, size, cin, cout, kernel, stride, padding = spec
  x = jnp.asarray(np.random.default_rng(0).normal(size=(members, batch, size, size, cin)), jnp.float32)

  def grad_fn(conv):
    return jax.grad(lambda p, x: jnp.sum(jnp.square(conv.apply(p, x))), argnums=(0, 1))

  def make(conv_fn):
    kwargs = {} if conv_fn is None else {"conv_general_dilated": conv_fn}
    return nn.Conv(cout, (kernel, kernel), strides=(stride, stride), padding=padding, **kwargs)

  lax_conv, ours = make(None), make(member_conv.conv_general_dilated)
  params = jax.vmap(lambda k: lax_conv.init(k, x[0]))(jax.random.split(jax.random.key(0), members))
  row = {"layer": name, "members": members, "input": [batch, size, size, cin], "kernel": kernel, "stride": stride,
         "lax_grouped_s": timed(jax.jit(jax.vmap(grad_fn(lax_conv))), params, x, repeats=repeats)}
  for mode in ("grouped", "unrolled"):
    with member_conv.use_mode(mode):
      row[f"member_{mode}_s"] = timed(jax.jit(jax.vmap(grad_fn(ours))), params, x, repeats=repeats)
  one = jax.tree.map(lambda a: a[0], params)
  row["separate_s"] = members * timed(jax.jit(grad_fn(lax_conv)), one, x[0], repeats=repeats)
  for key in ("member_grouped_s", "member_unrolled_s", "separate_s"):
    row[key.replace("_s", "_vs_lax_grouped")] = row[key] / row["lax_grouped_s"]
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results/member_conv_speed")
  args = parser.parse_args()
  rows = []
  for spec in LAYERS:
    rows.append(bench_layer(spec, args.members, args.repeats))
    print(rows[-1])
  prov = provenance.collect()
  out = Path(args.out + f"_{jax.default_backend()}")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps({"benchmark": "member_conv_speed", "auto_mode": member_conv.mode(),
                                                  "provenance": prov, "rows": rows}, indent=2, default=str))
  cols = ["layer", "members", "lax_grouped_s", "member_grouped_s", "member_unrolled_s", "separate_s",
          "member_grouped_vs_lax_grouped", "member_unrolled_vs_lax_grouped", "separate_vs_lax_grouped"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
  header = (f"device: {prov['device_kind']}, jax {prov['versions']['jax']}, jaxad {prov['git']['commit']}"
            f"{' (dirty)' if prov['git']['dirty'] else ''}; jit(vmap(grad)) of one conv layer, median of "
            f"{args.repeats}; baseline: lax grouped (flax nn.Conv); auto mode here: {member_conv.mode()}")
  out.with_suffix(".md").write_text(header + "\n\n" + "\n".join(lines) + "\n")
  print(header)
  print("\n".join(lines))


if __name__ == "__main__":
  main()
