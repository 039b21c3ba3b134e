"""`jaxad test`: evaluate a trained run (from its work directory) on the test split again."""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("test", help="evaluate a trained model on the test split", description=__doc__)
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad fit` run")
  p.add_argument("--category", action="append", default=None, help="category (repeatable); default: all in workdir")
  p.add_argument("--data", default=None, help="dataset to test on (default: the one the run trained on)")
  p.add_argument("--overlays", type=int, default=12, help="number of heatmap overlay PNGs per category")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="inference precision (bfloat16 writes test_report_bfloat16.*)")
  p.set_defaults(func=main)


def main(args) -> int:
  from pathlib import Path
  from jaxad.evaluate import evaluator, report
  from jaxad.infer import InferenceEngine
  from jaxad.run import _member_hparams, find_run_dir, load_trained
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
    options = record["run"].get("data_options", {}) if data == record["run"]["data"] else {}
    test = load_split(data, record["category"], "test", static.image_size, method.preprocessing(static),
                      with_components=True, original_masks=evaluator.scores_at_original_size(static),
                      val_fraction=record["run"]["val_fraction"],
                      seed=record["run"]["data_seed"], **options)
    engine = InferenceEngine(method, static, states, (features_fn, frozen_vars), dtype=args.dtype)
    preds = engine.predict_array(test.image)
    hp_rows = _member_hparams(hps_M)
    cat_rows = [{"category": record["category"], "member": m, **hp_rows[m], **r}
                for m, r in enumerate(evaluator.score_members(preds, test, method.official_image_scores))]
    report.write_tables(cat_rows, d, stem="test_report" if args.dtype == "float32" else f"test_report_{args.dtype}")
    report.save_member_overlays(d, test, preds, args.overlays)
    rows += cat_rows
  print(report.markdown_table(report.with_mean(rows)))
  return 0
