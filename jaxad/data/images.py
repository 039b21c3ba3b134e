"""Decoding dataset images and masks into numpy arrays, with clear errors for bad files.

Reference: SimpleNet, nelson's EfficientAD and anomalib open images with PIL and convert to
RGB (methods.md §2.1, §4.5); SuperSimpleNet's official code reads them with OpenCV (anomalib
0.7's `cv2.imread`, BGR → RGB; §3.2). Masks are "nonzero = anomalous" (MVTec 0/255, VisA 0/1..N
after anomalib's binarisation, MVTec LOCO per-region PNGs with varying values, KSDD2 0/255).

Conversions done by `load_image` (documented because PIL's own `convert("RGB")` is lossy or
wrong for some of them):

* RGB: as is. L and 1 (bilevel): the gray value is repeated over the three channels.
* 16-bit gray (I;16, I;16L, I;16B, and I as Pillow opens 16-bit PNGs in some versions):
  8-bit value = value >> 8 (the high byte), the same rule Pillow applies to 48-bit RGB PNGs
  and OpenCV applies to 16-bit images; I-mode values are first clipped to [0, 65535].
  Then repeated over three channels. PIL's `convert("RGB")`, which the PIL-based references
  use, clips instead (65535 → 255): jaxad differs from them on 16-bit files, which none of the
  benchmark datasets has.
* RGBA, LA, PA, P, CMYK, YCbCr, RGBX, LAB, HSV: PIL's `convert("RGB")`; alpha is dropped
  (not composited over a background) and palettes are expanded.
* Float images (mode F) and anything else: DataError.

EXIF orientation is not applied, as in the PIL-based references; OpenCV's `imread` (the
SuperSimpleNet reference) applies it, so the two differ on JPEGs with an orientation tag (the
benchmark datasets' PNGs carry none).
Decoding is forced with `Image.load()`, so truncated files fail here, not later.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.ndimage
from PIL import Image

from jaxad.data.records import Sample, SampleRef
from jaxad.errors import DataError

_GRAY_MODES = ("1", "L")
_UINT16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_CONVERTIBLE_MODES = ("RGBA", "RGBa", "RGBX", "LA", "La", "PA", "P", "CMYK", "YCbCr", "LAB", "HSV")
# 8-connectivity for the connected components of masks (AUPRO regions).
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _open_decoded(path: str | os.PathLike, kind: str) -> Image.Image:
  """Opens and fully decodes an image file; any failure becomes a DataError naming the file."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise DataError(f"{kind} file {path} does not exist")
  try:
    img = Image.open(path)
  except Image.UnidentifiedImageError:
    raise DataError(f"{kind} file {path} is not an image PIL can read (corrupt, empty, or another file type)") from None
  except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for damaged headers.
    raise DataError(f"{kind} file {path} cannot be opened: {type(e).__name__}: {e}") from None
  try:
    img.load()
  except Exception as e:  # Truncated or corrupt pixel data (OSError, SyntaxError, zlib.error, ...).
    img.close()
    raise DataError(f"{kind} file {path} is corrupt or truncated: {type(e).__name__}: {e}") from None
  return img


def _uint16_to_uint8(values: np.ndarray) -> np.ndarray:
  return (np.clip(values.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def load_image(path: str | os.PathLike) -> np.ndarray:
  """Loads an image file as (H, W, 3) uint8 RGB (conversions in the module docstring).

  Raises:
    DataError: the file is missing, not an image, corrupt, truncated, or of an unsupported mode.
  """
  img = _open_decoded(path, "image")
  with img:
    mode = img.mode
    if mode == "RGB":
      rgb = np.asarray(img, dtype=np.uint8)
    elif mode in _GRAY_MODES:
      gray = np.asarray(img.convert("L"), dtype=np.uint8)
      rgb = np.repeat(gray[..., None], 3, axis=-1)
    elif mode in _UINT16_MODES:
      gray = _uint16_to_uint8(np.asarray(img))
      rgb = np.repeat(gray[..., None], 3, axis=-1)
    elif mode in _CONVERTIBLE_MODES:
      rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    else:
      raise DataError(f"image file {os.fspath(path)} has unsupported pixel mode {mode!r} "
                      f"(supported: RGB, gray 8/16-bit, RGBA, LA, palette, CMYK, YCbCr)")
  return np.ascontiguousarray(rgb)


def load_mask_file(path: str | os.PathLike) -> np.ndarray:
  """(H, W) bool: the nonzero pixels of one mask file (any nonzero color channel; alpha ignored).

  Raises:
    DataError: the file is missing, not an image, corrupt, truncated or of an unsupported mode.
  """
  img = _open_decoded(path, "mask")
  with img:
    if img.mode in _GRAY_MODES or img.mode in _UINT16_MODES:
      return np.asarray(img) != 0
    if img.mode == "RGB" or img.mode in _CONVERTIBLE_MODES:
      return np.any(np.asarray(img.convert("RGB")) != 0, axis=-1)
    raise DataError(f"mask file {os.fspath(path)} has unsupported pixel mode {img.mode!r}")


def load_mask(paths: tuple[str, ...] | list[str], image_shape: tuple[int, ...],
              file_for_errors: str | os.PathLike) -> np.ndarray:
  """Union of one or more mask files as (H, W) uint8 in {0, 1}; all zeros when `paths` is empty.

  Args:
    paths: mask files; a pixel is anomalous when it is nonzero in any of them.
    image_shape: shape of the image the mask belongs to ((H, W) or (H, W, C)).
    file_for_errors: the image file, named in size-mismatch errors.

  Raises:
    DataError: a mask is unreadable, or its size differs from the image's (both files named).
  """
  height, width = int(image_shape[0]), int(image_shape[1])
  union = np.zeros((height, width), dtype=bool)
  for path in paths:
    foreground = load_mask_file(path)
    if foreground.shape != (height, width):
      raise DataError(
          f"mask {os.fspath(path)} is {foreground.shape[0]}x{foreground.shape[1]} (HxW) but its image "
          f"{os.fspath(file_for_errors)} is {height}x{width}")
    union |= foreground
  return union.astype(np.uint8)


def connected_components(mask: np.ndarray) -> np.ndarray:
  """(H, W) int32 labels of the 8-connected regions of a {0, 1} mask (0 = background)."""
  labels, _ = scipy.ndimage.label(mask, structure=_EIGHT_CONNECTED)
  return labels.astype(np.int32)


def load_sample(ref: SampleRef) -> Sample:
  """Loads the image, mask and component labels of one `SampleRef` at file resolution.

  Weakly labelled samples (`is_segmented=False`) get an all-zero mask, whatever their files.
  """
  image = load_image(ref.image_path)
  if ref.is_segmented:
    mask = load_mask(ref.mask_paths, image.shape, ref.image_path)
  else:
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
  return Sample(
      image=image,
      mask=mask,
      components=connected_components(mask),
      label=int(ref.label),
      defect_type=ref.defect_type,
      file_name=ref.file_name,
      is_segmented=bool(ref.is_segmented),
  )
