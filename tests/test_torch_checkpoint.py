"""The torch-free checkpoint reader, on checkpoint files built here byte by byte (no torch).

The writers below emulate torch.save: tensors reduce to `torch._utils._rebuild_tensor_v2`
(written as a raw GLOBAL opcode, since torch is not imported), storages are persistent ids
('storage', torch.<Type>Storage, key, 'cpu', numel), and the zip / legacy layouts follow
torch/serialization.py.
"""

import collections
import io
import pickle
import zipfile

import ml_dtypes
import numpy as np
import pytest

from jaxad.errors import WeightsError
from jaxad.nn.torch_checkpoint import LEGACY_MAGIC_NUMBER, load_checkpoint, load_state_dict


class FakeGlobal:
  """Pickled as the GLOBAL opcode `module name` without importing it."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle only accepts callables as reduce functions; never called.
    raise NotImplementedError


class FakeStorage:
  def __init__(self, key, type_name, data, module="torch"):
    self.key, self.type_name, self.data, self.module = key, type_name, np.ascontiguousarray(data), module

  @property
  def numel(self):
    return self.data.nbytes if self.type_name == "UntypedStorage" else self.data.size


class FakeStorageView:
  """A pre-1.0 legacy storage view: `numel` elements of `root` from element `offset`."""

  def __init__(self, root, key, offset, numel):
    self.root, self.key, self.offset, self.numel = root, key, offset, numel


class FakeTensor:
  """Reduces like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

  def __init__(self, storage, offset, size, stride, rebuild="_rebuild_tensor_v2", extra=()):
    self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict(), *extra)
    self.rebuild = rebuild

  def __reduce__(self):
    return FakeGlobal("torch._utils", self.rebuild), self.args


class FakeParameter:
  def __init__(self, tensor):
    self.tensor = tensor

  def __reduce__(self):
    return FakeGlobal("torch._utils", "_rebuild_parameter"), (self.tensor, True, collections.OrderedDict())


class Call:
  """Reduces to an arbitrary global call (for the malicious-pickle tests)."""

  def __init__(self, module, name, args):
    self.func, self.args = FakeGlobal(module, name), args

  def __reduce__(self):
    return self.func, self.args


