"""`jaxad extract`: one member of a sweep as a single-model run folder for `jaxad test` / `jaxad predict`.

Example:  jaxad extract --workdir runs/sigma_sweep --member 5 --out runs/sigma_best
`--member` is the member number of the sweep table (sweep_results.csv); for a run without a
sweep.json it is the index on the run's M axis.
"""

from __future__ import annotations


def register(subparsers) -> None:
  p = subparsers.add_parser("extract", help="copy one sweep member into a single-model run folder",
                            description=__doc__)
  p.add_argument("--workdir", required=True, help="work directory of a `jaxad sweep` (or multi-member) run")
  p.add_argument("--member", type=int, required=True, help="member number (column `member` of the sweep table)")
  p.add_argument("--out", required=True, help="new run folder")
  p.add_argument("--category", action="append", default=None, help="category (repeatable); default: all")
  p.set_defaults(func=main)


def main(args) -> int:
  from jaxad.sweep.extract import extract_member
  written = extract_member(args.workdir, args.member, args.out, args.category)
  which = f" --category {written[0].name}" if len(written) > 1 else ""
  print(f"member {args.member} → {', '.join(map(str, written))}; use it with "
        f"`jaxad test --workdir {args.out}{which}` or `jaxad predict --workdir {args.out}{which} IMAGES`")
  return 0
