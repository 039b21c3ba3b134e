"""EfficientAD-S on the embedded dataset, offline, small enough for 2 CPU cores.

COMMAND:  jaxad distill --image-size 64 --steps 300 --batch-size 8 --stats-images 256 --lr 1e-3 \
              --out runs/efficient_ad_embedded/teacher_s64.safetensors
          jaxad fit --config experiments/efficient_ad_embedded.py
RUNTIME:  distill 13.4 min + fit 14 min wall on 2 CPU cores (4 categories).
MEASURED: mean image AUROC 0.734 (brick 0.844, chip 0.576, nut 0.662, weave 0.856; 0.664 with
          `--set train_steps=100`); below the 0.90 target (jaxad/models/efficient_ad/README.md).
          With `--set image_size=128,128` (same teacher, 2.2 s per step on CPU): brick 0.998,
          nut 0.789, chip 0.838; at 64 px a feature kNN reaches only 0.819 on average (chip 0.564).

Deviations from the paper setting (methods.md §4), all for CPU time: 64-px images (PDN output
8×8; the AE's code conv shrinks to 2×2, `model.code_kernel`), a teacher distilled for 300 steps of batch 8 (lr 1e-3)
from EfficientNet-Lite0 on bundled photos instead of nelson's WideResNet-101-2 / ImageNet teacher,
500 training steps instead of 70,000 (the LR decay still happens at 95 %), bundled photos as the
penalty images. Everything else (losses, p_hard, optimiser, augmentation, quantiles on the
validation split, map post-processing) is the reference setting.
`:smoke` trains 2 steps with a random teacher (tests). `:guard` trains chip for 200 steps with a random
teacher (tests/test_quality.py: training must lift its image AUROC well above the untrained model's).

`:128` is the GPU setting that meets the project's 0.90 image AUROC target (H100, commit 2dafd24: image
AUROC 1.000 on all four categories, pixel AUROC 0.962, AUPRO 0.934;
`benchmarks/results/efficient_ad_embedded_128px_h100.md`):
COMMAND:  jaxad distill --image-size 128 --steps 4600 --stats-images 2000 \
              --out runs/efficient_ad_embedded/teacher_s128.safetensors
          jaxad fit --config experiments/efficient_ad_embedded.py:128
RUNTIME:  H100: distillation 30 steps/s (bounded by the host's photo crops), 151 s; training 460 steps/s,
          ~37 s per category after compilation. The measured run came from
          `benchmarks/efficient_ad_embedded.py` (the same distillation and `jaxad.run.run_category`).
Remaining deviations there: 128-px images, 15,000 training steps, the 4,600-step Lite0 teacher, bundled
penalty photos.
"""

import os


ARGS = (None, "128", "guard", "smoke")  # the accepted `--config file:ARG` values (None: no ARG)


def get_config(arg=None):
  run = {"model": "efficient_ad", "data": "embedded", "workdir": "runs/efficient_ad_embedded", "chunk": 25}
  settings = {"size": "s", "image_size": (64, 64), "train_steps": 500, "penalty": "bundled",
              "teacher": os.environ.get("EFFICIENT_AD_TEACHER", "runs/efficient_ad_embedded/teacher_s64.safetensors")}
  if arg == "128":
    settings.update(image_size=(128, 128), train_steps=15000,
                    teacher=os.environ.get("EFFICIENT_AD_TEACHER", "runs/efficient_ad_embedded/teacher_s128.safetensors"))
    run.update(chunk=500)
  if arg == "guard":  # tests/test_quality.py: chip at 64 px with a random teacher (no distillation on CI)
    settings.update(teacher="random", penalty_pool=64, train_steps=200)
    run.update(categories=("chip",), progress=False, workdir="runs/guard_efficient_ad_embedded")
  if arg == "smoke":
    settings.update(teacher="random", penalty_pool=8)
    run.update(max_steps=2, chunk=2, categories=("brick",), workdir="runs/smoke_efficient_ad_embedded")
  return {"run": run, "set": settings}
