"""jaxad.metrics against anomalib 2.7 (AUROC, F1Max, AUPRO with fpr_limit 0.3) on the same maps.

anomalib accumulates in float32, hence the 1e-4 tolerance. Scores stay in [0, 1] because
torchmetrics applies a sigmoid to scores outside it (monotone, but it can merge float32 values).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
aupro_module = pytest.importorskip("anomalib.metrics.aupro")
auroc_module = pytest.importorskip("anomalib.metrics.auroc")
f1_module = pytest.importorskip("anomalib.metrics.f1_score")

from jaxad import metrics  # noqa: E402

pytestmark = pytest.mark.parity


def _maps_and_masks(seed, n=8, size=48, levels=200):
  """Quantised maps (many ties) and masks of random blobs, two of them touching diagonally."""
  rng = np.random.default_rng(seed)
  maps = rng.integers(0, levels, (n, size, size)).astype(np.float32)
  masks = np.zeros((n, size, size), bool)
  for i in range(n // 2):
    for _ in range(rng.integers(1, 4)):
      y, x = rng.integers(0, size - 8, 2)
      h, w = rng.integers(1, 8, 2)
      masks[i, y:y + h, x:x + w] = True
  masks[0, 0:3, 0:3] = masks[0, 3:6, 3:6] = True  # one region under 8-connectivity
  maps[masks] += levels // 4
  return maps / maps.max(), masks


def _anomalib(metric, preds, target):
  metric.update(torch.from_numpy(preds), torch.from_numpy(target))
  return float(metric.compute())


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_metrics_match_anomalib(seed):
  maps, masks = _maps_and_masks(seed)
  target = masks.astype(np.int64)
  assert metrics.pixel_auroc(maps, masks) == pytest.approx(
      _anomalib(auroc_module._AUROC(), maps, target), abs=1e-4)
  assert metrics.pixel_f1_max(maps, masks) == pytest.approx(
      _anomalib(f1_module._F1Max(), maps, target), abs=1e-4)
  expected = _anomalib(aupro_module._AUPRO(fpr_limit=0.3), maps, masks.astype(np.float32))
  assert metrics.aupro(maps, metrics.connected_components(masks), 0.3) == pytest.approx(
      expected, abs=1e-4)


def test_image_metrics_match_anomalib():
  maps, masks = _maps_and_masks(2, n=40)
  scores = np.round(maps.reshape(len(maps), -1).max(1), 2).astype(np.float32)  # ties too
  labels = masks.any((1, 2)).astype(np.int64)
  assert metrics.image_auroc(scores, labels) == pytest.approx(
      _anomalib(auroc_module._AUROC(), scores, labels), abs=1e-4)
  assert metrics.image_f1_max(scores, labels) == pytest.approx(
      _anomalib(f1_module._F1Max(), scores, labels), abs=1e-4)
