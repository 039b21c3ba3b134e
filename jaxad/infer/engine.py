"""Inference engine: a trained model's predict compiled once per (input shape, dtype) and streamed.

One jitted function runs everything on the device: pre-processing (uint8 → resize → ImageNet
normalisation, `preprocess.py`; skipped for float inputs, which are taken as already prepared
network inputs), frozen features, the method's `predict` for the M stacked members (heads, map
upsampling, blur, method-specific normalisation), then float32 map post-processing (optional
resize to the input size and normalisation to a (lo, hi) range).

Precision: "float32", or "bfloat16": every floating parameter (members and frozen backbone) is
cast to bfloat16 once, the network input is cast after pre-processing, so all layers run on
bfloat16 activations (modules follow their inputs' dtype; the frozen backbone follows its
variables'); outputs are returned as float32. Score thresholds (validation.json, an export's
meta.json) are quantiles of float32 validation scores: a bfloat16 score near one can fall on the
other side of it than the float32 score would (`jaxad predict` compares both as float32).

Inputs: a batch (B, H, W, 3), either uint8 RGB of any size (pre-processed on the device) or
floating network inputs of the model's size (normalised as `preprocess.py` does). Anything else
(uint16 or other integer dtypes, gray (B, H, W) or (B, H, W, 1), RGBA, a single image without the
batch axis) is a DataError naming the problem: `jaxad.data.images.load_image` gives the uint8 RGB
images the engine takes (16-bit → high byte, gray → three channels, alpha dropped).

Parameters: passed to the compiled program as arguments (default), or, with `constant_params=True`,
baked into it as constants: a call then hands XLA one array instead of one per parameter array,
which takes host time off every call (what batch-1 latency is made of) at the cost of a longer
compilation and a program tied to these weights.

Streaming (`stream`, `predict_array`): batch i+1 is put on the device while batch i computes
(jax dispatches asynchronously) and outputs start their device-to-host copy as soon as they are
ready; all batches have the same shape (the last one is padded), so a stream compiles once.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.errors import ConfigError, DataError
from jaxad.infer.preprocess import preprocess_images
from jaxad.ops.resize import resize

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
MAP_SIZES = ("model", "input")


def cast_floats(tree, dtype):
  """Casts every floating leaf of a pytree to `dtype` (one compiled program, not one per leaf)."""
  def cast(x):
    return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
  return jax.jit(lambda t: jax.tree.map(cast, t))(tree)


def check_images(images_BxHxWx3) -> None:
  """DataError unless `images_BxHxWx3` is a (B, H, W, 3) batch of uint8 or floating values (trace time only)."""
  shape, dtype = tuple(images_BxHxWx3.shape), np.dtype(images_BxHxWx3.dtype)
  hint = "; jaxad.data.images.load_image decodes files as the uint8 RGB images the engine takes"
  if len(shape) != 4 or shape[-1] != 3:
    if len(shape) == 3 and shape[-1] == 3:
      fix = "one image needs a batch axis: images[None]"
    elif len(shape) == 3 or (len(shape) == 4 and shape[-1] == 1):
      fix = "gray images: repeat the channel, np.repeat(images.reshape(*images.shape[:3], 1), 3, axis=-1)"
    elif len(shape) == 4 and shape[-1] == 4:
      fix = "RGBA images: drop the alpha channel, images[..., :3]"
    else:
      fix = "RGB images, channels last"
    raise DataError(f"images must be a (B, H, W, 3) RGB batch, got shape {shape}; {fix}{hint}")
  if dtype != np.uint8 and not jnp.issubdtype(dtype, jnp.floating):
    fix = (" (16-bit: keep the high byte, (images >> 8).astype(np.uint8))" if dtype == np.uint16 else
           " (e.g. images.astype(np.uint8) for values in 0..255)" if jnp.issubdtype(dtype, jnp.integer) else "")
    raise DataError(f"images must be uint8 (0..255) or floating network inputs, got {dtype}: convert them to "
                    f"uint8 RGB{fix}{hint}")


def pad_batch(chunk_NxHxWx3: np.ndarray, batch_size: int) -> np.ndarray:
  """`chunk` (1..batch_size images) padded to `batch_size` with copies of its last image, so that every
  batch of one image shape compiles once; callers drop the padded rows' outputs."""
  n = len(chunk_NxHxWx3)
  if n == batch_size:
    return chunk_NxHxWx3
  return np.concatenate([chunk_NxHxWx3, np.repeat(chunk_NxHxWx3[-1:], batch_size - n, axis=0)])


