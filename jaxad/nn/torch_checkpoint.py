"""Reads PyTorch checkpoints into numpy arrays without importing torch.

Formats (detected from the file's first bytes, not its name):
  * zip (`torch.save`, torch >= 1.6): `<prefix>/data.pkl` pickles the object; each storage
    is the raw record `<prefix>/data/<key>`; `<prefix>/byteorder` says "little" or "big".
  * legacy (`_use_new_zipfile_serialization=False`, torch < 1.6): five pickles in a row
    (magic number, protocol version 1001, sys info, the object, the list of storage keys),
    then each storage as an 8-byte element count followed by its raw bytes.
  * safetensors, read with `safetensors.numpy`.

Safety: pickles are read by a restricted unpickler whose `find_class` hands out only the
globals a weights file needs (`collections.OrderedDict`, the `torch._utils._rebuild_*`
tensor/parameter functions, `torch.<Type>Storage`, `torch.storage.UntypedStorage`, torch
dtypes, `torch.Size`), each mapped to a local stand-in; any other global is refused with a
`WeightsError` naming it. Nothing from torch is imported and no code from the file runs.

Reference: torch/serialization.py and torch/_utils.py (torch 2.x), read for the layout only.
Deviations: tensors become contiguous numpy copies (strides are honoured while copying);
bfloat16 and float8 use `ml_dtypes`; quantized, sparse and tar-format (torch < 0.4)
checkpoints and whole pickled `nn.Module`s are refused.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from jaxad.errors import WeightsError

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

# Sub-dicts that `load_state_dict` descends into, in this order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")

_NUMPY_DTYPES = {
    "float64": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float8_e4m3fn": np.dtype(ml_dtypes.float8_e4m3fn),
    "float8_e5m2": np.dtype(ml_dtypes.float8_e5m2),
    "float8_e4m3fnuz": np.dtype(ml_dtypes.float8_e4m3fnuz),
    "float8_e5m2fnuz": np.dtype(ml_dtypes.float8_e5m2fnuz),
    "complex128": np.dtype(np.complex128),
    "complex64": np.dtype(np.complex64),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint64": np.dtype(np.uint64),
    "uint32": np.dtype(np.uint32),
    "uint16": np.dtype(np.uint16),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}

# Legacy typed-storage class names (torch.storage._dtype_to_storage_type_map) -> dtype name.
_STORAGE_TYPE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
}


@dataclasses.dataclass(frozen=True)
class _TorchDtype:
  """Stand-in for a pickled `torch.<dtype>` global."""
  name: str


@dataclasses.dataclass(frozen=True)
class _StorageType:
  """Stand-in for a pickled storage class (`torch.FloatStorage`, `torch.storage.UntypedStorage`)."""
  name: str
  dtype: np.dtype


@dataclasses.dataclass
class _Storage:
  """One storage: `numel` elements of `dtype`; its bytes arrive when the file is read."""
  key: str
  dtype: np.dtype
  numel: int
  raw: np.ndarray | None = None  # uint8 bytes, file byte order
  big_endian: bool = False
  parent: _Storage | None = None  # legacy storage views only
  parent_byte_offset: int = 0

  def as_dtype(self, dtype: np.dtype) -> np.ndarray:
    """The storage's bytes as a 1-D array of `dtype` in native byte order."""
    raw = self._bytes()
    if raw.size % dtype.itemsize:
      raise ValueError(f"storage {self.key} holds {raw.size} bytes, not a whole number of {dtype} elements")
    if not self.big_endian or dtype.itemsize == 1:
      return raw.view(dtype)
    unit = dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize
    return raw.view(np.dtype(f">u{unit}")).astype(np.dtype(f"=u{unit}")).view(dtype)

  def _bytes(self) -> np.ndarray:
    if self.parent is not None:
      nbytes = self.numel * self.dtype.itemsize
      return self.parent._bytes()[self.parent_byte_offset:self.parent_byte_offset + nbytes]
    if self.raw is None:
      raise ValueError(f"the data of storage {self.key} is missing")
    return self.raw


