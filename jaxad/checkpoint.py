"""Atomic, resumable checkpoints with orbax.

A checkpoint holds the stacked `TrainState` (leading M axis) and a JSON record (config,
hyperparameters, data-order state, provenance). Orbax writes each step into a temporary
folder and renames it when complete, so a run killed mid-save resumes from the previous
complete step. Resume precedence: the latest complete step in the work directory; else a
fresh start.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores (state, meta) under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str | Path, max_to_keep: int = 2):
    self.directory = Path(workdir).absolute() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
    self.manager.wait_until_finished()

  def restore(self, step: int, like_state):
    """Returns (state, meta); `like_state` gives the tree structure, shapes and dtypes."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def restore_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def close(self) -> None:
    self.manager.close()
