"""TFDS builders: array_record builds without TensorFlow read back exactly as the folder data."""

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jaxad.data.pipeline import make_eval_batches, make_loader
from jaxad.data.sources import TfdsSource, make_source
from jaxad.data.tfds_builders import build_tfds
from jaxad.data.tfds_builders.__main__ import main as build_main
from jaxad.errors import ConfigError, DataError

SPLITS = ("train", "validation", "test")


def write_mvtec(root: Path, category: str = "bottle", size=(18, 22)) -> Path:
  """A tiny MVTec AD tree with an RGB PNG, a gray PNG and a JPEG among the images."""
  rng = np.random.default_rng(0)
  base = root / category

  def image(path: Path, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
    Image.fromarray(pixels).save(path)

  for i in range(10):
    image(base / "train" / "good" / f"{i:03d}.png", "L" if i == 3 else "RGB")
  image(base / "test" / "good" / "000.jpg")
  for i in range(2):
    image(base / "test" / "crack" / f"{i:03d}.png")
    mask = np.zeros(size, np.uint8)
    mask[2:6, 2 + i:8 + i] = 255
    mask[11:15, 14:20] = 255
    path = base / "ground_truth" / "crack" / f"{i:03d}_mask.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
  return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  manual = write_mvtec(tmp_path_factory.mktemp("mvtec"))
  data_dir = tmp_path_factory.mktemp("tfds")
  names = build_tfds("mvtec_ad", manual, data_dir)
  return manual, data_dir, names


def assert_same_sample(a, b):
  assert a.keys() == b.keys()
  for key, value in a.items():
    if isinstance(value, np.ndarray):
      assert value.dtype == b[key].dtype, key
      np.testing.assert_array_equal(value, b[key], err_msg=key)
    else:
      assert value == b[key] and type(value) is type(b[key]), key


def test_build_writes_array_record_and_reads_back_identically(built):
  manual, data_dir, names = built
  assert names == ["mvtec_ad/bottle"]  # Only the categories present in the manual dir.
  version_dir = data_dir / "mvtec_ad" / "bottle" / "1.0.0"
  for split in SPLITS:
    assert list(version_dir.glob(f"mvtec_ad-{split}.array_record-*"))
  for split in SPLITS:
    folder = make_source(manual, "bottle", split)
    stored = make_source("tfds:mvtec_ad", "bottle", split, data_dir=data_dir)
    assert isinstance(stored, TfdsSource) and len(stored) == len(folder) > 0
    for i in range(len(folder)):  # Same order (shuffling disabled) and same arrays.
      assert_same_sample(folder[i], stored[i])
  test = make_source("tfds:mvtec_ad/bottle", None, "test", data_dir=data_dir)
  assert test[1]["components"].max() == 2 and test[1]["label"] == 1


def test_stored_image_bytes(built):
  manual, data_dir, _ = built
  raw = tfds.data_source("mvtec_ad/bottle", split="test", data_dir=str(data_dir),
                         decoders={"image": tfds.decode.SkipDecoding()})
  by_name = {raw[i]["file_name"].decode(): raw[i]["image"] for i in range(len(raw))}
  # An RGB JPEG keeps its own bytes (compact, decoded by PIL exactly as load_sample does).
  assert by_name["test/good/000.jpg"] == (manual / "bottle" / "test" / "good" / "000.jpg").read_bytes()
  gray = []
  for split in ("train", "validation"):
    records = tfds.data_source("mvtec_ad/bottle", split=split, data_dir=str(data_dir),
                               decoders={"image": tfds.decode.SkipDecoding()})
    gray += [r["image"] for r in (records[i] for i in range(len(records))) if r["file_name"] == b"train/good/003.png"]
  # The gray file cannot keep its bytes (load_sample makes it RGB): it is stored as an RGB PNG.
  assert len(gray) == 1 and Image.open(io.BytesIO(gray[0])).mode == "RGB"
  # Plain TFDS decoding (no jaxad) also works for the lossless PNG fields.
  plain = tfds.data_source("mvtec_ad/bottle", split="test", data_dir=str(data_dir))
  record = plain[1]
  assert record["mask"].shape == (18, 22, 1) and set(np.unique(record["mask"])) == {0, 1}


def test_pipeline_over_tfds_equals_folder(built):
  manual, data_dir, _ = built
  folder = make_source(manual, "bottle", "train")
  stored = make_source("tfds:mvtec_ad", "bottle", "train", data_dir=data_dir)
  batches = [list(make_loader(src, batch_size=3, image_size=16, seed=2, num_epochs=2)) for src in (folder, stored)]
  assert len(batches[0]) == 6
  for a, b in zip(*batches):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  evals = [list(make_eval_batches(make_source(spec, "bottle", "test", data_dir=data_dir), batch_size=2,
                                  image_size=16)) for spec in (manual, "tfds:mvtec_ad")]
  for a, b in zip(*evals):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])


def test_generic_folder_builder_and_cli(built, tmp_path, capsys):
  manual, _, _ = built
  data_dir = tmp_path / "tfds"
  code = build_main(["jaxad_folder", "--manual_dir", str(manual / "bottle"), "--data_dir", str(data_dir),
                     "--format", "mvtec", "--config_name", "my_bottle"])
  assert code == 0 and "built tfds:jaxad_folder/my_bottle" in capsys.readouterr().out
  stored = make_source("tfds:jaxad_folder/my_bottle", None, "test", data_dir=data_dir)
  folder = make_source(manual, "bottle", "test")
  assert len(stored) == len(folder)
  assert_same_sample(folder[2], stored[2])


def test_build_errors(built, tmp_path, capsys):
  manual, data_dir, _ = built
  with pytest.raises(DataError, match="does not exist"):
    build_tfds("mvtec_ad", tmp_path / "nowhere", data_dir)
  with pytest.raises(ConfigError, match="unknown mvtec_ad categories"):
    build_tfds("mvtec_ad", manual, data_dir, categories=["widget"])
  with pytest.raises(ConfigError):
    build_tfds("imagenet", manual, data_dir)
  with pytest.raises(DataError, match="1cls.csv"):
    build_tfds("visa", manual, data_dir)
  with pytest.raises(DataError, match="has configs bottle"):
    TfdsSource("mvtec_ad", "test", data_dir)
  assert build_main(["mvtec_ad", "--manual_dir", str(tmp_path / "nowhere"), "--data_dir", str(data_dir)]) == 2
  assert "does not exist" in capsys.readouterr().err
