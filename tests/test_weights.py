"""Weights registry, cache, checksummed downloads (file:// and a dead local port), converted files, CLI."""

import hashlib
import re
import socket
import zipfile

import numpy as np
import pytest

from jaxad.cli import main
from jaxad.errors import WeightsError
from jaxad.nn import weights


@pytest.fixture
def source_file(tmp_path):
  path = tmp_path / "remote" / "tiny-model.pth"
  path.parent.mkdir()
  path.write_bytes(b"pretend checkpoint " * 1000)
  return path


def add_record(monkeypatch, name, path, sha256, **kwargs):
  record = weights.WeightsRecord(arch="tiny", description="test", license="none", sha256=sha256,
                                 url=path if isinstance(path, str) else path.as_uri(), **kwargs)
  monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, record)
  return record


def test_sha256_file(source_file):
  assert weights.sha256_file(source_file) == hashlib.sha256(source_file.read_bytes()).hexdigest()


def test_cache_dir_from_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "env"))
  assert weights.cache_dir_path() == tmp_path / "env" / "weights"
  assert weights.cache_dir_path(tmp_path / "arg") == tmp_path / "arg" / "weights"


@pytest.mark.parametrize("digits", [64, 8])
def test_download_verifies_full_hash_or_prefix(monkeypatch, tmp_path, source_file, digits):
  add_record(monkeypatch, "tiny", source_file, weights.sha256_file(source_file)[:digits])
  cache = tmp_path / "cache"
  with pytest.raises(WeightsError, match="not in the cache.*jaxad weights download tiny"):
    weights.resolve("tiny", cache)
  path = weights.download("tiny", cache, progress=False)
  assert path == cache / "weights" / "tiny-model.pth"
  assert path.read_bytes() == source_file.read_bytes()
  assert weights.resolve("tiny", cache) == path
  source_file.unlink()  # A valid cached file is not fetched again.
  assert weights.download("tiny", cache, progress=False) == path


def test_download_refuses_wrong_hash(monkeypatch, tmp_path, source_file):
  add_record(monkeypatch, "tiny", source_file, "0" * 64)
  cache = tmp_path / "cache"
  with pytest.raises(WeightsError, match="refusing the download .* does not match"):
    weights.download("tiny", cache, progress=False)
  assert list((cache / "weights").iterdir()) == []  # The temp file is gone too.


def test_resolve_rejects_a_corrupt_cached_file(monkeypatch, tmp_path, source_file):
  record = add_record(monkeypatch, "tiny", source_file, weights.sha256_file(source_file))
  placed = tmp_path / "cache" / "weights" / "tiny-model.pth"
  placed.parent.mkdir(parents=True)
  placed.write_bytes(b"something else")
  with pytest.raises(WeightsError, match=f"sha256 mismatch .*expected {record.sha256}"):
    weights.resolve("tiny", tmp_path / "cache")
  assert weights.download("tiny", tmp_path / "cache", progress=False).read_bytes() == source_file.read_bytes()


def test_offline_error_explains_manual_placement(monkeypatch, tmp_path):
  with socket.socket() as s:  # A port nobody listens on.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"http://127.0.0.1:{port}/w-1234abcd.pth"
  add_record(monkeypatch, "offline", url, "1234abcd")
  dest = tmp_path / "weights" / "w-1234abcd.pth"
  with pytest.raises(WeightsError) as info:
    weights.download("offline", tmp_path, progress=False)
  message = str(info.value)
  assert f"could not download {url}" in message
  assert f"place the file at {dest}" in message and "1234abcd" in message
  assert not dest.exists()


def test_zip_member_download_and_resolve(monkeypatch, tmp_path):
  archive = tmp_path / "teachers.zip"
  with zipfile.ZipFile(archive, "w") as zf:
    zf.writestr("teachers/small.pth", b"small weights")
    zf.writestr("teachers/medium.pth", b"medium weights")
  add_record(monkeypatch, "teacher", archive, weights.sha256_file(archive), archive_member="small.pth")
  cache = tmp_path / "cache"
  path = weights.download("teacher", cache, progress=False)
  assert path == cache / "weights" / "teachers" / "small.pth" and path.read_bytes() == b"small weights"
  path.unlink()  # resolve re-extracts from the verified cached zip without downloading.
  archive.unlink()
  assert weights.resolve("teacher", cache).read_bytes() == b"small weights"


def test_resolve_paths_and_unknown_names(tmp_path, source_file):
  assert weights.resolve(source_file) == source_file
  with pytest.raises(WeightsError, match="neither an existing file nor a known weights name"):
    weights.resolve(tmp_path / "nope.pth")
  with pytest.raises(WeightsError, match="unknown weights name"):
    weights.download("nope")