def forward(method, static, features_fn, compute_dtype, map_size: str, states_M, frozen_vars, images_BxHxWx3,
            map_range=None):
  """The traced computation: {"score": (M, B), "map_score": (M, B), "anomaly_map": (M, B, h, w)} in float32.

  `map_range` = (lo_M, hi_M) or None; maps become (map − lo) / (hi − lo) per member.
  """
  check_images(images_BxHxWx3)
  image_hw = tuple(static.image_size)
  if jnp.issubdtype(images_BxHxWx3.dtype, jnp.floating):
    if tuple(images_BxHxWx3.shape[1:3]) != image_hw:
      raise DataError(f"prepared float images must be {image_hw}, got {tuple(images_BxHxWx3.shape[1:3])}; "
                      "pass uint8 images to have them resized on the device")
    x = images_BxHxWx3
  else:
    x = preprocess_images(images_BxHxWx3, image_hw, method.preprocessing(static))
  feats = features_fn(frozen_vars, x.astype(compute_dtype))
  out = jax.vmap(lambda s: method.predict(static, s, feats, image_hw))(states_M)
  out = {k: v.astype(jnp.float32) for k, v in out.items()}
  maps = out["anomaly_map"]
  if map_size == "input" and maps.shape[-2:] != images_BxHxWx3.shape[1:3]:
    maps = resize(maps, images_BxHxWx3.shape[1:3], "bilinear", align_corners=False, channels_last=False)
  if map_range is not None:
    lo, hi = (jnp.asarray(v, jnp.float32)[:, None, None, None] for v in map_range)
    maps = (maps - lo) / (hi - lo)
  out["anomaly_map"] = maps
  return out