@dataclasses.dataclass
class _PendingTensor:
  """A tensor whose storage may not be read yet (legacy files store data after the pickle)."""
  storage: _Storage
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]
  dtype: np.dtype
  metadata: Mapping[str, bool] | None

  def to_numpy(self) -> np.ndarray:
    if len(self.size) != len(self.stride) or min(self.size + self.stride + (self.offset,), default=0) < 0:
      raise ValueError(f"invalid tensor geometry: offset {self.offset}, size {self.size}, stride {self.stride}")
    if 0 in self.size:
      return np.zeros(self.size, self.dtype)
    flat = self.storage.as_dtype(self.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
    if last >= flat.size:
      raise ValueError(f"tensor of size {self.size}, stride {self.stride} at offset {self.offset} "
                       f"reaches past its storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size, strides=[s * flat.itemsize for s in self.stride], writeable=False)
    array = np.array(view, dtype=self.dtype, order="C")
    if self.metadata and self.metadata.get("conj"):
      array = np.conj(array)
    if self.metadata and self.metadata.get("neg"):
      array = -array
    return array


def _storage_of(storage: Any) -> _Storage:
  if not isinstance(storage, _Storage):
    raise ValueError(f"a tensor is built from {type(storage).__name__}, not from a storage")
  return storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
  del requires_grad, backward_hooks
  storage = _storage_of(storage)
  return _PendingTensor(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)),
                        storage.dtype, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
  del requires_grad, backward_hooks
  if not isinstance(dtype, _TorchDtype):
    raise ValueError(f"_rebuild_tensor_v3 got dtype {dtype!r}")
  return _PendingTensor(_storage_of(storage), int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)),
                        _NUMPY_DTYPES[dtype.name], metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  del requires_grad, backward_hooks, state
  return data


_ALLOWED_GLOBALS: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch.Size": tuple,
    "torch.storage.UntypedStorage": _StorageType("UntypedStorage", np.dtype(np.uint8)),
    **{f"torch.{name}": _StorageType(name, _NUMPY_DTYPES[dtype]) for name, dtype in _STORAGE_TYPE_DTYPES.items()},
    **{f"torch.{name}": _TorchDtype(name) for name in _NUMPY_DTYPES},
}


