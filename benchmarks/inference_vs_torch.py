"""jaxad against anomalib's PyTorch models, side by side on one device: inference and training speed.

Usage:
  python benchmarks/inference_vs_torch.py                       # 256×256, batch 1/16/64, float32 + bfloat16
  python benchmarks/inference_vs_torch.py --quick --out benchmarks/results/inference_vs_torch_cpu_smoke.json
  python benchmarks/inference_vs_torch.py --no-torch            # jaxad rows only (also when anomalib is absent)

Models: SuperSimpleNet (WideResNet-50-2 layer2+3, anomalib defaults: JIMS heads, antialiased
resize), EfficientAD-S and -M (padding off, anomalib's map padding and quantile normalisation).
Random weights and random inputs already on the device; what is timed is what anomalib's
`forward` returns (score and full-size anomaly map: SSN upsampling + blur, EfficientAD map
normalisation and resize), no pre-processing and no device-to-host copy, as in
docs/reference/perf-baseline.md. jaxad runs what users run: the registered Method
(`get_method`), its state from `loop.Trainer.init_states` (EfficientAD: then `prepare_state` with
a random teacher and `calibrate`, on a few random images), predicting through
`jaxad.infer.InferenceEngine` and training through `Trainer.run_steps`. One difference in
what is timed: anomalib's EfficientAD `forward` applies the ImageNet normalisation itself, while
jaxad's engine takes float inputs as already normalised network inputs (one elementwise op on
the input, which XLA would fuse into the first convolution), so jaxad's rows exclude it.

Variants: jaxad (float32 = XLA defaults; bfloat16 = bf16 parameters and activations, float32
outputs), "jit" with the parameters passed as arguments and "jit-const" with them baked into the
program (`InferenceEngine(constant_params=True)`: one argument per call; trains no rows); torch
eager (as shipped; bf16 = autocast) and torch.compile (mode "reduce-overhead", CUDA graphs, on GPUs;
default mode on CPU). torch "fp32" keeps PyTorch defaults (TF32 convs on GPUs, cudnn.benchmark on).
Latency: batch 1, median of `--latency-iters` synchronised calls after `--warmup`; throughput:
`--throughput-iters` back-to-back calls, one synchronisation. Training: steps/s of one optimiser
step (SSN: batch 8 with the backbone in the step, as anomalib; EfficientAD: batch 1 plus one penalty
image, the reference recipe; jaxad's penalty comes from the Method's offline "bundled" stream, drawn
once, as SSN's batch, so no host work is timed; jaxad's bfloat16 rows train with
`compute_dtype="bfloat16"` (bf16 networks on float32 parameters; losses, gradients and Adam in
float32; SSN's backbone on bf16 weights), against torch's autocast). FLOPs per image: XLA's cost
analysis of jaxad's batch-1 program (torch's FlopCounterMode count of conv + linear is stored beside
it).
Ratios: jaxad speed / best torch speed of the same precision (>1: jaxad faster), speed being
1/latency or images/s. anomalib models are built offline (pre_trained=False, HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
import traceback
from pathlib import Path

# jax and torch share one device here: without this, XLA preallocates 75 % of its memory and torch's
# variants run out of memory (seen on an H100: EfficientAD-M eager fp32 after the compiled variants).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np

from jaxad import provenance

MODELS = ("supersimplenet", "efficient_ad_s", "efficient_ad_m")
LABELS = {"supersimplenet": "SuperSimpleNet", "efficient_ad_s": "EfficientAD-S", "efficient_ad_m": "EfficientAD-M"}
EAD_STATS_IMAGES = 4  # random train/validation images for EfficientAD's teacher statistics and map quantiles
EAD_PENALTY_POOL = 4  # bundled penalty crops held on the host (the run's default is 1000; speed is the same)


@dataclasses.dataclass
class Settings:
  size: int
  ead_size: int
  batches: tuple[int, ...]
  warmup: int
  latency_iters: int
  throughput_iters: int
  train_steps: int
  train_warmup: int
  ssn_train_batch: int
  ead_train_chunk: int  # EfficientAD steps per compiled call (lax.scan), as `jaxad fit` runs them
  dtypes: tuple[str, ...]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="CPU smoke run: SSN at 64 px, EfficientAD at 256 (its minimum), batch 2, 3 repetitions, float32")
  p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated subset of {', '.join(MODELS)}")
  p.add_argument("--dtypes", default=None, help="float32,bfloat16 (default both; float32 with --quick)")
  p.add_argument("--size", type=int, default=None, help="square input side (default 256; 64 for SSN with --quick)")
  p.add_argument("--batches", default=None, help="throughput batch sizes (default 16,64; 2 with --quick)")
  p.add_argument("--latency-iters", type=int, default=None, help="timed batch-1 calls (default 200; 3 quick)")
  p.add_argument("--throughput-iters", type=int, default=None, help="back-to-back calls per batch (default 30)")
  p.add_argument("--warmup", type=int, default=None, help="untimed calls after compiling (default 20; 1 quick)")
  p.add_argument("--train-steps", type=int, default=None, help="timed training steps (default 30; 1 quick)")
  p.add_argument("--no-torch", action="store_true", help="jaxad rows only")
  p.add_argument("--jaxad-variants", default="jit,jit-const", help="subset of jit,jit-const")
  p.add_argument("--torch-variants", default="eager,compile", help="subset of eager,compile")
  p.add_argument("--no-train", action="store_true", help="skip the training rows")
  p.add_argument("--ead-train-chunk", type=int, default=None,
                 help="EfficientAD training steps per compiled call (default 100; 2 quick); torch steps one by one")
  p.add_argument("--out", type=Path, default=Path("benchmarks/results/inference_vs_torch.json"),
                 help="JSON output; the Markdown table goes beside it (.md)")
  args = p.parse_args(argv)
  q = args.quick
  args.settings = Settings(
      size=args.size or (64 if q else 256), ead_size=max(args.size or 256, 256),
      batches=tuple(int(b) for b in (args.batches or ("2" if q else "16,64")).split(",")),
      warmup=args.warmup if args.warmup is not None else (1 if q else 20),
      latency_iters=args.latency_iters or (3 if q else 200), throughput_iters=args.throughput_iters or (2 if q else 30),
      train_steps=args.train_steps or (1 if q else 30), train_warmup=1 if q else 3, ssn_train_batch=2 if q else 8,
      ead_train_chunk=args.ead_train_chunk or (2 if q else 100),
      dtypes=tuple((args.dtypes or ("float32" if q else "float32,bfloat16")).split(",")))
  args.models = [m for m in args.models.split(",") if m]
  bad = [m for m in args.models if m not in MODELS]
  if bad:
    p.error(f"unknown models {bad}; choose from {MODELS}")
  return args


# ----------------------------------------------------------------------------- timing


def time_calls(call, sync, s: Settings, batch_of) -> dict:
  """Latency at batch 1 (median) and throughput per batch size; `call(x)` runs one batch, `sync()` waits."""
  out = {}
  x1 = batch_of(1)
  t0 = time.perf_counter()
  call(x1)
  sync()
  out["first_call_s"] = time.perf_counter() - t0
  for _ in range(s.warmup):
    call(x1)
  sync()
  times = []
  for _ in range(s.latency_iters):
    t0 = time.perf_counter()
    call(x1)
    sync()
    times.append(time.perf_counter() - t0)
  out["latency_ms"] = statistics.median(times) * 1e3
  out["throughput"] = {}
  for b in s.batches:
    x = batch_of(b)
    for _ in range(max(s.warmup // 4, 1)):
      call(x)
    sync()
    t0 = time.perf_counter()
    for _ in range(s.throughput_iters):
      call(x)
    sync()
    out["throughput"][str(b)] = b * s.throughput_iters / (time.perf_counter() - t0)
  return out


def time_steps(step, sync, steps: int, warmup: int) -> float:
  """Steps per second of `step()` (after `warmup` untimed steps)."""
  for _ in range(warmup):
    step()
  sync()
  t0 = time.perf_counter()
  for _ in range(steps):
    step()
  sync()
  return steps / (time.perf_counter() - t0)


def xla_flops(lowered) -> float | None:
  """FLOPs of a `jax.stages.Lowered` program by XLA's cost analysis of the HLO before backend passes.

  The compiled program's analysis undercounts on GPUs: convolutions become cuDNN custom calls
  there, which it does not count (an H100 run reported 0.3 G for EfficientAD-S instead of 76 G).
  """
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


# ----------------------------------------------------------------------------- jaxad side


def jaxad_supersimplenet(s: Settings, dtype: str, constant_params: bool = False):
  """(engine, train_step(), flops_per_image, train batch, steps per train_step call) of jaxad's SSN, random weights."""
  from jaxad.infer import InferenceEngine
  from jaxad.infer.engine import cast_floats
  from jaxad.models import get_method
  from jaxad.models.supersimplenet import config as cfg
  from jaxad.train import loop
  from jaxad.train.state import stack_members

  method = get_method("supersimplenet")
  static = cfg.resolve(cfg.Static(variant="jims", backbone_weights="random", image_size=(s.size, s.size),
                                  image_antialias=True, feature_align_corners=False, batch_size=s.ssn_train_batch,
                                  compute_dtype=dtype))
  features_fn, frozen_vars = method.make_frozen(static)
  hps = stack_members([cfg.Hparams()])
  trainer = loop.Trainer(method, static, 64, features_fn)
  example = jax.eval_shape(features_fn, frozen_vars, jax.ShapeDtypeStruct((1, s.size, s.size, 3), jnp.float32))
  states = trainer.init_states(hps, example)
  engine = InferenceEngine(method, static, states, (features_fn, frozen_vars), dtype=dtype,
                           constant_params=constant_params)
  flops = xla_flops(engine.lower(jax.device_put(np.zeros((1, s.size, s.size, 3), np.float32))))

  b = s.ssn_train_batch
  batch = {"image": jax.device_put(np.random.default_rng(0).normal(size=(1, b, s.size, s.size, 3)).astype(np.float32)),
           "mask": jnp.zeros((1, b, s.size, s.size)), "label": jnp.zeros((1, b), jnp.int32),
           "is_segmented": jnp.ones((1, b), bool)}
  holder = {"states": states}
  # bfloat16: the backbone on bfloat16 weights too (as torch's autocast runs it)
  train_frozen = frozen_vars if dtype == "float32" else cast_floats(frozen_vars, jnp.bfloat16)

  def train_step():
    holder["states"], metrics = trainer.run_steps(holder["states"], hps, train_frozen, batch, cached=False)
    return metrics

  return engine, train_step, flops, b, 1


