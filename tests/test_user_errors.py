"""Bad input gets one clear error naming the file or option and the problem (no deep traceback, no silent skip).

Each case was found by probing the CLI; none trains a model.
"""

import json
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from jaxad import config as config_lib
from jaxad.checkpoint import Checkpointer
from jaxad.cli import main
from jaxad.errors import ConfigError, JaxadError, WeightsError
from jaxad.experiments_loader import load_experiment
from jaxad.run import find_run_dir, load_trained, select_member, validation_threshold
from jaxad.sweep.grid import parse_grid_args


@pytest.mark.parametrize("source, match", [
    ("def get_config(arg)\n  return {}\n", r"failed to load: SyntaxError at line 1"),
    ("import no_such_module_xyz\n", r"failed to load: ModuleNotFoundError: .*no_such_module_xyz.* \(line 1\)"),
    ("def get_config(arg):\n  return {'set': {}}[arg]\n", r"get_config\(None\) failed: KeyError: None \(line 2\)"),
    ("def get_config():\n  return {}\n", r"get_config\(None\) failed: TypeError"),
    ("def get_config(arg):\n  return {'run': {'no_such_run_field': 1}}\n", r"unknown run field\(s\) no_such_run_field"),
    # run and set sections of the wrong type failed deep in the run (a text for categories was read letter by letter)
    ("def get_config(arg):\n  return {'run': {'categories': 'bottle'}}\n", r"run field 'categories' must be a tuple "
     r"of texts, got 'bottle' \(one category: \('bottle',\)\)"),
    ("def get_config(arg):\n  return {'run': {'max_steps': '100'}}\n", r"run field 'max_steps' must be an integer "
     r"or None, got '100'"),
    ("def get_config(arg):\n  return {'run': {'progress': 1}}\n", r"run field 'progress' must be True or False"),
    ("def get_config(arg):\n  return {'run': {'val_fraction': True}}\n", r"run field 'val_fraction' must be a number"),
    ("def get_config(arg):\n  return {'run': [('model', 'simplenet')]}\n", r"'run' must be a dict of run fields"),
    ("def get_config(arg):\n  return {'set': [('epochs', 1)]}\n", r"'set' must be a dict of model settings"),
    ("def get_config(arg):\n  return {'set': {}, 'paper': {'image_auroc': 0.98}}\n", r"'paper' must be a dict with a "
     r"'source' text"),
    ("def get_config(arg):\n  return {'set': {}, 'paper': {'source': 's', 'i_auroc': 0.98}}\n", r"paper metric "
     r"'i_auroc' is not a report metric; known: image_auroc"),
    ("def get_config(arg):\n  return {'set': {}, 'paper': {'source': 's', 'aupro': 91.1}}\n", r"paper aupro=91\.1 "
     r"must be a number in \[0, 1\] \(reports are not ×100\)"),

    # the sweep section: a typo or a mistyped value was ignored (or read as something else)
    ("def get_config(arg):\n  return {'set': {}, 'sweep': {'grdi': {'seed': [0, 1]}}}\n", r"unknown sweep key\(s\) "
     r"'grdi'; accepted: grid, members_per_chunk, memory_budget_gb, select, shard"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': [0]}, 'member_per_chunk': 2}}\n",
     r"unknown sweep key\(s\) 'member_per_chunk'"),
    ("def get_config(arg):\n  return {'sweep': [('grid', {})]}\n", r"'sweep' must be a dict with keys grid, "),
    ("def get_config(arg):\n  return {'sweep': {'grid': [('seed', [0])]}}\n", r"sweep\['grid'\] must map field names"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': 3}}}\n", r"sweep grid field 'seed' must be a list "
     r"of values \(e\.g\. \[0\.8, 1\.6\] or range\(3\)\), got 3"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'noise_std': '0.8,1.6'}}}\n", r"field 'noise_std' must be a "
     r"list of values .*, got '0\.8,1\.6'"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': {0, 1}}}}\n", r"field 'seed' must be a list"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'image_size': (64, 32)}}}\n", r"field 'image_size' is the "
     r"tuple \(64, 32\); a tuple is one value here, so write \[\(64, 32\)\] for that one value or \[64, 32\] for 2"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': []}}}\n", r"sweep grid field 'seed' has no values"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': range(0)}}}\n", r"field 'seed' has no values"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {'seed': [{'a': 1}]}}}\n", r"field 'seed': value \{'a': 1\} "
     r"is neither a number, a text nor a tuple of them"),
    ("def get_config(arg):\n  return {'sweep': {'grid': {3: [0]}}}\n", r"sweep grid keys must be field names, got 3"),
    ("def get_config(arg):\n  return {'sweep': {'members_per_chunk': '2'}}\n", r"sweep\['members_per_chunk'\] "
     r"must be an integer ≥ 1 or None, got '2'"),
    ("def get_config(arg):\n  return {'sweep': {'members_per_chunk': 0}}\n", r"members_per_chunk'\] must be"),
    ("def get_config(arg):\n  return {'sweep': {'memory_budget_gb': -1}}\n", r"sweep\['memory_budget_gb'\] must be "
     r"a positive number of GB or None, got -1"),
    ("def get_config(arg):\n  return {'sweep': {'shard': 'false'}}\n", r"sweep\['shard'\] must be True or False, "
     r"got 'false'"),
    ("def get_config(arg):\n  return {'sweep': {'select': 'auroc'}}\n", r"sweep\['select'\] 'auroc' is not a "
     r"metric; choose one of image_auroc"),
])
def test_experiment_file_errors_name_the_file(tmp_path, source, match):
  path = tmp_path / "exp.py"
  path.write_text(source)
  with pytest.raises(ConfigError, match=match) as info:
    load_experiment(str(path))
  assert str(path) in str(info.value)


