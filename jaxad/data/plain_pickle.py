"""Reads the split files that datasets ship as pickles (KSDD2's `split_weakly_N.pyb`, SensumSODF's
`*.pckl`) as plain data only: lists, tuples, sets, strings, numbers and numpy scalars. A pickle
that refers to any other class or function is refused, so a split file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from jaxad.errors import DataError

_ALLOWED_GLOBALS = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                    ("_codecs", "encode"), ("builtins", "set"), ("builtins", "frozenset"),
                    ("__builtin__", "set"), ("__builtin__", "frozenset")}


class _PlainDataUnpickler(pickle.Unpickler):
  """Builds plain containers, strings, numbers and numpy scalars; refuses every other global."""

  def find_class(self, module: str, name: str):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a split file never needs")


def load(path: Path, what: str):
  """The content of the pickle `path`; `what` names the file in errors (e.g. "KSDD2 split file").

  Raises:
    DataError: the file is missing or is not a pickle of plain data.
  """
  if not path.is_file():
    raise DataError(f"{what} {path} does not exist")
  try:
    with open(path, "rb") as f:
      return _PlainDataUnpickler(f, encoding="latin1").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
    raise DataError(f"{what} {path} cannot be read: {e}") from None


def sample_pairs(content, path: Path, what: str, *, names: bool = False) -> list[tuple]:
  """`content` as a list of (sample id, is_segmented) pairs, in the file's order (sets sorted).

  Sample ids are non-negative integers, or with `names` also plain file stems (strings without
  path separators, integers given as their decimal text).

  Raises:
    DataError: `content` is not a sequence of such pairs.
  """
  if isinstance(content, (set, frozenset)):
    content = sorted(content, key=repr)
  if not isinstance(content, (list, tuple)):
    raise DataError(f"{what} {path} holds a {type(content).__name__}, expected a list of "
                    f"(sample id, is_segmented) pairs")
  pairs = []
  for i, entry in enumerate(content):
    try:
      sample_id, is_segmented = entry
      pairs.append((_as_name(sample_id) if names else _as_int(sample_id), bool(is_segmented)))
    except (TypeError, ValueError):
      raise DataError(f"{what} {path}: entry {i} is {entry!r}, expected a (sample id, is_segmented) pair") from None
  return pairs


def _as_int(value) -> int:
  if isinstance(value, (bool, str, bytes)) or int(value) != value or int(value) < 0:
    raise ValueError(value)
  return int(value)


def _as_name(value) -> str:
  if isinstance(value, bytes):
    value = value.decode("ascii")
  if not isinstance(value, str):
    return str(_as_int(value))
  if not value or value.startswith(".") or "/" in value or "\\" in value:
    raise ValueError(value)
  return value
