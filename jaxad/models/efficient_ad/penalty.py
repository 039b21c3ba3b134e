"""The penalty image stream of EfficientAD's L_pen (methods.md §4.5), generated on the host.

nelson1425 draws one ImageNet image per step (Resize(2·size) → RandomGrayscale(0.3) →
CenterCrop(size)) from a shuffled, endlessly repeated loader; anomalib uses Imagenette with the
same transform. Two ways (`Static.penalty_pool`), both deterministic in (seed, step), so a
resumed run sees the same stream:
* pool (`penalty_pool` > 0): `penalty_pool` images held in host memory (uint8); step t draws an
  image index and the grayscale coin from `default_rng([seed, t])`;
* streamed (`penalty_pool=0`, nelson's way): step t reads its own image; for a folder, file
  `permutation(epoch)[t mod n]` with a fresh seeded permutation per pass over the n files, as a
  shuffled loader; each chunk's images are decoded on a thread pool while the previous chunk trains.

Sources (`Static.penalty`):
* a folder of images (ImageNet, Imagenette, ...): each file resized to 2·size (PIL bilinear) and
  center-cropped to size — nelson's transform exactly; the pool is a seeded random subset of files;
* "bundled" (offline default): photos that ship with scikit-image and scikit-learn (natural
  scenes, no textures), as random crops (scale, aspect, position, flip);
* "none": no penalty (nelson's `--imagenet_train_path none`).
The stream's `provenance` says which source, photos/files and pool size a run used.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from jaxad.errors import DataError
from jaxad.ops.resize import center_crop_box

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
  top, left = center_crop_box(2 * h, 2 * w, h)[0], center_crop_box(2 * h, 2 * w, w)[1]  # torchvision's rounding
  return big[top:top + h, left:left + w]


@functools.lru_cache(maxsize=2)
def bundled_pool(hw: tuple[int, int], pool: int, seed: int) -> np.ndarray:
  """The bundled source's pool (read-only), cached for the two most recent (size, pool, seed), so sweep
  groups and repeated runs share it."""
  images = random_crops(list(bundled_photos().values()), pool, hw, np.random.default_rng([seed, 0xE5AD]))
  images.setflags(write=False)
  return images


_SALT = 0xE5AD  # separates the penalty draws from the other uses of the data seed


class PenaltyStream:
  """stream(steps) → {"penalty": uint8 (K, batch, H, W, 3)}; deterministic in (seed, step).

  pool > 0 holds that many images; pool 0 makes each step's images when asked (see the module
  docstring), prefetching the next chunk of as many steps.
  """

  def __init__(self, source: str, image_size: tuple[int, int], pool: int, seed: int, batch: int = 1):
    self.batch = batch
    self.seed = seed
    self.hw = tuple(int(s) for s in image_size)
    self.images = self.photos = self.files = None
    self._pending, self._executor, self._orders, self._lock = None, None, {}, threading.Lock()
    if source == "bundled":
      photos = bundled_photos()
      if pool:
        self.images = bundled_pool(self.hw, pool, seed)
      else:
        self.photos = list(photos.values())
      self.provenance = {"penalty": "bundled", "photos": sorted(photos), "pool": pool,
                         "transform": "random crop (area 0.1-1, aspect 3/4-4/3), resize, h-flip; grayscale p 0.3"}
      return
    files = folder_files(source)
    self.provenance = {"penalty": "folder", "folder": str(Path(source).expanduser()), "files": len(files),
                       "pool": min(pool, len(files)), "transform": "resize 2x, center crop; grayscale p 0.3 (nelson)"}
    if not pool:
      self.files = files
      return
    rng = np.random.default_rng([seed, _SALT])
    chosen = sorted(rng.choice(len(files), size=min(pool, len(files)), replace=False))
    self.images = np.empty((len(chosen), *self.hw, 3), np.uint8)

    def load(j: int) -> None:
      self.images[j] = self._load(files[chosen[j]])

    _run(load, len(chosen))

  def _load(self, path: Path) -> np.ndarray:
    from jaxad.data.images import load_image
    return nelson_transform(_rgb(load_image(path)), self.hw)

  def _epoch_order(self, epoch: int) -> np.ndarray:
    """The file order of one pass over the folder (a shuffled loader's epoch); the last two are kept."""
    with self._lock:  # the prefetch thread asks too
      if epoch not in self._orders:
        self._orders = {e: o for e, o in self._orders.items() if e == epoch - 1}
        self._orders[epoch] = np.random.default_rng([self.seed, _SALT, epoch]).permutation(len(self.files))
      return self._orders[epoch]

  def _made(self, steps: np.ndarray) -> np.ndarray:
    """The streamed images of `steps`, before the grayscale coin: (K, batch, H, W, 3)."""
    out = np.empty((len(steps), self.batch, *self.hw, 3), np.uint8)
    if self.files is not None:
      n = len(self.files)
      positions = [int(step) * self.batch + b for step in steps for b in range(self.batch)]
      files = [self.files[self._epoch_order(p // n)[p % n]] for p in positions]
      flat = out.reshape(-1, *self.hw, 3)

      def load(i: int) -> None:
        flat[i] = self._load(files[i])

      _run(load, len(files))
    else:
      def crop(j: int) -> None:
        rng = np.random.default_rng([self.seed, _SALT, int(steps[j])])
        out[j] = random_crops(self.photos, self.batch, self.hw, rng, threads=False)
      _run(crop, len(steps))
    return out

  def _streamed(self, steps: np.ndarray) -> np.ndarray:
    """`_made(steps)`, from the prefetch when it holds these steps; a run of consecutive steps then
    prefetches the next run of as many steps on a background thread."""
    consecutive = np.array_equal(steps, np.arange(steps[0], steps[0] + len(steps))) if len(steps) else False
    key = (int(steps[0]), len(steps)) if consecutive else None
    pending, self._pending = self._pending, None
    out = pending[1].result() if pending is not None and pending[0] == key else self._made(steps)
    if consecutive:
      if self._executor is None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxad-penalty")
      following = np.arange(key[0] + key[1], key[0] + 2 * key[1])
      self._pending = ((key[0] + key[1], key[1]), self._executor.submit(self._made, following))
    return out

  def __call__(self, steps) -> dict[str, np.ndarray]:
    steps = np.asarray(steps)
    if self.images is None:
      out = self._streamed(steps)
    else:
      out = np.empty((len(steps), self.batch, *self.images.shape[1:]), np.uint8)
    for j, step in enumerate(steps):
      rng = np.random.default_rng([self.seed, int(step)])
      if self.images is not None:
        out[j] = self.images[rng.integers(len(self.images), size=self.batch)]
      gray = rng.random(self.batch) < GRAYSCALE_P
      if gray.any():
        out[j][gray] = grayscale_uint8(out[j][gray])
    return {"penalty": out}
