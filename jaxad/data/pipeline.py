"""Seeded grain input pipelines with checkpointable iterators (training and evaluation).

Reference: the methods' PyTorch loaders iterate epoch by epoch (shuffled training loader,
ordered test loader; methods.md §2.1, §3.2, §4.5). jaxad keeps epoch boundaries: a batch
never mixes two epochs, so "epochs" mean the same as in the papers. Deviation: the last
partial batch of a training epoch is dropped by default (`drop_remainder=True`) so that the
compiled train step sees one shape; the references keep it.

Pipeline (grain `MapDataset` → `IterDataset`):
  source → record of epoch e, position k: `EpochOrder.indices(e)[k]` → `Resize`
  → `RandomFlip` (optional, seeded per stream position) → `Finalize` → epoch-aligned batches
  → thread prefetch → optional worker processes (`worker_count`).

Everything is a function of (seed, position): the same seed gives the same batches on any
machine and with any `worker_count`, and the iterator's state (`get_state()` /
`set_state()`, or orbax through `grain.checkpoint.CheckpointSave` / `CheckpointRestore`
with `grain.checkpoint.CheckpointHandler`) is just the position, so a restored run sees
exactly the batches the uninterrupted run would have seen.

Batch keys (numpy, B = batch size):
  image (B, H, W, 3) float32, ImageNet-normalised (or [0, 1] if `normalize=False`);
  mask (B, H, W) float32 in {0, 1}; label (B,) int32; is_segmented (B,) bool;
  index (B,) int32, the record's index in the source;
  components (B, H, W) int32 connected-component labels (eval, or `with_components=True`).
  Evaluation batches add valid (B,) bool (False on padding) and the host-only string arrays
  defect_type (B,) and file_name (B,); drop those two before passing a batch to jax.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Callable, Literal, Sequence

import grain
import numpy as np

from jaxad.data.sources import Source
from jaxad.data.grain_maps import Finalize, RandomFlip, Resize
from jaxad.data.transforms import PreprocessConfig, as_size
from jaxad.errors import ConfigError, DataError

# epoch -> record indices of that epoch (same length every epoch); must be a pure function
# of the epoch (and whatever seed it closes over) so that runs can be resumed.
IndexSampler = Callable[[int], Sequence[int]]
Remainder = Literal["drop", "keep", "pad"]

TRAIN_KEYS = ("image", "mask", "label", "is_segmented", "index")
HOST_ONLY_KEYS = ("defect_type", "file_name")


class EpochOrder:
  """The record indices of each epoch: in order, a seeded permutation, or a custom sampler."""

  _CACHED_EPOCHS = 4

  def __init__(self, num_records: int, *, shuffle: bool, seed: int, index_sampler: IndexSampler | None = None):
    if num_records < 1:
      raise DataError("the data source has no samples")
    self.num_records = num_records
    self.shuffle = shuffle
    self.seed = seed
    self.index_sampler = index_sampler
    first = self._compute(0)
    self.epoch_length = len(first)
    self._cache: dict[int, np.ndarray] = {0: first}

  def _compute(self, epoch: int) -> np.ndarray:
    if self.index_sampler is not None:
      indices = np.asarray(self.index_sampler(epoch), dtype=np.int64).reshape(-1)
      if indices.size == 0 or indices.min() < 0 or indices.max() >= self.num_records:
        raise ConfigError(f"index_sampler returned {indices.size} indices for epoch {epoch}, "
                          f"expected a non-empty list in [0, {self.num_records})")
      if epoch > 0 and indices.size != self.epoch_length:
        raise ConfigError(f"index_sampler returned {indices.size} indices for epoch {epoch} but "
                          f"{self.epoch_length} for epoch 0; every epoch must have the same length")
      return indices
    if self.shuffle:
      return np.random.default_rng((self.seed, epoch)).permutation(self.num_records)
    return np.arange(self.num_records)

  def indices(self, epoch: int) -> np.ndarray:
    """The record indices of `epoch` (cached for a few epochs; safe to race on)."""
    cached = self._cache.get(epoch)
    if cached is None:
      cached = self._compute(epoch)
      if len(self._cache) >= self._CACHED_EPOCHS:
        self._cache.clear()
      self._cache[epoch] = cached
    return cached


class _EpochStream(grain.MapDataset):
  """Position p of the concatenated epochs → the parent's record `order.indices(p // L)[p % L]`."""

  def __init__(self, parent: grain.MapDataset, order: EpochOrder, num_epochs: int | None):
    super().__init__(parent)
    self._order = order
    self._num_epochs = num_epochs

  def __len__(self) -> int:
    return sys.maxsize if self._num_epochs is None else self._num_epochs * self._order.epoch_length

  def __str__(self) -> str:
    return f"_EpochStream(epoch_length={self._order.epoch_length}, num_epochs={self._num_epochs})"

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, offset = divmod(index, self._order.epoch_length)
    record = int(self._order.indices(epoch)[offset])
    return {**self._parent[record], "index": np.int32(record)}


