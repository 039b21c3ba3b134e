"""The suite's guard: with JAXAD_REQUIRE_PARITY=1 (set by ./scripts/test.sh), a test skipped for a
missing import fails the run instead of passing it quietly."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_SKIPPING = "import pytest\npytest.importorskip('jaxad_no_such_module')\n\ndef test_never_runs():\n  assert False\n"
_PLAIN = ("def test_runs():\n  assert 1 + 1 == 2\n\n"
          "def test_skipped_for_another_reason():\n  import pytest\n  pytest.skip('not an import')\n")


def _run(tmp_path: Path, require: bool, *args: str) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "JAXAD_REQUIRE_PARITY"}
  if require:
    env["JAXAD_REQUIRE_PARITY"] = "1"
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                         *args, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def suite(tmp_path):
  shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
  (tmp_path / "test_plain.py").write_text(_PLAIN)
  return tmp_path


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_an_import_skip_fails_only_when_parity_is_required(suite, workers):
  assert _run(suite, True, *workers).returncode == 0  # other skips never count
  (suite / "test_needs_torch.py").write_text(_SKIPPING)
  assert _run(suite, False, *workers).returncode == 0
  required = _run(suite, True, *workers)
  assert required.returncode == 1, required.stdout + required.stderr
  assert "\n  test_needs_torch.py: Skipped: could not import 'jaxad_no_such_module'" in required.stdout
