"""Files written whole or not at all: each goes to a uniquely named temporary file beside its destination,
which is then renamed over it. A reader, a run killed mid-write, or two processes of a sweep writing the
same table never see a torn file."""

from __future__ import annotations

import uuid
from pathlib import Path


def temporary_beside(path: str | Path) -> Path:
  """A fresh name in `path`'s folder, with its suffix (some writers pick the format from it)."""
  path = Path(path)
  return path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")


def write_text(path: str | Path, text: str) -> Path:
  path = Path(path)
  tmp = temporary_beside(path)
  try:
    tmp.write_text(text)
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)
  return path
