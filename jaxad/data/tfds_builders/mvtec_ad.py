"""TFDS builder for MVTec AD (manual download), one config per category.

Data: https://www.mvtec.com/company/research/datasets/mvtec-ad (free registration).
License: CC BY-NC-SA 4.0 (non-commercial). jaxad never redistributes it; `jaxad data download
mvtec_ad DIR` fetches, checks and unpacks `mvtec_anomaly_detection.tar.xz`, or extract it
yourself, e.g. to ~/data/mvtec_anomaly_detection (folders bottle/, cable/, ...).

Build (array_record, no TensorFlow needed):

    python -m jaxad.data.tfds_builders mvtec_ad --manual_dir ~/data/mvtec_anomaly_detection \
        --data_dir ~/tensorflow_datasets [--categories bottle,cable]

or from Python `jaxad.data.tfds_builders.build_tfds("mvtec_ad", manual_dir, data_dir)`.
The TFDS CLI imports TensorFlow (it fails without it); with TensorFlow installed this
should work too (not tested: jaxad's environment has no TensorFlow):

    tfds build jaxad/data/tfds_builders/mvtec_ad.py --manual_dir ~/data/mvtec_anomaly_detection \
        --file_format array_record

Read with `jaxad.data.sources.make_source("tfds:mvtec_ad", "bottle", "test")` or
`tfds.data_source("mvtec_ad/bottle", split="test")`. Splits: train, validation (the seeded
10 % of train/good chosen by `jaxad.data.readers.read_dataset`, seed 0), test. Features and
their encoding: `jaxad.data.tfds_builders.base`.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from jaxad.data.tfds_builders import base

CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
              "tile", "toothbrush", "transistor", "wood", "zipper")


class MvtecAd(base.AnomalyDetectionBuilder):
  """MVTec AD: 15 categories of industrial objects and textures (Bergmann et al., CVPR 2019)."""

  READER_FORMAT = "mvtec"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c, description=f"MVTec AD category {c}") for c in CATEGORIES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download MVTec AD from https://www.mvtec.com/company/research/datasets/mvtec-ad (license CC BY-NC-SA 4.0), "
      "extract it and pass the folder that holds bottle/, cable/, ... as the manual dir.")
  DESCRIPTION = ("MVTec Anomaly Detection: defect-free training images and test images with pixel masks of "
                 "scratches, dents, contaminations and other defects.")
  HOMEPAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
  LICENSE = "CC BY-NC-SA 4.0"
  CITATION = """@inproceedings{bergmann2019mvtec,
  title={MVTec AD -- A Comprehensive Real-World Dataset for Unsupervised Anomaly Detection},
  author={Bergmann, Paul and Fauser, Michael and Sattlegger, David and Steger, Carsten},
  booktitle={IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={9592--9600},
  year={2019}
}"""
