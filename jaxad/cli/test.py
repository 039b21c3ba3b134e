"""`jaxad test`: evaluate a trained run (from its work directory) on the test split again: test_report.*
(metrics) beside the fit's report.*, and test_scores.csv (per-image scores: the fit's file again, to float
rounding, on the run's own data in float32; test_scores_on_<data>.csv, test_scores_bfloat16.csv otherwise)."""

from __future__ import annotations


def register(subparsers) -> None:
  from jaxad.cli.data import add_layout_arguments
  p = subparsers.add_parser("test", help="evaluate a trained model on the test split", description=__doc__)
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run")
  p.add_argument("--category", action="append", default=None, help="category (repeatable); default: all in workdir")
  p.add_argument("--data", default=None, help="dataset to test on (default: the one the run trained on, with its "
                 "layout flags; layout flags given here override the recorded ones). Another dataset's report is "
                 "test_report_on_<its folder name>.*, beside the run's own")
  p.add_argument("--overlays", type=int, default=None,
                 help="heatmap overlay PNGs per category, written to test_overlays[_bfloat16]/ (default: the "
                      "run's own count)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="inference precision (bfloat16 writes test_report_bfloat16.*)")
  add_layout_arguments(p)
  p.set_defaults(func=main)


def main(args) -> int:
  import re
  from pathlib import Path
  from jaxad.cli.data import layout_options
  from jaxad.evaluate import evaluator, report
  from jaxad.infer import InferenceEngine
  from jaxad.run import _member_hparams, find_run_dir, load_trained, same_path
  from jaxad.train.data import load_split

  root = Path(args.workdir)
  if args.category:
    dirs = [find_run_dir(root, c) for c in args.category]
  else:
    dirs = sorted(p.parent for p in root.glob("*/config.json")) or [find_run_dir(root, None)]  # raises why none
  rows = []
  for d in dirs:
    method, static, hps_M, states, (features_fn, frozen_vars), record = load_trained(d)
    data = args.data or record["run"]["data"]
    same_data = args.data is None or same_path(args.data, record["run"]["data"])
    options = {**(record["run"].get("data_options", {}) if same_data else {}), **layout_options(args)}
    test = load_split(data, record["category"], "test", static.image_size, method.preprocessing(static),
                      with_components=True, original_masks=evaluator.scores_at_original_size(static),
                      val_fraction=record["run"]["val_fraction"],
                      seed=record["run"]["data_seed"], **options)
    engine = InferenceEngine(method, static, states, (features_fn, frozen_vars), dtype=args.dtype)
    print(f"[{record['category'] or 'default'}] testing on {len(test.label)} images ({args.dtype})", flush=True)
    preds = engine.predict_array(test.image, progress=True)
    hp_rows = _member_hparams(hps_M)
    cat_rows = [{"category": record["category"] or "default", "member": m, **hp_rows[m], **r}
                for m, r in enumerate(evaluator.score_members(preds, test, method.official_image_scores))]
    other_name = "" if same_data else Path(args.data).expanduser().resolve().name
    on_other = f"_on_{re.sub(r'[^A-Za-z0-9.-]+', '_', other_name)}" if other_name else ""
    suffix = on_other + ("" if args.dtype == "float32" else f"_{args.dtype}")
    report.write_image_scores(d, test, preds, stem=f"test_scores{suffix}")
    report.write_tables(cat_rows, d, stem=f"test_report{suffix}")
    overlays = record["run"].get("overlays", 12) if args.overlays is None else args.overlays
    report.save_member_overlays(d, test, preds, overlays, folder=f"test_overlays{suffix}")
    print(f"{d}: test_report{suffix}.{{json,csv,md}}, test_scores{suffix}.csv"
          + (f", test_overlays{suffix}/" if overlays > 0 else ""))
    rows += cat_rows
  one_member = len({r["member"] for r in rows}) == 1  # a mean over the categories, never over members
  print(report.markdown_table(report.with_mean(rows) if one_member else rows))
  return 0
