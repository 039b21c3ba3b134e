"""Atomic, resumable checkpoints with orbax.

A checkpoint holds the stacked `TrainState` (leading M axis) and a JSON record (config,
hyperparameters, data-order state, provenance). Orbax writes each step into a temporary
folder and renames it when complete, so a run killed mid-save resumes from the previous
complete step. Resume precedence: the latest complete step in the work directory; else a
fresh start. `replace` swaps a step's checkpoint for another (EfficientAD's calibrated states)
by renames, so a kill leaves the old or the new one, never neither.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jaxad.errors import JaxadError


class Checkpointer:
  """Saves and restores (state, meta) under `workdir/checkpoints/<step>`."""

  def __init__(self, workdir: str | Path, max_to_keep: int = 2):
    self.directory = Path(workdir).absolute() / "checkpoints"
    _finish_interrupted_replace(self.directory)
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                                             enable_async_checkpointing=False))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
    self.manager.wait_until_finished()

  def replace(self, step: int, state, meta: dict) -> None:
    """Replaces step `step`'s checkpoint: the new one is saved in a staging folder beside this one, then
    the two are swapped by renames (orbax's delete removes files in place: a kill mid-delete left a
    step that looked complete and could not be read)."""
    parent = self.directory.parent
    shutil.rmtree(parent / _STAGING, ignore_errors=True)
    staging = Checkpointer(parent / _STAGING, max_to_keep=1)
    staging.save(step, state, meta)
    staging.close()
    old = parent / f"{_REPLACED}{step}"
    shutil.rmtree(old, ignore_errors=True)
    os.rename(self.directory / str(step), old)
    os.rename(parent / _STAGING / "checkpoints" / str(step), self.directory / str(step))
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(parent / _STAGING, ignore_errors=True)
    self.manager.reload()

  def restore(self, step: int, like_state):
    """Returns (state, meta); `like_state` gives the tree structure, shapes and dtypes."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
    self._check_shapes(step, abstract)
    out = self._restore(step, ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                 meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def restore_meta(self, step: int) -> dict:
    return self._restore(step, ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

  def _check_shapes(self, step: int, abstract) -> None:
    """Refuses, before orbax reads anything, a checkpoint whose arrays have other shapes than the model of these
    settings (config.json edited after training, a resume with other settings): orbax would fail mid-read with a
    long traceback."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)  # orbax warns about metadata files older checkpoints lack
    try:
      meta = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "state").item_metadata
      tree = getattr(meta, "tree", meta)
      stored = {_leaf_name(p): tuple(x.shape) for p, x in
                jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))[0]}
    except Exception:  # unreadable metadata: the restore itself reports the damage
      return
    finally:
      absl_logger.setLevel(level)
    for path, x in jax.tree_util.tree_flatten_with_path(abstract)[0]:
      name = _leaf_name(path)
      if name in stored and stored[name] != tuple(x.shape):
        raise JaxadError(f"checkpoint {self.directory / str(step)} holds another model than these settings build: "
                         f"{name} has shape {stored[name]} there, {tuple(x.shape)} here (was config.json edited, or "
                         "a resumed run given other settings?)")

  def _restore(self, step: int, args):
    """orbax's restore; a damaged checkpoint becomes one JaxadError."""
    _quiet_failed_reads()
    try:
      return self.manager.restore(step, args=args)
    except Exception as e:  # orbax raises many types, each with a long chained traceback
      first = next((line for line in str(e).splitlines() if line.strip()), "").split(" See full")[0][:300]
      failure = f"{type(e).__name__}: {first}"
    gc.collect()  # after the except block, which kept the failed reads alive through its traceback
    raise JaxadError(f"checkpoint {self.directory / str(step)} is damaged or holds another model than these "
                     f"settings build ({failure})")

  def close(self) -> None:
    self.manager.close()


_STAGING = ".checkpoint_staging"  # beside checkpoints/: a replacement being written
_REPLACED = ".checkpoint_replaced_"  # + step: the replaced checkpoint until its replacement is in place


def _finish_interrupted_replace(directory: Path) -> None:
  """After a kill inside `replace`: the replaced step comes back if its replacement is not in place (a
  leftover staging folder is cleared by the next `replace`)."""
  for old in directory.parent.glob(f"{_REPLACED}*"):
    step_dir = directory / old.name[len(_REPLACED):]
    if step_dir.exists():
      shutil.rmtree(old, ignore_errors=True)
    else:
      os.rename(old, step_dir)


def _leaf_name(path) -> str:
  """A leaf's key path as orbax names it ("opt_state.0.mu.adaptor.kernel")."""
  return ".".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _quiet_failed_reads() -> None:
  """Keeps what a failed restore leaves behind from printing around jaxad's one-line error: the read
  coroutines' errors (one long TensorStore report each) when they are collected, asyncio's log of
  their tasks' unretrieved errors, and the "Event loop is closed" errors of reads that complete
  after orbax closed its event loop. Installed once, before the first restore; every other error
  still prints."""
  if getattr(sys.unraisablehook, "jaxad_quiet_orbax", False):
    return
  previous = sys.unraisablehook

  def unraisable_hook(unraisable):
    code = getattr(unraisable.object, "cr_code", None)
    tb = unraisable.exc_traceback
    closed_loop = (unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed"
                   and tb is not None and tb.tb_frame.f_code.co_name == "call_soon_threadsafe")
    if not (closed_loop or (code is not None and "orbax" in code.co_filename)):
      previous(unraisable)

  unraisable_hook.jaxad_quiet_orbax = True
  sys.unraisablehook = unraisable_hook
  warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
  # jaxad runs no asyncio code of its own: orbax's restore is the only source of these.
  logging.getLogger("asyncio").addFilter(lambda record: "exception was never retrieved" not in record.getMessage())
