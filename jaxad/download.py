"""Checksummed downloads for weights and datasets; only the `download` commands call them.

A download goes to a temporary file beside its destination, is checked against its published
digest (sha256, or md5 where that is what a source publishes) and only then renamed into place, so a destination file is always complete and verified. With
`resume`, the temporary file has a fixed name (`<dest>.part`) and is kept when a transfer
breaks off: the next call asks the server for the remaining bytes (an HTTP range request) and
starts over only if the server does not support ranges.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tqdm import tqdm

from jaxad.errors import JaxadError

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30


def sha256_file(path: str | os.PathLike) -> str:
  """Hex sha256 of a file, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    while chunk := f.read(CHUNK_BYTES):
      digest.update(chunk)
  return digest.hexdigest()


def file_digests(path: Path, algorithms) -> dict[str, str]:
  """{algorithm: hex digest} of a file for the hashlib `algorithms`, in one read."""
  digests = {name: hashlib.new(name) for name in algorithms}
  with open(path, "rb") as f:
    while chunk := f.read(CHUNK_BYTES):
      for digest in digests.values():
        digest.update(chunk)
  return {name: digest.hexdigest() for name, digest in digests.items()}


def matches(path: Path, expected: Mapping[str, str]) -> bool:
  """Whether one of the file's digests starts with its expected value ({algorithm: hex digest or
  published prefix}; several algorithms when sources publish different ones for the same file)."""
  actual = file_digests(path, expected)
  return any(actual[name].startswith(value.lower()) for name, value in expected.items())


def _described(digests: Mapping[str, str]) -> str:
  return " or ".join(f"{name} {value}" for name, value in digests.items())


def temporary_beside(dest: Path) -> Path:
  """A new empty hidden file in `dest`'s folder (created), to be renamed onto `dest` when complete."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
  os.close(fd)
  return Path(tmp)


def fetch(url: str, dest: Path, expected: Mapping[str, str], *, error: type[JaxadError] = JaxadError,
          progress: bool = True, resume: bool = False) -> None:
  """Downloads `url` to `dest` if its content matches `expected`.

  Args:
    url: http(s) or file URL.
    dest: the file to write; its folder is created.
    expected: {hashlib algorithm: full hex digest or a prefix}; one match is enough.
    error: the JaxadError subclass raised.
    progress: show a progress bar on stderr.
    resume: keep a broken-off transfer in `<dest>.part` and continue it on the next call.

  Raises:
    error: the URL cannot be fetched (the message says how to place the file by hand, and,
      with `resume`, that the same call continues), or no digest matches (nothing is kept).
  """
  dest.parent.mkdir(parents=True, exist_ok=True)
  part = dest.with_name(dest.name + ".part") if resume else temporary_beside(dest)
  try:
    _transfer(url, part, dest.name, append=resume, progress=progress)
  except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
    reason = getattr(e, "reason", None) or e
    kept = ""
    if resume and part.is_file() and part.stat().st_size:
      kept = (f" The {part.stat().st_size:,} bytes received are kept in {part}; the same command continues "
              f"from there.")
    else:
      part.unlink(missing_ok=True)
    raise error(f"could not download {url} ({reason}).{kept} Without internet access, fetch that URL on another "
                f"machine, place the file at {dest} (its digest must start with {_described(expected)}) and run the "
                f"command again") from None
  if not matches(part, expected):
    actual = file_digests(part, expected)
    part.unlink(missing_ok=True)
    raise error(f"refusing the download of {url}: {_described(actual)} does not match the expected "
                f"{_described(expected)}; nothing was saved")
  os.replace(part, dest)


def _transfer(url: str, part: Path, label: str, *, append: bool, progress: bool) -> None:
  """Writes the body of `url` to `part`, continuing after its current bytes when `append`."""
  start = part.stat().st_size if append and part.is_file() else 0
  request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
  try:
    response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
  except urllib.error.HTTPError as e:
    if start and e.code == 416:  # Range not satisfiable: the file is complete already.
      return
    raise
  with response:
    if start and getattr(response, "status", None) != 206:
      start = 0  # The server sent the whole file: start over.
    length = int(response.headers.get("Content-Length") or 0)
    total = start + length if length else None
    with part.open("ab" if start else "wb") as out, tqdm(
        total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress, leave=False) as bar:
      while chunk := response.read(CHUNK_BYTES):
        out.write(chunk)
        bar.update(len(chunk))
  if total is not None and part.stat().st_size < total:
    raise OSError(f"the connection closed after {part.stat().st_size:,} of {total:,} bytes")