def stack_batch(items: list[dict[str, Any]], keys: Sequence[str], pad_to: int | None = None) -> dict[str, np.ndarray]:
  """Stacks per-sample dicts into a batch; with `pad_to`, repeats the last sample and adds `valid`."""
  num_valid = len(items)
  if pad_to is not None:
    items = items + [items[-1]] * (pad_to - num_valid)
  batch = {key: np.stack([np.asarray(item[key]) for item in items]) for key in keys}
  if pad_to is not None:
    batch["valid"] = np.arange(pad_to) < num_valid
  return batch


class _EpochBatches(grain.MapDataset):
  """Batch j = consecutive stream positions inside one epoch (never across epochs)."""

  def __init__(self, parent: grain.MapDataset, *, epoch_length: int, batch_size: int, remainder: Remainder,
               num_epochs: int | None, keys: Sequence[str]):
    super().__init__(parent)
    self._epoch_length = epoch_length
    self._batch_size = batch_size
    self._remainder = remainder
    self._num_epochs = num_epochs
    self._keys = tuple(keys)
    rounding = math.floor if remainder == "drop" else math.ceil
    self.batches_per_epoch = rounding(epoch_length / batch_size)

  def __len__(self) -> int:
    return sys.maxsize if self._num_epochs is None else self._num_epochs * self.batches_per_epoch

  def __str__(self) -> str:
    return f"_EpochBatches(batch_size={self._batch_size}, remainder={self._remainder})"

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    epoch, batch_in_epoch = divmod(index, self.batches_per_epoch)
    start = epoch * self._epoch_length + batch_in_epoch * self._batch_size
    stop = min(start + self._batch_size, (epoch + 1) * self._epoch_length)
    items = [self._parent[position] for position in range(start, stop)]
    return stack_batch(items, self._keys, pad_to=self._batch_size if self._remainder == "pad" else None)


@dataclasses.dataclass(frozen=True)
class Loader:
  """An iterable of batches; `iter(loader)` is a checkpointable grain `DatasetIterator`.

  Attributes:
    dataset: the grain IterDataset.
    steps_per_epoch: batches per epoch.
    num_epochs: None when infinite.
  """

  dataset: grain.IterDataset
  steps_per_epoch: int
  num_epochs: int | None

  @property
  def num_batches(self) -> int | None:
    return None if self.num_epochs is None else self.num_epochs * self.steps_per_epoch

  def __iter__(self) -> grain.DatasetIterator:
    return iter(self.dataset)


