"""`jaxad export`: write a trained model's predict as a StableHLO artefact that jax alone can serve.

The artefact (a zip: predict.bin, params.npz, meta.json; see jaxad.export) takes uint8 images of
the exported size, any batch size, and returns score, map_score and the anomaly map; load it
with `jaxad.export.load(path)` (needs jax and numpy only).
"""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("export", help="serialise a trained model's predict (jax.export / StableHLO)",
                            description=__doc__)
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run or `jaxad sweep`")
  p.add_argument("--category", default=None, help="category sub-folder of the run (needed if it has several)")
  p.add_argument("--member", type=int, default=0,
                 help="member to export: the sweep's member number with a sweep workdir, else the run's (default 0)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="precision of the network")
  p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                 help="size of the uint8 images the artefact takes (default: the model's image size); give your "
                      "images' own size to get jaxad predict's scores: the artefact then resizes them itself")
  p.add_argument("--platforms", default=None,
                 help="comma-separated platforms to lower for, e.g. cpu,cuda (default: the current one)")
  p.add_argument("--embed-params", action="store_true",
                 help="bake the parameters into the program as constants (one self-contained file; calls pass "
                      "the images only)")
  p.add_argument("--out", default=None, help="output file (default <run>/model_<dtype>.jaxad; "
                                             "model_<dtype>_member<N>.jaxad for a run of several members)")
  p.set_defaults(func=main)


def main(args) -> int:
  from pathlib import Path
  from jaxad.run import find_member, output_suffix
  from jaxad.export import export_run

  run_dir, slot, sweep_member = find_member(args.workdir, args.category, args.member)
  suffix = output_suffix(run_dir, slot, sweep_member)
  out = Path(args.out) if args.out else run_dir / f"model_{args.dtype}{suffix}.jaxad"
  platforms = tuple(p.strip() for p in args.platforms.split(",")) if args.platforms else None
  path = export_run(run_dir, out, member=slot, dtype=args.dtype, input_hw=args.input_size,
                    platforms=platforms, embed_params=args.embed_params, sweep_member=sweep_member)
  member = slot if sweep_member is None else sweep_member
  print(f"exported {run_dir.name} (member {member}, {args.dtype}) to {path} ({path.stat().st_size / 1e6:.1f} MB)")
  return 0
