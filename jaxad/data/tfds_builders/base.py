"""What jaxad's TFDS builders share: the features, the split generation and the encoding.

Written and read without TensorFlow (array_record + `tfds.data_source`). TFDS can only encode
images from numpy with TensorFlow, so every image field is given as encoded bytes:

* image: the original file's bytes when PIL decodes them to exactly the RGB array that
  `jaxad.data.images.load_sample` returns (RGB PNG/JPEG files: compact, no re-encoding);
  otherwise (gray, 16-bit, palette... files) a lossless PNG of that RGB array.
* mask: PNG of the (H, W) {0, 1} mask (union of the mask files, `load_sample`'s rules).
* components: (H, W) int32 8-connected component labels of the mask, zlib-compressed.

jaxad reads images and masks with `SkipDecoding` and decodes them with PIL
(`jaxad.data.transforms.decode_record`): TFDS would decode with OpenCV when it is installed,
whose JPEG decoder can differ from PIL's, so a TFDS source and a folder source of the same
data give identical arrays only this way. Other TFDS users still get ordinary Image
features. Records keep `read_dataset`'s order (shuffling disabled; keys = file names).
"""

from __future__ import annotations

import io
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from jaxad.data.images import load_sample
from jaxad.data.readers import read_dataset
from jaxad.data.records import SampleRef
from jaxad.data.sources import TFDS_VAL_FRACTION, TFDS_VAL_SEED
from jaxad.data.transforms import decode_image_bytes
from jaxad.errors import DataError

VAL_FRACTION, VAL_SEED = TFDS_VAL_FRACTION, TFDS_VAL_SEED


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, doc="RGB image"),
      "mask": tfds.features.Image(shape=(None, None, 1), dtype=np.uint8, encoding_format="png",
                                  doc="ground truth, 1 = anomalous pixel"),
      "components": tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding=tfds.features.Encoding.ZLIB,
                                         doc="8-connected component labels of the mask, 0 = background"),
      "label": tfds.features.ClassLabel(names=["normal", "anomalous"]),
      "defect_type": tfds.features.Text(doc='"good" or the defect folder / class name'),
      "file_name": tfds.features.Text(doc="path relative to the category root"),
      "is_segmented": tfds.features.Scalar(dtype=np.bool_, doc="False: anomalous image without a pixel mask"),
  })


def _png(array: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="png")
  return buffer.getvalue()


def image_bytes(path: str, rgb: np.ndarray) -> bytes:
  """The file's own bytes if they decode (PIL, RGB) to exactly `rgb`, else a PNG of `rgb`."""
  with open(path, "rb") as f:
    original = f.read()
  try:
    if np.array_equal(decode_image_bytes(original, path), rgb):
      return original
  except DataError:
    pass
  return _png(rgb)


def encode_example(ref: SampleRef) -> dict[str, Any]:
  """The TFDS example of one sample (decoding it with `load_sample`)."""
  sample = load_sample(ref)
  return {
      "image": image_bytes(ref.image_path, sample["image"]),
      "mask": _png(sample["mask"]),
      "components": sample["components"],
      "label": sample["label"],
      "defect_type": sample["defect_type"],
      "file_name": sample["file_name"],
      "is_segmented": sample["is_segmented"],
  }


class AnomalyDetectionBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base builder: one config per category, splits from `read_dataset` (train/validation/test).

  Subclasses set READER_FORMAT (a `read_dataset` format), DESCRIPTION, HOMEPAGE, CITATION,
  LICENSE, MANUAL_DOWNLOAD_INSTRUCTIONS and BUILDER_CONFIGS. Validation is the seeded
  VAL_FRACTION of the normal training images (seed VAL_SEED) chosen by `read_dataset`.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First jaxad release."}
  READER_FORMAT = "auto"
  DESCRIPTION = ""
  HOMEPAGE = ""
  CITATION = ""
  LICENSE = ""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION, features=features(),
                                 homepage=self.HOMEPAGE, citation=self.CITATION, license=self.LICENSE,
                                 disable_shuffling=True)

  def _read_splits(self, root: str) -> dict[str, list[SampleRef]]:
    return read_dataset(root, format=self.READER_FORMAT, category=self.builder_config.name,
                        val_fraction=VAL_FRACTION, seed=VAL_SEED)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    splits = self._read_splits(str(dl_manager.manual_dir))
    return {split: self._generate_examples(refs) for split, refs in splits.items() if refs}

  def _generate_examples(self, refs: list[SampleRef]) -> Iterator[tuple[str, dict[str, Any]]]:
    for ref in refs:
      yield ref.file_name, encode_example(ref)