def _mark_absl_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside an absl app they are not parsed yet."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def _build(source: Source, *, batch_size: int, image_size, preprocessing: PreprocessConfig, order: EpochOrder,
           num_epochs: int | None, remainder: Remainder, flips: bool, seed: int, with_components: bool,
           keys: Sequence[str], worker_count: int, read_threads: int, prefetch_batches: int) -> Loader:
  if batch_size < 1:
    raise ConfigError(f"batch_size must be positive, got {batch_size}")
  if num_epochs is not None and num_epochs < 1:
    raise ConfigError(f"num_epochs must be positive or None (infinite), got {num_epochs}")
  if worker_count < 0:
    raise ConfigError(f"worker_count must be >= 0, got {worker_count}")
  records = _EpochStream(grain.MapDataset.source(source), order, num_epochs)
  records = records.map(Resize(as_size(image_size), preprocessing))
  if flips:
    records = records.random_map(RandomFlip(), seed=seed)
  records = records.map(Finalize(normalize=preprocessing.normalize, with_components=with_components))
  batches = _EpochBatches(records, epoch_length=order.epoch_length, batch_size=batch_size, remainder=remainder,
                          num_epochs=num_epochs, keys=keys)
  if batches.batches_per_epoch < 1:
    raise ConfigError(f"an epoch of {order.epoch_length} samples has no full batch of {batch_size}; "
                      f"lower batch_size or set drop_remainder=False")
  dataset = batches.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches))
  if worker_count > 0:
    _mark_absl_flags_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
  return Loader(dataset=dataset, steps_per_epoch=batches.batches_per_epoch, num_epochs=num_epochs)


def make_loader(source: Source, *, batch_size: int, image_size: int | tuple[int, int],
                preprocessing: PreprocessConfig = PreprocessConfig(), shuffle: bool = True, seed: int = 0,
                num_epochs: int | None = 1, drop_remainder: bool = True, worker_count: int = 0,
                index_sampler: IndexSampler | None = None, with_components: bool = False, read_threads: int = 2,
                prefetch_batches: int = 2) -> Loader:
  """A seeded, resumable training loader (batch keys in the module docstring).

  Args:
    source: `FolderSource`, `TfdsSource` or anything with `__len__` and `__getitem__` → Sample.
    batch_size: samples per batch.
    image_size: output (H, W) or side length.
    preprocessing: resize / flip / normalisation settings of the method.
    shuffle: draw a fresh seeded permutation of the records every epoch.
    seed: seeds the permutations and the random flips.
    num_epochs: number of epochs, or None to repeat forever.
    drop_remainder: drop the last partial batch of each epoch (otherwise it is kept, smaller).
    worker_count: worker processes (0: decode in this process); the batches do not depend on it.
    index_sampler: `epoch -> record indices`, replacing the shuffle (e.g. SuperSimpleNet's
      balanced supervised epochs); must return the same number of indices every epoch.
    with_components: also return connected-component labels.
    read_threads: threads decoding batches in each process (0: none).
    prefetch_batches: batches buffered ahead in each process.

  Raises:
    ConfigError: invalid sizes or counts. DataError: an empty source.
  """
  order = EpochOrder(len(source), shuffle=shuffle, seed=seed, index_sampler=index_sampler)
  keys = TRAIN_KEYS + (("components",) if with_components else ())
  return _build(source, batch_size=batch_size, image_size=image_size, preprocessing=preprocessing, order=order,
                num_epochs=num_epochs, remainder="drop" if drop_remainder else "keep",
                flips=preprocessing.random_flips, seed=seed, with_components=with_components, keys=keys,
                worker_count=worker_count, read_threads=read_threads, prefetch_batches=prefetch_batches)


def make_eval_batches(source: Source, *, batch_size: int, image_size: int | tuple[int, int],
                      preprocessing: PreprocessConfig = PreprocessConfig(), with_components: bool = True,
                      worker_count: int = 0, read_threads: int = 2, prefetch_batches: int = 2) -> Loader:
  """One ordered pass over `source` in equal-shaped batches; the last is padded (see `valid`).

  No shuffling and no random flips (whatever `preprocessing.random_flips` says).
  """
  order = EpochOrder(len(source), shuffle=False, seed=0)
  keys = TRAIN_KEYS + (("components",) if with_components else ()) + HOST_ONLY_KEYS
  return _build(source, batch_size=batch_size, image_size=image_size, preprocessing=preprocessing, order=order,
                num_epochs=1, remainder="pad", flips=False, seed=0, with_components=with_components, keys=keys,
                worker_count=worker_count, read_threads=read_threads, prefetch_batches=prefetch_batches)
