"""One member of a sweep (or of any multi-member run) as a single-member run directory.

The output is what `jaxad fit` writes for one model: `<out>/<category>/config.json`,
`checkpoints/<step>` (every state array with M = 1), `validation.json` (the member's
thresholds) and `provenance.json`, so `jaxad test` and `jaxad predict` use it as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax

from jaxad.checkpoint import Checkpointer
from jaxad.errors import JaxadError
from jaxad.run import load_trained, read_json
from jaxad.sweep import plan as plan_lib
from jaxad.sweep.runner import member_location


def extract_member(workdir: str | Path, member: int, out: str | Path, categories: list[str] | None = None) -> list[Path]:
  """Writes member `member` of the run in `workdir` to `out`; returns the category folders written.

  With a sweep (`workdir/sweep.json`) `member` is the sweep's global member number; otherwise it
  is the index on the run's M axis.
  """
  workdir, out = Path(workdir), Path(out)
  if (workdir / plan_lib.PLAN_FILE).exists():
    run_dir, slot = member_location(workdir, member)
  else:
    run_dir, slot = workdir, member
  cat_dirs = [run_dir / c for c in categories] if categories else sorted(p.parent for p in run_dir.glob("*/config.json"))
  if not cat_dirs:
    raise JaxadError(f"no trained categories under {run_dir} (expected <dir>/<category>/config.json)")
  if out.resolve() == run_dir.resolve():
    raise JaxadError(f"--out {out} is the run itself; give a new folder")
  taken = [str(out / d.name) for d in cat_dirs if (out / d.name).exists() and any((out / d.name).iterdir())]
  if taken:
    raise JaxadError(f"--out {out} already holds {', '.join(taken)}; give a new folder or delete it")
  written = []
  for cat_dir in cat_dirs:
    _, _, hps_M, states, _, record = load_trained(cat_dir)
    m = int(jax.tree.leaves(hps_M)[0].shape[0])
    if not 0 <= slot < m:
      raise JaxadError(f"{cat_dir} has members 0–{m - 1}; asked for {slot}")
    one = jax.tree.map(lambda x: x[slot:slot + 1], states)
    dest = out / cat_dir.name
    record = {**record, "hparams": {k: [v[slot]] for k, v in record["hparams"].items()},
              "run": {**record["run"], "workdir": str(out)},
              "extracted_from": {"dir": str(cat_dir), "member": member, "slot": slot}}
    source = Checkpointer(cat_dir)
    step = source.latest_step()
    meta = source.restore_meta(step)
    source.close()
    dest.mkdir(parents=True, exist_ok=True)
    target = Checkpointer(dest)
    target.save(step, one, {**meta, "alive": [meta["alive"][slot]], "config": record})
    target.close()
    if (cat_dir / "validation.json").exists():
      val = read_json(cat_dir / "validation.json")
      (dest / "validation.json").write_text(json.dumps(per_member(val, slot), indent=2))
    if (cat_dir / "provenance.json").exists():
      shutil.copy(cat_dir / "provenance.json", dest / "provenance.json")
    (dest / "config.json").write_text(json.dumps(record, indent=2))  # last: a run folder is complete or not one
    written.append(dest)
  return written


def per_member(stats, slot: int):
  """validation.json (nested dicts whose lists hold one value per member) cut to member `slot`."""
  if isinstance(stats, dict):
    return {k: per_member(v, slot) for k, v in stats.items()}
  return [stats[slot]] if isinstance(stats, list) else stats
