"""MVTec LOCO AD's AU-sPRO: the metric against a direct transcription of the official evaluation's
semantics, its ground-truth channels and saturation areas, and its place in the evaluation."""

import json
import types

import numpy as np
import pytest
from PIL import Image

from jaxad import metrics
from jaxad.data import loco_channels
from jaxad.errors import DataError
from jaxad.evaluate import evaluator

from fake_datasets import LOCO_DEFECTS, mvtec_loco, write_mask


def _official_auc_for_max_fpr(fprs, ys, max_fpr):
  """The official `get_auc_for_max_fpr(..., scale_to_one=True)`: the point at max_fpr interpolated, a
  point at FPR 0 prepended when missing, trapezoids up to max_fpr, divided by max_fpr."""
  order = np.argsort(fprs, kind="stable")
  fprs, ys = fprs[order], ys[order]
  if max_fpr not in fprs:
    at = np.searchsorted(fprs, max_fpr)
    fprs = np.insert(fprs, at, max_fpr)
    ys = np.insert(ys, at, np.interp(max_fpr, np.delete(fprs, at), ys))
  keep = fprs <= max_fpr
  fprs, ys = fprs[keep], ys[keep]
  if 0.0 not in fprs:
    fprs, ys = np.insert(fprs, 0, 0.0), np.insert(ys, 0, ys[0])
  return float(np.sum(np.diff(fprs) * (ys[1:] + ys[:-1]) / 2) / max_fpr)


def _official_au_spro(maps, channels, max_fpr):
  """sPRO by direct thresholding, as the official `metrics.py`: binary = map > threshold; per channel
  min(TP / saturation area, 1), averaged over channels; FP = positives outside every channel of the image,
  FPR pooled over all images. Thresholds: every distinct score and one above the maximum."""
  scores = np.unique(np.concatenate([m.ravel() for m in maps]))
  thresholds = np.concatenate([[scores[-1] + 1.0], scores[::-1]])
  masks = []
  for m, chans in zip(maps, channels):
    union = np.zeros(m.size, bool)
    for pixels, _ in chans:
      union[pixels] = True
    masks.append(union)
  fprs, spros = [], []
  for t in thresholds:
    positive = [m.ravel() > t for m in maps]
    fp = sum(int((p & ~u).sum()) for p, u in zip(positive, masks))
    fprs.append(fp / sum(int((~u).sum()) for u in masks))
    spros.append(np.mean([min(positive[i][pixels].sum() / area, 1.0)
                          for i, chans in enumerate(channels) for pixels, area in chans]))
  return _official_auc_for_max_fpr(np.array(fprs), np.array(spros), max_fpr)


def _random_case(rng, quantize=None):
  """Four images of two sizes: two good, two with two (overlapping) defects, one saturating early."""
  sizes = [(9, 11), (9, 11), (7, 13), (7, 13)]
  maps = [rng.random(s).astype(np.float32) for s in sizes]
  if quantize:
    maps = [np.round(m * quantize).astype(np.float32) / quantize for m in maps]
  def rect(shape, r0, r1, c0, c1):
    grid = np.zeros(shape, bool)
    grid[r0:r1, c0:c1] = True
    return np.flatnonzero(grid)
  channels = [[], [(rect(sizes[1], 1, 4, 2, 7), 15), (rect(sizes[1], 3, 6, 5, 9), 4)],
              [], [(rect(sizes[3], 0, 2, 0, 13), 26), (rect(sizes[3], 4, 7, 3, 5), 1)]]
  for i, m in enumerate(maps):  # lift the defects so the curve is not a coin toss
    for pixels, _ in channels[i]:
      m.reshape(-1)[pixels] += np.float32(0.3)
  return maps, channels


