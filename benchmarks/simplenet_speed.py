"""SimpleNet speed: train steps/s and inference images/s (WideResNet-50-2, 288×288, random weights).

Paper: 77 FPS inference on an RTX 3080 Ti (CVPR 2023 abstract); batch size and what the
timing includes are not stated (a user measured 6.62 FPS with the official code, issue #58).
Weights do not change the speed, so the backbone gets random weights (nothing is downloaded).

Timed after one warm-up call (which compiles), each result blocked until ready:

  train_cached  train steps/s on precomputed frozen features, `--chunk` steps per measure (the
                engine's default path: the train split's features are computed once; on
                accelerators the steps run in one lax.scan, on CPU one compiled call each)
  train_images  train steps/s with the frozen backbone and patch aggregation run on every batch
                (what the official code does each step; the engine's path when the train
                features exceed its device cache budget), `--chunk` steps per compiled call
  infer_b1, infer_b16  images/s of the whole prediction: backbone, aggregation, adaptor,
                discriminator, bilinear upsampling and the σ = 4 blur, batch 1 and 16

Writes JSON and Markdown (device, versions, settings, results) next to each other.

  python benchmarks/simplenet_speed.py                 # accelerator: 288×288, full repeats
  python benchmarks/simplenet_speed.py --quick         # CPU: same shapes, few repeats
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxad
from jaxad.evaluate import evaluator
from jaxad.models import get_method
from jaxad.models.simplenet import config as cfg
from jaxad.train import loop
from jaxad.train.state import stack_members


def _block(tree):
  return jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


def timed(fn, repeats: int) -> tuple[float, float]:
  """(warm-up seconds, mean seconds per call over `repeats` calls after the warm-up)."""
  start = time.perf_counter()
  fn()
  warmup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    fn()
  return warmup, (time.perf_counter() - start) / repeats


def versions() -> dict:
  import flax
  import optax
  return {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jax.lib.__version__
          if hasattr(jax.lib, "__version__") else None, "flax": flax.__version__, "optax": optax.__version__,
          "numpy": np.__version__, "jaxad": jaxad.__version__}


def device_info() -> dict:
  dev = jax.devices()[0]
  return {"platform": dev.platform, "kind": dev.device_kind, "count": jax.device_count(),
          "host": platform.platform(), "cpu_cores": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}


def run(args) -> dict:
  method = get_method("simplenet")
  static = cfg.resolve(cfg.Static(backbone=args.backbone, backbone_weights="random",
                                  image_size=(args.image_size, args.image_size), batch_size=args.batch))
  hps = stack_members([cfg.default_hparams(static)])
  features_fn, frozen_vars = method.make_frozen(static)
  rng = np.random.default_rng(0)
  n_cache = 2 * args.batch
  images = rng.normal(size=(max(n_cache, 16), args.image_size, args.image_size, 3)).astype(np.float32)
  trainer = loop.Trainer(method, static, n_cache, features_fn)
  feats = loop.compute_features(trainer.features, frozen_vars, images[:n_cache], batch_size=args.batch)
  states = trainer.init_states(hps, feats[:1])
  cache = {"feats": feats, "mask": jnp.zeros((n_cache,) + static.image_size), "label": jnp.zeros(n_cache, jnp.int32),
           "is_segmented": jnp.ones(n_cache, bool)}
  sampler = loop.uniform_sampler(n_cache, 0)
  idx_np = np.stack([loop.batch_indices(sampler, s, args.batch, trainer.spe) for s in range(args.chunk)])
  batches = {"image": jnp.asarray(images[idx_np]), "mask": jnp.zeros(idx_np.shape + static.image_size),
             "label": jnp.zeros(idx_np.shape, jnp.int32), "is_segmented": jnp.ones(idx_np.shape, bool)}
  scan = loop.use_scan()
  box = {"states": states}

  def steps_fn(cached: bool):
    source, selectors = (cache, jnp.asarray(idx_np)) if cached else (frozen_vars, batches)

    def run_steps():
      box["states"], metrics = trainer.run_steps(box["states"], hps, source, selectors, cached)
      _block(metrics)

    return run_steps

  predict_fn = evaluator.make_predict_fn(method, static, features_fn, static.image_size)
  results = {}
  warm, sec = timed(steps_fn(cached=True), args.repeats)
  results["train_cached"] = {"steps_per_s": args.chunk / sec, "images_per_s": args.chunk * args.batch / sec,
                             "warmup_s": warm, "steps_per_measure": args.chunk, "scan": scan}
  warm, sec = timed(steps_fn(cached=False), args.repeats)
  results["train_images"] = {"steps_per_s": args.chunk / sec, "images_per_s": args.chunk * args.batch / sec,
                             "warmup_s": warm, "steps_per_measure": args.chunk, "scan": scan}
  for b in (1, 16):
    x = jnp.asarray(images[:b])
    warm, sec = timed(lambda: _block(predict_fn(box["states"], frozen_vars, x)), args.repeats * 4)
    results[f"infer_b{b}"] = {"images_per_s": b / sec, "ms_per_batch": 1e3 * sec, "warmup_s": warm}
  return {"benchmark": "simplenet_speed", "device": device_info(), "versions": versions(),
          "settings": {**vars(args), "static": dataclasses.asdict(static), "precision": "float32 params and "
                       "activations; matmul precision = the backend's default (TF32 on recent NVIDIA GPUs)"},
          "paper": "77 FPS inference on an RTX 3080 Ti (SimpleNet, CVPR 2023)", "results": results}


def markdown(result: dict) -> str:
  d, v, s = result["device"], result["versions"], result["settings"]
  lines = [f"# SimpleNet speed ({d['kind']}, {d['platform']})", "",
           f"{s['backbone']} (random weights), {s['image_size']}×{s['image_size']}, train batch {s['batch']}; "
           f"jax {v['jax']}, flax {v['flax']}, optax {v['optax']}; load average {d['load_average_1min']:.1f} "
           f"on {d['cpu_cores']} cores.", "",
           "| what | steps/s | images/s | warm-up s |", "|---|---|---|---|"]
  for name, r in result["results"].items():
    steps = f"{r['steps_per_s']:.2f}" if "steps_per_s" in r else ""
    lines.append(f"| {name} | {steps} | {r['images_per_s']:.2f} | {r['warmup_s']:.1f} |")
  lines += ["", f"Paper: {result['paper']}."]
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="few repeats and steps (CPU)")
  parser.add_argument("--backbone", default="wide_resnet50_2", help="backbone name (random weights)")
  parser.add_argument("--image-size", type=int, default=288, help="crop size")
  parser.add_argument("--batch", type=int, default=8, help="train batch size")
  parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement (default 10, quick 1)")
  parser.add_argument("--chunk", type=int, default=None, help="train steps per compiled call (default 20, quick 2)")
  parser.add_argument("--out", default=None,
                      help="JSON output (default benchmarks/results/simplenet_speed[_quick].json)")
  args = parser.parse_args()
  args.repeats = args.repeats or (1 if args.quick else 10)
  args.chunk = args.chunk or (2 if args.quick else 20)
  out = Path(args.out or f"benchmarks/results/simplenet_speed{'_quick' if args.quick else ''}.json")
  result = run(args)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  out.with_suffix(".md").write_text(markdown(result))
  print(markdown(result))
  print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
  main()
