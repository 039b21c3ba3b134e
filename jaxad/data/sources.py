"""Random-access sources of `Sample`s that grain can index: a folder dataset or a TFDS build.

Both kinds return the same `Sample` (jaxad.data.records) for the same image: `FolderSource`
decodes the files with `load_sample`; `TfdsSource` reads jaxad's array_record builds
(jaxad.data.tfds_builders) without TensorFlow and decodes the stored bytes with PIL, so the
arrays are identical (the builders check this when writing).

`make_source` understands three data specs:

* a dataset root path (any layout `jaxad.data.readers.read_dataset` reads);
* `tfds:<name>` (the category becomes the builder config) or `tfds:<name>/<config>`;
* `embedded`: the small built-in dataset, generated once into `$JAXAD_CACHE/embedded`
  (default `~/.cache/jaxad/embedded`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, Sequence

from jaxad.data.images import load_sample
from jaxad.data.readers import read_dataset
from jaxad.data.records import SPLITS, Sample, SampleRef
from jaxad.data.transforms import decode_record
from jaxad.errors import ConfigError, DataError

TFDS_PREFIX = "tfds:"
EMBEDDED = "embedded"
# Record fields left encoded by TFDS (decoded by `decode_record` with PIL instead).
_UNDECODED_FEATURES = ("image", "mask")


class Source(Protocol):
  """What the pipeline needs: a length and `Sample`s by index."""

  def __len__(self) -> int:
    ...

  def __getitem__(self, index: int) -> Sample:
    ...


class FolderSource:
  """`Sample`s of a list of `SampleRef`s, decoded from their files on access."""

  def __init__(self, refs: Sequence[SampleRef]):
    self.refs = tuple(refs)

  def __len__(self) -> int:
    return len(self.refs)

  def __getitem__(self, index: int) -> Sample:
    return load_sample(self.refs[index])

  def __repr__(self) -> str:
    return f"FolderSource({len(self.refs)} samples)"


def default_tfds_dir() -> Path:
  """TFDS's own default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return Path(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")).expanduser()


class TfdsSource:
  """`Sample`s of one split of a jaxad TFDS build (array_record), read without TensorFlow.

  The TFDS reader is opened lazily, so the source pickles cheaply into grain's worker
  processes, each of which opens its own.
  """

  def __init__(self, name: str, split: str, data_dir: str | os.PathLike | None = None):
    self.name = name
    self.split = split
    self.data_dir = Path(data_dir).expanduser() if data_dir is not None else default_tfds_dir()
    self._check_built()
    self._reader = None
    self._length = len(self._open())

  def _check_built(self) -> None:
    folder = self.data_dir / self.name
    versions = [p for p in folder.glob("*") if (p / "dataset_info.json").is_file()] if folder.is_dir() else []
    configs = sorted({p.parent.parent.name for p in folder.glob("*/*/dataset_info.json")}) if folder.is_dir() else []
    if not versions and configs:
      raise DataError(f"TFDS dataset {self.name!r} in {self.data_dir} has configs {', '.join(configs)}; "
                      f"name one (tfds:{self.name}/<config>, or pass the category)")
    if not versions:
      raise DataError(
          f"TFDS dataset {self.name!r} is not built under {self.data_dir} (no {folder}/<version>/dataset_info.json); "
          f"build it with `python -m jaxad.data.tfds_builders {self.name.split('/')[0]} --manual_dir ... "
          f"--data_dir {self.data_dir}`")

  def _open(self):
    if self._reader is None:
      import tensorflow_datasets as tfds  # Heavy; only when a TFDS source is used.

      skip = {name: tfds.decode.SkipDecoding() for name in _UNDECODED_FEATURES}
      try:
        self._reader = tfds.data_source(self.name, split=self.split, data_dir=os.fspath(self.data_dir),
                                        decoders=skip)
      except (ValueError, KeyError) as e:
        raise DataError(f"TFDS dataset {self.name!r} in {self.data_dir} has no split {self.split!r}: {e}") from None
    return self._reader

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index: int) -> Sample:
    return decode_record(self._open()[index])

  def __getstate__(self) -> dict[str, Any]:
    return {**self.__dict__, "_reader": None}

  def __repr__(self) -> str:
    return f"TfdsSource({self.name!r}, split={self.split!r}, {self._length} samples)"


def default_cache_root() -> Path:
  """$JAXAD_CACHE or ~/.cache/jaxad."""
  return Path(os.environ.get("JAXAD_CACHE", "~/.cache/jaxad")).expanduser()


def _tfds_name(spec: str, category: str | None) -> str:
  name = spec[len(TFDS_PREFIX):].strip("/")
  if not name:
    raise ConfigError(f"data spec {spec!r} names no TFDS dataset (expected tfds:<name> or tfds:<name>/<config>)")
  if "/" in name:
    config = name.split("/", 1)[1]
    if category not in (None, config):
      raise ConfigError(f"data spec {spec!r} names config {config!r} but category {category!r} was asked for")
    return name
  return f"{name}/{category}" if category else name


# The validation hold-out every jaxad TFDS build is made with (jaxad.data.tfds_builders).
TFDS_VAL_FRACTION = 0.1
TFDS_VAL_SEED = 0


def make_source(data_spec: str | os.PathLike, category: str | None, split: str, *,
                data_dir: str | os.PathLike | None = None, val_fraction: float = 0.1, seed: int = 0,
                cache_root: str | os.PathLike | None = None, **reader_options) -> FolderSource | TfdsSource:
  """The source of one split of a dataset named by a data spec (module docstring).

  Args:
    data_spec: dataset root path, "tfds:<name>[/<config>]" or "embedded".
    category: category (TFDS: config) name; None for single-category datasets.
    split: "train", "validation" or "test".
    data_dir: TFDS data folder (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
    val_fraction, seed: validation hold-out of folder datasets (`read_dataset`); TFDS builds
      fixed theirs when they were built (TFDS_VAL_FRACTION, TFDS_VAL_SEED), and other values are
      refused for them.
    cache_root: where "embedded" is generated (default `default_cache_root()`).
    **reader_options: layout options passed to `read_dataset` (format=..., normal_dir=...).

  Raises:
    ConfigError: unknown split or malformed spec. DataError: missing or unreadable data.
  """
  if split not in SPLITS:
    raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
  spec = os.fspath(data_spec)
  if spec.startswith(TFDS_PREFIX):
    if (val_fraction, seed) != (TFDS_VAL_FRACTION, TFDS_VAL_SEED):
      raise ConfigError(f"a TFDS build ({spec}) holds out the validation split it was built with "
                        f"(val_fraction {TFDS_VAL_FRACTION}, seed {TFDS_VAL_SEED}), but this run asks for val_fraction "
                        f"{val_fraction} and seed {seed}; give the dataset folder as --data to choose the hold-out "
                        f"(the SimpleNet and SuperSimpleNet paper experiments train on every image, val_fraction 0)")
    if reader_options:
      raise ConfigError(f"layout options {sorted(reader_options)} do not apply to a TFDS build ({spec}): its layout "
                        "was read when it was built")
    return TfdsSource(_tfds_name(spec, category), split, data_dir)
  if spec == EMBEDDED:
    from jaxad.data.embedded import build_embedded  # Only needed (and generating) for this spec.

    root = build_embedded(Path(cache_root).expanduser() if cache_root is not None else default_cache_root() / EMBEDDED)
    reader_options.setdefault("format", EMBEDDED)
    spec = os.fspath(root)
  splits = read_dataset(spec, category=category, val_fraction=val_fraction, seed=seed, **reader_options)
  return FolderSource(splits[split])