# What reading a damaged file raises (zipfile, pickle, numpy); WeightsError is not among them.
_CORRUPT_FILE_ERRORS = (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, pickle.UnpicklingError,
                        ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError, MemoryError)


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler that resolves only `_ALLOWED_GLOBALS` and turns persistent ids into storages."""

  def __init__(self, file: io.BufferedIOBase, path: Path, load_storage: Callable[[tuple], _Storage] | None):
    super().__init__(file)
    self._path = path
    self._load_storage = load_storage

  def find_class(self, module: str, name: str) -> Any:
    qualified = f"{module}.{name}"
    if qualified in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[qualified]
    if module == "torch" and name.endswith("Storage"):
      raise WeightsError(f"cannot load {self._path}: unsupported storage type '{qualified}' "
                         "(quantized or unknown tensor dtype)")
    raise WeightsError(f"refusing to load file {self._path}: it names the global '{qualified}', "
                       "which a plain weights file never needs (only tensors and containers are allowed)")

  def persistent_load(self, pid: Any) -> _Storage:
    if self._load_storage is None or not isinstance(pid, tuple) or not pid or pid[0] != "storage":
      raise WeightsError(f"refusing to load file {self._path}: unexpected persistent id {pid!r:.80} "
                         "(only tensor storages are allowed)")
    return self._load_storage(pid)


def _parse_storage_id(pid: tuple, path: Path) -> tuple[_StorageType, str, int, Any]:
  """Splits ('storage', type, key, location, numel[, view_metadata]) and checks its types."""
  if len(pid) not in (5, 6):
    raise WeightsError(f"cannot load {path}: malformed storage id {pid!r:.80}")
  storage_type, key, _location, numel = pid[1:5]
  if not isinstance(storage_type, _StorageType):
    raise WeightsError(f"cannot load {path}: storage of unknown type {storage_type!r:.80}")
  if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
    raise WeightsError(f"cannot load {path}: malformed storage id {pid!r:.80}")
  return storage_type, key, numel, pid[5] if len(pid) == 6 else None


def _materialize(obj: Any) -> Any:
  """Replaces every `_PendingTensor` in nested containers with its numpy array."""
  if isinstance(obj, _PendingTensor):
    return obj.to_numpy()
  if isinstance(obj, dict):
    return type(obj)((key, _materialize(value)) for key, value in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(value) for value in obj)
  return obj


def _unpickle(data: bytes | io.BufferedIOBase, path: Path, load_storage=None) -> Any:
  stream = io.BytesIO(data) if isinstance(data, bytes) else data
  return _RestrictedUnpickler(stream, path, load_storage).load()


def _load_zip(path: Path) -> Any:
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if not pickles:
      raise WeightsError(f"cannot load {path}: a zip archive without a '<name>/data.pkl' record, so not a "
                         "torch.save checkpoint (an archive of checkpoints must be extracted first)")
    prefix = pickles[0][:-len("data.pkl")]
    names = set(archive.namelist())
    big_endian = (prefix + "byteorder" in names and archive.read(prefix + "byteorder").strip() == b"big")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
      storage_type, key, numel, _ = _parse_storage_id(pid, path)
      if key not in storages:
        record = f"{prefix}data/{key}"
        if record not in names:
          raise WeightsError(f"cannot load {path}: the storage record '{record}' is missing")
        raw = np.frombuffer(archive.read(record), np.uint8)
        if raw.size < numel * storage_type.dtype.itemsize:
          raise WeightsError(f"cannot load {path}: storage record '{record}' holds {raw.size} bytes, "
                             f"expected {numel * storage_type.dtype.itemsize} (truncated file?)")
        storages[key] = _Storage(key, storage_type.dtype, numel, raw[:numel * storage_type.dtype.itemsize],
                                 big_endian)
      return storages[key]

    return _materialize(_unpickle(archive.read(prefix + "data.pkl"), path, load_storage))


def _load_legacy(path: Path) -> Any:
  data = path.read_bytes()
  stream = io.BytesIO(data)
  storages: dict[str, _Storage] = {}

  def load_storage(pid: tuple) -> _Storage:
    storage_type, key, numel, view = _parse_storage_id(pid, path)
    if key not in storages:
      storages[key] = _Storage(key, storage_type.dtype, numel)
    if view is None:
      return storages[key]
    view_key, offset, view_numel = view  # (key, element offset, element count); pre-1.0 files only
    if view_key not in storages:
      storages[view_key] = _Storage(view_key, storage_type.dtype, view_numel, parent=storages[key],
                                    parent_byte_offset=offset * storage_type.dtype.itemsize)
    return storages[view_key]

  magic = _unpickle(stream, path)
  if magic != LEGACY_MAGIC_NUMBER:
    raise WeightsError(f"cannot load {path}: a pickle file, but not a PyTorch checkpoint (no torch magic number)")
  version = _unpickle(stream, path)
  if version != LEGACY_PROTOCOL_VERSION:
    raise WeightsError(f"cannot load {path}: unsupported legacy checkpoint protocol version {version!r:.40}")
  sys_info = _unpickle(stream, path)
  big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
  obj = _unpickle(stream, path, load_storage)
  keys = _unpickle(stream, path)
  position = stream.tell()
  for key in keys:
    if key not in storages or storages[key].parent is not None:
      raise WeightsError(f"cannot load {path}: the storage list names '{key}', which no tensor uses")
    storage = storages[key]
    numel = int.from_bytes(data[position:position + 8], "big" if big_endian else "little")
    nbytes = storage.numel * storage.dtype.itemsize
    if position + 8 + nbytes > len(data):
      raise WeightsError(f"cannot load {path}: truncated file (storage '{key}' needs {nbytes} bytes "
                         f"at offset {position + 8}, the file has {len(data)})")
    if numel != storage.numel:
      raise WeightsError(f"cannot load {path}: storage '{key}' has {numel} elements, the pickle says {storage.numel}")
    storage.raw = np.frombuffer(data, np.uint8, nbytes, position + 8)
    storage.big_endian = big_endian
    position += 8 + nbytes
  return _materialize(obj)


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
  import safetensors.numpy  # pylint: disable=import-outside-toplevel

  try:
    return safetensors.numpy.load_file(path)
  except Exception as e:  # safetensors raises its own error types and AttributeError for exotic dtypes.
    raise WeightsError(f"cannot load {path}: corrupt or unsupported safetensors file ({e})") from None


def _is_safetensors(head: bytes, file_size: int) -> bool:
  return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= file_size - 8


def load_checkpoint(path: str | os.PathLike) -> Any:
  """Reads a checkpoint as Python containers with numpy arrays in place of tensors.

  Args:
    path: a torch.save file (zip or legacy format) or a safetensors file.

  Returns:
    The pickled object (dicts, OrderedDicts, lists, numbers, arrays); a flat dict for safetensors.

  Raises:
    WeightsError: missing, truncated, corrupt, unsafe or unsupported file.
  """
  path = Path(path)
  if not path.is_file():
    raise WeightsError(f"weights file {path} is a directory" if path.is_dir() else f"weights file not found: {path}")
  with path.open("rb") as f:
    head = f.read(512)
  if _is_safetensors(head, path.stat().st_size):
    return _load_safetensors(path)
  if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # zip local header / pickle PROTO opcode
    kind, reader = ("zip", _load_zip) if head.startswith(b"PK") else ("legacy", _load_legacy)
    try:
      return reader(path)
    except _CORRUPT_FILE_ERRORS as e:
      raise WeightsError(f"cannot load {path}: truncated, corrupt or oversized {kind} checkpoint "
                         f"({type(e).__name__}: {e})") from None
  if head[257:262] == b"ustar":
    raise WeightsError(f"cannot load {path}: tar-format checkpoints (torch < 0.4) are not supported; "
                       "re-save it with a recent torch")
  raise WeightsError(f"cannot load {path}: not a PyTorch checkpoint or safetensors file "
                     f"(it starts with {head[:8]!r})")


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray], path: Path) -> None:
  if isinstance(obj, np.ndarray):
    if prefix in out:
      raise WeightsError(f"cannot load {path}: the key '{prefix}' occurs twice after flattening")
    out[prefix] = obj
  elif isinstance(obj, Mapping):
    for key, value in obj.items():
      _flatten(value, f"{prefix}.{key}" if prefix else str(key), out, path)
  elif isinstance(obj, (list, tuple)):
    for index, value in enumerate(obj):
      _flatten(value, f"{prefix}.{index}" if prefix else str(index), out, path)


def _select_state_dict(obj: Any) -> Any:
  """Descends into `WRAPPER_KEYS` sub-dicts while the mapping has no tensors of its own."""
  while isinstance(obj, Mapping) and not any(isinstance(v, np.ndarray) for v in obj.values()):
    inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
    if inner is None:
      break
    obj = inner
  return obj


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads the tensors of a checkpoint as a flat `{name: array}` dict, without torch.

  Rule for wrapped checkpoints: while the top-level mapping holds no tensor itself, descend into
  its first sub-dict among `WRAPPER_KEYS` ("state_dict", "model_state_dict", "model"), so
  `{"state_dict": sd, "epoch": 3}` gives `sd`. Then nested mappings and lists are flattened
  with "." joining the keys (torch's own naming), and non-tensor leaves (numbers, strings,
  None, e.g. "epoch") are dropped. Keys are kept as stored (a "module." prefix stays).

  Args:
    path: a torch.save file (zip or legacy format) or a safetensors file.

  Returns:
    Arrays in file order, contiguous, in the stored dtype (bfloat16/float8 via ml_dtypes;
    0-d int64 for `num_batches_tracked`).

  Raises:
    WeightsError: missing, truncated, corrupt, unsafe or unsupported file, or no tensors in it.
  """
  path = Path(path)
  state: dict[str, np.ndarray] = {}
  _flatten(_select_state_dict(load_checkpoint(path)), "", state, path)
  if not state:
    raise WeightsError(f"cannot load {path}: the checkpoint holds no tensors")
  return state
