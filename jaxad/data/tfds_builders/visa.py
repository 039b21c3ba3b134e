"""TFDS builder for VisA (Visual Anomaly, manual download), one config per category.

Data: https://github.com/amazon-science/spot-diff (the VisA_20220922.tar archive linked
there). License: CC BY-NC-SA 4.0. jaxad never redistributes it; `jaxad data download visa DIR`
fetches, checks and unpacks the archive, or extract it yourself, e.g. to ~/data/visa, so that
~/data/visa/split_csv/1cls.csv exists (the
original layout, read by `jaxad.data.readers.read_visa`; anomalous images get defect type
"bad").

Build (array_record, no TensorFlow needed):

    python -m jaxad.data.tfds_builders visa --manual_dir ~/data/visa \
        --data_dir ~/tensorflow_datasets [--categories candle,pcb1]

or `jaxad.data.tfds_builders.build_tfds("visa", manual_dir, data_dir)`. With TensorFlow
installed, `tfds build jaxad/data/tfds_builders/visa.py --manual_dir ~/data/visa
--file_format array_record` should work too (not tested; the TFDS CLI needs TensorFlow).

Splits: train, validation (seeded 10 % of the normal training images, seed 0), test. JPEG
images are stored as their original bytes (see `jaxad.data.tfds_builders.base`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from jaxad.data.tfds_builders import base

CATEGORIES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
              "pcb3", "pcb4", "pipe_fryum")


class Visa(base.AnomalyDetectionBuilder):
  """VisA: 12 categories of complex, multi-instance and aligned objects (Zou et al., ECCV 2022)."""

  READER_FORMAT = "visa"
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=c, description=f"VisA category {c}") for c in CATEGORIES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Download VisA_20220922.tar via https://github.com/amazon-science/spot-diff (license CC BY-NC-SA 4.0), "
      "extract it and pass the folder that holds split_csv/1cls.csv as the manual dir.")
  DESCRIPTION = ("Visual Anomaly (VisA): 10,821 high-resolution images of 12 objects, 1,200 of them anomalous, "
                 "with pixel masks.")
  HOMEPAGE = "https://github.com/amazon-science/spot-diff"
  LICENSE = "CC BY-NC-SA 4.0"
  CITATION = """@inproceedings{zou2022spot,
  title={SPot-the-Difference Self-supervised Pre-training for Anomaly Detection and Segmentation},
  author={Zou, Yang and Jeong, Jongheon and Pemula, Latha and Zhang, Dongqing and Dabeer, Onkar},
  booktitle={European Conference on Computer Vision (ECCV)},
  pages={392--408},
  year={2022}
}"""
