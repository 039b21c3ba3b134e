"""The grain pipeline: determinism, resumable iterators, epochs, eval padding and preprocessing."""

from pathlib import Path

import grain
import numpy as np
import pytest
import scipy.ndimage
from PIL import Image

from jaxad.data import sources
from jaxad.data.pipeline import make_eval_batches, make_loader
from jaxad.data.readers import read_dataset
from jaxad.data.records import Sample
from jaxad.data.sources import FolderSource, make_source
from jaxad.data.transforms import PreprocessConfig, resize_mask
from jaxad.errors import ConfigError, DataError
from jaxad.models.simplenet import config as simplenet_cfg
from jaxad.models.simplenet import steps as simplenet_steps
from jaxad.ops.resize import resize

N_TRAIN = 22  # 20 train + 2 validation after the 10 % hold-out


def write_mvtec(root: Path, category: str = "bottle", size=(20, 24)) -> Path:
  """A tiny MVTec AD tree: random train/good, test/good, test/scratch with two-blob masks."""
  rng = np.random.default_rng(0)
  base = root / category

  def image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(path)

  for i in range(N_TRAIN):
    image(base / "train" / "good" / f"{i:03d}.png")
  for i in range(2):
    image(base / "test" / "good" / f"{i:03d}.png")
  for i in range(3):
    image(base / "test" / "scratch" / f"{i:03d}.png")
    mask = np.zeros(size, np.uint8)
    mask[2:8, 3 + i:10 + i] = 255
    mask[13:16, 15:19] = 255
    path = base / "ground_truth" / "scratch" / f"{i:03d}_mask.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
  return root


@pytest.fixture(scope="module")
def mvtec_root(tmp_path_factory) -> Path:
  return write_mvtec(tmp_path_factory.mktemp("mvtec"))


@pytest.fixture(scope="module")
def train_source(mvtec_root) -> FolderSource:
  return make_source(mvtec_root, "bottle", "train")


def indices(loader) -> list[list[int]]:
  return [batch["index"].tolist() for batch in loader]


def assert_same_batches(batches_a, batches_b):
  assert len(batches_a) == len(batches_b)
  for a, b in zip(batches_a, batches_b):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


class ArraySource:
  """An in-memory source of given samples (for exact preprocessing checks)."""

  def __init__(self, samples: list[Sample]):
    self.samples = samples

  def __len__(self):
    return len(self.samples)

  def __getitem__(self, index):
    return self.samples[index]


def sample(image, mask=None, label=0) -> Sample:
  mask = np.zeros(image.shape[:2], np.uint8) if mask is None else mask
  return Sample(image=image, mask=mask, components=np.zeros(mask.shape, np.int32), label=label,
                defect_type="good" if label == 0 else "scratch", file_name=f"x{label}.png", is_segmented=True)


def test_same_seed_same_batches_epochs_are_permutations(train_source):
  make = lambda seed: make_loader(train_source, batch_size=4, image_size=16, seed=seed, num_epochs=2,
                                  drop_remainder=False)
  loader = make(0)
  batches = list(loader)
  assert_same_batches(batches, list(make(0)))
  assert loader.steps_per_epoch == 5 and len(batches) == loader.num_batches == 10
  epochs = [np.concatenate([b["index"] for b in batches[e * 5:(e + 1) * 5]]) for e in range(2)]
  assert [len(b["index"]) for b in batches[:5]] == [4, 4, 4, 4, 3]  # 19 train images (22 − nelson's 22 − int(0.9·22))
  for epoch in epochs:  # Batches never straddle an epoch: each epoch is a permutation.
    assert sorted(epoch.tolist()) == list(range(len(train_source)))
  assert epochs[0].tolist() != epochs[1].tolist()
  assert indices(make(1)) != indices(loader)


def test_drop_remainder_per_epoch(train_source):
  loader = make_loader(train_source, batch_size=6, image_size=16, seed=0, num_epochs=3)
  batches = list(loader)
  assert loader.steps_per_epoch == 3 and len(batches) == 9
  assert all(b["index"].shape == (6,) for b in batches)
  for e in range(3):
    epoch = np.concatenate([b["index"] for b in batches[3 * e:3 * e + 3]])
    assert len(set(epoch.tolist())) == 18
  with pytest.raises(ConfigError):
    make_loader(train_source, batch_size=64, image_size=16)


