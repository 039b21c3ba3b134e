"""Image and mask decoding (jaxad.data.images): conversions, unions, components, bad files."""

import numpy as np
import pytest
from PIL import Image

from jaxad.data.images import load_image, load_mask, load_sample
from jaxad.data.records import SampleRef
from jaxad.errors import DataError


def _save(path, array):
  Image.fromarray(array).save(path)
  return path


@pytest.fixture
def rgb(rng):
  return rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def _ref(image_path, mask_paths=(), label=1, is_segmented=True):
  return SampleRef(image_path=str(image_path), mask_paths=tuple(str(p) for p in mask_paths), label=label,
                   defect_type="crack" if label else "good", split="test", is_segmented=is_segmented,
                   file_name="test/crack/000.png")


# ----------------------------------------------------------------------------- conversions


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_rgb_roundtrip(tmp_path, rgb, suffix):
  image = load_image(_save(tmp_path / f"a{suffix}", rgb))
  assert image.dtype == np.uint8 and image.shape == (12, 10, 3)
  np.testing.assert_array_equal(image, rgb)


def test_grayscale_is_repeated_to_rgb(tmp_path, rgb):
  gray = rgb[..., 0]
  image = load_image(_save(tmp_path / "gray.png", gray))
  assert image.shape == (12, 10, 3)
  for channel in range(3):
    np.testing.assert_array_equal(image[..., channel], gray)


def test_16bit_grayscale_keeps_the_high_byte(tmp_path, rng):
  values = rng.integers(0, 65536, (8, 9), dtype=np.uint16)
  path = _save(tmp_path / "deep.png", values)
  with Image.open(path) as raw:
    assert raw.mode.startswith("I")
  image = load_image(path)
  np.testing.assert_array_equal(image, np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=-1))


def test_rgba_drops_alpha(tmp_path, rgb):
  alpha = np.zeros((12, 10, 1), np.uint8)  # fully transparent: still the colour values, not a background
  image = load_image(_save(tmp_path / "rgba.png", np.concatenate([rgb, alpha], axis=-1)))
  np.testing.assert_array_equal(image, rgb)


def test_gray_alpha_and_palette_images_become_rgb(tmp_path, rgb):
  gray_alpha = Image.fromarray(np.stack([rgb[..., 0], rgb[..., 1]], axis=-1), mode="LA")
  gray_alpha.save(tmp_path / "la.png")
  np.testing.assert_array_equal(load_image(tmp_path / "la.png"), np.repeat(rgb[..., :1], 3, axis=-1))
  palette = Image.fromarray(rgb).quantize(colors=16)
  palette.save(tmp_path / "p.png")
  np.testing.assert_array_equal(load_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))


# ----------------------------------------------------------------------------- bad files


def test_missing_file_names_it(tmp_path):
  with pytest.raises(DataError, match=r"nothere\.png does not exist"):
    load_image(tmp_path / "nothere.png")


def test_text_file_named_png_names_it(tmp_path):
  path = tmp_path / "notes.png"
  path.write_text("this is not an image\n")
  with pytest.raises(DataError, match=r"notes\.png is not an image"):
    load_image(path)


def test_corrupt_file_names_it(tmp_path, rng):
  path = tmp_path / "noise.png"
  path.write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
  with pytest.raises(DataError, match=r"noise\.png"):
    load_image(path)


def test_corrupt_png_body_names_it(tmp_path, rng):
  path = _save(tmp_path / "body.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
  data = bytearray(path.read_bytes())
  data[60:120] = bytes(60)  # zero out part of the compressed pixel data (header intact)
  path.write_bytes(bytes(data))
  with pytest.raises(DataError, match=r"body\.png"):
    load_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_names_it(tmp_path, rng, suffix):
  path = _save(tmp_path / f"cut{suffix}", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataError, match=rf"cut\{suffix} is corrupt or truncated"):
    load_image(path)


def test_unsupported_float_image_names_it(tmp_path):
  path = tmp_path / "float.tif"
  Image.fromarray(np.zeros((4, 4), np.float32), mode="F").save(path)
  with pytest.raises(DataError, match=r"float\.tif has unsupported pixel mode 'F'"):
    load_image(path)


# ----------------------------------------------------------------------------- masks


def test_mask_union_of_several_files_is_binary(tmp_path):
  first = np.zeros((6, 8), np.uint8)
  first[0, 0] = 255
  second = np.zeros((6, 8), np.uint8)
  second[5, 7] = 1  # VisA-style value 1 counts as anomalous too
  third = np.zeros((6, 8, 3), np.uint8)
  third[2, 3, 1] = 7  # an RGB mask: any nonzero channel
  paths = [_save(tmp_path / f"{i}.png", m) for i, m in enumerate([first, second, third])]
  mask = load_mask(paths, (6, 8, 3), tmp_path / "image.png")
  assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
  assert sorted(zip(*np.nonzero(mask))) == [(0, 0), (2, 3), (5, 7)]
  assert load_mask([], (6, 8), "x").sum() == 0


def test_mask_size_mismatch_names_both_files_and_sizes(tmp_path, rgb):
  image_path = _save(tmp_path / "img.png", rgb)
  mask_path = _save(tmp_path / "img_mask.png", np.zeros((5, 5), np.uint8))
  with pytest.raises(DataError, match=r"img_mask\.png is 5x5 .*/img\.png is 12x10"):
    load_sample(_ref(image_path, [mask_path]))


def test_corrupt_mask_names_it(tmp_path, rgb):
  image_path = _save(tmp_path / "img.png", rgb)
  (tmp_path / "bad_mask.png").write_text("nope")
  with pytest.raises(DataError, match=r"mask file .*bad_mask\.png"):
    load_sample(_ref(image_path, [tmp_path / "bad_mask.png"]))


def test_sample_components_use_8_connectivity(tmp_path, rgb):
  mask = np.zeros((12, 10), np.uint8)
  mask[1, 1] = mask[2, 2] = 255  # diagonal neighbours: one region
  mask[8:10, 5:8] = 255  # a separate region
  sample = load_sample(_ref(_save(tmp_path / "img.png", rgb), [_save(tmp_path / "m.png", mask)]))
  assert sample["components"].dtype == np.int32
  assert sample["components"].max() == 2
  assert sample["components"][1, 1] == sample["components"][2, 2] != 0
  np.testing.assert_array_equal(sample["mask"], (mask > 0).astype(np.uint8))
  assert (sample["label"], sample["defect_type"], sample["is_segmented"]) == (1, "crack", True)


def test_weakly_labelled_sample_has_an_empty_mask(tmp_path, rgb):
  mask = np.full((12, 10), 255, np.uint8)
  ref = _ref(_save(tmp_path / "img.png", rgb), [_save(tmp_path / "m.png", mask)], is_segmented=False)
  sample = load_sample(ref)
  assert sample["mask"].sum() == 0 and sample["components"].max() == 0 and sample["label"] == 1
