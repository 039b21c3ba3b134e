"""SuperSimpleNet's supervised protocol: balanced flipped epochs, inverse-frequency negatives, loss weights."""

import dataclasses

import numpy as np

from jaxad.models.supersimplenet import config as cfg
from jaxad.models.supersimplenet.supervised import distance_weights, make_sampler, prepare_train
from jaxad.train.loop import SplitData


def _split(n_pos=3, n_neg=20, size=8):
  rng = np.random.default_rng(0)
  label = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(np.int32)
  mask = np.zeros((n_pos + n_neg, size, size), np.float32)
  mask[:n_pos, 2:4, 1:3] = 1.0
  return SplitData(image=rng.normal(size=(n_pos + n_neg, size, size, 3)).astype(np.float32), mask=mask, label=label,
                   is_segmented=np.ones(n_pos + n_neg, bool))


def test_epochs_are_balanced_with_flipped_positives():
  static = cfg.resolve(cfg.Static(supervised=True))
  train = _split()
  expanded, sampler = prepare_train(static, train, data_seed=0)
  assert len(expanded) == 4 * 3 + 20
  # Copies 1..3 of each positive are its vertical flip, horizontal flip and 180° rotation.
  np.testing.assert_array_equal(expanded.image[3], train.image[0][::-1])
  np.testing.assert_array_equal(expanded.image[6], train.image[0][:, ::-1])
  np.testing.assert_array_equal(expanded.mask[9], train.mask[0][::-1, ::-1])
  for epoch in range(3):
    idx = sampler(epoch)
    assert len(idx) == 24
    assert (expanded.label[idx] == 1).sum() == 12 and (expanded.label[idx] == 0).sum() == 12
    negatives = idx[expanded.label[idx] == 0]
    assert len(set(negatives.tolist())) == 12  # enough negatives: drawn without replacement
  np.testing.assert_array_equal(sampler(2), make_sampler(12, 20, 0)(2))  # replayable after a resume


def test_inverse_frequency_spreads_negatives():
  sampler = make_sampler(4, 12, data_seed=1)
  counts = np.zeros(12)
  for epoch in range(30):
    idx = sampler(epoch)
    counts += np.bincount(idx[idx >= 4] - 4, minlength=12)
  # Uniform sampling would give a spread of several; the inverse-frequency law keeps it tight.
  assert counts.max() - counts.min() <= 3


def test_distance_transform_weights():
  mask = np.zeros((9, 9))
  mask[2:7, 2:7] = 1
  w = distance_weights(mask, 3.0, 2.0)
  assert w[0, 0] == 1.0 and w[4, 4] == np.float32(3.0)  # centre of the defect: max distance → weight w
  assert 0 < w[2, 2] < w[3, 3] < w[4, 4]


def test_jims_dilates_masks_and_adds_weights():
  static = cfg.resolve(cfg.Static(supervised=True, variant="jims"))
  expanded, _ = prepare_train(static, _split(), data_seed=0)
  assert expanded.loss_weight is not None and expanded.loss_weight.shape == expanded.mask.shape
  assert expanded.mask[0].sum() > 4  # the 2×2 defect grew under the 7×7 dilation
  icpr = cfg.resolve(dataclasses.replace(cfg.Static(supervised=True), variant="icpr"))
  plain, _ = prepare_train(icpr, _split(), data_seed=0)
  assert plain.loss_weight is None and plain.mask[0].sum() == 4


