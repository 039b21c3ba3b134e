"""Convolution speed: jaxad.ops.conv against flax's nn.Conv (lax.conv_general_dilated), forward + both gradients.

Usage:  python benchmarks/conv_speed.py [--members 8] [--repeats 5] [--out benchmarks/results/conv_speed]

Table 1, members: the trainable convolutions of the sweepable methods (SuperSimpleNet's 5×5 cls
conv and 1×1 seg conv, a PDN 4×4 conv, the autoencoder's 4×4 stride-2 conv), each of M members
with its own kernel and its own input; times `jit(vmap(grad))` of one conv layer:
- baseline "lax grouped": flax's nn.Conv — XLA's grouped convolution;
- "member grouped" / "member unrolled": jaxad.ops.conv in each member mode;
- "separate": one member's program (lax), run M times (what M separate runs cost).
Table 2, padding beyond the kernel's reach (one model, no vmap): the padded PDN's 4×4 conv with
padding 3 and the autoencoder decoder's 4×4 conv with padding 2; `jit(grad)` with lax against
jaxad.ops.conv (which pre-pads on CPU).
Ratios are against the lax baseline measured in the same run. Writes <out>_<backend>.json and .md
with device and versions. This is what chose jaxad.ops.conv's per-backend defaults.
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
from jaxad.ops import conv as conv_ops

# name, batch, spatial, in channels, out channels, kernel, stride, padding
PADDED_LAYERS = [
    ("pdn padded 4x4 p3", 1, 64, 128, 256, 4, 1, ((3, 3), (3, 3))),
    ("ae dec 4x4 p2", 1, 32, 64, 64, 4, 1, ((2, 2), (2, 2))),
]
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

  lax_conv, ours = make(None), make(conv_ops.conv_general_dilated)
  params = jax.vmap(lambda k: lax_conv.init(k, x[0]))(jax.random.split(jax.random.key(0), members))
  row = {"layer": name, "members": members, "input": [batch, size, size, cin], "kernel": kernel, "stride": stride,
         "lax_grouped_s": timed(jax.jit(jax.vmap(grad_fn(lax_conv))), params, x, repeats=repeats)}
  for mode in ("grouped", "unrolled"):
    with conv_ops.use_member_mode(mode):
      row[f"member_{mode}_s"] = timed(jax.jit(jax.vmap(grad_fn(ours))), params, x, repeats=repeats)
  one = jax.tree.map(lambda a: a[0], params)
  row["separate_s"] = members * timed(jax.jit(grad_fn(lax_conv)), one, x[0], repeats=repeats)
  for key in ("member_grouped_s", "member_unrolled_s", "separate_s"):
    row[key.replace("_s", "_vs_lax_grouped")] = row[key] / row["lax_grouped_s"]
  return row


def bench_padded(spec, repeats: int) -> dict:
  name, batch, size, cin, cout, kernel, stride, padding = spec
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, size, size, cin)), jnp.float32)
  row = {"layer": name, "input": [batch, size, size, cin], "kernel": kernel, "padding": padding[0][0]}
  for label, kwargs in (("lax", {}), ("jaxad", {"conv_general_dilated": conv_ops.conv_general_dilated})):
    conv = nn.Conv(cout, (kernel, kernel), strides=(stride, stride), padding=padding, **kwargs)
    params = conv.init(jax.random.key(0), x)
    grad = jax.grad(lambda p, x: jnp.sum(jnp.square(conv.apply(p, x))), argnums=(0, 1))
    row[f"{label}_s"] = timed(jax.jit(grad), params, x, repeats=repeats)
  row["jaxad_vs_lax"] = row["jaxad_s"] / row["lax_s"]
  return row


def table(rows: list[dict], cols: list[str]) -> list[str]:
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
  return lines


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="benchmarks/results/conv_speed")
  args = parser.parse_args()
  rows = []
  for spec in LAYERS:
    rows.append(bench_layer(spec, args.members, args.repeats))
    print(rows[-1])
  padded_rows = []
  for spec in PADDED_LAYERS:
    padded_rows.append(bench_padded(spec, args.repeats))
    print(padded_rows[-1])
  prov = provenance.collect()
  out = Path(args.out + f"_{jax.default_backend()}")
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps({"benchmark": "conv_speed", "member_mode": conv_ops.member_mode(),
                                                  "provenance": prov, "members": rows, "padded": padded_rows},
                                                 indent=2, default=str))
  header = (f"device: {prov['device_kind']}, jax {prov['versions']['jax']}, jaxad {prov['git']['commit']}"
            f"{' (dirty)' if prov['git']['dirty'] else ''}; median of {args.repeats}; auto member mode here: "
            f"{conv_ops.member_mode()}")
  text = "\n".join([
      header, "", f"Members: jit(vmap(grad)) of one conv layer, M = {args.members}; baseline: lax grouped (flax nn.Conv)", "",
      *table(rows, ["layer", "members", "lax_grouped_s", "member_grouped_s", "member_unrolled_s", "separate_s",
                    "member_grouped_vs_lax_grouped", "member_unrolled_vs_lax_grouped", "separate_vs_lax_grouped"]),
      "", "Padding beyond the kernel's reach: jit(grad) of one conv layer, one model; baseline: lax (flax nn.Conv)", "",
      *table(padded_rows, ["layer", "input", "kernel", "padding", "lax_s", "jaxad_s", "jaxad_vs_lax"])])
  out.with_suffix(".md").write_text(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
