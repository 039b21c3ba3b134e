"""`jaxad predict`: score images (files or a folder) with a trained model; writes scores, maps and overlays.

Images are decoded and scored one batch at a time. "anomalous" (runs with a validation split) is
score > threshold, the 99th percentile of the run's float32 validation scores, compared as float32.
"""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("predict", help="score new images with a trained model", description=__doc__)
  p.add_argument("inputs", nargs="+", help="image files or folders of images (searched recursively, --out left out)")
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run or `jaxad sweep`")
  p.add_argument("--category", default=None, help="category sub-folder of the run (needed if it has several)")
  p.add_argument("--out", default=None, help="output folder (default <workdir>/<category>/predictions; "
                                             "predictions_member<N> for a run of several members)")
  p.add_argument("--member", type=int, default=0,
                 help="member to use: the sweep's member number with a sweep workdir, else the run's (default 0)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="inference precision; scores are float32 either way and compared as float32 with the "
                      "threshold, which comes from float32 validation scores (a bfloat16 score near it can fall on "
                      "the other side)")
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


def _image_shape(path) -> tuple:
  """(H, W, 3), the shape `load_image` decodes `path` to, read from the file's header."""
  from PIL import Image
  from jaxad.data.images import load_image
  try:
    with Image.open(path) as img:
      w, h = img.size
  except Exception:  # unreadable: load_image names the file and the problem
    return load_image(path).shape
  return (h, w, 3)


def predict_files(engine, files: list, batch_size: int, on_image=None):
  """Yields (indices into `files`, host outputs) per batch; the files are grouped by image size (read
  from their headers, first-seen order) and decoded batch by batch as the engine's stream pulls them
  (two batches ahead of the outputs), so memory does not grow with the number of files.
  `on_image(i, image)` sees each decoded image once."""
  import numpy as np
  from jaxad.data.images import load_image
  from jaxad.errors import DataError
  groups: dict[tuple, list[int]] = {}
  for i, f in enumerate(files):
    groups.setdefault(_image_shape(f), []).append(i)

  def decode(i, shape):
    image = load_image(files[i])
    if image.shape != shape:
      raise DataError(f"{files[i]} decodes to {image.shape}, its header says {shape}")
    if on_image is not None:
      on_image(i, image)
    return image

  for shape, idx in groups.items():
    parts = [idx[start:start + batch_size] for start in range(0, len(idx), batch_size)]
    chunks = (np.stack([decode(i, shape) for i in part]) for part in parts)
    yield from zip(parts, engine.predict_batches(chunks, batch_size))


def anomalous(scores_N, threshold: float):
  """scores_N > threshold, both as float32 (the threshold is a quantile of float32 validation scores;
  bfloat16 predictions arrive as float32): well defined at the threshold whatever numpy's promotion."""
  import numpy as np
  return np.asarray(scores_N, np.float32) > np.float32(threshold)


def main(args) -> int:
  import os
  import tempfile
  from pathlib import Path
  import numpy as np
  from jaxad.data.transforms import resize_image
  from jaxad.errors import ConfigError
  from jaxad.evaluate import report
  from jaxad.infer import InferenceEngine
  from tqdm.auto import tqdm
  from jaxad.run import find_member, load_trained, output_suffix, select_member, validation_threshold

  if args.batch_size < 1:
    raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
  run_dir, slot, sweep_member = find_member(args.workdir, args.category, args.member)
  out = Path(args.out) if args.out else run_dir / f"predictions{output_suffix(run_dir, slot, sweep_member)}"
  files, names = _collect(args.inputs, out)
  method, static, hps_M, states, frozen, _ = load_trained(run_dir)
  states = select_member(states, slot, run_dir)
  threshold = validation_threshold(run_dir, slot)
  # uint8 images go to the device as they are: resizing and normalisation run in the compiled
  # predict, one compilation per distinct image size (every batch is padded to --batch-size).
  engine = InferenceEngine(method, static, states, frozen, dtype=args.dtype)
  prep, n = method.preprocessing(static), len(files)
  out.mkdir(parents=True, exist_ok=True)
  # Per-image results only: scores in memory; maps and display images (at the maps' size, for the
  # overlays, which share one colour scale) in .npy files, so memory does not grow with the folder.
  with tempfile.TemporaryDirectory(dir=out, prefix=".predict-") as tmp:
    images_NxHxWx3 = np.lib.format.open_memmap(Path(tmp) / "images.npy", "w+", np.uint8,
                                               (n, *static.image_size, 3))

    def keep_display_image(i, image):
      images_NxHxWx3[i] = (resize_image(image, tuple(static.image_size), prep) * 255.0 + 0.5).astype(np.uint8)

    scores_N, map_scores_N, maps_NxHxW = np.zeros(n, np.float32), np.zeros(n, np.float32), None
    with tqdm(total=n, desc="predicting", unit="img", leave=False) as bar:
      for idx, pred in predict_files(engine, files, args.batch_size, keep_display_image):
        bar.update(len(idx))
        if maps_NxHxW is None:
          maps_NxHxW = np.lib.format.open_memmap(Path(tmp) / "anomaly_maps.npy", "w+", np.float32,
                                                 (n, *pred["anomaly_map"].shape[2:]))
        scores_N[idx], map_scores_N[idx] = pred["score"][0], pred["map_score"][0]
        maps_NxHxW[idx] = pred["anomaly_map"][0]
    flags_N = anomalous(scores_N, threshold) if threshold is not None else None
    rows = [{"file": str(f), "score": float(scores_N[i]), "map_score": float(map_scores_N[i]),
             **({"anomalous": bool(flags_N[i])} if flags_N is not None else {})} for i, f in enumerate(files)]
    report.write_tables(rows, out, stem="scores")
    report.save_overlays(images_NxHxWx3, maps_NxHxW, None, names, scores_N, out / "overlays", max_images=n)
    maps_NxHxW.flush()
    maps_NxHxW = images_NxHxWx3 = None  # unmapped before the move and the clean-up
    os.replace(Path(tmp) / "anomaly_maps.npy", out / "anomaly_maps.npy")
  print(report.markdown_table(rows))
  if threshold is not None:
    print(f"threshold: validation 99th percentile of normal scores = {threshold:.4f}")
    if args.dtype == "bfloat16":
      print("  (from float32 scores: a bfloat16 score near it can fall on the other side than its float32 score)")
  print(f"written to {out}")
  return 0