def test_batch_shapes_dtypes(train_source):
  batch = next(iter(make_loader(train_source, batch_size=3, image_size=(16, 12), with_components=True)))
  expected = {"image": ((3, 16, 12, 3), np.float32), "mask": ((3, 16, 12), np.float32), "label": ((3,), np.int32),
              "is_segmented": ((3,), np.bool_), "index": ((3,), np.int32), "components": ((3, 16, 12), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected


@pytest.mark.parametrize("with_flips", [False, True])
def test_restore_mid_epoch_continues_exactly(train_source, tmp_path, with_flips):
  config = PreprocessConfig(random_flips=with_flips)
  make = lambda: make_loader(train_source, batch_size=4, image_size=16, seed=3, num_epochs=None,
                             preprocessing=config)
  iterator = iter(make())
  for _ in range(3):  # Mid-epoch (5 batches per epoch).
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(5)]  # Crosses into the next epoch.

  resumed = iter(make())
  resumed.set_state(state)
  assert_same_batches([next(resumed) for _ in range(5)], expected)

  ocp = pytest.importorskip("orbax.checkpoint")
  iterator = iter(make())
  for _ in range(3):
    next(iterator)
  checkpointer = ocp.Checkpointer(grain.checkpoint.CheckpointHandler())
  checkpointer.save(tmp_path / "data_state", args=grain.checkpoint.CheckpointSave(iterator))
  restored = checkpointer.restore(tmp_path / "data_state", args=grain.checkpoint.CheckpointRestore(iter(make())))
  assert_same_batches([next(restored) for _ in range(5)], expected)


def test_random_flips_are_seeded_and_vary(mvtec_root):
  source = make_source(mvtec_root, "bottle", "test")
  plain = list(make_loader(source, batch_size=5, image_size=16, shuffle=False, num_epochs=4))
  config = PreprocessConfig(random_flips=True)
  flipped = list(make_loader(source, batch_size=5, image_size=16, shuffle=False, num_epochs=4, preprocessing=config))
  assert_same_batches(flipped, list(make_loader(source, batch_size=5, image_size=16, shuffle=False, num_epochs=4,
                                                preprocessing=config)))
  seen = set()
  for a, b in zip(plain, flipped):
    for i in range(5):
      variants = {"id": a["image"][i], "lr": a["image"][i, :, ::-1], "ud": a["image"][i, ::-1],
                  "rot": a["image"][i, ::-1, ::-1]}
      match = [name for name, v in variants.items() if np.array_equal(v, b["image"][i])]
      assert match, "a flipped image must be one of the four flips"
      mask_variants = {"id": a["mask"][i], "lr": a["mask"][i, :, ::-1], "ud": a["mask"][i, ::-1],
                       "rot": a["mask"][i, ::-1, ::-1]}
      assert any(np.array_equal(mask_variants[name], b["mask"][i]) for name in match)
      seen.update(match)
  assert len(seen) >= 3  # 20 draws: all four flips are (almost surely) used.


def test_eval_batches_ordered_padded_with_components(mvtec_root):
  source = make_source(mvtec_root, "bottle", "test")
  loader = make_eval_batches(source, batch_size=2, image_size=(20, 24),
                             preprocessing=PreprocessConfig(image_resize="none"))
  batches = list(loader)
  assert len(batches) == loader.num_batches == 3
  assert np.concatenate([b["index"] for b in batches]).tolist() == [0, 1, 2, 3, 4, 4]
  assert batches[-1]["valid"].tolist() == [True, False]
  assert all(b["valid"].all() for b in batches[:-1])
  names = np.concatenate([b["file_name"] for b in batches])[:5].tolist()
  assert names == [ref.file_name for ref in source.refs]
  assert batches[1]["defect_type"].tolist() == ["scratch", "scratch"]
  assert batches[1]["label"].tolist() == [1, 1]
  assert {b["image"].shape for b in batches} == {(2, 20, 24, 3)}
  anomalous = batches[1]
  assert anomalous["components"].max() == 2  # Two separate blobs per mask.
  np.testing.assert_array_equal(anomalous["components"] > 0, anomalous["mask"] > 0)


def test_splits_disjoint(mvtec_root):
  names = {split: {ref.image_path for ref in make_source(mvtec_root, "bottle", split).refs}
           for split in ("train", "validation", "test")}
  assert len(names["validation"]) == 3 and len(names["train"]) == 19  # held out: 22 − int(0.9·22), as nelson
  assert not names["train"] & names["validation"]
  assert not names["validation"] & names["test"]
  assert not names["train"] & names["test"]


def test_normalisation_numbers():
  image = np.zeros((4, 4, 3), np.uint8)
  image[..., 0], image[..., 1], image[..., 2] = 0, 128, 255
  batch = next(iter(make_eval_batches(ArraySource([sample(image)]), batch_size=1, image_size=4,
                                      preprocessing=PreprocessConfig(image_resize="none"))))
  expected = [(0.0 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (1.0 - 0.406) / 0.225]
  np.testing.assert_allclose(batch["image"][0, 0, 0], expected, rtol=1e-6)
  raw = next(iter(make_eval_batches(ArraySource([sample(image)]), batch_size=1, image_size=4,
                                    preprocessing=PreprocessConfig(image_resize="none", normalize=False))))
  np.testing.assert_allclose(raw["image"][0, 0, 0], [0.0, 128 / 255, 1.0], rtol=1e-7)


def test_mask_nearest_resize_keeps_binary_and_relabels():
  rng = np.random.default_rng(1)
  mask = (rng.random((21, 27)) < 0.3).astype(np.uint8)
  image = rng.integers(0, 256, (21, 27, 3), dtype=np.uint8)
  batch = next(iter(make_eval_batches(ArraySource([sample(image, mask, label=1)]), batch_size=1, image_size=(13, 16))))
  out = batch["mask"][0]
  assert set(np.unique(out)) <= {0.0, 1.0}
  np.testing.assert_array_equal(out, resize(mask.astype(np.float32), (13, 16), "nearest", channels_last=False))
  labels, _ = scipy.ndimage.label(out, structure=np.ones((3, 3)))
  np.testing.assert_array_equal(batch["components"][0], labels)
  # The image went through torch-bilinear (the default) then the normalisation.
  unit = resize(image.astype(np.float32) / 255, (13, 16))
  np.testing.assert_allclose(batch["image"][0], (unit - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225], atol=1e-5)


def test_simplenet_preprocessing_matches_pil_resize_and_crop():
  rng = np.random.default_rng(2)
  image = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
  mask = np.zeros((40, 52), np.uint8)
  mask[5:20, 10:31] = 1
  mask[30:33, 40:42] = 1
  batch = next(iter(make_eval_batches(ArraySource([sample(image, mask, 1)]), batch_size=1, image_size=24,
                                      preprocessing=simplenet_steps.preprocessing(
                                          simplenet_cfg.Static(resize_shorter=29)))))
  # torchvision Resize(29) on PIL: shorter side 29 → (29, 37); CenterCrop(24) → rows 2:26, cols 6:30.
  pil = np.asarray(Image.fromarray(image).resize((37, 29), Image.Resampling.BILINEAR))[2:26, 6:30]
  np.testing.assert_allclose(batch["image"][0], (pil / np.float32(255) - [0.485, 0.456, 0.406])
                             / [0.229, 0.224, 0.225], atol=1e-5)
  pil_mask = np.asarray(Image.fromarray(mask * 255).resize((37, 29), Image.Resampling.BILINEAR))[2:26, 6:30]
  np.testing.assert_array_equal(batch["mask"][0], pil_mask == 255)
  assert 0 < (pil_mask == 255).sum() < (pil_mask > 0).sum()  # Boundary pixels really are dropped.
  with pytest.raises(ConfigError):
    resize_mask(mask, (32, 32), PreprocessConfig(resize_shorter=29))


def test_index_sampler_hook(train_source):
  def balanced(epoch):  # e.g. SuperSimpleNet's balanced epochs: fixed length, redrawn per epoch.
    return np.random.default_rng(epoch).choice(len(train_source), size=8, replace=False)

  batches = list(make_loader(train_source, batch_size=4, image_size=8, num_epochs=3, index_sampler=balanced))
  got = [np.concatenate([b["index"] for b in batches[2 * e:2 * e + 2]]) for e in range(3)]
  for epoch in range(3):
    np.testing.assert_array_equal(got[epoch], balanced(epoch))
  uneven = lambda epoch: list(range(4 + epoch))
  with pytest.raises(ConfigError, match="same length"):
    list(make_loader(train_source, batch_size=4, image_size=8, num_epochs=2, index_sampler=uneven))


def test_make_source_specs(mvtec_root, tmp_path, monkeypatch):
  with pytest.raises(ConfigError):
    make_source(mvtec_root, "bottle", "tset")
  with pytest.raises(DataError):
    make_source(tmp_path / "missing", "bottle", "train")
  with pytest.raises(DataError, match="not built"):
    make_source("tfds:mvtec_ad", "bottle", "train", data_dir=tmp_path)
  with pytest.raises(ConfigError):
    make_source("tfds:mvtec_ad/bottle", "cable", "train", data_dir=tmp_path)
  calls = []

  def fake_build_embedded(root):
    calls.append(root)
    return mvtec_root

  import jaxad.data.embedded

  monkeypatch.setattr(jaxad.data.embedded, "build_embedded", fake_build_embedded)
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "cache"))
  source = make_source(sources.EMBEDDED, "bottle", "test")
  assert calls == [tmp_path / "cache" / "embedded"]
  expected = read_dataset(mvtec_root, category="bottle")["test"]
  assert [r.file_name for r in source.refs] == [r.file_name for r in expected]


def test_empty_source_is_an_error():
  with pytest.raises(DataError):
    make_loader(ArraySource([]), batch_size=1, image_size=8)


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(train_source):
  config = PreprocessConfig(random_flips=True)
  make = lambda workers: make_loader(train_source, batch_size=4, image_size=16, seed=5, num_epochs=2,
                                     preprocessing=config, worker_count=workers)
  iterator = iter(make(2))
  try:
    from_workers = [{key: np.array(value) for key, value in batch.items()} for batch in iterator]
    assert_same_batches(from_workers, list(make(0)))
  finally:
    iterator.close()
