"""SuperSimpleNet on SensumSODF, supervised, 100 % segmented (ICPR 2024; JIMS 2025 with `:jims`).

COMMAND:  jaxad fit --config experiments/supersimplenet_sensum.py[:jims] --data ~/data/SensumSODF
          (both objects; `:capsule` or `:softgel`, e.g. `:softgel+jims`, trains one object)
          (the root holds capsule/, softgel/ and the SSN authors' sensum_splits/; see README "Datasets")
EXPECTED: paper 5-run means (×100) over both objects × 3 folds: ICPR AP-det 94.65 ± 0.24, I-AUROC 97.75,
          P-AUROC 98.88, AUPRO 93.02; JIMS AP-det 94.95, I-AUROC 97.98, AUPRO 95.80 (methods.md §3.13).
Settings: capsule 320×192, softgel 144×144 (per-category settings), one run per object and
cross-validation fold (the categories capsule_0..2 / softgel_0..2, named as the official script
names its runs). The summary's mean row covers the six, which is the official total (eval.py:
the mean over every fold of both objects), so `jaxad fit` compares it with the paper.
Supervised protocol as KSDD2, Perlin threshold 0.6, seed 456654. Mixed supervision:
`--segmented-percent P` reads the split file pos_<P>.pckl (weakly labelled positives train only the score);
with P = 0 the JIMS code lowers the Perlin threshold to 0.2: add `--set perlin_threshold=0.2`.
"""

import os


PAPER = {  # EXPECTED above, as fractions; `jaxad fit` writes paper_comparison.md
    "icpr": {"source": "SuperSimpleNet ICPR 2024, 5-run mean, SensumSODF 100 % (methods.md §3.13)",
             "image_auroc_official": 0.9775, "pixel_auroc": 0.9888, "aupro": 0.9302, "image_ap_official": 0.9465},
    "jims": {"source": "SuperSimpleNet JIMS 2025, 5-run mean, SensumSODF 100 % (methods.md §3.13)",
             "image_auroc_official": 0.9798, "aupro": 0.9580, "image_ap_official": 0.9495},
}
SIZES = {"capsule": (320, 192), "softgel": (144, 144)}
ARGS = (None, "jims", "capsule", "softgel", "capsule+jims", "jims+capsule", "softgel+jims", "jims+softgel")


def get_config(arg=None):
  variant = "jims" if arg and "jims" in arg else "icpr"
  objects = [o for o in SIZES if arg and o in arg] or list(SIZES)
  run = {"model": "supersimplenet", "data": os.environ.get("SENSUM_ROOT", "data/SensumSODF"),
         "categories": tuple(f"{obj}_{fold}" for obj in objects for fold in range(3)),
         "category_settings": {f"{obj}_*": {"image_size": SIZES[obj]} for obj in objects},
         "workdir": f"runs/supersimplenet_{variant}_sensum" + ("" if len(objects) == 2 else f"_{objects[0]}"),
         "val_fraction": 0.0}  # every image trains, as the official code (no predict threshold)
  settings = {"variant": variant, "supervised": True, "backbone": "wide_resnet50_2",
              "perlin_threshold": 0.6, "batch_size": 32, "epochs": 300, "seed": 456654}
  config = {"run": run, "set": settings}
  if len(objects) == 2:
    config["paper"] = PAPER[variant]
  return config
