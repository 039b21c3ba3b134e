"""Per-sample preprocessing as grain transforms: decode, resize, flip, components, normalise.

Each method was trained with one specific resize (methods.md §1.3, §2.1, §3.2, §4.5), so the
image resampler is named after the library whose result it reproduces:

* "torch-bilinear": `F.interpolate(bilinear, align_corners=False)` on float images (no
  antialiasing when shrinking).
* "torch-bilinear-antialias": torchvision `Resize` on float tensors (anomalib), antialiased.
* "pil-bilinear": torchvision `Resize` on PIL images (SimpleNet, EfficientAD's reference code),
  done by PIL itself (exact; PIL's fixed-point two-pass result differs by a gray level from
  an exact antialiased bilinear on many pixels).
* "cv2-bilinear": OpenCV `INTER_LINEAR` on uint8 images (SuperSimpleNet's albumentations
  pipeline): torch-bilinear rounded to uint8. Deviation: OpenCV's 11-bit fixed-point weights
  can differ from exact rounding by one gray level on some pixels.
* "none": no resize; images must already have the requested size.

`PreprocessConfig.resize_shorter` switches to torchvision's `Resize(int)` + `CenterCrop`
(SimpleNet: shorter side 329, crop 288). Masks use PyTorch/OpenCV "nearest" by default
(stays in {0, 1}); "pil-bilinear-is-one" reproduces SimpleNet's test masks: the 0/255 mask is
resized by PIL like the image and only pixels that are exactly 255 afterwards stay anomalous
(methods.md §2.1; boundary pixels become normal). Components are recomputed after resizing
and flipping (8-connectivity). The ImageNet normalisation is done in float32 like
torchvision's `ToTensor` + `Normalize`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from typing import Any, Callable

import numpy as np
from PIL import Image

from jaxad.data.records import Sample
from jaxad.errors import ConfigError, DataError
from jaxad.ops.resize import center_crop_box, resize, shorter_side_size

# the ImageNet statistics every backbone here was trained with (torchvision's), on [0, 1] RGB; jaxad's one copy
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_RESIZES = ("torch-bilinear", "torch-bilinear-antialias", "pil-bilinear", "cv2-bilinear", "none")
MASK_RESIZES = ("nearest", "pil-bilinear-is-one")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
  """How one method turns a loaded sample into network input (the output size is separate).

  Attributes:
    image_resize: one of IMAGE_RESIZES (module docstring).
    resize_shorter: if set, resize the shorter side to this many pixels (aspect kept), then
      center-crop to the output size (torchvision `Resize(int)` + `CenterCrop`).
    mask_resize: one of MASK_RESIZES.
    normalize: apply the ImageNet mean/std (otherwise the image is scaled to [0, 1]).
    random_flips: flip each training sample horizontally and vertically with probability 1/2
      each (the identity / h / v / 180° group of SuperSimpleNet's supervised protocol).
  """

  image_resize: str = "torch-bilinear"
  resize_shorter: int | None = None
  mask_resize: str = "nearest"
  normalize: bool = True
  random_flips: bool = False

  def __post_init__(self):
    if self.image_resize not in IMAGE_RESIZES:
      raise ConfigError(f"unknown image_resize {self.image_resize!r}; choose one of {', '.join(IMAGE_RESIZES)}")
    if self.mask_resize not in MASK_RESIZES:
      raise ConfigError(f"unknown mask_resize {self.mask_resize!r}; choose one of {', '.join(MASK_RESIZES)}")
    if self.resize_shorter is not None and self.resize_shorter < 1:
      raise ConfigError(f"resize_shorter must be positive, got {self.resize_shorter}")
    if self.resize_shorter is not None and self.image_resize == "none":
      raise ConfigError("resize_shorter needs an image_resize other than 'none'")


def as_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
  """(H, W) from an int (square) or a pair."""
  if isinstance(image_size, int):
    return image_size, image_size
  height, width = (int(v) for v in image_size)
  return height, width


# ----------------------------------------------------------------------------- decoding


def decode_image_bytes(data: bytes, what: str) -> np.ndarray:
  """Decodes an encoded RGB image (PNG or JPEG, as stored by jaxad's TFDS builders) with PIL.

  Raises:
    DataError: the bytes are not an RGB image; `what` names the record.
  """
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      if img.mode != "RGB":
        raise DataError(f"{what}: stored image has mode {img.mode!r}, expected RGB")
      return np.asarray(img, dtype=np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{what}: stored image cannot be decoded: {type(e).__name__}: {e}") from None


def decode_mask_bytes(data: bytes, what: str) -> np.ndarray:
  """Decodes a stored {0, 1} mask PNG to (H, W) uint8."""
  try:
    with Image.open(io.BytesIO(data)) as img:
      img.load()
      mask = np.asarray(img, dtype=np.uint8)
  except (OSError, SyntaxError, ValueError) as e:
    raise DataError(f"{what}: stored mask cannot be decoded: {type(e).__name__}: {e}") from None
  return mask[..., 0] if mask.ndim == 3 else mask


def _text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def decode_record(record: dict[str, Any]) -> Sample:
  """Turns a record of jaxad's TFDS builders (image/mask bytes undecoded) into a `Sample`."""
  file_name = _text(record["file_name"])
  image = record["image"]
  image = decode_image_bytes(image, file_name) if isinstance(image, bytes) else np.asarray(image, np.uint8)
  mask = record["mask"]
  mask = decode_mask_bytes(mask, file_name) if isinstance(mask, bytes) else np.asarray(mask, np.uint8)
  if mask.ndim == 3:
    mask = mask[..., 0]
  components = np.asarray(record["components"], np.int32)
  if mask.shape != image.shape[:2] or components.shape != mask.shape:
    raise DataError(f"{file_name}: stored image {image.shape}, mask {mask.shape} and components "
                    f"{components.shape} disagree in size")
  return Sample(image=image, mask=mask, components=components, label=int(record["label"]),
                defect_type=_text(record["defect_type"]), file_name=file_name,
                is_segmented=bool(record["is_segmented"]))


# ----------------------------------------------------------------------------- resizing


def _resized_size_and_crop(height: int, width: int, size: tuple[int, int],
                           resize_shorter: int | None) -> tuple[tuple[int, int], tuple[int, int]]:
  """(size after resizing, top-left corner of the crop to `size`)."""
  if resize_shorter is None:
    return size, (0, 0)
  mid_h, mid_w = shorter_side_size(height, width, resize_shorter)
  if mid_h < size[0] or mid_w < size[1]:
    raise ConfigError(f"cannot center-crop {size} from an image resized to {(mid_h, mid_w)} "
                      f"(resize_shorter={resize_shorter} is too small)")
  return (mid_h, mid_w), (center_crop_box(mid_h, mid_w, size[0])[0], center_crop_box(mid_h, mid_w, size[1])[1])


def _resize_and_crop(x: np.ndarray, size: tuple[int, int], resize_shorter: int | None,
                     resize_fn: Callable[[np.ndarray, tuple[int, int]], np.ndarray]) -> np.ndarray:
  """Resizes x to `size`, or its shorter side to `resize_shorter` and then center-crops `size`."""
  mid, (top, left) = _resized_size_and_crop(x.shape[0], x.shape[1], size, resize_shorter)
  return resize_fn(x, mid)[top:top + size[0], left:left + size[1]]


def _pil_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """PIL's own bilinear resize of a uint8 image (what torchvision does on PIL images)."""
  return np.asarray(Image.fromarray(x).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def _round_uint8(x: np.ndarray) -> np.ndarray:
  """Round half up and clip, as OpenCV's uint8 resampler does."""
  return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def resize_image(image: np.ndarray, size: tuple[int, int], config: PreprocessConfig) -> np.ndarray:
  """(H, W, 3) uint8 → (h, w, 3) float32 in [0, 1] with the configured resampler."""
  if config.image_resize == "none":
    if image.shape[:2] != tuple(size):
      raise DataError(f"image is {image.shape[:2]} but image_resize='none' needs {tuple(size)}")
    return image.astype(np.float32) / np.float32(255.0)
  if config.image_resize == "pil-bilinear":
    resized = _resize_and_crop(image, size, config.resize_shorter, _pil_bilinear)
    return resized.astype(np.float32) / np.float32(255.0)
  antialias = config.image_resize == "torch-bilinear-antialias"
  torch_resize = functools.partial(resize, antialias=antialias)
  if config.image_resize == "cv2-bilinear":
    resized = _resize_and_crop(image.astype(np.float32), size, config.resize_shorter, torch_resize)
    return _round_uint8(resized).astype(np.float32) / np.float32(255.0)
  unit = image.astype(np.float32) / np.float32(255.0)
  return _resize_and_crop(unit, size, config.resize_shorter, torch_resize).astype(np.float32)


def resize_mask(mask: np.ndarray, size: tuple[int, int], config: PreprocessConfig) -> np.ndarray:
  """(H, W) {0, 1} → (h, w) uint8 {0, 1} with the configured mask resampler."""
  if config.mask_resize == "nearest":
    nearest = functools.partial(resize, method="nearest", channels_last=False)
    resized = _resize_and_crop(mask.astype(np.float32), size, config.resize_shorter, nearest)
    return (resized > 0.5).astype(np.uint8)
  resized = _resize_and_crop(mask.astype(np.uint8) * np.uint8(255), size, config.resize_shorter, _pil_bilinear)
  return (resized == 255).astype(np.uint8)


def normalize_image(image: np.ndarray) -> np.ndarray:
  """[0, 1] float image → ImageNet-normalised float32 (channel-last)."""
  mean, std = np.asarray(IMAGENET_MEAN, np.float32), np.asarray(IMAGENET_STD, np.float32)
  return ((image.astype(np.float32) - mean) / std).astype(np.float32)
