"""KolektorSDD2's mixed-supervision split files, `split_weakly_<N>.pyb` in the dataset root.

The KSDD2 archive ships five of them, N = 0, 16, 53, 126, 246: N is how many of the 246
training positives are segmented (have a usable mask); the others are weakly labelled (image
label only). Each file is a pickled pair (train, test) of lists of (image name, is_segmented),
the image being `<split>/<name>.png` with mask `<split>/<name>_GT.png`. SuperSimpleNet's
official reader (`datamodules/ksdd2.py`) and the mixed-supervision code of the dataset's
authors read the images through these lists, not by listing the folders (the archive also
holds stray copies such as `train/10301 (copy).png`, which the lists leave out). The files are
read as plain data (`jaxad.data.plain_pickle`).

Normal images count as segmented whatever their flag (an empty mask is a full label), as in the
dataset authors' reader; the JIMS code passes the flag on to its segmentation losses. The two
agree when the files flag every normal image True, which could not be checked here (no copy of the
files could be fetched on the development machines).
"""

from __future__ import annotations

import re
from pathlib import Path

from jaxad.data import plain_pickle
from jaxad.errors import DataError

_SPLIT_FILE = re.compile(r"^split_weakly_(?P<n>\d+)\.pyb$")
WHAT = "KSDD2 split file"

Entries = list[tuple[str, bool]]


def split_files(root: Path) -> dict[int, Path]:
  """{N: path} of the `split_weakly_<N>.pyb` files in `root`."""
  return {int(m["n"]): p for p in root.glob("split_weakly_*.pyb") if (m := _SPLIT_FILE.match(p.name))}


def read_split_file(path: Path) -> tuple[Entries, Entries]:
  """(train, test) lists of (image name, is_segmented) of one split file.

  Raises:
    DataError: the file cannot be read as plain data or is not a pair of such lists.
  """
  content = plain_pickle.load(path, WHAT)
  if not isinstance(content, (list, tuple)) or len(content) != 2:
    raise DataError(f"{WHAT} {path} holds {type(content).__name__} {_describe(content)}, expected a pair "
                    f"(train samples, test samples)")
  return tuple(plain_pickle.sample_pairs(part, path, WHAT, names=True) for part in content)


def _describe(content) -> str:
  try:
    return f"of length {len(content)}"
  except TypeError:
    return ""


def choose_split_file(root: Path, num_segmented: int | None) -> Path | None:
  """The split file for `num_segmented` (None: the largest N, every positive segmented); None if the
  root has no split files.

  Raises:
    DataError: split files exist but none for `num_segmented` (the message lists the Ns present).
  """
  files = split_files(root)
  if not files:
    return None
  n = max(files) if num_segmented is None else num_segmented
  if n not in files:
    raise DataError(f"{WHAT} {root / f'split_weakly_{n}.pyb'} does not exist (num_segmented={n}); {root} has "
                    f"split files for num_segmented {', '.join(map(str, sorted(files)))}")
  return files[n]
