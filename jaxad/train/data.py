"""Loads a whole split into host memory, preprocessed for one method (`SplitData`).

Uses the data pipeline's own per-sample transforms (jaxad.data.transforms: `Resize`,
`Finalize`), so the in-memory path and the streaming grain path see identical arrays.
Anomaly-detection training sets are small (hundreds of images), which is what makes the
on-device feature cache of the training loop possible.
"""

from __future__ import annotations

import sys

import numpy as np

from jaxad.data import loco_channels
from jaxad.data.sources import make_source
from jaxad.data.grain_maps import Finalize, Resize
from jaxad.data.transforms import PreprocessConfig, as_size
from jaxad.errors import DataError
from jaxad.train.loop import SplitData


def load_split(data_spec: str, category: str | None, split: str, image_size, preprocess: PreprocessConfig, *,
               with_components: bool = False, original_masks: bool = False, val_fraction: float = 0.1, seed: int = 0,
               progress: bool = False, allow_empty: bool = False, **reader_options) -> SplitData | None:
  """Every sample of one split, resized and normalised, stacked into `SplitData` (None: empty and allowed).

  `original_masks`: also keep each mask at its image's own size (`SplitData.original_mask`) and, for an
  MVTec LOCO AD test split read from its folders, each image's defect channels for the sPRO metric
  (`SplitData.original_channels`).
  """
  source = make_source(data_spec, category, split, val_fraction=val_fraction, seed=seed, **reader_options)
  if len(source) == 0:
    if allow_empty:
      return None
    raise DataError(f"the {split} split of {data_spec!r} (category {category!r}) is empty")
  resize = Resize(as_size(image_size), preprocess)
  finalize = Finalize(normalize=preprocess.normalize, with_components=with_components)
  items = range(len(source))
  if progress:
    from tqdm.auto import tqdm
    items = tqdm(items, desc=f"loading {split}", unit="img", leave=False)
  samples, original_mask = [], []
  for i in items:
    sample = dict(source[i])
    if original_masks:
      original_mask.append(np.asarray(sample["mask"]) > 0)
    samples.append(finalize.map(resize.map(sample)))
  channels = None
  if original_masks and hasattr(source, "refs"):
    channels = loco_channels.split_channels(source.refs)
  elif original_masks and {s["defect_type"] for s in samples} >= set(loco_channels.KINDS):
    print("note: no sPRO (MVTec LOCO's localisation metric): a prepared TFDS dataset keeps only the union of "
          "each image's masks; point --data at the dataset folder for it", file=sys.stderr)
  return SplitData(
      image=np.stack([s["image"] for s in samples]),
      mask=np.stack([s["mask"] for s in samples]).astype(np.float32),
      label=np.array([s["label"] for s in samples], np.int32),
      is_segmented=np.array([s["is_segmented"] for s in samples], bool),
      components=np.stack([s["components"] for s in samples]) if with_components else None,
      file_name=[str(s["file_name"]) for s in samples],
      defect_type=[str(s["defect_type"]) for s in samples],
      original_mask=original_mask if original_masks else None,
      original_channels=channels,
  )


def check_train_labels(train: SplitData, *, supervised: bool | None, model: str, data_spec: str,
                       category: str | None) -> None:
  """Refuses a train split whose labels do not fit the method's protocol, before any training.

  An unsupervised method would learn anomalous training images as normal (KSDD2 and
  SensumSODF keep their defects in train unless `--unsupervised`); a supervised one needs them.
  `supervised` is the method's setting, None for methods without a supervised protocol.
  """
  where = f"the train split of {data_spec!r}" + (f" (category {category!r})" if category else "")
  n_anomalous = int(np.sum(train.label == 1))
  if n_anomalous and not supervised:
    who = model if supervised is None else f"{model} with supervised=false"
    hint = "" if supervised is None else " (or --set supervised=true for the supervised protocol)"
    raise DataError(f"{where} holds {n_anomalous} anomalous images, but {who} trains on normal images only: "
                    f"pass --unsupervised to leave them out{hint}")
  if supervised and not n_anomalous:
    raise DataError(f"{where} has no anomalous images, but supervised=true trains on them (KSDD2 and SensumSODF "
                    f"keep defects in train; MVTec AD and VisA have them in test only)")
