"""`jaxad data download` on archives the tests write, served from file:// URLs and a local HTTP server."""

import dataclasses
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile

import pytest

from jaxad import cli
from jaxad.data import download
from jaxad.data.readers import detect_format, list_categories, read_dataset
from jaxad.download import sha256_file
from jaxad.errors import DataError

from fake_datasets import write_image, write_mask


def _mvtec_tree(root):
  for category in ("bottle", "cable"):
    for i in range(3):
      write_image(root / category / "train" / "good" / f"{i:03d}.png", i)
    write_image(root / category / "test" / "good" / "000.png", 10)
    write_image(root / category / "test" / "crack" / "000.png", 11)
    write_mask(root / category / "ground_truth" / "crack" / "000_mask.png", [(1, 1, 4, 4)])
  (root / "license.txt").write_text("CC BY-NC-SA 4.0")
  return root


def _tar_xz(tree, archive, wrapper=None):
  with tarfile.open(archive, "w:xz") as tf:
    for path in sorted(tree.rglob("*")):
      name = path.relative_to(tree).as_posix()
      tf.add(path, arcname=f"{wrapper}/{name}" if wrapper else name, recursive=False)
  return archive


def _register(monkeypatch, url, archive, name="tiny", archive_name="tiny.tar.xz", sha256=None):
  record = download.DatasetArchive(title="Tiny", url=url, sha256=sha256 or sha256_file(archive),
                                   archive_name=archive_name, license="test license", page="https://example.org",
                                   folder="tiny")
  monkeypatch.setitem(download.DATASETS, name, record)
  return record


def test_download_checks_unpacks_and_is_then_offline(monkeypatch, tmp_path):
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz")
  _register(monkeypatch, archive.as_uri(), archive)
  dest = tmp_path / "data" / "mvtec"
  assert download.download_dataset("tiny", dest, progress=False) == dest
  assert detect_format(dest) == "mvtec" and list_categories(dest) == ["bottle", "cable"]
  assert sum(r.label for r in read_dataset(dest, category="cable")["test"]) == 1
  assert json.loads((dest / download.MARKER).read_text())["sha256"] == sha256_file(archive)
  assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["mvtec"]  # no archive, no staging folder
  archive.unlink()  # A finished download is recognised without the network.
  assert download.download_dataset("tiny", dest, progress=False) == dest


def test_a_single_wrapper_folder_is_unwrapped_and_the_archive_kept(monkeypatch, tmp_path):
  source = tmp_path / "src"
  for split in ("train", "test"):
    write_image(source / split / "10000.png", 0)
    write_mask(source / split / "10000_GT.png", [])
  archive = tmp_path / "served.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    for path in sorted(source.rglob("*.png")):
      zf.write(path, f"KolektorSDD2/{path.relative_to(source).as_posix()}")
  _register(monkeypatch, archive.as_uri(), archive, archive_name="k.zip")
  dest = tmp_path / "data" / "k"
  dest.mkdir(parents=True)  # an empty folder is fine
  download.download_dataset("tiny", dest, keep_archive=True, progress=False)
  assert detect_format(dest) == "ksdd2" and (dest / "train" / "10000.png").is_file()
  assert (tmp_path / "data" / "k.zip").is_file()


def test_wrong_checksum_keeps_nothing(monkeypatch, tmp_path):
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz")
  _register(monkeypatch, archive.as_uri(), archive, sha256="0" * 64)
  with pytest.raises(DataError, match="refusing the download .* does not match the expected sha256 0000"):
    download.download_dataset("tiny", tmp_path / "data" / "mvtec", progress=False)
  assert not (tmp_path / "data" / "mvtec").exists() and list((tmp_path / "data").iterdir()) == []


