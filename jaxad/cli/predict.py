"""`jaxad predict`: score images (files or a folder) with a trained model; writes scores, maps and overlays."""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("predict", help="score new images with a trained model", description=__doc__)
  p.add_argument("inputs", nargs="+", help="image files or folders of images (searched recursively, --out left out)")
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run or `jaxad sweep`")
  p.add_argument("--category", default=None, help="category sub-folder of the run (needed if it has several)")
  p.add_argument("--out", default=None, help="output folder (default <run>/predictions)")
  p.add_argument("--member", type=int, default=0,
                 help="member to use: the sweep's member number with a sweep workdir, else the run's (default 0)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="inference precision")
  p.add_argument("--batch-size", type=int, default=16, help="images per compiled batch (fewer are padded)")
  p.set_defaults(func=main)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _collect(inputs, out=None) -> tuple[list, list]:
  """(files, overlay names): folders are searched recursively, leaving out files under `out` (earlier
  outputs); files named directly are always taken. Names are paths relative to the folder searched
  (a file's own name when given directly), made unique."""
  from pathlib import Path
  from jaxad.errors import DataError
  out = Path(out).resolve() if out is not None else None
  files, names, skipped = [], [], 0
  for item in inputs:
    path = Path(item)
    if path.is_dir():
      for p in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        if out is not None and p.resolve().is_relative_to(out):
          skipped += 1
          continue
        files.append(p)
        names.append(p.relative_to(path).as_posix())
    elif path.is_file():
      files.append(path)
      names.append(path.name)
    else:
      raise DataError(f"{path} does not exist")
  if not files:
    raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {', '.join(map(str, inputs))}"
                    + (f" ({skipped} under --out {out} left out)" if skipped else ""))
  return files, _unique(names)


def _unique(names: list) -> list:
  """`names` with -2, -3… before the suffix where two would give one overlay file (save_overlays
  drops the suffix and turns "/" into "__")."""
  from pathlib import PurePosixPath

  def key(name):
    return name.replace("/", "__").rsplit(".", 1)[0]

  seen, result = set(), []
  for name in names:
    suffix = PurePosixPath(name).suffix
    candidate, k = name, 1
    while key(candidate) in seen:
      k += 1
      candidate = f"{name[:len(name) - len(suffix)]}-{k}{suffix}"
    seen.add(key(candidate))
    result.append(candidate)
  return result


def main(args) -> int:
  from pathlib import Path
  import numpy as np
  from jaxad.data.images import load_image
  from jaxad.data.transforms import resize_image
  from jaxad.errors import ConfigError
  from jaxad.evaluate import report
  from jaxad.infer import InferenceEngine
  from jaxad.run import find_member, load_trained, select_member, validation_threshold

  if args.batch_size < 1:
    raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
  run_dir, slot, _ = find_member(args.workdir, args.category, args.member)
  out = Path(args.out) if args.out else run_dir / "predictions"
  files, names = _collect(args.inputs, out)
  method, static, hps_M, states, frozen, _ = load_trained(run_dir)
  states = select_member(states, slot, run_dir)
  # uint8 images go to the device as they are: resizing and normalisation run in the compiled
  # predict, one compilation per distinct image size (predict_array pads every batch to --batch-size).
  engine = InferenceEngine(method, static, states, frozen, dtype=args.dtype)
  raw = [load_image(f) for f in files]
  by_shape: dict[tuple, list[int]] = {}
  for i, img in enumerate(raw):
    by_shape.setdefault(img.shape, []).append(i)
  preds = {}
  for idx in by_shape.values():
    pred = engine.predict_array(np.stack([raw[i] for i in idx]), args.batch_size)
    for k, v in pred.items():
      preds.setdefault(k, np.zeros((1, len(files), *v.shape[2:]), np.float32))[:, idx] = v
  prep = method.preprocessing(static)
  images = np.stack([(resize_image(img, tuple(static.image_size), prep) * 255.0 + 0.5).astype(np.uint8)
                     for img in raw])  # display images for the overlays, at the maps' size
  out.mkdir(parents=True, exist_ok=True)
  threshold = validation_threshold(run_dir, slot)
  rows = []
  for i, f in enumerate(files):
    rows.append({"file": str(f), "score": float(preds["score"][0, i]), "map_score": float(preds["map_score"][0, i]),
                 **({"anomalous": bool(preds["score"][0, i] > threshold)} if threshold is not None else {})})
  report.write_tables(rows, out, stem="scores")
  np.save(out / "anomaly_maps.npy", preds["anomaly_map"][0])
  report.save_overlays(images, preds["anomaly_map"][0], None, names, preds["score"][0],
                       out / "overlays", max_images=len(files))
  print(report.markdown_table(rows))
  if threshold is not None:
    print(f"threshold: validation 99th percentile of normal scores = {threshold:.4f}")
  print(f"written to {out}")
  return 0
