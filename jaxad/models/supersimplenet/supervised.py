"""SuperSimpleNet's supervised training protocol (KSDD2 / SensumSODF; methods.md §3.9).

Official reference: `datamodules/base/dataset.py` (`SSNDataset`). An epoch holds every
anomalous training image four times — as is, flipped vertically, flipped horizontally and
rotated by 180° — and as many normal images, drawn by inverse retrieval-frequency
sampling (p ∝ ((1 − f/max f) − median + 1)^(4·ln N), renormalised; without replacement when
there are enough normal images); the epoch is shuffled. JIMS additionally dilates the
masks of anomalous training images (7×7) and weights the map losses by a per-component
distance transform (w·(d/max d)^p inside each defect, 1 elsewhere). Weakly labelled
anomalous images (`is_segmented=False`) have all-zero masks and only train the score.

Everything is a pure function of (data seed, epoch), so a resumed run draws the same
epochs: the retrieval frequencies are replayed from epoch 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxad.errors import DataError
from jaxad.train.loop import SplitData

_FLIPS = (lambda a: a[:, ::-1], lambda a: a[:, :, ::-1], lambda a: a[:, ::-1, ::-1])  # v, h, 180°


def distance_weights(mask_HxW: np.ndarray, w: float, p: float) -> np.ndarray:
  """Per 8-connected component: EDT normalised to its max, ^p, ×w; 1 outside the mask."""
  labels, n = ndimage.label(mask_HxW > 0, structure=np.ones((3, 3)))
  out = np.zeros(mask_HxW.shape, np.float64)
  for i in range(1, n + 1):
    dist = ndimage.distance_transform_edt(labels == i)
    if dist.max() > 0:
      out += (dist / dist.max()) ** p * w
  out[mask_HxW == 0] = 1.0
  return out.astype(np.float32)


def prepare_train(static, train: SplitData, data_seed: int):
  """Expands the train split for the supervised protocol; returns (expanded split, sampler).

  The expanded split is [positives, v-flipped, h-flipped, 180°-rotated positives, negatives];
  `sampler(epoch)` returns the epoch's indices into it (length 8·P with flips, 2·P without).
  """
  pos = np.flatnonzero(train.label == 1)
  neg = np.flatnonzero(train.label == 0)
  if len(pos) == 0:
    raise DataError("supervised training needs anomalous images in the train split")
  masks = train.mask.copy()
  if static.dilate:
    seg_pos = pos[train.is_segmented[pos]]
    masks[seg_pos] = ndimage.grey_dilation(masks[seg_pos], size=(1, static.dilate, static.dilate))
  parts = [(train.image[pos], masks[pos], pos)]
  if static.flips:
    parts += [(f(train.image[pos]), f(masks[pos]), pos) for f in _FLIPS]
  parts.append((train.image[neg], masks[neg], neg))
  image = np.concatenate([np.ascontiguousarray(p[0]) for p in parts])
  mask = np.concatenate([np.ascontiguousarray(p[1]) for p in parts])
  src = np.concatenate([p[2] for p in parts])
  weight = None
  if static.distance_transform:
    w, p = static.distance_transform
    weight = np.stack([distance_weights(m, w, p) if train.label[s] == 1 else np.ones(m.shape, np.float32)
                       for m, s in zip(mask, src)])
  expanded = dataclasses.replace(
      train, image=image, mask=mask, label=train.label[src], is_segmented=train.is_segmented[src],
      file_name=[train.file_name[i] for i in src] if train.file_name else [],
      defect_type=[train.defect_type[i] for i in src] if train.defect_type else [], loss_weight=weight)
  n_pos_entries = len(src) - len(neg)
  return expanded, make_sampler(n_pos_entries, len(neg), data_seed)


def make_sampler(n_pos_entries: int, n_neg: int, data_seed: int):
  """sampler(epoch) -> shuffled indices: all positive entries + as many inverse-frequency negatives."""
  replace = n_pos_entries > n_neg
  history: list[np.ndarray] = []  # negative indices drawn in each epoch, replayed deterministically

  def negatives(epoch: int) -> np.ndarray:
    while len(history) <= epoch:
      e = len(history)
      rng = np.random.default_rng([data_seed, e, 1])
      if e == 0:
        drawn = rng.choice(n_neg, size=max(n_pos_entries, n_neg) if not replace else n_pos_entries,
                           replace=replace)[:n_pos_entries]
      else:
        freq = np.bincount(np.concatenate(history), minlength=n_neg).astype(np.float64)
        prob = 1.0 - freq / freq.max()
        prob = (prob - np.median(prob) + 1.0) ** (np.log(n_neg) * 4)
        drawn = rng.choice(n_neg, size=n_pos_entries, p=prob / prob.sum(), replace=replace)
      history.append(drawn)
    return history[epoch]

  def sampler(epoch: int) -> np.ndarray:
    entries = np.concatenate([np.arange(n_pos_entries), n_pos_entries + negatives(epoch)])
    return entries[np.random.default_rng([data_seed, epoch, 2]).permutation(len(entries))]

  return sampler
