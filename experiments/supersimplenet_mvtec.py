"""SuperSimpleNet on MVTec AD, unsupervised (ICPR 2024 Table; JIMS 2025 with `:jims`).

COMMAND:  jaxad fit --config experiments/supersimplenet_mvtec.py[:jims] --data ~/data/mvtec_anomaly_detection
          (needs `jaxad weights download wide_resnet50_2.tv_in1k` once)
RUNTIME:  300 epochs × 15 categories (35,700 steps of batch 32); not measured in this repository yet.
EXPECTED: paper 5-run means (×100): ICPR I-AUROC 98.38 ± 0.10, P-AUROC 97.53, AUPRO 91.14, AP-det 99.39;
          JIMS I-AUROC 98.33, AUPRO 91.19, AP-det 99.36 (methods.md §3.13). Seeds 42, 1337, 420, 0, 456654.
Settings: 256×256, WideResNet-50-2 V1 layer2+3, σ 0.015, Perlin threshold 0.2, batch 32, AdamW
(1e-4 adaptor, 2e-4 heads), MultiStepLR ×0.4 at epochs 240/270, last epoch reported.
`:smoke` shrinks everything to a two-step run (used by the tests).
"""

import os

MVTEC_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
                    "screw", "tile", "toothbrush", "transistor", "wood", "zipper")


PAPER = {  # EXPECTED above, as fractions; `jaxad fit` writes paper_comparison.md
    "icpr": {"source": "SuperSimpleNet ICPR 2024, 5-run mean (methods.md §3.13)", "image_auroc_official": 0.9838,
             "pixel_auroc": 0.9753, "aupro": 0.9114, "image_ap_official": 0.9939},
    "jims": {"source": "SuperSimpleNet JIMS 2025, 5-run mean (methods.md §3.13)", "image_auroc_official": 0.9833,
             "aupro": 0.9119, "image_ap_official": 0.9936},
}
ARGS = (None, "jims", "smoke")  # the accepted `--config file:ARG` values (None: no ARG)


def get_config(arg=None):
  variant = "jims" if arg == "jims" else "icpr"
  run = {"model": "supersimplenet", "data": os.environ.get("MVTEC_AD_ROOT", "data/mvtec_anomaly_detection"),
         "workdir": f"runs/supersimplenet_{variant}_mvtec",
         "val_fraction": 0.0}  # every image trains, as the official code (no predict threshold)
  settings = {"variant": variant, "backbone": "wide_resnet50_2", "image_size": (256, 256), "perlin_threshold": 0.2,
              "batch_size": 32, "epochs": 300, "seed": 42}
  if arg == "smoke":
    settings.update(backbone="tiny_test", backbone_weights="random", image_size=(64, 64), batch_size=4, epochs=1,
                    seg_hidden=8, cls_hidden=4)
    run.update(max_steps=2, data="embedded", categories=("brick",), workdir="runs/smoke_ssn_mvtec")
    return {"run": run, "set": settings}
  return {"run": run, "set": settings, "paper": PAPER[variant]}