def test_registry_records():
  for name, record in weights.KNOWN_WEIGHTS.items():
    assert re.fullmatch(r"[0-9a-f]{8}|[0-9a-f]{64}", record.sha256), name
    assert (record.url is None) != (record.package is None), name
    if record.url and record.url.startswith("https://download.pytorch.org/"):
      assert record.url.endswith(f"-{record.sha256}.pth"), name  # torchvision names files by hash prefix.
  assert weights.KNOWN_WEIGHTS["wide_resnet50_2.tv_in1k"].sha256 == "95faca4d"  # V1, not V2 (9ba9bcbe).


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_packaged_weights_match_their_checksums(name):
  path = weights.resolve(name)  # Verifies the full sha256 recorded in the registry.
  assert path.is_file() and path.stat().st_size == weights.KNOWN_WEIGHTS[name].size_bytes


def test_converted_round_trip(tmp_path, rng):
  tree = {"params": {"conv": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32)}},
          "batch_stats": {"bn": {"mean": np.zeros(4, np.float32), "count": np.array(5, np.int64)}}}
  path = weights.save_converted(tree, tmp_path / "out.safetensors", source_sha256="ab" * 32, source_name="tiny",
                                extra_meta={"arch": "tiny"})
  assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
  other = tmp_path / "plain.txt"
  other.write_text("")
  assert path.stat().st_mode & 0o777 == other.stat().st_mode & 0o777  # the umask's permissions, as other outputs
  other.unlink()
  loaded, metadata = weights.load_converted(path)
  assert metadata["source_sha256"] == "ab" * 32 and metadata["arch"] == "tiny"
  assert metadata["format_version"] == weights.CONVERTED_FORMAT_VERSION and metadata["jaxad_version"]
  np.testing.assert_array_equal(loaded["params"]["conv"]["kernel"], tree["params"]["conv"]["kernel"])
  assert loaded["batch_stats"]["bn"]["count"].shape == () and loaded["batch_stats"]["bn"]["count"] == 5
  assert loaded.keys() == tree.keys() and loaded["batch_stats"]["bn"].keys() == tree["batch_stats"]["bn"].keys()


def test_load_converted_refuses_other_files(tmp_path):
  import safetensors.numpy

  plain = tmp_path / "plain.safetensors"
  safetensors.numpy.save_file({"a": np.zeros(2, np.float32)}, plain)
  with pytest.raises(WeightsError, match="not a jaxad converted-weights file"):
    weights.load_converted(plain)
  garbage = tmp_path / "garbage.safetensors"
  garbage.write_bytes(b"\x00" * 20)
  with pytest.raises(WeightsError, match="cannot read converted weights"):
    weights.load_converted(garbage)


def test_cli_list_download_info(monkeypatch, tmp_path, source_file, capsys):
  add_record(monkeypatch, "tiny", source_file, weights.sha256_file(source_file)[:8])
  cache = str(tmp_path / "cache")
  assert main(["weights", "list", "--cache-dir", cache]) == 0
  listing = capsys.readouterr().out
  assert re.search(r"efficientnet_lite0 .* packaged", listing) and re.search(r"tiny .* no", listing)
  assert main(["weights", "info", "tiny", "--cache-dir", cache]) == 0  # the registry's facts before a download
  info = capsys.readouterr().out
  assert f"source: {source_file.as_uri()}" in info and "file: not available" in info and "weights download tiny" in info
  assert main(["weights", "download", "tiny", "--cache-dir", cache, "--quiet"]) == 0
  assert main(["weights", "list", "--cache-dir", cache]) == 0
  assert re.search(r"tiny .* yes", capsys.readouterr().out)
  assert main(["weights", "info", "efficientnet_lite0"]) == 0
  info = capsys.readouterr().out
  assert "tensors: 296" in info and "_conv_stem.weight" in info and "(32, 3, 3, 3)" in info
  assert main(["weights", "info", str(tmp_path / "missing.pth")]) == 2
  assert "neither an existing file" in capsys.readouterr().err


def test_cli_convert_wiring(monkeypatch, tmp_path, capsys):
  import jaxad.nn.convert

  calls = []

  def fake_convert(arch, state_dict, *, head=True, source=None):
    calls.append((arch, head, len(state_dict)))
    return {"params": {"w": np.ones(2, np.float32)}}

  monkeypatch.setattr(jaxad.nn.convert, "convert_state_dict", fake_convert)
  out = tmp_path / "lite0.safetensors"
  assert main(["weights", "convert", "efficientnet_lite0", "--out", str(out), "--no-head"]) == 0
  assert calls == [("efficientnet_lite0", False, 296)]
  tree, metadata = weights.load_converted(out)
  assert metadata["source_sha256"] == weights.KNOWN_WEIGHTS["efficientnet_lite0"].sha256
  assert metadata["arch"] == "efficientnet_lite0" and tree["params"]["w"].tolist() == [1.0, 1.0]
  assert main(["weights", "convert", str(out), "--out", str(tmp_path / "x.safetensors")]) == 2
  assert "--arch is required" in capsys.readouterr().err
