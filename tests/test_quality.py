"""Quality guards: the quick-start SuperSimpleNet (EfficientNet-Lite0 with its bundled ImageNet
weights, embedded data) must learn real defects, not only run (one category, 60 steps); EfficientAD's
training must improve its detection (chip, random teacher, 200 steps against 2)."""

import json

from jaxad.cli import main


def test_quickstart_config_detects_embedded_defects(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "cache"))
  workdir = tmp_path / "run"
  assert main(["fit", "--config", "experiments/supersimplenet_embedded.py:guard", "--workdir", str(workdir),
               "--no-progress"]) == 0
  report = json.loads((workdir / "weave" / "report.json").read_text())[0]
  print({k: report[k] for k in ("image_auroc", "image_auroc_map_max", "pixel_auroc", "aupro")})
  # Measured 0.971 / 0.971 / 0.926 (CPU); an untrained or mis-wired model scores ~0.5.
  assert report["image_auroc_map_max"] >= 0.93
  assert report["image_auroc"] >= 0.9
  assert report["pixel_auroc"] >= 0.88


def test_efficient_ad_training_lifts_detection_on_chip(tmp_path, monkeypatch):
  # A distilled teacher takes minutes of CPU per hundred steps, so this guards the training itself with a random
  # teacher: on chip, whose defects the untrained student-teacher gap does not separate, 200 steps must lift the
  # image AUROC well above 2 steps. Measured on CPU: 0.331 (2 steps) -> 0.578 (200 steps). It does not guard the
  # 0.90 target; that was measured with a distilled teacher on an H100 (jaxad/models/efficient_ad/README.md).
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "cache"))
  scores = {}
  for steps in (2, 200):
    workdir = tmp_path / f"run{steps}"
    assert main(["fit", "--config", "experiments/efficient_ad_embedded.py:guard", "--workdir", str(workdir),
                 "--set", f"train_steps={steps}", "--no-progress"]) == 0
    scores[steps] = json.loads((workdir / "chip" / "report.json").read_text())[0]["image_auroc"]
  print(scores)
  assert scores[200] >= scores[2] + 0.15
  assert scores[200] >= 0.5
