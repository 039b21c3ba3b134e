"""The README's "Python API" blocks run as they stand, and do what their comments say."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_api_blocks() -> list[str]:
  section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
  return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_readme_python_api_blocks_run(tmp_path, monkeypatch, capsys):
  blocks = python_api_blocks()
  assert len(blocks) == 2
  monkeypatch.chdir(tmp_path)  # the blocks write runs/api_brick under the working directory
  namespace: dict = {}
  exec(compile(blocks[0], "README.md: Python API, block 1", "exec"), namespace)
  n_test = len(namespace["splits"]["test"].label)
  assert namespace["preds"]["score"].shape == (3, n_test)
  assert namespace["preds"]["anomaly_map"].shape == (3, n_test, 64, 64)
  assert (tmp_path / "runs" / "api_brick" / "checkpoints").is_dir()
  printed = capsys.readouterr().out
  assert len(re.findall(r"image AUROC (\d\.\d{3})  AUPRO (\d\.\d{3})", printed)) == 3, printed

  trained_M = namespace["states_M"]
  exec(compile(blocks[1], "README.md: Python API, block 2", "exec"), namespace)
  losses_M = np.asarray(namespace["metrics_M"]["loss"])
  assert losses_M.shape == (3,) and np.isfinite(losses_M).all()
  assert len(set(losses_M.tolist())) == 3  # three members with their own σ
  assert namespace["out"]["score"].shape == (3, 16)
  assert int(np.asarray(namespace["states_M"].step)[0]) == 3 and int(np.asarray(trained_M.step)[0]) == 20
