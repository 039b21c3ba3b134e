"""Generic TFDS builder for any layout `jaxad.data.readers.read_dataset` reads.

For datasets without a dedicated builder (MVTec LOCO, KSDD2, SensumSODF, plain folders, the embedded
dataset). A build is described by a `FolderConfig` made at build time (layout format,
category, reader options); its name becomes the TFDS config, so different options need
different config names. The builder is not registered with TFDS (its configs exist only in
the built files), so reading goes through the files: `tfds:jaxad_folder/<config>` in
`jaxad.data.sources.make_source`, or `tfds.data_source("jaxad_folder/<config>", ...)`.

Build (array_record, no TensorFlow needed):

    python -m jaxad.data.tfds_builders jaxad_folder --manual_dir ~/data/mvtec_loco \
        --format mvtec_loco --categories breakfast_box
    python -m jaxad.data.tfds_builders jaxad_folder --manual_dir ~/data/ksdd2 --format ksdd2 \
        --option supervised=true --config_name ksdd2_supervised

The data stay under their own licenses; the builder reads them from disk and never downloads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import tensorflow_datasets as tfds

from jaxad.data.readers import read_dataset
from jaxad.data.records import SampleRef
from jaxad.data.tfds_builders import base


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """One build of a folder dataset.

  Attributes:
    format: a `read_dataset` format ("auto", "mvtec_loco", "ksdd2", "folder", ...).
    category: category name, or None for single-category datasets.
    reader_options: layout options passed to `read_dataset` (e.g. normal_dir=...).
  """

  format: str = "auto"
  category: str | None = None
  reader_options: dict[str, Any] = dataclasses.field(default_factory=dict)


class JaxadFolder(base.AnomalyDetectionBuilder, skip_registration=True):
  """Any `read_dataset` layout; the config (a `FolderConfig`) is given when building."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = "Pass the dataset root (as `read_dataset` expects it) as the manual dir."
  DESCRIPTION = "An anomaly-detection dataset read by jaxad.data.readers.read_dataset."

  def _read_splits(self, root: str) -> dict[str, list[SampleRef]]:
    config = self.builder_config
    return read_dataset(root, format=config.format, category=config.category, val_fraction=base.VAL_FRACTION,
                        seed=base.VAL_SEED, **config.reader_options)