def jaxad_efficient_ad(s: Settings, size: str, dtype: str, constant_params: bool = False):
  """(engine, train_step(), flops_per_image, train batch, steps per call) of jaxad's EfficientAD, random weights.

  The state is built as `jaxad fit` builds it: `Trainer.init_states`, `prepare_state` (random
  teacher, its μ, σ over random train images), then `calibrate` (map quantiles over random
  validation images). Training runs `Trainer.run_steps` on the device image cache with one
  penalty image from the method's bundled (offline) penalty stream, as `fit` does.
  """
  from jaxad.infer import InferenceEngine
  from jaxad.models import get_method
  from jaxad.models.efficient_ad import config as cfg
  from jaxad.train import loop
  from jaxad.train.state import stack_members

  method = get_method("efficient_ad")
  hw = (s.ead_size, s.ead_size)
  static = method.resolve(cfg.Static(size=size, image_size=hw, teacher="random", penalty="bundled",
                                     penalty_pool=EAD_PENALTY_POOL, padding=False, pad_maps=True, batch_size=1,
                                     compute_dtype=dtype))
  features_fn, frozen_vars = method.make_frozen(static)
  hps = stack_members([method.default_hparams(static)])
  rng = np.random.default_rng(0)
  n = EAD_STATS_IMAGES
  split = loop.SplitData(image=rng.random((n, *hw, 3)).astype(np.float32), mask=np.zeros((n, *hw), np.float32),
                         label=np.zeros(n, np.int32), is_segmented=np.ones(n, bool))
  trainer = loop.Trainer(method, static, n, features_fn)
  example = trainer.features(frozen_vars, jnp.asarray(split.image[:1]))
  states = method.prepare_state(static, trainer.init_states(hps, example), split)
  states = method.calibrate(static, states, hps, split)
  engine = InferenceEngine(method, static, states, (features_fn, frozen_vars), dtype=dtype,
                           constant_params=constant_params)
  flops = xla_flops(engine.lower(jax.device_put(np.zeros((1, *hw, 3), np.float32))))
  cache = {k: jnp.asarray(v) for k, v in loop.host_arrays(split).items() if k != "image"}
  cache["feats"] = loop.compute_features(trainer.features, frozen_vars, split.image)
  stream = method.step_inputs(static, 0)
  k = s.ead_train_chunk if loop.use_scan() else 1  # the CPU backend steps one call at a time (loop.use_scan)
  selectors = {"sel": jnp.asarray(np.arange(k)[:, None] % n, jnp.int32),
               "aux": {name: jnp.asarray(v) for name, v in stream(np.arange(k)).items()}}
  holder = {"states": states}

  def train_step():
    holder["states"], metrics = trainer.run_steps(holder["states"], hps, cache, selectors, cached=True)
    return metrics

  return engine, train_step, flops, static.batch_size, k


