"""Dataset readers, summary, contact sheet and `jaxad data` on tiny fake datasets of each layout."""

import csv
import json
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from jaxad import cli
from jaxad import config as config_lib
from jaxad.data.images import load_sample
from jaxad.data.readers import detect_format, list_categories, read_dataset
from jaxad.data.summary import dataset_summary, format_summary
from jaxad.errors import ConfigError, DataError

from fake_datasets import SIZE, mvtec_loco, pickle_file, sensum, write_image, write_mask


def _mvtec(root, categories=("bottle", "cable"), n_train=10, defects=("crack", "hole")):
  for category in categories:
    base = root / category
    for i in range(n_train):
      write_image(base / "train" / "good" / f"{i:03d}.png", i)
    for i in range(2):
      write_image(base / "test" / "good" / f"{i:03d}.png", 100 + i)
    for defect in defects:
      for i in range(2):
        write_image(base / "test" / defect / f"{i:03d}.png", 200 + i)
        write_mask(base / "ground_truth" / defect / f"{i:03d}_mask.png", [(1, 1, 4, 5)])
  return root


def _loco(root):
  return mvtec_loco(root, n_train=4)


def _visa(root, labels=None):
  rows = [("object", "split", "label", "image", "mask")]
  for category in ("candle", "pcb1"):
    for i in range(5):
      rows.append((category, "train", "normal", f"{category}/Data/Images/Normal/{i:04d}.JPG", ""))
      write_image(root / category / "Data" / "Images" / "Normal" / f"{i:04d}.JPG", i)
    rows.append((category, "test", "normal", f"{category}/Data/Images/Normal/0100.JPG", ""))
    write_image(root / category / "Data" / "Images" / "Normal" / "0100.JPG", 100)
    for i, value in enumerate((1, 255)):  # VisA masks mark defects with 1 or 255
      rows.append((category, "test", (labels or "anomaly"), f"{category}/Data/Images/Anomaly/{i:03d}.JPG",
                   f"{category}/Data/Masks/Anomaly/{i:03d}.png"))
      write_image(root / category / "Data" / "Images" / "Anomaly" / f"{i:03d}.JPG", 200 + i)
      write_mask(root / category / "Data" / "Masks" / "Anomaly" / f"{i:03d}.png", [(2, 2, 5, 5)], value=value)
  (root / "split_csv").mkdir(parents=True)
  with open(root / "split_csv" / "1cls.csv", "w", newline="") as f:
    csv.writer(f).writerows(rows)
  return root


def _ksdd2(root, n_train_pos=5):
  for split, n_neg, n_pos in (("train", 8, n_train_pos), ("test", 3, 2)):
    for i in range(n_neg + n_pos):
      write_image(root / split / f"{10000 + i}.png", i)
      write_mask(root / split / f"{10000 + i}_GT.png", [(3, 3, 6, 9)] if i >= n_neg else [])
  return root


def _folder_dataset(root):
  """10 normal images in ok/, 3 anomalous ones in ng/ with masks gt/<stem>_mask.png."""
  for i in range(10):
    write_image(root / "ok" / f"n{i}.png", i)
  for i in range(3):
    write_image(root / "ng" / f"a{i}.png", 50 + i)
    write_mask(root / "gt" / f"a{i}_mask.png", [(0, 0, 3, 3)])
  return root


def _files(refs):
  return [r.file_name for r in refs]


# ----------------------------------------------------------------------------- MVTec AD


def test_mvtec_splits_labels_masks_and_order(tmp_path):
  root = _mvtec(tmp_path)
  assert detect_format(root) == "mvtec"
  assert list_categories(root) == ["bottle", "cable"]
  splits = read_dataset(root, category="bottle")
  assert [len(splits[s]) for s in ("train", "validation", "test")] == [9, 1, 6]
  assert all(r.label == 0 and r.defect_type == "good" and r.split == "train" for r in splits["train"])
  assert all(r.split == "validation" and r.file_name.startswith("train/good/") for r in splits["validation"])
  test = splits["test"]
  assert [(r.defect_type, r.label) for r in test] == [("crack", 1)] * 2 + [("good", 0)] * 2 + [("hole", 1)] * 2
  assert _files(test) == sorted(_files(test))
  crack = test[0]
  assert crack.file_name == "test/crack/000.png" and crack.is_segmented
  assert crack.mask_paths == (str((root / "bottle/ground_truth/crack/000_mask.png").resolve()),)
  sample = load_sample(crack)
  assert sample["mask"].sum() == 12 and sample["image"].shape == (*SIZE, 3)