def test_experiment_file_must_be_python_and_its_argument_known(tmp_path):
  (tmp_path / "exp.json").write_text("{}")
  with pytest.raises(ConfigError, match="is not a Python file"):
    load_experiment(str(tmp_path / "exp.json"))
  with pytest.raises(ConfigError, match="is not a Python file"):
    load_experiment(str(tmp_path))
  with pytest.raises(ConfigError, match=r"unknown argument 'smok'; it takes none, 'jims', 'smoke'"):
    load_experiment("experiments/supersimplenet_mvtec.py:smok")  # a typo once loaded the full 300-epoch config


def test_every_experiment_file_loads_with_each_of_its_arguments():
  import importlib.util
  from pathlib import Path
  from jaxad.sweep.grid import grid_from_experiment
  files = sorted(Path("experiments").glob("*.py"))
  assert files
  for file in files:
    module_spec = importlib.util.spec_from_file_location(f"args_of_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    for arg in getattr(module, "ARGS", None) or (None,):
      spec = str(file) if arg is None else f"{file}:{arg}"
      cfg = load_experiment(spec)
      assert grid_from_experiment(cfg.get("sweep", {}), spec) is not None
  sweep = load_experiment("experiments/supersimplenet_embedded.py")["sweep"]
  assert grid_from_experiment(sweep, "") == {"noise_std": ["0.8", "1.6", "3.2"], "seed": ["0", "1", "2"]}


@pytest.mark.parametrize("value, expected", [(64, (64, 64)), ((48,), (48, 48)), ((64, 32), (64, 32)),
                                             ((0, 0), None), ((-64, 64), None), ((64, 64, 64), None),
                                             ((64.0, 64), None), ((), None)])
def test_image_size_is_one_or_two_positive_integers(value, expected):
  if expected is None:
    with pytest.raises(ConfigError, match="image_size must be one or two positive integers"):
      config_lib.image_hw(value)
  else:
    assert config_lib.image_hw(value) == expected


@pytest.mark.parametrize("model", ["supersimplenet", "efficient_ad", "simplenet"])
def test_every_method_checks_its_image_size(model):
  from jaxad.run import build_static
  for bad in ("0,0", "64,64,64"):
    with pytest.raises(ConfigError, match="image_size"):
      build_static(model, {"image_size": bad})
  assert build_static(model, {"image_size": "64"})[1].image_size == (64, 64)


def test_grid_ranges_need_integers_and_a_field_comes_once():
  for bad in ("seed=0:2:3", "seed=0.5:2", "seed=1e3:4", "seed=0:"):
    with pytest.raises(ConfigError, match="is not a range: A:B takes two integers"):
      parse_grid_args([bad])
  with pytest.raises(ConfigError, match=r"gives no values \(A:B is the integers A..B-1\)"):
    parse_grid_args(["seed=3:1"])
  with pytest.raises(ConfigError, match="seed is given twice"):
    parse_grid_args(["seed=0,1", "seed=2,3"])
  with pytest.raises(ConfigError, match="--grid expects FIELD=VALUES"):
    parse_grid_args(["=0,1"])


def test_grid_values_holding_colons_are_kept_whole_or_refused():
  """`A:B` is a range only as a field's one value with integer ends: a path such as C:/w.pth was refused as a bad
  range, and a range among other values (seed=0:3,5) became the text "0:3"."""
  assert parse_grid_args(["backbone_weights=C:/w/a.pth", "teacher=hf:org/x,D:/t.pth", "seed= -1 : 2,"]) == {
      "backbone_weights": ["C:/w/a.pth"], "teacher": ["hf:org/x", "D:/t.pth"], "seed": ["-1", "0", "1"]}
  assert parse_grid_args(["image_size=64,64;a:b,1", "x=k=v"]) == {"image_size": ["64,64", "a:b,1"], "x": ["k=v"]}
  with pytest.raises(ConfigError, match=r"'seed=0:3,5': a range A:B must be the field's only value; list every "
                                        r"value instead: seed=0,1,2,5"):
    parse_grid_args(["seed=0:3,5"])
  with pytest.raises(ConfigError, match=r"list every value instead: seed=0;1;7"):
    parse_grid_args(["seed=0:2;7"])
  with pytest.raises(ConfigError, match=r"'2:3.5' is not a range"):
    parse_grid_args(["noise_std=0.1,2:3.5"])


def _fake_run(root, category="brick", config="{}"):
  (root / category).mkdir(parents=True)
  (root / category / "config.json").write_text(config)
  return root / category


def test_run_folder_lookup_says_what_is_wrong(tmp_path):
  with pytest.raises(JaxadError, match=r"work directory .*nowhere does not exist"):
    find_run_dir(tmp_path / "nowhere", None)
  with pytest.raises(JaxadError, match="no trained category under"):
    find_run_dir(tmp_path, None)
  _fake_run(tmp_path, "brick")
  _fake_run(tmp_path, "chip")
  with pytest.raises(JaxadError, match=r"2 categories \(brick, chip\); choose one with --category"):
    find_run_dir(tmp_path, None)
  with pytest.raises(JaxadError, match=r"no trained category 'nut'; it holds brick, chip"):
    find_run_dir(tmp_path, "nut")
  assert find_run_dir(tmp_path, "chip") == tmp_path / "chip"


def test_damaged_run_files_are_named(tmp_path):
  bad_json = _fake_run(tmp_path / "a", config="{\n")
  with pytest.raises(JaxadError, match=r"config\.json is not valid JSON .*damaged"):
    load_trained(bad_json)
  no_keys = _fake_run(tmp_path / "b", config="{}")
  with pytest.raises(JaxadError, match=r"config\.json lacks 'model', 'static', 'hparams'"):
    load_trained(no_keys)
  (no_keys / "validation.json").write_text("{oops")
  with pytest.raises(JaxadError, match=r"validation\.json is not valid JSON"):
    validation_threshold(no_keys, 0)
  (no_keys / "validation.json").write_text(json.dumps({"score": {"q99": [0.5]}}))
  assert validation_threshold(no_keys, 0) == 0.5
  with pytest.raises(JaxadError, match="no score.q99 entry for member 3"):
    validation_threshold(no_keys, 3)
  states_M = {"w": jnp.zeros((2, 3))}
  assert select_member(states_M, 1, no_keys)["w"].shape == (1, 3)
  for member in (2, -1):
    with pytest.raises(ConfigError, match=rf"--member {member} is out of range: .* has 2 member\(s\)"):
      select_member(states_M, member, no_keys)


def test_checkpoint_of_another_shape_or_damaged_is_one_error(tmp_path):
  state = {"params": {"kernel": np.ones((1, 4, 8), np.float32)}, "step": np.zeros((1,), np.int32)}
  ckpt = Checkpointer(tmp_path)
  ckpt.save(3, state, {"alive": [True]})
  restored, meta = ckpt.restore(3, state)
  np.testing.assert_array_equal(restored["params"]["kernel"], state["params"]["kernel"])
  other = {"params": {"kernel": np.ones((1, 4, 16), np.float32)}, "step": np.zeros((1,), np.int32)}
  with pytest.raises(JaxadError, match=r"checkpoints/3 holds another model than these settings build: params\.kernel "
                                       r"has shape \(1, 4, 8\) there, \(1, 4, 16\) here"):
    ckpt.restore(3, other)
  for f in (tmp_path / "checkpoints" / "3" / "meta").iterdir():
    f.write_text("{ damaged")
  with pytest.raises(JaxadError, match=r"checkpoints/3 is damaged or holds another model"):
    ckpt.restore_meta(3)
  ckpt.close()


_RESTORE_GARBAGE = """
import sys, numpy as np
from pathlib import Path
from jaxad.checkpoint import Checkpointer
from jaxad.errors import JaxadError
state = {"params": {f"w{i}": np.ones((1, 8, 8), np.float32) for i in range(12)}, "step": np.zeros((1,), np.int32)}
ckpt = Checkpointer(sys.argv[1])
ckpt.save(1, state, {})
for f in Path(sys.argv[1]).glob("checkpoints/1/state/**/d/*"):
  f.write_bytes(b"garbage" * 20)
try:
  ckpt.restore(1, state)
except JaxadError as e:
  print(e)
"""


def test_a_damaged_checkpoint_prints_only_its_error(tmp_path):
  """orbax leaves failed TensorStore reads behind; they used to print ~2,000 lines after the one-line error."""
  import subprocess
  result = subprocess.run([sys.executable, "-c", _RESTORE_GARBAGE, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
  assert "checkpoints/1 is damaged or holds another model" in result.stdout
  assert result.stderr.strip() == "", result.stderr[:2000]


def test_cli_options_are_checked_before_any_work(tmp_path, capsys):
  run_dir = _fake_run(tmp_path / "run")
  cases = [
      (["fit", "--max-steps", "0", "--workdir", str(tmp_path / "w")], "max_steps must be at least 1, got 0"),
      (["fit", "--set", "data_options=x", "--workdir", str(tmp_path / "w")], "data_options cannot be --set"),
      (["sweep", "--grid", "seed=0,1", "--select", "nosuch", "--workdir", str(tmp_path / "w")],
       "--select 'nosuch' is not a metric"),
      (["sweep", "--grid", "seed=0,1", "--members-per-chunk", "-1", "--workdir", str(tmp_path / "w")],
       "--members-per-chunk must be at least 1"),
      (["export", "--workdir", str(tmp_path / "run"), "--platforms", "bogus"], "unknown platform(s) bogus"),
      (["export", "--workdir", str(tmp_path / "run"), "--input-size", "0", "0"], "--input-size must be two positive"),
      (["predict", "--workdir", str(tmp_path / "nowhere"), str(tmp_path)], "does not exist"),
      (["predict", "--workdir", str(tmp_path / "run"), "--batch-size", "0", str(tmp_path)], "--batch-size must be"),
      (["sweep", "--grid", "noise_std=a,b", "--workdir", str(tmp_path / "w")], "setting noise_std=a"),
      (["sweep", "--grid", "seed=0:3,5", "--workdir", str(tmp_path / "w")], "list every value instead: seed=0,1,2,5"),
      (["sweep", "--grid", "seed=0,1", "--memory-budget", "-5", "--workdir", str(tmp_path / "w")],
       "--memory-budget must be positive"),
      (["distill", "--out", str(tmp_path / "t.safetensors"), "--images", str(tmp_path / "nope"), "--steps", "1"],
       "distill --images folder"),  # not the penalty setting's hint
      (["test", "--workdir", str(tmp_path / "run"), "--category", "nut"], "no trained category 'nut'; it holds brick"),
  ]
  for args, message in cases:
    assert main(args) == 2, args
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, (args, err)
  assert run_dir.exists()


@pytest.mark.parametrize("model, settings", [("supersimplenet", []), ("simplenet", []),
                                             ("simplenet", ["--set", "select_on_test=true"])])
def test_missing_backbone_weights_fail_before_the_data_is_read(tmp_path, monkeypatch, capsys, model, settings):
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path / "empty_cache"))

  def read_nothing(*args, **kwargs):
    raise AssertionError("the data was read before the backbone weights were found")
  monkeypatch.setattr("jaxad.train.data.load_split", read_nothing)
  assert main(["fit", "--model", model, *settings, "--workdir", str(tmp_path / "w"), "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert "jaxad weights download wide_resnet50_2.tv_in1k" in err and "Traceback" not in err, err


def test_converted_weights_are_not_written_over_a_folder(tmp_path):
  from jaxad.nn.weights import save_converted
  with pytest.raises(WeightsError, match="is a folder; give the .safetensors file"):
    save_converted({"w": np.ones(2, np.float32)}, tmp_path, source_sha256="0", source_name="x")


def test_tfds_builds_refuse_layout_options_and_another_validation_hold_out():
  from jaxad.data.sources import make_source
  with pytest.raises(ConfigError, match=r"layout options \['normal_dir'\] do not apply to a TFDS build"):
    make_source("tfds:mvtec_ad/bottle", None, "train", normal_dir="ok")
  # The paper experiments train on every image (val_fraction 0); a build fixed its 10 % hold-out.
  with pytest.raises(ConfigError, match=r"holds out the validation split it was built with \(val_fraction 0\.1, "
                     r"seed 0\), but this run asks for val_fraction 0\.0 and seed 0; give the dataset folder"):
    make_source("tfds:mvtec_ad/bottle", None, "train", val_fraction=0.0)
  with pytest.raises(ConfigError, match=r"asks for val_fraction 0\.1 and seed 3"):
    make_source("tfds:mvtec_ad/bottle", None, "train", seed=3)


@pytest.mark.parametrize("model, settings, match", [
    ("supersimplenet", {"noise_std": "-1"}, r"noise_std=-1\.0 \(must be ≥ 0\)"),
    ("supersimplenet", {"perlin_threshold": "1.5", "lr_heads": "nan"}, r"lr_heads=nan .*perlin_threshold=1\.5"),
    ("supersimplenet", {"clip_grad_norm": "-5"}, r"clip_grad_norm=-5\.0 \(must be > 0\)"),
    ("supersimplenet", {"perlin_p_empty": "1.7", "lr_milestones": "0.8,1.2"}, r"perlin_p_empty=1\.7.*lr_milestones"),
    ("efficient_ad", {"p_hard": "1.5", "map_scale": "0"}, r"map_scale=0\.0 \(must be > 0\); p_hard=1\.5"),
    ("efficient_ad", {"quantile_a": "0.99", "quantile_b": "0.99"}, "quantile_a must be below quantile_b"),
    ("efficient_ad", {"aug_min": "1.5", "aug_max": "0.5"}, "aug_min must not exceed aug_max"),
    ("efficient_ad", {"dropout": "1.0"}, r"dropout=1\.0 \(must be in \[0, 1\)\)"),
    ("simplenet", {"margin": "-5", "lr_dsc": "-1e-3"}, r"margin=-5\.0.*lr_dsc=-0\.001"),
    ("simplenet", {"resize_shorter": "100"}, r"resize_shorter=100 is below the crop \(288, 288\)"),
])
def test_settings_out_of_range_are_refused(model, settings, match):
  from jaxad.run import build_static
  with pytest.raises(ConfigError, match=match):
    build_static(model, settings)


def test_sweep_members_out_of_range_are_refused_before_training(tmp_path, capsys):
  args = ["sweep", "--model", "supersimplenet", "--grid", "noise_std=0.01,-0.01", "--workdir", str(tmp_path / "w")]
  assert main(args) == 2
  assert "noise_std=-0.01 (must be ≥ 0)" in capsys.readouterr().err
  assert not (tmp_path / "w").exists()


def test_train_labels_must_fit_the_protocol(tmp_path):
  """Unsupervised methods refuse anomalous training images (KSDD2 / Sensum keep them); supervised needs them."""
  from fake_datasets import sensum
  from jaxad.errors import DataError
  from jaxad.run import RunConfig, build_static, load_splits
  root = sensum(tmp_path / "sensum", objects=("capsule",), folds=("0",))
  run = RunConfig(data=str(root), workdir=str(tmp_path / "w"), progress=False)
  for model, settings, match in [
      ("efficient_ad", {"image_size": "64"}, r"holds 4 anomalous images, but efficient_ad trains on normal images "
                                             r"only: pass --unsupervised to leave them out$"),
      ("supersimplenet", {"backbone": "tiny_test"}, r"supersimplenet with supervised=false .* --set supervised=true")]:
    method, static, _ = build_static(model, settings)
    with pytest.raises(DataError, match=match):
      load_splits(run, method, static, "capsule_0")
  method, static, _ = build_static("supersimplenet", {"backbone": "tiny_test", "supervised": "true"})
  splits = load_splits(run, method, static, "capsule_0")
  assert splits["train"].label.sum() == 4
  unsupervised = RunConfig(data=str(root), workdir=str(tmp_path / "w"), progress=False,
                           data_options={"supervised": False})
  with pytest.raises(DataError, match="has no anomalous images, but supervised=true trains on them"):
    load_splits(unsupervised, method, static, "capsule_0")
  all_train = RunConfig(data=str(root), progress=False, data_options={"supervised": False}, val_fraction=0.0)
  assert load_splits(all_train, *build_static("supersimplenet", {"backbone": "tiny_test"})[:2],
                     "capsule_0")["validation"] is None
  with pytest.raises(ConfigError, match="efficient_ad calibrates on the validation split, so val_fraction must be"):
    load_splits(all_train, *build_static("efficient_ad", {"image_size": "64"})[:2], "capsule_0")


def test_ctrl_c_prints_one_line_and_how_to_resume(monkeypatch, capsys):
  import jaxad.cli.fit as fit_cli

  def interrupted(args):
    raise KeyboardInterrupt
  monkeypatch.setattr(fit_cli, "main", interrupted)
  assert main(["fit", "--data", "embedded"]) == 130
  assert capsys.readouterr().err.strip() == ("jaxad fit: interrupted (the same command resumes from the last "
                                             "checkpoint)")