class TorchLikePickler(pickle._Pickler):  # The pure-Python pickler lets us add a dispatch entry.
  dispatch = dict(pickle._Pickler.dispatch)

  def __init__(self, file, storages):
    super().__init__(file, protocol=2)
    self.storages = storages
    self.legacy = False

  def _save_fake_global(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  dispatch[FakeGlobal] = _save_fake_global

  def persistent_id(self, obj):
    if isinstance(obj, FakeStorageView):
      root = obj.root
      self.storages.setdefault(root.key, root)
      return ("storage", FakeGlobal(root.module, root.type_name), root.key, "cpu", root.numel,
              (obj.key, obj.offset, obj.numel))
    if not isinstance(obj, FakeStorage):
      return None
    self.storages.setdefault(obj.key, obj)
    pid = ("storage", FakeGlobal(obj.module, obj.type_name), obj.key, "cpu", obj.numel)
    return pid + (None,) if self.legacy else pid


def dumps(obj, storages=None, legacy=False):
  buffer = io.BytesIO()
  pickler = TorchLikePickler(buffer, {} if storages is None else storages)
  pickler.legacy = legacy
  pickler.dump(obj)
  return buffer.getvalue()


def write_zip(path, obj, prefix="archive", byteorder="little"):
  storages = {}
  data_pkl = dumps(obj, storages)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
    zf.writestr(f"{prefix}/data.pkl", data_pkl)
    zf.writestr(f"{prefix}/byteorder", byteorder)
    for key, storage in storages.items():
      data = storage.data.astype(storage.data.dtype.newbyteorder(">")) if byteorder == "big" else storage.data
      zf.writestr(f"{prefix}/data/{key}", data.tobytes())
    zf.writestr(f"{prefix}/version", "3\n")
  return path


def write_legacy(path, obj):
  storages = {}
  out = io.BytesIO()
  for header in (LEGACY_MAGIC_NUMBER, 1001, {"protocol_version": 1001, "little_endian": True,
                                              "type_sizes": {"short": 2, "int": 4, "long": 4}}):
    pickle.dump(header, out, protocol=2)
  out.write(dumps(obj, storages, legacy=True))
  pickle.dump(list(storages), out, protocol=2)
  for storage in storages.values():
    out.write(storage.numel.to_bytes(8, "little"))
    out.write(storage.data.tobytes())
  path.write_bytes(out.getvalue())
  return path


def example_state(rng):
  """A state dict touching every supported feature, and the arrays it must load as."""
  base = rng.standard_normal((3, 4, 5)).astype(np.float32)
  shared = FakeStorage("0", "FloatStorage", base.ravel())
  half = rng.standard_normal(6).astype(np.float16)
  bf16 = rng.standard_normal(4).astype(ml_dtypes.bfloat16)
  ints = np.arange(-3, 3, dtype=np.int64)
  state = collections.OrderedDict([
      ("conv.weight", FakeParameter(FakeTensor(shared, 0, (3, 4, 5), (20, 5, 1)))),
      ("conv.weight_t", FakeTensor(shared, 0, (5, 4, 3), (1, 5, 20))),  # permuted view, same storage
      ("row", FakeTensor(shared, 27, (3,), (1,))),  # offset view
      ("strided", FakeTensor(shared, 1, (2, 2), (20, 2))),
      ("half", FakeTensor(FakeStorage("1", "HalfStorage", half), 0, (2, 3), (3, 1))),
      ("bf16", FakeTensor(FakeStorage("2", "BFloat16Storage", bf16), 0, (4,), (1,))),
      ("ints", FakeTensor(FakeStorage("3", "LongStorage", ints), 0, (6,), (1,))),
      ("bn.num_batches_tracked", FakeTensor(FakeStorage("4", "LongStorage", np.array([7])), 0, (), ())),
      ("mask", FakeTensor(FakeStorage("5", "BoolStorage", np.array([True, False, True])), 0, (3,), (1,))),
      ("bytes", FakeTensor(FakeStorage("6", "ByteStorage", np.array([0, 255], np.uint8)), 0, (2,), (1,))),
      ("empty", FakeTensor(FakeStorage("7", "FloatStorage", np.zeros(0, np.float32)), 0, (0, 3), (3, 1))),
  ])
  expected = {
      "conv.weight": base, "conv.weight_t": base.transpose(2, 1, 0), "row": base.ravel()[27:30],
      "strided": base.ravel()[[1, 3, 21, 23]].reshape(2, 2), "half": half.reshape(2, 3), "bf16": bf16,
      "ints": ints, "bn.num_batches_tracked": np.array(7, np.int64), "mask": np.array([True, False, True]),
      "bytes": np.array([0, 255], np.uint8), "empty": np.zeros((0, 3), np.float32),
  }
  return state, expected


def assert_same(loaded, expected):
  assert list(loaded) == list(expected)
  for key, value in expected.items():
    assert loaded[key].dtype == value.dtype, key
    assert loaded[key].shape == value.shape, key
    np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
def test_reads_every_dtype_and_view(tmp_path, rng, writer):
  state, expected = example_state(rng)
  loaded = load_state_dict(writer(tmp_path / "model.pth", state))
  assert_same(loaded, expected)
  assert all(v.flags.c_contiguous and v.flags.writeable for v in loaded.values())


def test_zip_with_other_prefix_and_big_endian(tmp_path, rng):
  state, expected = example_state(rng)
  assert_same(load_state_dict(write_zip(tmp_path / "a.pth", state, prefix="resnet18-f37072fd")), expected)
  assert_same(load_state_dict(write_zip(tmp_path / "b.pth", state, byteorder="big")), expected)


def test_legacy_storage_views(tmp_path):
  root = FakeStorage("10", "FloatStorage", np.arange(8, dtype=np.float32))
  state = {"whole": FakeTensor(root, 0, (8,), (1,)),
           "view": FakeTensor(FakeStorageView(root, "11", 3, 4), 1, (2,), (2,))}
  loaded = load_state_dict(write_legacy(tmp_path / "views.pth", state))
  np.testing.assert_array_equal(loaded["view"], [4.0, 6.0])
  np.testing.assert_array_equal(loaded["whole"], np.arange(8))


def test_rebuild_v3_untyped_storage_with_dtype(tmp_path):
  values = np.array([1, 2, 65535], np.uint16)
  storage = FakeStorage("0", "UntypedStorage", values.view(np.uint8), module="torch.storage")
  tensor = FakeTensor(storage, 1, (2,), (1,), rebuild="_rebuild_tensor_v3", extra=(FakeGlobal("torch", "uint16"),))
  loaded = load_state_dict(write_zip(tmp_path / "u16.pth", {"u": tensor}))
  np.testing.assert_array_equal(loaded["u"], values[1:])
  assert loaded["u"].dtype == np.uint16


def test_conj_and_neg_metadata(tmp_path):
  values = np.array([1 + 2j, 3 - 1j], np.complex64)
  storage = FakeStorage("0", "ComplexFloatStorage", values)
  state = {"c": FakeTensor(storage, 0, (2,), (1,), extra=({"conj": True},)),
           "n": FakeTensor(storage, 0, (2,), (1,), extra=({"neg": True},))}
  loaded = load_state_dict(write_zip(tmp_path / "c.pth", state))
  np.testing.assert_array_equal(loaded["c"], np.conj(values))
  np.testing.assert_array_equal(loaded["n"], -values)


def test_wrapped_and_nested_checkpoints(tmp_path):
  tensor = FakeTensor(FakeStorage("0", "FloatStorage", np.arange(3, dtype=np.float32)), 0, (3,), (1,))
  wrapped = {"epoch": 3, "optimizer": {"lr": 0.1}, "state_dict": {"layer": {"w": tensor}, "note": "x"}}
  assert list(load_state_dict(write_zip(tmp_path / "w.pth", wrapped))) == ["layer.w"]
  model = {"model": {"a": tensor}, "ema": {"a": tensor}}
  assert list(load_state_dict(write_legacy(tmp_path / "m.pth", model))) == ["a"]
  raw = load_checkpoint(tmp_path / "w.pth")
  assert raw["epoch"] == 3 and isinstance(raw["state_dict"]["layer"]["w"], np.ndarray)
  with pytest.raises(WeightsError, match="holds no tensors"):
    load_state_dict(write_zip(tmp_path / "none.pth", {"epoch": 3}))


def test_safetensors(tmp_path, rng):
  import safetensors.numpy

  arrays = {"a.weight": rng.standard_normal((2, 3)).astype(np.float32), "b": np.arange(4, dtype=np.int64)}
  safetensors.numpy.save_file(arrays, tmp_path / "m.safetensors")
  loaded = load_state_dict(tmp_path / "m.safetensors")
  assert_same({key: loaded[key] for key in arrays}, arrays)
  assert loaded.keys() == arrays.keys()


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
@pytest.mark.parametrize("module,name", [("os", "system"), ("builtins", "eval"), ("torch", "load")])
def test_refuses_foreign_globals(tmp_path, writer, module, name):
  marker = tmp_path / "pwned"
  payload = {"x": Call(module, name, (f"touch {marker}",))}
  with pytest.raises(WeightsError, match=rf"refusing to load file .*evil\.pth: it names the global '{module}\.{name}'"):
    load_state_dict(writer(tmp_path / "evil.pth", payload))
  assert not marker.exists()


def test_refuses_unknown_storage_type(tmp_path):
  tensor = FakeTensor(FakeStorage("0", "QInt8Storage", np.zeros(2, np.int8)), 0, (2,), (1,))
  with pytest.raises(WeightsError, match="unsupported storage type 'torch.QInt8Storage'"):
    load_state_dict(write_zip(tmp_path / "q.pth", {"q": tensor}))


def test_refuses_tensor_outside_its_storage(tmp_path):
  tensor = FakeTensor(FakeStorage("0", "FloatStorage", np.zeros(4, np.float32)), 2, (2, 2), (2, 1))
  with pytest.raises(WeightsError, match="reaches past its storage"):
    load_state_dict(write_zip(tmp_path / "o.pth", {"t": tensor}))


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
def test_truncated_files(tmp_path, rng, writer):
  state, _ = example_state(rng)
  path = writer(tmp_path / "full.pth", state)
  data = path.read_bytes()
  for cut in (len(data) - 5, len(data) // 2, 40):
    truncated = tmp_path / f"cut{cut}.pth"
    truncated.write_bytes(data[:cut])
    with pytest.raises(WeightsError, match=r"cut\d+\.pth.*(truncated|corrupt)"):
      load_state_dict(truncated)


def test_not_a_checkpoint(tmp_path):
  png = tmp_path / "image.png"
  png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
  with pytest.raises(WeightsError, match=r"image\.png: not a PyTorch checkpoint"):
    load_state_dict(png)
  with pytest.raises(WeightsError, match="not found"):
    load_state_dict(tmp_path / "missing.pth")
  plain_pickle = tmp_path / "plain.pkl"
  plain_pickle.write_bytes(pickle.dumps({"a": 1}, protocol=2))
  with pytest.raises(WeightsError, match="no torch magic number"):
    load_state_dict(plain_pickle)
  other_zip = tmp_path / "weights.zip"
  with zipfile.ZipFile(other_zip, "w") as zf:
    zf.writestr("efficientad_pretrained_weights/pretrained_teacher_small.pth", b"")
  with pytest.raises(WeightsError, match="must be extracted first"):
    load_state_dict(other_zip)