def test_supervised_fit_on_a_sensum_fold_end_to_end(tmp_path, capsys):
  """`jaxad fit` with the Sensum experiment (JIMS: dilation, distance weights, flips) on a fake fold, then `test`."""
  import json

  from fake_datasets import sensum
  from jaxad.cli import main
  root = sensum(tmp_path / "SensumSODF", objects=("capsule",), folds=("0",), size=(40, 24))
  workdir = tmp_path / "run"
  tiny = ["backbone=tiny_test", "backbone_weights=random", "image_size=40,24", "batch_size=4", "seg_hidden=8",
          "cls_hidden=4"]
  args = ["fit", "--config", "experiments/supersimplenet_sensum.py:jims", "--data", str(root), "--category",
          "capsule_0", "--workdir", str(workdir), "--no-progress", "--max-steps", "2", "--segmented-percent", "50"]
  assert main(args + [arg for setting in tiny for arg in ("--set", setting)]) == 0
  record = json.loads((workdir / "capsule_0" / "config.json").read_text())
  assert record["static"]["supervised"] and record["static"]["dilate"] == 7 and record["static"]["flips"]
  assert record["run"]["data_options"] == {"segmented_percent": 50}
  assert record["n_train"] == 12  # 8 normal + 4 defective (2 weakly labelled); val_fraction 0, as the official code
  report = json.loads((workdir / "capsule_0" / "report.json").read_text())
  assert 0.0 <= report[0]["image_auroc"] <= 1.0 and 0.0 <= report[0]["pixel_auroc"] <= 1.0
  assert main(["test", "--workdir", str(workdir)]) == 0
  again = json.loads((workdir / "capsule_0" / "test_report.json").read_text())
  assert again[0]["image_auroc"] == report[0]["image_auroc"]


def test_category_settings_train_both_sensum_objects_in_one_run(tmp_path):
  """Per-category settings (the Sensum experiment's image sizes): one `fit` trains each object at its own
  size into one summary whose mean row is compared with the paper; `--set` wins over them."""
  import json

  from fake_datasets import sensum
  from jaxad.cli import build_parser, main
  from jaxad.cli.fit import resolve_run
  from jaxad.run import category_overrides
  from jaxad.experiments_loader import load_experiment

  both = load_experiment("experiments/supersimplenet_sensum.py")
  settings = both["run"]["category_settings"]
  assert category_overrides(settings, "capsule_2") == {"image_size": "320,192"}
  assert category_overrides(settings, "softgel_1") == {"image_size": "144,144"} and both["paper"]
  assert "paper" not in load_experiment("experiments/supersimplenet_sensum.py:softgel")

  root = sensum(tmp_path / "SensumSODF", folds=("0",), size=(40, 24))
  exp = tmp_path / "sensum_tiny.py"
  exp.write_text(
      "def get_config(arg=None):\n"
      "  return {'run': {'model': 'supersimplenet', 'categories': ('capsule_0', 'softgel_0'), 'val_fraction': 0.0,\n"
      "                  'category_settings': {'capsule_*': {'image_size': (40, 24)}, 'softgel_*': {'image_size': (24, 24)}}},\n"
      "          'set': {'supervised': True, 'backbone': 'tiny_test', 'backbone_weights': 'random', 'batch_size': 4,\n"
      "                  'seg_hidden': 8, 'cls_hidden': 4},\n"
      "          'paper': {'source': 'a paper', 'image_auroc_official': 0.9}}\n")
  workdir = tmp_path / "run"
  assert main(["fit", "--config", str(exp), "--data", str(root), "--workdir", str(workdir), "--no-progress",
               "--max-steps", "1"]) == 0
  sizes = {c: json.loads((workdir / c / "config.json").read_text())["static"]["image_size"]
           for c in ("capsule_0", "softgel_0")}
  assert sizes == {"capsule_0": [40, 24], "softgel_0": [24, 24]}
  summary = json.loads((workdir / "summary.json").read_text())
  assert [r["category"] for r in summary] == ["capsule_0", "softgel_0", "mean"]
  compared = json.loads((workdir / "paper_comparison.json").read_text())
  assert compared["rows"][0]["jaxad"] == summary[-1]["image_auroc_official"]
  assert compared["max_steps"] == 1 and "**Not a reproduction**" in (workdir / "paper_comparison.md").read_text()

  run, overrides = resolve_run(build_parser().parse_args(["fit", "--config", str(exp), "--set", "image_size=32,32"]))
  assert overrides["image_size"] == "32,32" and run.category_settings == {"capsule_*": {}, "softgel_*": {}}
