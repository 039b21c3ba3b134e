"""EfficientAD-S (or -M with `:m`) on VisA, the paper setting.

COMMAND:  jaxad fit --config experiments/efficient_ad_visa.py[:m] --data ~/data/...
          (teacher: `jaxad weights download efficientad_teacher_s` or `_m` once)
RUNTIME:  70,000 batch-1 steps per category; not measured in this repository yet (no GPU run).
EXPECTED: paper image AUROC S 97.5, M 98.1; nelson's reproduction S 97.6, M 98.2 (methods.md §4.7).
Settings (nelson1425 / paper appendix, methods.md §4.5–4.6): 256×256 (PIL bilinear), batch 1, 70,000 steps,
Adam lr 1e-4 with coupled L2 1e-5, LR ×0.1 at 66,500, p_hard 0.999, AE augmentation U(0.8, 1.2), map
quantiles 0.9 / 0.995 on the validation split, 0.5 / 0.5 combination, image score = map max.
Maps are normalised before they are padded and resized, as nelson (`postprocess=nelson`; anomalib
pads first, which puts its zero border below every normal pixel and raised AU-PRO by 2–9 points
in a synthetic check recorded in 5a2bfac). Scored at each test image's original size, as nelson and the
MVTec evaluation (`eval_size=original`: the map is resized to the image and its maximum is the score;
host memory about 16 bytes per test pixel for the metrics, 2.5 GiB for 117 images of 1024²;
`--set eval_size=input` scores at 256 px, as anomalib).
Teacher: `jaxad weights download efficientad_teacher_{s,m}` (anomalib's release of nelson's teachers)
or your own `jaxad distill` output (`--set teacher=FILE`). Penalty images: set PENALTY_IMAGES to an
ImageNet (nelson) or Imagenette (anomalib) train folder: each step then reads its own image from a
shuffled pass over the folder, as nelson (`penalty_pool=0`). Without it, a pool of 1,000 random crops
of the photos bundled with scikit-image and scikit-learn (deviation; EfficientAD README).
`:m` selects EfficientAD-M.
Validation: 10 % of each category's train images.
"""

import os


PAPER = {  # EXPECTED above, as fractions; `jaxad fit` writes paper_comparison.md
    "s": {"source": "EfficientAD-S paper, image AUROC (methods.md §4.7)", "image_auroc": 0.975},
    "m": {"source": "EfficientAD-M paper, image AUROC (methods.md §4.7)", "image_auroc": 0.981},
}
ARGS = (None, "m")  # the accepted `--config file:ARG` values (None: no ARG)


def get_config(arg=None):
  size = "m" if arg == "m" else "s"
  run = {"model": "efficient_ad", "data": os.environ.get("VISA_ROOT", "data/visa"),
         "workdir": f"runs/efficient_ad_{size}_visa", "chunk": 500, "ckpt_every": 10000}
  penalty = os.environ.get("PENALTY_IMAGES", "bundled")
  settings = {"size": size, "image_size": (256, 256), "train_steps": 70000, "batch_size": 1, "padding": False,
              "postprocess": "nelson",  # normalise the raw maps, then pad and resize, as nelson (and the paper)
              "eval_size": "original",  # metrics at each test image's own size, as nelson
              "penalty": penalty, "penalty_pool": 1000 if penalty == "bundled" else 0, "seed": 42}
  return {"run": run, "set": settings, "paper": PAPER[size]}
