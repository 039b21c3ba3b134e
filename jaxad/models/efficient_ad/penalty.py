"""The penalty image stream of EfficientAD's L_pen (methods.md §4.5), generated on the host.

nelson1425 draws one ImageNet image per step (Resize(2·size) → RandomGrayscale(0.3) →
CenterCrop(size)); anomalib uses Imagenette with the same transform. jaxad holds a pool of
`Static.penalty_pool` images in host memory (uint8) and draws, for step t, an image index and
the grayscale coin from `default_rng([seed, t])`, so a resumed run sees the same stream.

Sources (`Static.penalty`):
* a folder of images (ImageNet, Imagenette, ...): a seeded random subset of `penalty_pool`
  files, each resized to 2·size (PIL bilinear) and center-cropped to size — nelson's transform
  exactly, applied once; the per-step grayscale is drawn per step;
* "bundled" (offline default): photos that ship with scikit-image and scikit-learn (natural
  scenes, no textures), as `penalty_pool` random crops (scale, aspect, position, flip);
* "none": no penalty (nelson's `--imagenet_train_path none`).
The stream's `provenance` says which source, photos/files and pool size a run used.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from pathlib import Path

import numpy as np
from PIL import Image

from jaxad.errors import DataError

GRAYSCALE_P = 0.3
# scikit-image (bundled, no download) and scikit-learn sample photos: natural scenes and objects.
# Excluded on purpose: textures (brick, grass, gravel — brick is an embedded-dataset category).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                  "stereo_motorcycle", "camera", "moon", "coins", "clock")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _rgb(array: np.ndarray) -> np.ndarray:
  array = np.asarray(array)
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=-1)
  return np.ascontiguousarray(array[..., :3]).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def bundled_photos() -> dict[str, np.ndarray]:
  """{name: uint8 RGB photo} of the photos bundled with scikit-image and scikit-learn (read once, read-only)."""
  import skimage.data
  from sklearn.datasets import load_sample_images

  photos = {}
  for name in SKIMAGE_PHOTOS:
    image = getattr(skimage.data, name)()
    photos[f"skimage.data.{name}"] = _rgb(image[0] if isinstance(image, tuple) else image)
  sample = load_sample_images()
  for name, image in zip(sample.filenames, sample.images):
    photos[f"sklearn.{Path(name).name}"] = _rgb(image)
  for photo in photos.values():
    photo.setflags(write=False)
  return photos


def grayscale_uint8(images_NxHxWx3: np.ndarray) -> np.ndarray:
  """PIL `convert("L")` (ITU-R 601-2, fixed point), repeated to 3 channels (torchvision RandomGrayscale)."""
  x = images_NxHxWx3.astype(np.uint32)
  luma = (x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 0x8000) >> 16
  return np.repeat(luma.astype(np.uint8)[..., None], 3, axis=-1)


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((hw[1], hw[0]), Image.BILINEAR))


def random_crops(photos: list[np.ndarray], count: int, hw: tuple[int, int], rng: np.random.Generator,
                 min_scale: float = 0.1, threads: bool = True) -> np.ndarray:
  """`count` crops (uint8, (count, H, W, 3)): area fraction U(min_scale, 1) of the photo, aspect
  U(3/4, 4/3) (log-uniform), random position, resized to `hw`, horizontally flipped with p 0.5.

  The crops are drawn from `rng` one after another; with `threads` the resizes run on a thread pool
  (PIL releases the GIL while it resizes), which changes nothing in the result."""
  boxes = []
  for _ in range(count):
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    area = rng.uniform(min_scale, 1.0) * ph * pw
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))) * hw[1] / hw[0]
    ch = int(min(ph, max(8, round(np.sqrt(area / aspect)))))
    cw = int(min(pw, max(8, round(np.sqrt(area * aspect)))))
    y, x = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    boxes.append((photo[y:y + ch, x:x + cw], rng.random() < 0.5))
  out = np.empty((count, *hw, 3), np.uint8)

  def make(i: int) -> None:
    crop, flip = boxes[i]
    crop = _resize(crop, hw)
    out[i] = crop[:, ::-1] if flip else crop

  _run(make, count, threads)
  return out


def _run(fn, count: int, threads: bool = True) -> None:
  """fn(i) for i < count, on a thread pool with `threads` (errors are raised here)."""
  if not threads or count <= 1:
    for i in range(count):
      fn(i)
    return
  with concurrent.futures.ThreadPoolExecutor(min(32, os.cpu_count() or 1, count)) as pool:
    for f in [pool.submit(fn, i) for i in range(count)]:
      f.result()


def folder_files(folder: str | Path, what: str = "penalty image folder",
                 hint: str = " (set penalty=bundled or penalty=none)") -> list[Path]:
  """The images under `folder`, sorted; `what` and `hint` name the setting that gave it in the errors."""
  folder = Path(folder).expanduser()
  if not folder.is_dir():
    raise DataError(f"{what} {folder} does not exist{hint}")
  files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise DataError(f"{what} {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
  return files


def nelson_transform(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Resize((2h, 2w)) then CenterCrop((h, w)) on an RGB uint8 image (nelson's penalty transform)."""
  h, w = hw
  big = _resize(image, (2 * h, 2 * w))
  top, left = (2 * h - h) // 2, (2 * w - w) // 2
  return big[top:top + h, left:left + w]


@functools.lru_cache(maxsize=2)
def bundled_pool(hw: tuple[int, int], pool: int, seed: int) -> np.ndarray:
  """The bundled source's pool (read-only), cached for the two most recent (size, pool, seed), so sweep
  groups and repeated runs share it."""
  images = random_crops(list(bundled_photos().values()), pool, hw, np.random.default_rng([seed, 0xE5AD]))
  images.setflags(write=False)
  return images


class PenaltyStream:
  """stream(steps) → {"penalty": uint8 (K, batch, H, W, 3)}; deterministic in (seed, step)."""

  def __init__(self, source: str, image_size: tuple[int, int], pool: int, seed: int, batch: int = 1):
    self.batch = batch
    self.seed = seed
    hw = tuple(int(s) for s in image_size)
    if source == "bundled":
      photos = bundled_photos()
      self.images = bundled_pool(hw, pool, seed)
      self.provenance = {"penalty": "bundled", "photos": sorted(photos), "pool": pool,
                         "transform": "random crop (area 0.1-1, aspect 3/4-4/3), resize, h-flip; grayscale p 0.3"}
    else:
      from jaxad.data.images import load_image
      files = folder_files(source)
      rng = np.random.default_rng([seed, 0xE5AD])
      chosen = sorted(rng.choice(len(files), size=min(pool, len(files)), replace=False))
      self.images = np.empty((len(chosen), *hw, 3), np.uint8)

      def load(j: int) -> None:
        self.images[j] = nelson_transform(_rgb(load_image(files[chosen[j]])), hw)

      _run(load, len(chosen))
      self.provenance = {"penalty": "folder", "folder": str(Path(source).expanduser()), "files": len(files),
                         "pool": len(chosen), "transform": "resize 2x, center crop; grayscale p 0.3 (nelson)"}

  def __call__(self, steps) -> dict[str, np.ndarray]:
    out = np.empty((len(steps), self.batch, *self.images.shape[1:]), np.uint8)
    for j, step in enumerate(steps):
      rng = np.random.default_rng([self.seed, int(step)])
      index = rng.integers(len(self.images), size=self.batch)
      gray = rng.random(self.batch) < GRAYSCALE_P
      images = self.images[index]
      if gray.any():
        images[gray] = grayscale_uint8(images[gray])
      out[j] = images
    return {"penalty": out}
