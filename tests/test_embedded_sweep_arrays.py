"""benchmarks/supersimplenet_embedded_sweep.py --write-arrays: the .npz read on machines without the data
pipeline gives the same splits as the pipeline, up to uint8 rounding of the images."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
  return load_benchmark("supersimplenet_embedded_sweep")


def test_written_arrays_equal_the_pipeline(bench, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "cache"))
  from jaxad.models.supersimplenet import config as cfg
  static = cfg.resolve(cfg.Static(backbone="efficientnet_lite0", image_size=(64, 64)))
  path = tmp_path / "arrays.npz"
  bench.write_arrays(static, ["chip"], path)
  data = dict(np.load(path))
  assert {k.split("/")[1] for k in data} == {"train", "validation", "test"}
  for split in ("train", "validation", "test"):
    stored, piped = bench.from_arrays(data, "chip", split), bench.from_pipeline(static, "chip", split)
    assert stored.image.shape == piped.image.shape == (len(piped.label), 64, 64, 3)
    # uint8 rounding moves a pixel by at most half of 1/255 before the ImageNet normalisation (std >= 0.224)
    np.testing.assert_allclose(stored.image, piped.image, atol=0.5 / 255 / 0.224 + 1e-6)
    np.testing.assert_array_equal(stored.mask, piped.mask)
    np.testing.assert_array_equal(stored.label, piped.label)
    if split == "test":
      assert stored.label.sum() > 0 and stored.mask.any()
      np.testing.assert_array_equal(stored.components, piped.components)
