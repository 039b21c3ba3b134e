"""SuperSimpleNet on VisA, unsupervised (ICPR 2024; JIMS 2025 with `:jims`).

COMMAND:  jaxad fit --config experiments/supersimplenet_visa.py[:jims] --data ~/data/visa
EXPECTED: paper 5-run means (×100): ICPR I-AUROC 93.38 ± 0.42, P-AUROC 98.34, AUPRO 87.43, AP-det 94.90;
          JIMS I-AUROC 93.64, AUPRO 87.42, AP-det 95.17 (methods.md §3.13).
Settings as MVTec AD except the Perlin threshold 0.6.
"""

import os


PAPER = {  # EXPECTED above, as fractions; `jaxad fit` writes paper_comparison.md
    "icpr": {"source": "SuperSimpleNet ICPR 2024, 5-run mean (methods.md §3.13)", "image_auroc_official": 0.9338,
             "pixel_auroc": 0.9834, "aupro": 0.8743, "image_ap_official": 0.9490},
    "jims": {"source": "SuperSimpleNet JIMS 2025, 5-run mean (methods.md §3.13)", "image_auroc_official": 0.9364,
             "aupro": 0.8742, "image_ap_official": 0.9517},
}
ARGS = (None, "jims")  # the accepted `--config file:ARG` values (None: no ARG)


def get_config(arg=None):
  variant = "jims" if arg == "jims" else "icpr"
  run = {"model": "supersimplenet", "data": os.environ.get("VISA_ROOT", "data/visa"),
         "workdir": f"runs/supersimplenet_{variant}_visa",
         "val_fraction": 0.0}  # every image trains, as the official code (no predict threshold)
  settings = {"variant": variant, "backbone": "wide_resnet50_2", "image_size": (256, 256), "perlin_threshold": 0.6,
              "batch_size": 32, "epochs": 300, "seed": 42}
  return {"run": run, "set": settings, "paper": PAPER[variant]}