@pytest.mark.parametrize("limit", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("quantize", [None, 8])
def test_au_spro_matches_the_official_thresholding(limit, quantize):
  """Overlapping defects, saturation areas below and at the area, two image sizes, with and without ties."""
  maps, channels = _random_case(np.random.default_rng(0), quantize)
  assert metrics.au_spro(maps, channels, limit) == pytest.approx(_official_au_spro(maps, channels, limit), abs=1e-9)


def test_au_spro_with_unsaturated_single_regions_is_aupro():
  """Saturation area = defect area and one connected region per defect: sPRO is PRO."""
  rng = np.random.default_rng(3)
  maps = rng.random((3, 10, 10)).astype(np.float32)
  comps = np.zeros((3, 10, 10), np.int32)
  comps[0, 1:3, 1:4] = 1
  comps[0, 6:9, 5:9] = 2
  comps[2, 4:7, 0:2] = 1
  channels = [[(np.flatnonzero(comps[n] == k), int((comps[n] == k).sum())) for k in range(1, comps[n].max() + 1)]
              for n in range(3)]
  for limit in (0.05, 0.3):
    assert metrics.au_spro(list(maps), channels, limit) == pytest.approx(metrics.aupro(maps, comps, limit), abs=1e-12)


def test_a_saturated_defect_counts_as_found_once_its_top_pixels_are():
  """A 20-pixel defect with saturation area 5 whose 5 best pixels beat every defect-free pixel: AU-sPRO 1."""
  score = np.zeros((10, 10), np.float32)
  pixels = np.arange(20, 40)
  score.reshape(-1)[pixels[:5]] = 1.0  # only a quarter of the defect lights up
  assert metrics.au_spro([score], [[(pixels, 5)]]) == pytest.approx(1.0)
  assert metrics.au_spro([score], [[(pixels, 20)]]) < 0.3  # unsaturated, it is a quarter found


def test_au_spro_refuses_inputs_it_cannot_score():
  score = np.zeros((4, 4), np.float32)
  with pytest.raises(metrics.MetricInputError, match="at least one annotated defect"):
    metrics.au_spro([score], [[]])
  with pytest.raises(metrics.MetricInputError, match="outside its 16 pixels"):
    metrics.au_spro([score], [[(np.array([3, 16]), 1)]])
  with pytest.raises(metrics.MetricInputError, match="saturation area 3 outside 1..2"):
    metrics.au_spro([score], [[(np.array([3, 4]), 3)]])


# ----------------------------------------------------------------------------- ground truth channels

CONFIG = LOCO_DEFECTS


def test_channels_take_saturation_areas_as_the_official_code(tmp_path):
  """Absolute: min(threshold, area); relative: int(fraction · area); disjoint parts stay one defect."""
  (tmp_path / "defects_config.json").write_text(json.dumps(CONFIG))
  types_ = loco_channels.read_defects_config(tmp_path / "defects_config.json")
  small = loco_channels.read_channel(write_mask(tmp_path / "a.png", [(0, 0, 2, 2)], 255, (8, 8)), types_)
  large = loco_channels.read_channel(write_mask(tmp_path / "b.png", [(0, 0, 3, 3)], 255, (8, 8)), types_)
  split = loco_channels.read_channel(write_mask(tmp_path / "c.png", [(0, 0, 1, 3), (5, 5, 7, 7)], 134, (8, 8)), types_)
  assert (small.saturation_area, large.saturation_area) == (4, 6)
  assert (split.saturation_area, split.pixels.size, split.defect_name) == (3, 7, "scratch")  # int(0.5 · 7)
  assert split.pixels.tolist() == [0, 1, 2, 45, 46, 53, 54]


@pytest.mark.parametrize("boxes, values, match", [
    ([], [255], "has no defect pixel"),
    ([(0, 0, 1, 1), (3, 3, 4, 4)], [255, 134], "2 defect values"),
    ([(0, 0, 1, 1)], [7], "marks its defect with 7, which its defects_config.json does not list"),
])
def test_bad_channels_name_the_file(tmp_path, boxes, values, match):
  grid = np.zeros((6, 6), np.uint8)
  for (r0, c0, r1, c1), v in zip(boxes, values):
    grid[r0:r1, c0:c1] = v
  Image.fromarray(grid).save(tmp_path / "000.png")
  types_ = {255: loco_channels.DefectType("a", 5, False), 134: loco_channels.DefectType("b", 0.5, True)}
  with pytest.raises(DataError, match=match) as e:
    loco_channels.read_channel(tmp_path / "000.png", types_)
  assert "000.png" in str(e.value)


@pytest.mark.parametrize("entry, match", [
    ({"defect_name": "x", "pixel_value": 0, "saturation_threshold": 5, "relative_saturation": False}, "pixel_value"),
    ({"defect_name": "x", "pixel_value": 9, "saturation_threshold": 1, "relative_saturation": True}, "relative"),
    ({"defect_name": "x", "pixel_value": 9, "saturation_threshold": 0.5, "relative_saturation": False}, "absolute"),
    ({"defect_name": "x", "pixel_value": 9}, "expected an object with keys"),
])
def test_bad_defects_configs_name_the_file_and_entry(tmp_path, entry, match):
  path = tmp_path / "defects_config.json"
  path.write_text(json.dumps([CONFIG[0], entry]))
  with pytest.raises(DataError, match=match) as e:
    loco_channels.read_defects_config(path)
  assert "defects_config.json, entry 1" in str(e.value)


# ----------------------------------------------------------------------------- in the evaluation

def test_original_size_evaluation_reports_the_official_per_kind_au_spro():
  """au_spro_<kind>: that kind's images with the good ones (FPR over just those), up to FPR 0.05; au_spro: the mean."""
  rng = np.random.default_rng(5)
  maps, channels = _random_case(rng)
  maps.append(rng.random((7, 13)).astype(np.float32))
  channels.append([(np.arange(30, 40), 10)])
  kinds = ["good", "logical_anomalies", "good", "structural_anomalies", "structural_anomalies"]
  chans = [tuple(loco_channels.Channel(p, a, "d") for p, a in c) for c in channels]
  masks = []
  for m, c in zip(maps, channels):
    union = np.zeros(m.size, bool)
    for p, _ in c:
      union[p] = True
    masks.append(union.reshape(m.shape))
  split = types.SimpleNamespace(label=np.array([0, 1, 0, 1, 1]), defect_type=kinds, original_mask=masks,
                                original_channels=chans)
  grid = np.stack([np.asarray(m[:7, :9]) for m in maps])  # resized back to each size by the evaluator
  row = evaluator.original_size_metrics(grid, split)
  resized = [np.asarray(evaluator._resize_grid(grid[i:i + 1], m.shape))[0] for i, m in enumerate(maps)]
  for kind, keep in (("logical", [0, 1, 2]), ("structural", [0, 2, 3, 4])):
    want = _official_au_spro([resized[i] for i in keep], [channels[i] for i in keep], 0.05)
    assert row[f"au_spro_{kind}"] == pytest.approx(want, abs=1e-9)
  assert row["au_spro"] == pytest.approx((row["au_spro_logical"] + row["au_spro_structural"]) / 2)
  del split.original_channels
  assert "au_spro" not in evaluator.original_size_metrics(grid, split)  # no channels (e.g. MVTec AD): no sPRO


def test_a_loco_test_split_loaded_for_original_size_scoring_carries_its_channels(tmp_path, capsys):
  from jaxad.data.transforms import PreprocessConfig
  from jaxad.train.data import load_split
  root = mvtec_loco(tmp_path)
  split = load_split(str(root), "juice_bottle", "test", 8, PreprocessConfig(), original_masks=True)
  by_kind = dict(zip(split.file_name, split.original_channels))
  assert by_kind["test/good/000.png"] == ()
  logical = by_kind["test/logical_anomalies/000.png"]
  assert [(c.defect_name, c.pixels.size, c.saturation_area) for c in logical] == [("missing_pin", 4, 4),
                                                                                   ("scratch", 24, 12)]
  assert load_split(str(root), "juice_bottle", "test", 8, PreprocessConfig()).original_channels is None

  (root / "juice_bottle" / "defects_config.json").unlink()
  split = load_split(str(root), "juice_bottle", "test", 8, PreprocessConfig(), original_masks=True)
  assert split.original_channels is None
  assert "no sPRO" in capsys.readouterr().err


def test_a_prepared_tfds_loco_split_says_why_it_has_no_spro(tmp_path, capsys):
  """TFDS records keep each image's union mask only: no channels, and a note saying so (not a silent gap)."""
  from jaxad.data.tfds_builders.__main__ import main as build_main
  from jaxad.data.transforms import PreprocessConfig
  from jaxad.train.data import load_split
  root = mvtec_loco(tmp_path / "loco")
  assert build_main(["jaxad_folder", "--manual_dir", str(root / "juice_bottle"), "--data_dir", str(tmp_path / "tfds"),
                     "--format", "mvtec_loco", "--config_name", "jb"]) == 0
  capsys.readouterr()
  split = load_split("tfds:jaxad_folder/jb", None, "test", 8, PreprocessConfig(), original_masks=True,
                     data_dir=tmp_path / "tfds")
  assert split.original_channels is None and len(split.original_mask) == 4
  assert "a prepared TFDS dataset keeps only the union" in capsys.readouterr().err
