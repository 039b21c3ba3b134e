"""`jaxad data download`: fetch a public dataset's archive, check its sha256, unpack it safely.

Archive addresses and checksums: MVTec AD, MVTec LOCO AD and VisA as anomalib 2.7.0 downloads
them (`anomalib/data/datamodules/image/*.py`); KolektorSDD2 from its authors' short link, checked
by the md5 SuperSimpleNet's setup script (`datamodules/setup/prepare_ksdd2.py`) uses or by the
sha256 a third-party data record gives for the 853,126,555-byte archive (either one passes; jaxad
could not fetch the file to compare them). SensumSODF is given on request only and cannot be
downloaded.

Each dataset stays under its own license, printed before the download; jaxad redistributes
nothing. The archive is written beside the destination (`<dest parent>/<archive name>`, resumed
when a transfer breaks off), checked, unpacked into a hidden folder beside the destination and
then renamed to it, so the destination appears complete or not at all. A single top-level folder
in the archive is unwrapped. Members with absolute paths, `..`, links or device files are
refused. The archive is deleted afterwards unless kept.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from jaxad.download import fetch, matches
from jaxad.errors import DataError

MARKER = ".jaxad_download.json"


@dataclasses.dataclass(frozen=True)
class DatasetArchive:
  """A downloadable dataset: its archive, checksum, license and default folder."""
  title: str
  url: str
  sha256: str
  archive_name: str
  license: str
  page: str
  folder: str  # default destination under data/ (what experiments/ read by default)
  md5: str | None = None  # where a source publishes an md5 for the same archive

  @property
  def digests(self) -> dict[str, str]:
    return {"sha256": self.sha256, **({"md5": self.md5} if self.md5 else {})}


DATASETS: dict[str, DatasetArchive] = {
    "mvtec_ad": DatasetArchive(
        title="MVTec AD",
        url="https://www.mydrive.ch/shares/150996/b52ecdcbf521176e9db9c731f2304b27/download/420938113-1629960298/"
            "mvtec_anomaly_detection.tar.xz",
        sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
        archive_name="mvtec_anomaly_detection.tar.xz", license="CC BY-NC-SA 4.0 (non-commercial)",
        page="https://www.mvtec.com/company/research/datasets/mvtec-ad", folder="mvtec_anomaly_detection"),
    "mvtec_loco": DatasetArchive(
        title="MVTec LOCO AD",
        url="https://www.mydrive.ch/shares/48237/1b9106ccdfbb09a0c414bd49fe44a14a/download/430647091-1646842701/"
            "mvtec_loco_anomaly_detection.tar.xz",
        sha256="9e7c84dba550fd2e59d8e9e231c929c45ba737b6b6a6d3814100f54d63aae687",
        archive_name="mvtec_loco_anomaly_detection.tar.xz", license="CC BY-NC-SA 4.0 (non-commercial)",
        page="https://www.mvtec.com/company/research/datasets/mvtec-loco", folder="mvtec_loco_anomaly_detection"),
    "visa": DatasetArchive(
        title="VisA",
        url="https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
        sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        archive_name="VisA_20220922.tar", license="CC BY-NC-SA 4.0 (non-commercial)",
        page="https://github.com/amazon-science/spot-diff", folder="visa"),
    "ksdd2": DatasetArchive(
        title="KolektorSDD2",
        url="https://go.vicos.si/kolektorsdd2",
        sha256="edcdb486809b24f1d17b785e30c52fafc5999554dd5fe18ddf77b61ceb6f36a8",
        archive_name="KolektorSDD2.zip", license="CC BY-NC-SA 4.0 (non-commercial)",
        page="https://www.vicos.si/resources/kolektorsdd2/", folder="KolektorSDD2",
        md5="1ed0f628122776ace4965afa30dfe316"),
}
NOT_DOWNLOADABLE = {
    "sensum": "SensumSODF is given on request (https://www.sensum.eu/sensumsodf-dataset/), with the "
              "SuperSimpleNet authors' split files (https://github.com/blaz-r/SuperSimpleNet#datasets)",
}


def get(name: str) -> DatasetArchive:
  """The archive record of `name`; DataError naming the known ones otherwise."""
  if name in DATASETS:
    return DATASETS[name]
  if name in NOT_DOWNLOADABLE:
    raise DataError(f"{NOT_DOWNLOADABLE[name]}; jaxad cannot download it")
  raise DataError(f"unknown dataset {name!r}; downloadable: {', '.join(DATASETS)}")


def default_destination(name: str) -> Path:
  return Path("data") / get(name).folder


def download_dataset(name: str, dest: str | Path | None = None, *, keep_archive: bool = False,
                     progress: bool = True) -> Path:
  """Downloads, checks and unpacks dataset `name` into `dest`; returns `dest`.

  A destination that a previous call completed (it holds jaxad's marker file for `name`) is
  returned as it is, without network access.

  Args:
    name: a key of `DATASETS`.
    dest: the dataset root to create (default `data/<folder>`, the experiments' default).
    keep_archive: keep the downloaded archive beside `dest`.
    progress: show progress bars on stderr.

  Raises:
    DataError: unknown name, `dest` is a file or a non-empty folder jaxad did not write, the
      download fails (it resumes on the next call) or its sha256 does not match, or the
      archive is corrupt or holds an unsafe member.
  """
  record = get(name)
  dest = Path(dest if dest is not None else default_destination(name)).expanduser()
  if completed(dest, name):
    return dest
  if dest.is_file() or (dest.is_dir() and any(dest.iterdir())):
    raise DataError(f"{dest} exists and is not empty; give a new or empty folder for {record.title}")
  archive = dest.parent / record.archive_name
  if not (archive.is_file() and matches(archive, record.digests)):
    fetch(record.url, archive, record.digests, error=DataError, progress=progress, resume=True)
  staging = dest.parent / f".{dest.name}.unpacking"
  shutil.rmtree(staging, ignore_errors=True)
  try:
    unpack(archive, staging, progress=progress)
    root = _unwrapped(staging)
    (root / MARKER).write_text(json.dumps({
        "dataset": name, "url": record.url, "sha256": record.sha256, "license": record.license,
        "unpacked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}, indent=1))
    if dest.is_dir():
      dest.rmdir()  # empty (checked above)
    root.rename(dest)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  if not keep_archive:
    archive.unlink()
  return dest


def completed(dest: Path, name: str) -> bool:
  """Whether `dest` holds a finished download of `name` (jaxad's marker file)."""
  try:
    return json.loads((dest / MARKER).read_text()).get("dataset") == name
  except (OSError, ValueError, AttributeError):
    return False


def _unwrapped(folder: Path) -> Path:
  entries = list(folder.iterdir())
  return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _check_name(name: str, archive: Path) -> None:
  path = PurePosixPath(name.replace("\\", "/"))
  if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
    raise DataError(f"refusing to unpack {archive}: its member {name!r} would land outside the destination")


def unpack(archive: Path, dest: Path, *, progress: bool = True) -> None:
  """Unpacks a zip or (compressed) tar archive into the new folder `dest`, member by member, refusing
  absolute paths, `..`, links and device files.

  Raises:
    DataError: the archive is neither zip nor tar, is corrupt, or holds an unsafe member.
  """
  dest.mkdir(parents=True)
  bar = tqdm(unit=" files", desc=f"unpacking {archive.name}", disable=not progress, leave=False)
  try:
    if zipfile.is_zipfile(archive):
      with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
          _check_name(info.filename, archive)
          if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise DataError(f"refusing to unpack {archive}: its member {info.filename!r} is a symbolic link")
          zf.extract(info, dest)
          bar.update()
    elif tarfile.is_tarfile(archive):
      data_filter = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
      with tarfile.open(archive) as tf:
        for member in tf:
          _check_name(member.name, archive)
          if not (member.isfile() or member.isdir()):
            raise DataError(f"refusing to unpack {archive}: its member {member.name!r} is a link or a device file")
          tf.extract(member, dest, **data_filter)
          bar.update()
    else:
      raise DataError(f"{archive} is neither a zip nor a tar archive")
  except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
    raise DataError(f"cannot unpack {archive}: {e}; delete it and download again") from None
  finally:
    bar.close()
