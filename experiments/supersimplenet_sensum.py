"""SuperSimpleNet on SensumSODF, supervised, 100 % segmented (ICPR 2024; JIMS 2025 with `:jims`).

COMMAND:  jaxad fit --config experiments/supersimplenet_sensum.py[:jims] --data ~/data/sensum/capsule
          (one run per object and cross-validation fold; the fold split files come from the SSN authors)
EXPECTED: paper 5-run means (×100): ICPR AP-det 94.65 ± 0.24, I-AUROC 97.75, P-AUROC 98.88, AUPRO 93.02;
          JIMS AP-det 94.95, I-AUROC 97.98, AUPRO 95.80 (methods.md §3.13).
Settings: capsule 320×192 (softgel 144×144 with `:softgel`, or `:jims+softgel`), supervised protocol as KSDD2.
Data: the SensumSODF fold reader is not built yet. The folder layout flags (`--normal-dir`,
`--abnormal-dir`, `--mask-dir`) read a fold's images, but that layout keeps anomalous images in the
test split only, so it trains unsupervised: the supervised protocol needs the fold reader.
"""

import os


ARGS = (None, "jims", "softgel", "jims+softgel")  # the accepted `--config file:ARG` values (None: no ARG)


def get_config(arg=None):
  variant = "jims" if arg and "jims" in arg else "icpr"
  size = (144, 144) if arg and "softgel" in arg else (320, 192)
  run = {"model": "supersimplenet", "data": os.environ.get("SENSUM_ROOT", "data/sensum"),
         "workdir": f"runs/supersimplenet_{variant}_sensum"}
  settings = {"variant": variant, "supervised": True, "backbone": "wide_resnet50_2", "image_size": size,
              "perlin_threshold": 0.6, "batch_size": 32, "epochs": 300, "seed": 456654}
  return {"run": run, "set": settings}