def run_jaxad(model: str, s: Settings, dtype: str, train: bool, variant: str = "jit") -> dict:
  hw = s.size if model == "supersimplenet" else s.ead_size
  const = variant == "jit-const"
  if model == "supersimplenet":
    predict, train_step, flops, train_batch, k = jaxad_supersimplenet(s, dtype, const)
  else:
    predict, train_step, flops, train_batch, k = jaxad_efficient_ad(s, model[-1], dtype, const)
  train = train and not const
  rng = np.random.default_rng(0)
  inputs = {b: jax.device_put(rng.random((b, hw, hw, 3)).astype(np.float32)) for b in (1, *s.batches)}
  last = {}

  def call(x):
    last["out"] = predict(x)

  row = {"library": "jaxad", "variant": variant, "flops_per_image": flops,
         **time_calls(call, lambda: jax.block_until_ready(last["out"]), s, inputs.__getitem__)}
  if train and train_step is not None:
    holder = {}

    def step():
      holder["m"] = train_step()

    sps = k * time_steps(step, lambda: jax.block_until_ready(holder["m"]), s.train_steps, s.train_warmup)
    row["train"] = {"batch": train_batch, "steps_per_s": sps, "images_per_s": sps * train_batch, "steps_per_call": k}
  return row


# ----------------------------------------------------------------------------- torch side