class InferenceEngine:
  """Compiled, streaming predict of M stacked members of a trained model.

  Args:
    method, static: the method record and its resolved Static.
    states_M: stacked TrainStates (leading M axis; slice one member as `x[m:m + 1]`).
    frozen: (features_fn, frozen_vars) from `method.make_frozen(static)`.
    dtype: "float32" or "bfloat16" (see the module docstring).
    map_size: "model" (maps at static.image_size) or "input" (resized to each batch's input size;
      needs a plain resize, not SimpleNet's shorter-side resize + crop).
    map_range: optional (lo_M, hi_M) arrays: maps are normalised to (map − lo) / (hi − lo).
    device: where to run (default: the first device).
    constant_params: bake the parameters into the compiled program (see the module docstring).
  """

  def __init__(self, method, static, states_M, frozen, *, dtype: str = "float32", map_size: str = "model",
               map_range=None, device=None, constant_params: bool = False):
    if dtype not in DTYPES:
      raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if map_size not in MAP_SIZES:
      raise ConfigError(f"map_size must be one of {', '.join(MAP_SIZES)}, got {map_size!r}")
    if map_size == "input" and method.preprocessing(static).resize_shorter is not None:
      raise ConfigError(f"{method.name} resizes the shorter side and crops; its maps cannot be mapped back to the "
                        "input size (use map_size='model')")
    features_fn, frozen_vars = frozen
    self.method, self.static, self.dtype, self.map_size = method, static, dtype, map_size
    self.device = device or jax.devices()[0]
    self.members = int(jax.tree.leaves(states_M)[0].shape[0])
    compute_dtype = DTYPES[dtype]
    # predict reads params and batch_stats only: the optimiser state would cost memory and a
    # per-call argument check for each of its arrays
    states_M = states_M.replace(opt_state=None, step=None, alive=None)
    self.params = jax.device_put(cast_floats((states_M, frozen_vars), compute_dtype), self.device)
    self.map_range = None if map_range is None else jax.device_put(
        tuple(np.asarray(v, np.float32).reshape(self.members) for v in map_range), self.device)
    # pure (states, frozen_vars, images, map_range) → outputs, for jax.export and cost analysis
    self.forward = functools.partial(forward, method, static, features_fn, compute_dtype, map_size)
    self.constant_params = constant_params
    if constant_params:
      (states, frozen_vars), map_range = self.params, self.map_range
      self._fn = jax.jit(lambda images: self.forward(states, frozen_vars, images, map_range))
    else:
      self._fn = jax.jit(self.forward)

  def _args(self, images_BxHxWx3) -> tuple:
    if self.constant_params:
      return (images_BxHxWx3,)
    states, frozen_vars = self.params
    return states, frozen_vars, images_BxHxWx3, self.map_range

  def __call__(self, images_BxHxWx3):
    """One batch (host or device array) → dict of device arrays (dispatched asynchronously).

    `images_BxHxWx3`: uint8 RGB of any size, or floating network inputs of `static.image_size`;
    other dtypes, channel counts or ranks raise DataError (checked once per compilation).
    """
    return self._fn(*self._args(images_BxHxWx3))

  def compiled_count(self) -> int:
    """How many executables the engine holds (one per distinct input shape and dtype seen)."""
    return self._fn._cache_size()

  def lower(self, images_BxHxWx3):
    """`jax.stages.Lowered` for a batch like this one (cost analysis, ahead-of-time compilation)."""
    return self._fn.lower(*self._args(images_BxHxWx3))

  def stream(self, batches: Iterable[np.ndarray]) -> Iterator[dict]:
    """Yields host (numpy) outputs per batch; the next batch's transfer overlaps the current compute."""
    it = iter(batches)
    first = next(it, None)
    if first is None:
      return
    x = jax.device_put(first, self.device)
    pending = None
    for nxt in itertools.chain(it, [None]):
      out = self(x)  # dispatched; returns at once
      for v in out.values():
        v.copy_to_host_async()
      if nxt is not None:
        x = jax.device_put(nxt, self.device)  # host-to-device while `out` computes
      if pending is not None:
        yield jax.device_get(pending)
      pending = out
    yield jax.device_get(pending)

  def predict_batches(self, chunks: Iterable[np.ndarray], batch_size: int) -> Iterator[dict]:
    """Host outputs per chunk of 1..batch_size images (M, len(chunk), ...), pulling chunks lazily.

    Each chunk is padded to `batch_size` with copies of its last image (padded rows are dropped), so
    every batch of one image shape compiles once. Chunks are pulled (read, decoded) as `stream` needs
    them: when chunk i's outputs are yielded, chunks i + 1 (computing) and i + 2 (on its way to the
    device) have been pulled, no more.
    """
    if batch_size < 1:
      raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    valid: list[int] = []

    def padded():
      for chunk in chunks:
        n = len(chunk)
        if not 1 <= n <= batch_size:
          raise DataError(f"a chunk must hold 1 to {batch_size} images, got {n}")
        valid.append(n)
        yield pad_batch(chunk, batch_size)

    for i, out in enumerate(self.stream(padded())):
      yield {k: np.asarray(v)[:, :valid[i]] for k, v in out.items()}

  def predict_array(self, images_NxHxWx3: np.ndarray, batch_size: int = 16, progress: bool = False) -> dict:
    """Host outputs for N images: score (M, N), map_score (M, N), anomaly_map (M, N, h, w).

    Batches all have `batch_size` images (the last, or only, one is padded with copies of the last
    image; padded rows are dropped), so calls with any N compile once per (image shape, dtype).
    `progress` shows a bar over the images.
    """
    from tqdm.auto import tqdm
    n = len(images_NxHxWx3)
    if n == 0:
      raise DataError("no images to predict")
    chunks = (images_NxHxWx3[start:start + batch_size] for start in range(0, n, batch_size))
    parts: dict[str, list] = {}
    with tqdm(total=n, desc="predicting", unit="img", leave=False, disable=not progress) as bar:
      for out in self.predict_batches(chunks, batch_size):
        for k, v in out.items():
          parts.setdefault(k, []).append(v)
        bar.update(out["score"].shape[1])
    return {k: np.concatenate(v, axis=1) for k, v in parts.items()}