def test_either_published_digest_passes(monkeypatch, tmp_path):
  """KSDD2's sources publish a sha256 and an md5: the archive passes when one of them matches."""
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz")
  record = _register(monkeypatch, archive.as_uri(), archive, sha256="0" * 64)
  md5 = hashlib.md5(archive.read_bytes()).hexdigest()
  monkeypatch.setitem(download.DATASETS, "tiny", dataclasses.replace(record, md5=md5))
  assert list_categories(download.download_dataset("tiny", tmp_path / "d", progress=False)) == ["bottle", "cable"]
  monkeypatch.setitem(download.DATASETS, "tiny", dataclasses.replace(record, md5="f" * 32))
  with pytest.raises(DataError, match=r"sha256 \w{64} or md5 \w{32} does not match the expected sha256 0+ or "
                     r"md5 f+; nothing was saved"):
    download.download_dataset("tiny", tmp_path / "e", progress=False)


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "link"])
def test_unsafe_members_are_refused(monkeypatch, tmp_path, member):
  archive = tmp_path / "served.tar"
  with tarfile.open(archive, "w") as tf:
    info = tarfile.TarInfo(member)
    if member == "link":
      info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
      tf.addfile(info)
    else:
      info.size = 4
      tf.addfile(info, io.BytesIO(b"evil"))
  _register(monkeypatch, archive.as_uri(), archive, archive_name="t.tar")
  with pytest.raises(DataError, match=f"refusing to unpack .*t\\.tar: its member '{member}'"):
    download.download_dataset("tiny", tmp_path / "data" / "x", progress=False)
  assert not (tmp_path / "data" / "x").exists() and not (tmp_path / "evil.txt").exists()
  assert [p.name for p in (tmp_path / "data").iterdir()] == ["t.tar"]  # the verified archive stays for a retry


def test_a_folder_jaxad_did_not_write_is_refused(monkeypatch, tmp_path):
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz")
  _register(monkeypatch, archive.as_uri(), archive)
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep me")
  with pytest.raises(DataError, match="mine exists and is not empty"):
    download.download_dataset("tiny", tmp_path / "mine", progress=False)
  assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
  with pytest.raises(DataError, match="SensumSODF is given on request"):
    download.download_dataset("sensum", tmp_path / "s")


class _RangeServer(http.server.ThreadingHTTPServer):
  """Serves one payload, honouring `Range: bytes=N-`; closes the first response after `cut` bytes."""

  def __init__(self, payload, cut=None):
    self.payload, self.cut, self.ranges = payload, cut, []
    super().__init__(("127.0.0.1", 0), _RangeHandler)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
  def log_message(self, *args):
    pass

  def do_GET(self):
    server, start = self.server, 0
    header = self.headers.get("Range")
    server.ranges.append(header)
    if header:
      start = int(header.removeprefix("bytes=").removesuffix("-"))
      self.send_response(206)
      self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
    else:
      self.send_response(200)
    body = server.payload[start:]
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if server.cut is not None:
      body, server.cut = body[:server.cut], None
    self.wfile.write(body)


def test_a_broken_transfer_resumes_with_a_range_request(monkeypatch, tmp_path):
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz")
  payload = archive.read_bytes()
  server = _RangeServer(payload, cut=len(payload) // 3)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    _register(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}/tiny.tar.xz", archive)
    dest = tmp_path / "data" / "mvtec"
    with pytest.raises(DataError, match=r"could not download .*bytes received are kept in .*tiny\.tar\.xz\.part; "
                       r"the same command continues"):
      download.download_dataset("tiny", dest, progress=False)
    part = tmp_path / "data" / "tiny.tar.xz.part"
    assert part.read_bytes() == payload[:len(payload) // 3]
    download.download_dataset("tiny", dest, progress=False)
    assert server.ranges == [None, f"bytes={len(payload) // 3}-"]
    assert list_categories(dest) == ["bottle", "cable"] and not part.exists()
  finally:
    server.shutdown()
    server.server_close()


def test_cli_lists_and_downloads(monkeypatch, tmp_path, capsys):
  archive = _tar_xz(_mvtec_tree(tmp_path / "src"), tmp_path / "served.tar.xz", wrapper="mvtec")
  _register(monkeypatch, archive.as_uri(), archive)
  assert cli.main(["data", "download"]) == 0
  listing = capsys.readouterr().out
  assert "mvtec_ad " in listing and "data/KolektorSDD2" in listing and "sensum      not downloadable" in listing
  assert cli.main(["data", "download", "tiny", str(tmp_path / "d"), "--quiet"]) == 0
  captured = capsys.readouterr()
  assert "Tiny is licensed test license" in captured.err
  assert "(format mvtec, 2 categories: bottle, cable)" in captured.out
  assert hashlib.sha256((tmp_path / "d" / "bottle" / "test" / "good" / "000.png").read_bytes()).hexdigest() == \
      sha256_file(tmp_path / "src" / "bottle" / "test" / "good" / "000.png")
  assert cli.main(["data", "download", "nope"]) == 2
  assert "unknown dataset 'nope'; downloadable: mvtec_ad, mvtec_loco, visa, ksdd2" in capsys.readouterr().err