def torch_available() -> bool:
  try:
    import anomalib  # noqa: F401
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def build_torch_model(model: str, hw: int, device):
  """anomalib's torch model, offline, random weights, eval mode, non-trivial buffers."""
  import torch
  os.environ.setdefault("HF_HUB_OFFLINE", "1")
  torch.manual_seed(0)
  if model == "supersimplenet":
    from anomalib.models.components import TimmFeatureExtractor
    from anomalib.models.image.supersimplenet.torch_model import SupersimplenetModel
    original = TimmFeatureExtractor.__init__

    def offline_init(self, *a, **kw):
      kw["pre_trained"] = False
      original(self, *a, **kw)

    TimmFeatureExtractor.__init__ = offline_init
    try:
      net = SupersimplenetModel()
    finally:
      TimmFeatureExtractor.__init__ = original
    with torch.no_grad():
      for m in net.modules():  # timm starts some BatchNorm weights at zero
        if isinstance(m, torch.nn.BatchNorm2d):
          m.weight.fill_(1.0)
  else:
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel, EfficientAdModelSize
    size = EfficientAdModelSize.S if model.endswith("_s") else EfficientAdModelSize.M
    net = EfficientAdModel(teacher_out_channels=384, model_size=size, padding=False, pad_maps=True)
    with torch.no_grad():
      net.mean_std["mean"].copy_(0.05 * torch.randn(1, 384, 1, 1))
      net.mean_std["std"].copy_(0.5 + 0.05 * torch.rand(1, 384, 1, 1))
      for i, name in enumerate(("qa_st", "qb_st", "qa_ae", "qb_ae")):
        net.quantiles[name].fill_(0.1 * (i + 1))
  return net.to(device).eval()


