"""`jaxad predict`: score images (files or a folder) with a trained model; writes scores, maps and overlays."""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("predict", help="score new images with a trained model", description=__doc__)
  p.add_argument("inputs", nargs="+", help="image files or folders of images")
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run")
  p.add_argument("--category", default=None, help="category sub-folder of the run (needed if it has several)")
  p.add_argument("--out", default=None, help="output folder (default <run>/predictions)")
  p.add_argument("--member", type=int, default=0, help="sweep member to use (default 0)")
  p.set_defaults(func=main)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _collect(inputs) -> list:
  from pathlib import Path
  from jaxad.errors import DataError
  files = []
  for item in inputs:
    path = Path(item)
    if path.is_dir():
      files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif path.is_file():
      files.append(path)
    else:
      raise DataError(f"{path} does not exist")
  if not files:
    raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}")
  return files


def main(args) -> int:
  import json
  from pathlib import Path
  import numpy as np
  from jaxad.data.images import load_image
  from jaxad.data.transforms import Finalize, Resize
  from jaxad.errors import JaxadError
  from jaxad.evaluate import evaluator, report
  from jaxad.run import load_trained
  import jax

  root = Path(args.workdir)
  if args.category:
    run_dir = root / args.category
  else:
    found = sorted(p.parent for p in root.glob("*/config.json"))
    if len(found) != 1:
      raise JaxadError(f"{root} holds {len(found)} categories; choose one with --category")
    run_dir = found[0]
  method, static, hps_M, states, (features_fn, frozen_vars), _ = load_trained(run_dir)
  states = jax.tree.map(lambda x: x[args.member:args.member + 1], states)
  files = _collect(args.inputs)
  resize, finalize = Resize(tuple(static.image_size), method.preprocessing(static)), Finalize()
  images = []
  for f in files:
    img = load_image(f)
    sample = {"image": img, "mask": np.zeros(img.shape[:2], np.uint8), "label": 0, "is_segmented": True}
    images.append(finalize.map(resize.map(sample))["image"])
  images = np.stack(images)
  predict_fn = evaluator.make_predict_fn(method, static, features_fn, tuple(static.image_size))
  preds = evaluator.predict_split(predict_fn, states, frozen_vars, images)
  out = Path(args.out) if args.out else run_dir / "predictions"
  out.mkdir(parents=True, exist_ok=True)
  val_path = run_dir / "validation.json"
  threshold = None
  if val_path.exists():
    threshold = json.loads(val_path.read_text())["score"]["q99"][args.member]
  rows = []
  for i, f in enumerate(files):
    rows.append({"file": str(f), "score": float(preds["score"][0, i]), "map_score": float(preds["map_score"][0, i]),
                 **({"anomalous": bool(preds["score"][0, i] > threshold)} if threshold is not None else {})})
  report.write_tables(rows, out, stem="scores")
  np.save(out / "anomaly_maps.npy", preds["anomaly_map"][0])
  report.save_overlays(images, preds["anomaly_map"][0], None, [Path(f).name for f in files], preds["score"][0],
                       out / "overlays", max_images=len(files))
  print(report.markdown_table(rows))
  if threshold is not None:
    print(f"threshold: validation 99th percentile of normal scores = {threshold:.4f}")
  print(f"written to {out}")
  return 0
