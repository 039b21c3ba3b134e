"""TFDS builders of jaxad's datasets, written as array_record and read without TensorFlow.

Builders: `mvtec_ad` (MVTec AD), `visa` (VisA), `jaxad_folder` (any `read_dataset` layout:
MVTec LOCO, KSDD2, folders). They build from a dataset already on disk (`jaxad data download`
fetches the public ones; each module's docstring says where else, and under which license);
nothing here downloads or redistributes them.

The `tfds build` CLI imports TensorFlow (tensorflow-datasets 4.9), so jaxad builds with its
own entry point, which needs only tensorflow-datasets and array-record:

    python -m jaxad.data.tfds_builders mvtec_ad --manual_dir ~/data/mvtec_anomaly_detection \
        --data_dir ~/tensorflow_datasets

or from Python `build_tfds("mvtec_ad", "~/data/mvtec_anomaly_detection")`. Then train on
`tfds:mvtec_ad` (jaxad.data.sources.make_source). This package imports TFDS only when
`build_tfds` runs.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Sequence

from jaxad.errors import ConfigError, DataError

# Builder name -> (module, class name).
BUILDERS = {
    "mvtec_ad": ("jaxad.data.tfds_builders.mvtec_ad", "MvtecAd"),
    "visa": ("jaxad.data.tfds_builders.visa", "Visa"),
    "jaxad_folder": ("jaxad.data.tfds_builders.folder_dataset", "JaxadFolder"),
}


def _builder_class(name: str):
  if name not in BUILDERS:
    raise ConfigError(f"unknown TFDS builder {name!r}; choose one of {', '.join(BUILDERS)}")
  module_name, class_name = BUILDERS[name]
  return getattr(importlib.import_module(module_name), class_name)


def _configs(name: str, builder_class, manual_dir: Path, categories: Sequence[str] | None, format: str,  # noqa: A002
             reader_options: dict[str, Any], config_name: str | None) -> list[Any]:
  """The builder configs to build: named configs for mvtec_ad / visa, FolderConfigs otherwise."""
  from jaxad.data.readers import detect_format, list_categories

  if name != "jaxad_folder":
    if format != "auto" or reader_options or config_name:
      raise ConfigError(f"format, reader options and config_name apply to jaxad_folder only, not {name}")
    known = builder_class.builder_configs
    present = set(list_categories(manual_dir, builder_class.READER_FORMAT))
    if categories:
      unknown = [c for c in categories if c not in known]
      if unknown:
        raise ConfigError(f"unknown {name} categories {unknown}; choose from {', '.join(known)}")
      return list(categories)
    chosen = [c for c in known if c in present]
    if not chosen:
      raise DataError(f"no {name} category folder found in {manual_dir} (expected some of {', '.join(known)})")
    return chosen
  from jaxad.data.tfds_builders.folder_dataset import FolderConfig

  fmt = detect_format(manual_dir) if format == "auto" and "normal_dir" not in reader_options else format
  chosen = list(categories) if categories else (list_categories(manual_dir, fmt) if fmt != "folder" else [])
  if config_name and len(chosen) > 1:
    raise ConfigError("config_name names one build; give a single category with it")
  return [FolderConfig(name=config_name or category or fmt, format=fmt, category=category,
                       reader_options=dict(reader_options), description=f"{fmt} dataset built from {manual_dir}")
          for category in (chosen or [None])]


def build_tfds(name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               categories: Sequence[str] | None = None, *, format: str = "auto",  # noqa: A002
               reader_options: dict[str, Any] | None = None, config_name: str | None = None,
               overwrite: bool = False) -> list[str]:
  """Builds array_record TFDS datasets from a manually downloaded copy; returns "name/config"s.

  Args:
    name: "mvtec_ad", "visa" or "jaxad_folder".
    manual_dir: the extracted dataset (see the builder module's docstring).
    data_dir: TFDS data folder (default $TFDS_DATA_DIR or ~/tensorflow_datasets).
    categories: categories to build (default: every known category found in manual_dir).
    format, reader_options, config_name: jaxad_folder only (layout, `read_dataset` options,
      config name for a single-category build; default the category or the format).
    overwrite: rebuild configs that are already built (otherwise they are kept).

  Raises:
    DataError: missing manual dir or categories, unreadable files. ConfigError: bad arguments.
  """
  import tensorflow_datasets as tfds

  from jaxad.data.sources import default_tfds_dir

  manual = Path(manual_dir).expanduser()
  if not manual.is_dir():
    raise DataError(f"manual dir {manual} does not exist or is not a folder")
  out_dir = Path(data_dir).expanduser() if data_dir is not None else default_tfds_dir()
  builder_class = _builder_class(name)
  configs = _configs(name, builder_class, manual, categories, format, dict(reader_options or {}), config_name)
  mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite else \
      tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
  download_config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual), download_mode=mode,
                                                 try_download_gcs=False)
  built = []
  for config in configs:
    builder = builder_class(config=config, data_dir=os.fspath(out_dir), file_format="array_record")
    builder.download_and_prepare(download_config=download_config)
    built.append(f"{builder_class.name}/{builder.builder_config.name}")
  return built
