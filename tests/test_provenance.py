"""Provenance: what a results record says about the code that produced it."""

import subprocess

from jaxad import provenance


def test_dirty_means_changed_code_not_a_benchmark_rewriting_its_results(tmp_path):
  git = lambda *args: subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                                     check=True, capture_output=True)
  results = tmp_path / "benchmarks" / "results"
  results.mkdir(parents=True)
  (results / "speed.md").write_text("first row\n")
  (tmp_path / "code.py").write_text("x = 1\n")
  git("init", "-q")
  git("add", ".")
  git("commit", "-qm", "start")
  clean = provenance.git_commit(tmp_path)
  assert clean["dirty"] is False and len(clean["commit"]) == 40
  (results / "speed.md").write_text("first row\nsecond row\n")  # a benchmark rewriting its file after each row
  assert provenance.git_commit(tmp_path / "benchmarks")["dirty"] is False  # from a subfolder too
  (tmp_path / "code.py").write_text("x = 2\n")
  assert provenance.git_commit(tmp_path)["dirty"] is True