def test_validation_is_seeded_deterministic_and_never_test(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",), n_train=40)
  first = read_dataset(root, seed=3, val_fraction=0.25)
  again = read_dataset(root, seed=3, val_fraction=0.25)
  other = read_dataset(root, seed=4, val_fraction=0.25)
  assert first == again
  assert len(first["validation"]) == 10 and len(first["train"]) == 30
  assert _files(first["validation"]) != _files(other["validation"])
  train, val, test = (set(_files(first[s])) for s in ("train", "validation", "test"))
  assert not train & val and not (train | val) & test
  assert read_dataset(root, val_fraction=0.0)["validation"] == []


def test_val_from_test_copies_the_test_split_only_on_request(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",))
  splits = read_dataset(root, val_from_test=True)
  assert len(splits["train"]) == 10
  assert _files(splits["validation"]) == _files(splits["test"])
  assert all(r.split == "validation" for r in splits["validation"])


def test_a_category_folder_can_be_the_root(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",))
  splits = read_dataset(root / "bottle", format="embedded")
  assert len(splits["test"]) == 6
  assert list_categories(root / "bottle") == ["bottle"]


# ----------------------------------------------------------------------------- MVTec LOCO


def test_loco_uses_its_validation_folder_and_unites_region_masks(tmp_path):
  root = _loco(tmp_path)
  assert detect_format(root) == "mvtec_loco"
  splits = read_dataset(root)
  assert [len(splits[s]) for s in ("train", "validation", "test")] == [4, 2, 4]
  assert _files(splits["validation"]) == ["validation/good/000.png", "validation/good/001.png"]
  logical = next(r for r in splits["test"] if r.defect_type == "logical_anomalies")
  assert len(logical.mask_paths) == 2
  sample = load_sample(logical)
  assert sample["mask"].sum() == 4 + 4 * 6
  assert sample["components"].max() == 2


# ----------------------------------------------------------------------------- VisA


def test_visa_reads_the_split_csv(tmp_path):
  root = _visa(tmp_path)
  assert detect_format(root) == "visa"
  assert list_categories(root) == ["candle", "pcb1"]
  splits = read_dataset(root, category="pcb1", val_fraction=0.2)
  assert [len(splits[s]) for s in ("train", "validation", "test")] == [4, 1, 3]
  assert splits["train"][0].file_name == "Data/Images/Normal/0000.JPG"
  anomalous = [r for r in splits["test"] if r.label == 1]
  assert [r.defect_type for r in anomalous] == ["bad", "bad"]
  for ref in anomalous:  # mask value 1 and 255 both mark the defect
    assert load_sample(ref)["mask"].sum() == 9


def test_visa_bad_label_names_the_csv_line(tmp_path):
  root = _visa(tmp_path, labels="broken")
  with pytest.raises(DataError, match=r"1cls\.csv line 8: label 'broken'"):
    read_dataset(root, category="candle")


def test_visa_short_row_names_the_csv_line(tmp_path):
  root = _visa(tmp_path)
  csv_path = root / "split_csv" / "1cls.csv"
  lines = csv_path.read_text().splitlines()
  lines[3] = "candle,train,normal"  # three of the five fields
  csv_path.write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=r"1cls\.csv line 4: the row has no image field\(s\) \(3 fields, expected 5\)"):
    read_dataset(root, category="candle")


# ----------------------------------------------------------------------------- KSDD2


def test_ksdd2_labels_from_masks_and_supervision_modes(tmp_path):
  root = _ksdd2(tmp_path)
  assert detect_format(root) == "ksdd2"
  assert list_categories(root) == []
  splits = read_dataset(root)
  train_and_val = splits["train"] + splits["validation"]
  assert sum(r.label for r in train_and_val) == 5 and len(train_and_val) == 13
  assert all(r.label == 0 for r in splits["validation"])  # held out from normal images only
  assert sum(r.label for r in splits["test"]) == 2
  assert all("_GT" not in r.file_name for r in train_and_val + splits["test"])
  unsupervised = read_dataset(root, supervised=False)
  assert all(r.label == 0 for r in unsupervised["train"]) and len(unsupervised["test"]) == 5


def test_ksdd2_mixed_supervision_is_seeded(tmp_path):
  root = _ksdd2(tmp_path)
  splits = read_dataset(root, num_segmented=2, seed=1)
  positives = [r for r in splits["train"] if r.label == 1]
  segmented = [r for r in positives if r.is_segmented]
  assert len(segmented) == 2
  assert all(r.mask_paths == () for r in positives if not r.is_segmented)
  assert all(r.is_segmented for r in splits["test"])
  assert splits == read_dataset(root, num_segmented=2, seed=1)
  weak = next(r for r in positives if not r.is_segmented)
  assert load_sample(weak)["mask"].sum() == 0
  with pytest.raises(ConfigError, match="num_segmented=9 but .* has 5"):
    read_dataset(root, num_segmented=9)


def _ksdd2_split_files(root):
  """The archive's layout: split_weakly_<N>.pyb beside train/ and test/, plus a stray copy the lists leave out."""
  root = _ksdd2(root)
  train_neg = [(str(10000 + i), True) for i in range(8)]
  train_pos = [str(10008 + i) for i in range(5)]
  test = [(str(10000 + i), True) for i in range(5)]
  for n in (0, 2, 5):
    pickle_file(root / f"split_weakly_{n}.pyb", (train_neg + [(name, i < n) for i, name in enumerate(train_pos)], test))
  write_image(root / "train" / "10008 (copy).png", 8)
  write_mask(root / "train" / "10008_GT (copy).png", [(3, 3, 6, 9)])
  return root


def test_ksdd2_reads_the_images_its_split_files_list(tmp_path):
  root = _ksdd2_split_files(tmp_path)
  assert detect_format(root) == "ksdd2"
  splits = read_dataset(root, val_fraction=0)  # no num_segmented: the largest N, every positive segmented
  assert not any("copy" in r.file_name for r in splits["train"])
  assert len(splits["train"]) == 13 and sum(r.label for r in splits["train"]) == 5
  assert all(r.is_segmented and r.mask_paths for r in splits["train"] if r.label == 1)
  mixed = read_dataset(root, num_segmented=2, val_fraction=0)["train"]
  segmented = sorted(r.file_name for r in mixed if r.label == 1 and r.is_segmented)
  assert segmented == ["train/10008.png", "train/10009.png"]  # the file's choice, not a seeded one
  assert all(r.mask_paths == () for r in mixed if r.label == 1 and not r.is_segmented)
  assert sum(r.label for r in read_dataset(root, num_segmented=0)["train"]) == 5  # weak labels kept
  assert sum(r.label for r in read_dataset(root, supervised=False)["train"]) == 0
  # Integer ids, as numpy scalars, and a test positive the file marks unsegmented (left out, as the official reader).
  pickle_file(root / "split_weakly_5.pyb", ([(np.int64(10000 + i), np.bool_(True)) for i in range(13)],
                                            [(10000 + i, i != 4) for i in range(5)]))
  splits = read_dataset(root, val_fraction=0)
  assert len(splits["train"]) == 13 and _files(splits["test"]) == [
      "test/10003.png", "test/10000.png", "test/10001.png", "test/10002.png"]


def test_ksdd2_split_file_errors_name_the_file(tmp_path):
  root = _ksdd2_split_files(tmp_path)
  with pytest.raises(DataError, match=r"split_weakly_16\.pyb does not exist \(num_segmented=16\); .* has split "
                     r"files for num_segmented 0, 2, 5"):
    read_dataset(root, num_segmented=16)
  pickle_file(root / "split_weakly_5.pyb", ([("10000", True), ("10042", True)], []))
  with pytest.raises(DataError, match=r"split_weakly_5\.pyb lists train image '10042', but .*10042\.png does not "
                     r"exist"):
    read_dataset(root)
  pickle_file(root / "split_weakly_5.pyb", ([("../test/10000", True)], []))
  with pytest.raises(DataError, match=r"split_weakly_5\.pyb: entry 0 is \('\.\./test/10000', True\)"):
    read_dataset(root)
  pickle_file(root / "split_weakly_5.pyb", [("10000", True)])
  with pytest.raises(DataError, match=r"split_weakly_5\.pyb holds list of length 1, expected a pair"):
    read_dataset(root)
  pickle_file(root / "split_weakly_5.pyb", ([("10000", True)], [os.getcwd]))
  with pytest.raises(DataError, match=r"split_weakly_5\.pyb cannot be read: it refers to (posix|nt)\.getcwd"):
    read_dataset(root)


# ----------------------------------------------------------------------------- SensumSODF


def test_sensum_reads_the_fold_split_files(tmp_path):
  root = sensum(tmp_path)
  assert detect_format(root) == "sensum"
  assert list_categories(root) == ["capsule_0", "capsule_1", "softgel_0", "softgel_1"]
  splits = read_dataset(root, category="softgel_1", val_fraction=0.25, seed=3)
  train_and_val = splits["train"] + splits["validation"]
  assert sorted(_files(train_and_val)) == sorted(
      [f"softgel/negative/data/{i:03d}.png" for i in range(8)]
      + [f"softgel/positive/data/{i:03d}.png" for i in range(4)])
  assert len(splits["validation"]) == 2 and all(r.label == 0 for r in splits["validation"])
  assert _files(splits["test"]) == ["softgel/positive/data/004.png", "softgel/positive/data/005.png",
                                    "softgel/negative/data/008.png", "softgel/negative/data/009.png"]
  positive = next(r for r in splits["test"] if r.label == 1)
  assert positive.mask_paths == (str((root / "softgel/positive/annotation/004.png").resolve()),)
  assert load_sample(positive)["mask"].sum() == 3 * 5
  unsupervised = read_dataset(root, category="softgel_1", supervised=False)
  assert all(r.label == 0 for r in unsupervised["train"]) and unsupervised["test"] == splits["test"]


def test_sensum_segmented_percent_picks_the_split_file_and_weakly_labels(tmp_path):
  root = sensum(tmp_path)
  positives = [r for r in read_dataset(root, category="capsule_0", segmented_percent=50)["train"] if r.label == 1]
  assert [r.is_segmented for r in positives] == [True, True, False, False]
  assert all(r.mask_paths == () for r in positives if not r.is_segmented)
  with pytest.raises(DataError, match=r"pos_30\.pckl does not exist \(segmented_percent=30\); .* has segmented "
                     r"percents \[50, 100\]"):
    read_dataset(root, category="capsule_0", segmented_percent=30)
  with pytest.raises(ConfigError, match="segmented_percent applies to supervised training only"):
    read_dataset(root, category="capsule_0", segmented_percent=50, supervised=False)


def test_sensum_split_files_may_hold_numpy_scalars(tmp_path):
  root = sensum(tmp_path, objects=("capsule",), folds=("0",))
  pickle_file(root / "sensum_splits/capsule/0/train/neg.pckl", [(np.int64(i), np.bool_(True)) for i in range(8)])
  train = read_dataset(root, category="capsule_0", val_fraction=0)["train"]
  assert sorted(_files(train))[:2] == ["capsule/negative/data/000.png", "capsule/negative/data/001.png"]


def test_sensum_bad_input_names_the_file(tmp_path):
  root = sensum(tmp_path, objects=("capsule",))
  with pytest.raises(DataError, match=r"unknown category 'capsule' .*e\.g\. capsule_0\); available: capsule_0, "
                     r"capsule_1"):
    read_dataset(root, category="capsule")
  with pytest.raises(DataError, match="holds 2 categories; choose one of: capsule_0, capsule_1"):
    read_dataset(root)
  split = root / "sensum_splits" / "capsule" / "0" / "train"
  pickle_file(split / "neg.pckl", [(1, True), os.getcwd])  # a function: a pickle that could run code
  with pytest.raises(DataError, match=r"neg\.pckl cannot be read: it refers to (posix|nt)\.getcwd"):
    read_dataset(root, category="capsule_0")
  pickle_file(split / "neg.pckl", {"ids": [1, 2]})
  with pytest.raises(DataError, match=r"neg\.pckl holds a dict, expected a list of \(sample id, is_segmented\) pairs"):
    read_dataset(root, category="capsule_0")
  pickle_file(split / "neg.pckl", [(1, True), (2.5, True)])
  with pytest.raises(DataError, match=r"neg\.pckl: entry 1 is \(2\.5, True\), expected a \(sample id"):
    read_dataset(root, category="capsule_0")
  (split / "neg.pckl").write_bytes(b"not a pickle")
  with pytest.raises(DataError, match=r"neg\.pckl cannot be read"):
    read_dataset(root, category="capsule_0")
  pickle_file(split / "neg.pckl", [(1, True), (42, True)])
  with pytest.raises(DataError, match=r"list negative sample 42 of capsule, but .*negative/data/042\.png does "
                     r"not exist"):
    read_dataset(root, category="capsule_0")


# ----------------------------------------------------------------------------- Folder


def test_folder_layout_with_masks_and_seeded_test_split(tmp_path):
  _folder_dataset(tmp_path)
  splits = read_dataset(tmp_path, normal_dir="ok", abnormal_dir="ng", mask_dir="gt", mask_suffix="_mask")
  assert [len(splits[s]) for s in ("train", "validation", "test")] == [7, 1, 5]
  assert sum(r.label for r in splits["test"]) == 3
  assert all(r.is_segmented and len(r.mask_paths) == r.label for r in splits["test"])
  assert not set(_files(splits["train"])) & set(_files(splits["test"]))
  weak = read_dataset(tmp_path, format="folder", normal_dir="ok", abnormal_dir="ng")
  assert all(not r.is_segmented for r in weak["test"] if r.label == 1)
  (tmp_path / "gt" / "a2_mask.png").unlink()
  with pytest.raises(DataError, match=r"ng/a2\.png has no mask: expected .*gt/a2_mask\.png"):
    read_dataset(tmp_path, normal_dir="ok", abnormal_dir="ng", mask_dir="gt", mask_suffix="_mask")


def test_folder_with_normal_test_dir(tmp_path):
  for i in range(4):
    write_image(tmp_path / "train_ok" / f"{i}.png", i)
    write_image(tmp_path / "test_ok" / f"{i}.png", 10 + i)
  splits = read_dataset(tmp_path, normal_dir="train_ok", normal_test_dir="test_ok", val_fraction=0.25)
  assert [len(splits[s]) for s in ("train", "validation", "test")] == [3, 1, 4]
  assert all(r.file_name.startswith("test_ok/") for r in splits["test"])


# ----------------------------------------------------------------------------- errors


def test_wrong_root(tmp_path):
  with pytest.raises(DataError, match=r"dataset root .*nowhere does not exist"):
    read_dataset(tmp_path / "nowhere")


def test_unknown_category_lists_the_available_ones(tmp_path):
  root = _mvtec(tmp_path)
  with pytest.raises(DataError, match=r"unknown category 'zipper' .*available: bottle, cable"):
    read_dataset(root, category="zipper")
  with pytest.raises(DataError, match=r"holds 2 categories; choose one of: bottle, cable"):
    read_dataset(root)


def test_empty_category_names_its_folder(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",))
  (root / "empty" / "train" / "good").mkdir(parents=True)
  (root / "empty" / "test").mkdir()
  with pytest.raises(DataError, match=r"no training images in .*empty/train/good"):
    read_dataset(root, category="empty")


def test_missing_mask_names_the_image_and_the_expected_mask(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",))
  (root / "bottle" / "ground_truth" / "hole" / "001_mask.png").unlink()
  with pytest.raises(DataError, match=r"test/hole/001\.png has no mask: expected .*ground_truth/hole/001_mask\.png"):
    read_dataset(root)


def test_loco_missing_mask_folder_names_it(tmp_path):
  root = _loco(tmp_path)
  for path in (root / "juice_bottle" / "ground_truth" / "logical_anomalies" / "000").iterdir():
    path.unlink()
  with pytest.raises(DataError, match=r"logical_anomalies/000\.png has no mask: .*logical_anomalies/000"):
    read_dataset(root)


def test_undetectable_layout_and_bad_options(tmp_path):
  (tmp_path / "stuff").mkdir()
  with pytest.raises(DataError, match="cannot tell the layout"):
    read_dataset(tmp_path)
  root = _mvtec(tmp_path / "mvtec", categories=("bottle",))
  with pytest.raises(ConfigError, match=r"options \['supervised'\] do not apply to format 'mvtec'"):
    read_dataset(root, supervised=False)
  with pytest.raises(ConfigError, match="unknown dataset format"):
    read_dataset(root, format="coco")


def test_broken_symlink_is_reported_not_skipped(tmp_path):
  root = _mvtec(tmp_path, categories=("bottle",))
  (root / "bottle" / "train" / "good" / "999.png").symlink_to(tmp_path / "gone.png")
  with pytest.raises(DataError, match=r"999\.png is a broken symbolic link"):
    read_dataset(root, category="bottle")


# ----------------------------------------------------------------------------- summary and CLI


def test_summary_rows(tmp_path):
  rows = dataset_summary(_mvtec(tmp_path))
  assert [row["category"] for row in rows] == ["bottle", "cable"]
  assert rows[0] == dict(category="bottle", train=9, train_anomalous=0, validation=1, test_good=2, test_anomalous=4,
                         defect_types=["crack", "hole"], image_sizes=[SIZE])
  assert "crack, hole" in format_summary(rows)


def test_cli_info_reads_the_embedded_spec_as_fit_does(tmp_path, capsys, monkeypatch):
  import jaxad.data.embedded as embedded
  real = embedded.build_embedded
  monkeypatch.setattr(embedded, "build_embedded", lambda root: real(root, image_size=32, categories=("nut",),
                                                                    n_train=4, n_test_good=1, n_test_per_defect=1))
  monkeypatch.setenv("JAXAD_CACHE", str(tmp_path))
  assert cli.main(["data", "info", "embedded"]) == 0
  assert "nut" in capsys.readouterr().out and (tmp_path / "embedded").is_dir()


def test_cli_info_prints_the_table(tmp_path, capsys):
  root = _mvtec(tmp_path)
  assert cli.main(["data", "info", str(root), "--category", "cable"]) == 0
  out = capsys.readouterr().out
  assert "test anom." in out and "cable" in out and "bottle" not in out and "12x16" in out


def test_cli_info_reads_the_folder_layout_from_its_flags(tmp_path, capsys):
  root = _folder_dataset(tmp_path)
  flags = ["--normal-dir", "ok", "--abnormal-dir", "ng", "--mask-dir", "gt", "--mask-suffix", "_mask"]
  assert cli.main(["data", "info", str(root), *flags]) == 0  # format auto: the folder flags decide it
  row = capsys.readouterr().out.splitlines()[-1].split()
  assert row[:6] == ["-", "7", "0", "1", "2", "3"]  # train, train anomalous, validation, test good, test anomalous


def test_fit_and_sweep_take_the_dataset_layout_flags(tmp_path):
  """`jaxad fit --data ROOT --normal-dir ...` reads the folder layout; the options are kept in the run config."""
  from jaxad.cli import build_parser
  from jaxad.cli.fit import resolve_run
  from jaxad.run import build_static, list_categories, load_splits
  root = _folder_dataset(tmp_path)
  flags = ["--normal-dir", "ok", "--abnormal-dir", "ng", "--mask-dir", "gt", "--mask-suffix", "_mask"]
  for command in ("fit", "sweep"):
    run, overrides = resolve_run(build_parser().parse_args([command, "--data", str(root), *flags]))
    assert run.data_options == {"normal_dir": "ok", "abnormal_dir": "ng", "mask_dir": "gt", "mask_suffix": "_mask"}
  assert list_categories(run.data, run.data_options) == []
  method, static, _ = build_static("supersimplenet", {"image_size": "16,16", "backbone": "tiny_test"})
  splits = load_splits(run, method, static, None)
  assert [len(splits[s].label) for s in ("train", "validation", "test")] == [7, 1, 5]
  assert splits["test"].label.sum() == 3 and splits["test"].mask.sum() > 0
  assert config_lib.to_record(run)["data_options"]["normal_dir"] == "ok"  # written to config.json for `jaxad test`


def test_a_single_category_run_is_tested_with_its_layout_flags_and_named_default(tmp_path, monkeypatch):
  """`jaxad test` re-reads a folder-layout run with the flags it recorded, from another folder, and names the
  dataset's one category 'default' as fit does; --data names the same dataset as its path from anywhere."""
  from jaxad.cli import main
  root = _folder_dataset(tmp_path)
  flags = ["--normal-dir", "ok", "--abnormal-dir", "ng", "--mask-dir", "gt", "--mask-suffix", "_mask"]
  workdir = tmp_path / "run"
  assert main(["fit", "--data", str(root), *flags, "--workdir", str(workdir), "--set", "backbone=tiny_test",
               "--set", "backbone_weights=random", "--set", "image_size=16,16", "--set", "seg_hidden=4",
               "--set", "cls_hidden=2", "--max-steps", "1", "--no-progress"]) == 0
  (fitted,) = json.loads((workdir / "default" / "report.json").read_text())
  monkeypatch.chdir(tmp_path / "run")
  for extra in ([], ["--data", os.path.relpath(root)]):
    assert main(["test", "--workdir", str(workdir), *extra]) == 0
    (tested,) = json.loads((workdir / "default" / "test_report.json").read_text())
    assert tested["category"] == fitted["category"] == "default" and tested["image_auroc"] == fitted["image_auroc"]


def test_cli_sheet_writes_a_png(tmp_path, capsys):
  root = _loco(tmp_path / "loco")
  out_png = tmp_path / "sheets" / "loco.png"
  assert cli.main(["data", "sheet", str(root), "--out", str(out_png), "--size", "32"]) == 0
  with Image.open(out_png) as sheet:
    assert sheet.format == "PNG"
    pixels = np.asarray(sheet.convert("RGB"))
  assert sheet.size[0] == 4 + 4 * (32 + 4)
  assert ((pixels[..., 0] == 255) & (pixels[..., 1] == 0)).any()  # red mask outlines


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
  assert cli.main(["data", "info", str(tmp_path / "missing")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "missing does not exist" in err and "Traceback" not in err
  root = _mvtec(tmp_path / "mvtec")
  assert cli.main(["data", "sheet", str(root), "--out", str(tmp_path / "x.png"), "--category", "zip"]) == 2
  assert "unknown category 'zip'" in capsys.readouterr().err


def test_cli_build_embedded_calls_the_generator_then_summarises(tmp_path, capsys, monkeypatch):
  calls = []

  def fake_build_embedded(root, *, seed=0, image_size=64, categories=None, overwrite=False):
    calls.append((seed, image_size, categories, overwrite))
    return _mvtec(tmp_path / root.split("/")[-1], categories=("toy",))

  monkeypatch.setitem(sys.modules, "jaxad.data.embedded", types.SimpleNamespace(build_embedded=fake_build_embedded))
  assert cli.main(["data", "build-embedded", str(tmp_path / "emb"), "--seed", "3", "--size", "32", "--overwrite"]) == 0
  assert calls == [(3, 32, None, True)]
  assert "toy" in capsys.readouterr().out
