"""How hard is the embedded dataset? Image AUROC of weak baselines and of a feature kNN.

Builds the embedded dataset (jaxad.data.embedded), reads it with the MVTec reader and scores
every test image of each category with

  mean   distance of the image's mean colour to the training images' (in training stds)
  std    |global intensity std - mean training std|
  zmax   max over pixels of |x - mean image| / (std image + 0.02), averaged over channels
  knn    PatchCore-like: EfficientNet-Lite0 layer2+layer3 features (3x3 average-pooled,
         layer3 upsampled to layer2), distance of each test patch to its nearest training
         patch, image score = max over patches (skipped with --no-features)

The first three should stay clearly below 0.95 (ideally <= 0.85) and the kNN at or above 0.9:
then the task needs good features and is solvable with them. Prints a table (per category
and per defect type) and writes JSON to --out.

  python benchmarks/embedded_difficulty.py [--root DIR] [--seed 0] [--size 128] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from jaxad.data.embedded import EMBEDDED_CATEGORIES, build_embedded
from jaxad.data.readers import read_mvtec


def load(refs) -> np.ndarray:
  images = []
  for ref in refs:
    with Image.open(ref.image_path) as image:
      images.append(np.asarray(image.convert("RGB"), np.float32) / 255)
  return np.stack(images)


def weak_scores(train_NxHxWx3: np.ndarray, test_NxHxWx3: np.ndarray) -> dict[str, np.ndarray]:
  train_means, test_means = train_NxHxWx3.mean((1, 2)), test_NxHxWx3.mean((1, 2))
  mean = np.linalg.norm((test_means - train_means.mean(0)) / train_means.std(0), axis=1)
  std = np.abs(test_NxHxWx3.std((1, 2, 3)) - train_NxHxWx3.std((1, 2, 3)).mean())
  z = np.abs(test_NxHxWx3 - train_NxHxWx3.mean(0)) / (train_NxHxWx3.std(0) + 0.02)
  return {"mean": mean, "std": std, "zmax": z.mean(-1).reshape(len(z), -1).max(1)}


def make_feature_fn():
  """Jitted images -> (B, h*w, C) patch features from EfficientNet-Lite0 layer2 + layer3."""
  import jax
  import jax.numpy as jnp

  from jaxad.nn.backbones import apply_backbone, load_backbone, normalize_images

  stages = ("layer2", "layer3")
  module, variables = load_backbone("efficientnet_lite0", stages=stages)

  def pool3(x):
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), "SAME") / 9.0

  @jax.jit
  def features(images_BxHxWx3):
    feats = apply_backbone(module, variables, normalize_images("efficientnet_lite0", images_BxHxWx3), stages)
    fine, coarse = pool3(feats["layer2"]), pool3(feats["layer3"])
    b, h, w, _ = fine.shape
    coarse = jax.image.resize(coarse, (b, h, w, coarse.shape[-1]), "bilinear")
    return jnp.concatenate([fine, coarse], -1).reshape(b, h * w, -1)

  return lambda images: np.concatenate([np.asarray(features(images[i:i + 16])) for i in range(0, len(images), 16)])


def knn_scores(feature_fn, train_NxHxWx3: np.ndarray, test_NxHxWx3: np.ndarray) -> np.ndarray:
  bank_NxQxC = feature_fn(train_NxHxWx3)
  bank_PxC = bank_NxQxC.reshape(-1, bank_NxQxC.shape[-1])
  bank_sq = (bank_PxC ** 2).sum(1)
  scores = []
  for patches_QxC in feature_fn(test_NxHxWx3):
    d2 = (patches_QxC ** 2).sum(1)[:, None] - 2 * patches_QxC @ bank_PxC.T + bank_sq[None]
    scores.append(np.sqrt(np.maximum(d2.min(1), 0)).max())
  return np.array(scores)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", type=Path, help="where to build the dataset (default: a temporary folder)")
  parser.add_argument("--seed", type=int, default=0, help="dataset seed")
  parser.add_argument("--size", type=int, default=128, help="image side in pixels")
  parser.add_argument("--no-features", action="store_true", help="skip the EfficientNet-Lite0 kNN baseline")
  parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedded_difficulty.json"),
                      help="JSON output path")
  args = parser.parse_args()

  root = args.root or Path(tempfile.mkdtemp()) / "embedded"
  start = time.perf_counter()
  build_embedded(root, seed=args.seed, image_size=args.size)
  build_s = time.perf_counter() - start
  feature_fn = None if args.no_features else make_feature_fn()

  results = {}
  for category in EMBEDDED_CATEGORIES:
    splits = read_mvtec(root / category, val_fraction=0.0)
    train, test = load(splits["train"]), load(splits["test"])
    labels = np.array([r.label for r in splits["test"]])
    kinds = np.array([r.defect_type for r in splits["test"]])
    scores = weak_scores(train, test)
    if feature_fn is not None:
      scores["knn"] = knn_scores(feature_fn, train, test)
    row = {}
    for name, values in scores.items():
      row[name] = float(roc_auc_score(labels, values))
      for defect in sorted(set(kinds) - {"good"}):
        keep = (kinds == "good") | (kinds == defect)
        row[f"{name}/{defect}"] = float(roc_auc_score(labels[keep], values[keep]))
    results[category] = row

  baselines = [n for n in next(iter(results.values())) if "/" not in n]
  print(f"embedded dataset seed {args.seed}, {args.size} px, built in {build_s:.1f} s; image AUROC")
  print(f"{'category':10s}" + "".join(f"{n:>8s}" for n in baselines))
  for category, row in results.items():
    print(f"{category:10s}" + "".join(f"{row[n]:8.3f}" for n in baselines))
  print(f"{'mean':10s}" + "".join(f"{np.mean([r[n] for r in results.values()]):8.3f}" for n in baselines))
  for category, row in results.items():
    for baseline in baselines:
      print(f"  {category:6s} {baseline:5s} " + "  ".join(
          f"{n.split('/')[1]}={v:.2f}" for n, v in row.items() if n.startswith(baseline + "/")))
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_text(json.dumps({"seed": args.seed, "image_size": args.size, "build_s": build_s,
                                  "auroc": results}, indent=2) + "\n")


if __name__ == "__main__":
  main()
