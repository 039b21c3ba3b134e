"""The embedded dataset: MVTec AD layout, exact masks, determinism, overwrite rules."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from jaxad.data import embedded
from jaxad.errors import DataError

SMALL = dict(image_size=64, n_train=3, n_test_good=2, n_test_per_defect=2)


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> pathlib.Path:
  return embedded.build_embedded(tmp_path_factory.mktemp("embedded") / "data", seed=0, **SMALL)


def test_layout_and_counts(built):
  assert sorted(p.name for p in built.iterdir()) == sorted([*embedded.EMBEDDED_CATEGORIES, "README.txt",
                                                            "embedded.json"])
  for category, defects in embedded.EMBEDDED_DEFECTS.items():
    root = built / category
    assert sorted(p.name for p in (root / "train").iterdir()) == ["good"]
    assert sorted(p.name for p in (root / "test").iterdir()) == sorted(["good", *defects])
    assert sorted(p.name for p in (root / "ground_truth").iterdir()) == sorted(defects)  # no masks for good
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == ["000.png", "001.png", "002.png"]
    assert sorted(p.name for p in (root / "test" / "good").iterdir()) == ["000.png", "001.png"]
    for defect in defects:
      assert sorted(p.name for p in (root / "test" / defect).iterdir()) == ["000.png", "001.png"]
      assert sorted(p.name for p in (root / "ground_truth" / defect).iterdir()) == ["000_mask.png", "001_mask.png"]
  manifest = json.loads((built / "embedded.json").read_text())
  assert manifest["parameters"]["seed"] == 0 and manifest["parameters"]["image_size"] == 64
  assert manifest["parameters"]["version"] == embedded.GENERATOR_VERSION
  assert "seed 0" in (built / "README.txt").read_text()


def test_images_and_masks(built):
  for image_path in built.glob("*/*/*/*.png"):
    if image_path.parts[-3] == "ground_truth":
      continue
    with Image.open(image_path) as image:
      assert image.mode == "RGB" and image.size == (64, 64)
      pixels = np.asarray(image)
    assert pixels.std() > 5, image_path  # not blank
    if image_path.parent.name == "good":
      continue
    mask_path = image_path.parents[2] / "ground_truth" / image_path.parent.name / f"{image_path.stem}_mask.png"
    with Image.open(mask_path) as mask:
      assert mask.mode == "L" and mask.size == (64, 64)
      values = np.asarray(mask)
    assert set(np.unique(values)) == {0, 255}, mask_path
    assert 4 <= (values > 0).sum() < 0.5 * values.size, mask_path


@pytest.mark.parametrize("category", embedded.EMBEDDED_CATEGORIES)
def test_masks_cover_the_changed_pixels(category):
  """Compared with the same sample without its defect, pixels change inside the mask only."""
  spec = embedded._CATEGORIES[category]
  for defect in embedded.EMBEDDED_DEFECTS[category]:
    for index in range(3):
      rng = np.random.default_rng(index)
      scene = spec.sample(rng, 96)
      normal = spec.render(scene)
      defective, alpha = spec.defect(defect, rng, normal, scene)
      mask = alpha >= 0.5
      change = np.abs(defective - normal).max(axis=0)
      assert mask.any(), (defect, index)
      assert change[mask].mean() > 0.08, (defect, index)  # visible
      outside = ~ndimage.binary_dilation(mask, iterations=2)
      assert change[outside].max() < 0.12, (defect, index)  # only soft edges spill out


def test_same_seed_same_bytes_and_subsets_agree(built, tmp_path):
  again = embedded.build_embedded(tmp_path / "again", seed=0, **SMALL)
  assert _files(again) == _files(built)
  only_nut = embedded.build_embedded(tmp_path / "nut", seed=0, categories=["nut"], **SMALL)
  nut_files = {k: v for k, v in _files(only_nut).items() if k.startswith("nut")}
  assert nut_files == {k: v for k, v in _files(built).items() if k.startswith("nut")}


def test_other_seed_differs(built, tmp_path):
  other = embedded.build_embedded(tmp_path / "other", seed=1, **SMALL)
  old, new = _files(built), _files(other)
  assert old.keys() == new.keys()
  pngs = [k for k in old if k.endswith(".png") and "ground_truth" not in k]
  assert all(old[k] != new[k] for k in pngs)


def test_pixels_do_not_depend_on_the_process(built, tmp_path):
  code = ("import sys; from jaxad.data.embedded import build_embedded; "
          "build_embedded(sys.argv[1], seed=0, categories=['weave', 'chip'], image_size=64, n_train=3, "
          "n_test_good=2, n_test_per_defect=2)")
  env = dict(os.environ, PYTHONHASHSEED="123")
  subprocess.run([sys.executable, "-c", code, str(tmp_path / "sub")], check=True, env=env)
  sub = _files(tmp_path / "sub")
  assert {k: v for k, v in sub.items() if k.endswith(".png")} == {
      k: v for k, v in _files(built).items() if k.endswith(".png") and k.split("/")[0] in ("weave", "chip")}


def test_second_call_writes_nothing(built):
  probe = built / "brick" / "train" / "good" / "000.png"
  before = probe.stat().st_mtime_ns
  assert embedded.build_embedded(built, seed=0, **SMALL) == built
  assert probe.stat().st_mtime_ns == before


def test_previous_build_with_other_parameters_is_replaced(tmp_path):
  root = embedded.build_embedded(tmp_path / "d", seed=0, categories=["brick", "nut"], **SMALL)
  embedded.build_embedded(root, seed=2, categories=["chip"], **SMALL)
  assert sorted(p.name for p in root.iterdir()) == ["README.txt", "chip", "embedded.json"]
  assert not list(tmp_path.glob(".*building*"))  # staging folder removed


def test_refuses_a_foreign_folder_unless_overwrite(tmp_path):
  root = tmp_path / "mine"
  root.mkdir()
  (root / "notes.txt").write_text("keep me")
  with pytest.raises(DataError, match="not empty"):
    embedded.build_embedded(root, categories=["weave"], **SMALL)
  assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]
  embedded.build_embedded(root, categories=["weave"], overwrite=True, **SMALL)
  assert (root / "notes.txt").read_text() == "keep me"
  assert len(list((root / "weave" / "test" / "hole").iterdir())) == 2


@pytest.mark.parametrize("kwargs, message", [
    (dict(categories=["carpet"]), "categories"),
    (dict(seed=-1), "seed"),
    (dict(image_size=16), "image_size"),
    (dict(n_train=0), "n_train"),
])
def test_bad_arguments(tmp_path, kwargs, message):
  with pytest.raises(DataError, match=message):
    embedded.build_embedded(tmp_path / "x", **{**SMALL, **kwargs})


def test_root_that_is_a_file(tmp_path):
  (tmp_path / "f").write_text("")
  with pytest.raises(DataError, match="not a folder"):
    embedded.build_embedded(tmp_path / "f", **SMALL)
