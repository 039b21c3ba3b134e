"""benchmarks/inference_vs_torch.py: ratios and the Markdown table from recorded rows; the jaxad
EfficientAD row through the registered Method at 64 px.

Running the script itself, even with --quick, compiles WideResNet-50-2 and EfficientAD at 256 px
(minutes on 2 CPU cores), so it is not run here; its CPU smoke output is in benchmarks/results/.
"""

import math

import jax
import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
  return load_benchmark("inference_vs_torch")


def _row(library, variant, latency, b16, train=None, dtype="float32", model="efficient_ad_s"):
  row = {"model": model, "dtype": dtype, "library": library, "variant": variant, "latency_ms": latency,
         "throughput": {"16": b16}}
  if train:
    row["train"] = {"batch": 1, "steps_per_s": train, "images_per_s": train}
  return row


def test_ratios_are_jaxad_speed_over_the_best_torch_variant_of_the_same_precision(bench):
  rows = [_row("jaxad", "jit", 0.5, 5000.0, train=100.0), _row("torch", "eager", 3.0, 1200.0, train=80.0),
          _row("torch", "compile", 0.75, 4000.0), _row("torch", "compile", 0.1, 9e9, dtype="bfloat16"),
          {"model": "efficient_ad_s", "dtype": "float32", "library": "torch", "variant": "compile",
           "error": "RuntimeError: boom"}]
  bench.add_ratios(rows)
  ratio = rows[0]["speed_ratio_vs_best_torch"]
  assert ratio == pytest.approx({"latency": 1.5, "b16": 1.25, "train": 1.25})
  record = {"label": "test", "settings": {"batches": [16], "size": 64, "ead_size": 256, "latency_iters": 3,
                                          "throughput_iters": 2},
            "rows": rows, "flops_per_image": {"efficient_ad_s": 76e9}, "versions": {"torch": "x", "anomalib": "y"},
            "device": "cpu:cpu", "provenance": {"git": {"commit": "abc", "dirty": False}, "versions": {"jax": "z"}}}
  table = bench.markdown(record)
  assert "| EfficientAD-S | jaxad | jit | float32 | 0.5 | 5000 | 380 | 100 (1) | 1.5, 1.2, 1.2 |" in table
  assert "fails: RuntimeError: boom" in table


def test_quick_settings_and_model_choice(bench):
  args = bench.parse_args(["--quick", "--models", "supersimplenet"])
  assert args.settings.size == 64 and args.settings.ead_size == 256 and args.settings.dtypes == ("float32",)
  assert bench.parse_args([]).settings.latency_iters >= 200
  with pytest.raises(SystemExit):
    bench.parse_args(["--models", "patchcore"])


def test_efficient_ad_row_runs_the_method_with_its_prepared_state_and_penalty(bench, monkeypatch):
  built, metrics = {}, []
  original = bench.jaxad_efficient_ad

  def capture(s, size, dtype, constant_params=False):
    engine, train_step, flops, batch, k = original(s, size, dtype, constant_params)
    built["engine"] = engine
    return engine, lambda: metrics.append(train_step()) or metrics[-1], flops, batch, k

  monkeypatch.setattr(bench, "jaxad_efficient_ad", capture)
  from jaxad.train import loop
  monkeypatch.setattr(loop, "use_scan", lambda: True)  # the accelerator path: K steps per compiled lax.scan
  s = bench.Settings(size=64, ead_size=64, batches=(1,), warmup=0, latency_iters=1, throughput_iters=1,
                     train_steps=1, train_warmup=1, ssn_train_batch=2, ead_train_chunk=2, dtypes=("float32",))
  row = bench.run_jaxad("efficient_ad_s", s, "float32", train=True)
  assert math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0 and row["flops_per_image"] > 0
  assert row["train"]["batch"] == 1 and math.isfinite(row["train"]["steps_per_s"]) and row["train"]["steps_per_s"] > 0
  assert row["train"]["steps_per_call"] == 2

  engine = built["engine"]
  assert engine.method.name == "efficient_ad" and engine.static.teacher == "random"
  frozen = jax.device_get(engine.params[0].batch_stats)  # prepare_state and calibrate ran
  assert any(np.abs(w).max() > 0 for w in jax.tree.leaves(frozen["teacher"]))
  assert not np.allclose(frozen["mean"], 0.0) and not np.allclose(frozen["std"], 1.0)
  mn = frozen["map_norm"]
  assert (mn["qb_st"] > mn["qa_st"]).all() and not np.allclose(mn["qb_st"], 1.0)
  step = jax.device_get(metrics[-1])  # Trainer.run_steps: (K = 2, M = 1), with the penalty image in the loss
  assert step["loss"].shape == (2, 1) and np.isfinite(step["loss"]).all() and (step["penalty"] > 0).all()

  const = bench.run_jaxad("efficient_ad_s", s, "float32", train=True, variant="jit-const")
  assert built["engine"].constant_params and const["variant"] == "jit-const" and "train" not in const
  assert math.isfinite(const["latency_ms"]) and const["flops_per_image"] == pytest.approx(row["flops_per_image"])