def run_torch(model: str, s: Settings, dtype: str, variant: str, train: bool) -> dict:
  import torch
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.backends.cudnn.benchmark = True
  hw = s.size if model == "supersimplenet" else s.ead_size
  net = build_torch_model(model, hw, device)
  row = {"library": "torch", "variant": variant}
  sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  gen = torch.Generator().manual_seed(0)
  inputs = {b: torch.rand(b, 3, hw, hw, generator=gen).to(device) for b in (1, *s.batches)}
  if variant == "eager":
    from torch.utils.flop_counter import FlopCounterMode
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
      net(inputs[1])
    row["flops_per_image_torch_counter"] = float(counter.get_total_flops())
  forward = net if variant == "eager" else torch.compile(net, mode="reduce-overhead" if device.type == "cuda" else None)

  def call(x):
    with torch.no_grad(), autocast:
      return forward(x)

  try:
    row.update(time_calls(call, sync, s, inputs.__getitem__))
  except Exception as e:  # noqa: BLE001 — a failing torch variant is a result, not a crash
    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    traceback.print_exc()
    return row
  if train and variant == "eager":
    try:
      row["train"] = torch_train(model, net, s, dtype, device, sync)
    except Exception as e:  # noqa: BLE001 — e.g. anomalib's Perlin generator rejects tiny feature grids
      row["train_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
      traceback.print_exc()
  return row


def torch_train(model: str, net, s: Settings, dtype: str, device, sync) -> dict:
  """anomalib's training step (forward in train mode, its loss, backward, optimiser step): steps/s."""
  import torch
  net.train()
  gen = torch.Generator().manual_seed(1)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
  if model == "supersimplenet":
    from anomalib.models.image.supersimplenet.loss import SSNLoss
    b, hw = s.ssn_train_batch, s.size
    images = torch.rand(b, 3, hw, hw, generator=gen).to(device)
    masks, labels = torch.zeros(b, hw, hw, device=device), torch.zeros(b, device=device)
    loss_fn = SSNLoss()
    opt = torch.optim.AdamW([{"params": net.adaptor.parameters(), "lr": 1e-4},
                             {"params": net.segdec.parameters(), "lr": 2e-4, "weight_decay": 1e-5}])

    def step():
      with autocast:
        pred_map, pred_score, m, lab = net(images, masks, labels)
        loss = loss_fn(pred_map, pred_score, m, lab)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
  else:
    b, hw = 1, s.ead_size
    images = torch.rand(b, 3, hw, hw, generator=gen).to(device)
    penalty = torch.rand(b, 3, hw, hw, generator=gen).to(device)
    opt = torch.optim.Adam(list(net.student.parameters()) + list(net.ae.parameters()), lr=1e-4, weight_decay=1e-5)

    def step():
      with autocast:
        loss_st, loss_ae, loss_stae = net(images, penalty)
        loss = loss_st + loss_ae + loss_stae
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()

  sps = time_steps(step, sync, s.train_steps, s.train_warmup)
  net.eval()
  return {"batch": b, "steps_per_s": sps, "images_per_s": sps * b}


# ----------------------------------------------------------------------------- report


def versions() -> dict:
  out = provenance.versions()
  for name in ("torch", "torchvision", "anomalib", "timm"):
    try:
      import importlib.metadata
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  try:
    import torch
    out["cuda_torch"] = torch.version.cuda
    out["cudnn_torch"] = torch.backends.cudnn.version()
  except ImportError:
    pass
  return out


def add_ratios(rows: list[dict]) -> None:
  """jaxad speed / best torch speed per (model, dtype): latency and every throughput batch."""
  for r in rows:
    if r["library"] != "jaxad" or "latency_ms" not in r:
      continue
    torch_rows = [t for t in rows if t["library"] == "torch" and t["model"] == r["model"] and t["dtype"] == r["dtype"]
                  and "latency_ms" in t]
    if not torch_rows:
      continue
    ratios = {"latency": min(t["latency_ms"] for t in torch_rows) / r["latency_ms"]}
    for b, v in r["throughput"].items():
      ratios[f"b{b}"] = v / max(t["throughput"][b] for t in torch_rows)
    if "train" in r:
      trained = [t for t in torch_rows if "train" in t]
      if trained:
        ratios["train"] = r["train"]["steps_per_s"] / max(t["train"]["steps_per_s"] for t in trained)
    r["speed_ratio_vs_best_torch"] = ratios


def markdown(record: dict) -> str:
  s, rows = record["settings"], record["rows"]
  batches = [str(b) for b in s["batches"]]
  head = ["model", "library", "variant", "dtype", "b1 latency ms", *[f"b{b} img/s" for b in batches],
          f"b{batches[-1]} TFLOP/s", "train img/s (batch)", "jaxad/best torch (lat, " + ", ".join(
              f"b{b}" for b in batches) + ", train)"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  fmt = lambda v, d=3: "" if v is None else (f"{v:.{d}g}" if isinstance(v, float) else str(v))
  for r in rows:
    if "error" in r:
      cells = [LABELS[r["model"]], r["library"], r["variant"], r["dtype"], f"fails: {r['error'][:60]}",
               *[""] * len(batches), "", "", ""]
    else:
      thr = [fmt(r["throughput"][b], 4) for b in batches]
      flops = record["flops_per_image"].get(r["model"])
      tflops = fmt(flops * r["throughput"][batches[-1]] / 1e12) if flops else ""
      train = (f"{fmt(r['train']['images_per_s'])} ({r['train']['batch']})" if "train" in r else
               "fails" if "train_error" in r else "")
      ratio = r.get("speed_ratio_vs_best_torch")
      ratio_s = ", ".join(fmt(ratio.get(k), 2) for k in ["latency", *[f"b{b}" for b in batches], "train"]) if ratio else ""
      cells = [LABELS[r["model"]], r["library"], r["variant"], r["dtype"], fmt(r["latency_ms"]), *thr, tflops, train,
               ratio_s]
    lines.append("| " + " | ".join(cells) + " |")
  p = record["provenance"]
  flops = ", ".join(f"{LABELS[m]} {v / 1e9:.1f} G" for m, v in record["flops_per_image"].items() if v)
  head_lines = [f"{record['label']}", "",
                f"device: {record['device']}; commit {p['git']['commit']}{' (dirty)' if p['git']['dirty'] else ''}; "
                f"jax {p['versions']['jax']}, torch {record['versions'].get('torch')}, "
                f"anomalib {record['versions'].get('anomalib')}",
                f"sizes: SSN {s['size']}², EfficientAD {s['ead_size']}²; latency = median of {s['latency_iters']} "
                f"batch-1 calls; throughput over {s['throughput_iters']} calls; FLOPs/image (XLA): {flops}", ""]
  return "\n".join(head_lines + lines) + "\n"


def main(argv=None) -> int:
  args = parse_args(argv)
  s: Settings = args.settings
  with_torch = not args.no_torch and torch_available()
  variants = [v for v in args.torch_variants.split(",") if v]
  rows = []
  flops = {}
  for model in args.models:
    for dtype in s.dtypes:
      for jaxad_variant in [v for v in args.jaxad_variants.split(",") if v]:
        print(f"[jaxad] {model} {dtype} {jaxad_variant}", flush=True)
        row = run_jaxad(model, s, dtype, not args.no_train, jaxad_variant)
        rows.append({"model": model, "dtype": dtype, **row})
        print(summary(rows[-1]), flush=True)
        if dtype == "float32" and row.get("flops_per_image"):
          flops[model] = row["flops_per_image"]
        write(args, record_of(args, s, with_torch, flops, rows))
      if with_torch:
        for variant in variants:
          print(f"[torch] {model} {dtype} {variant}", flush=True)
          rows.append({"model": model, "dtype": dtype, **run_torch(model, s, dtype, variant, not args.no_train)})
          print(summary(rows[-1]), flush=True)
          write(args, record_of(args, s, with_torch, flops, rows))
  record = record_of(args, s, with_torch, flops, rows)
  write(args, record)
  print(markdown(record))
  return 0


def summary(row: dict) -> str:
  """One progress line per measured row (the tables come at the end; a run cut short keeps these)."""
  if "error" in row:
    return f"  fails: {row['error'][:200]}"
  thr = ", ".join(f"b{b} {v:.0f} img/s" for b, v in row["throughput"].items())
  train = f", train {row['train']['steps_per_s']:.1f} steps/s" if "train" in row else ""
  return f"  b1 {row['latency_ms']:.3f} ms, {thr}{train}"


def record_of(args, s: Settings, with_torch: bool, flops: dict, rows: list[dict]) -> dict:
  rows = [dict(r) for r in rows]
  add_ratios(rows)
  device = jax.devices()[0]
  label = ("CPU SMOKE RUN (--quick: tiny sizes, few repetitions; checks the script, the numbers are not "
           "benchmark results)" if args.quick else "inference and training speed, jaxad vs anomalib (torch)")
  return {"benchmark": "inference_vs_torch", "label": label, "quick": args.quick,
          "device": f"{device.platform}:{device.device_kind}", "torch_included": with_torch,
          "settings": dataclasses.asdict(s), "versions": versions(), "provenance": provenance.collect(),
          "flops_per_image": flops, "rows": rows}


def write(args, record: dict) -> None:
  """JSON and Markdown after every row, so a run stopped at a time limit keeps what it measured."""
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps(record, indent=2))
  args.out.with_suffix(".md").write_text(markdown(record))


if __name__ == "__main__":
  raise SystemExit(main())
