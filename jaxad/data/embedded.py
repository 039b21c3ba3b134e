"""The embedded dataset: a small MVTec-AD-format tree generated on the fly from a seed.

jaxad's quick start and tests train on it; nothing is downloaded. `build_embedded` writes

  root/<category>/train/good/000.png ...
  root/<category>/test/good/000.png ...
  root/<category>/test/<defect>/000.png ...
  root/<category>/ground_truth/<defect>/000_mask.png   (0/255, same size as the image)
  root/README.txt, root/embedded.json                    (generator version, seed, parameters)

exactly as MVTec AD lays out its categories, so the MVTec reader reads it.

| category | kind                                  | normal variability                 | defects              |
|----------|---------------------------------------|------------------------------------|----------------------|
| brick    | texture: photo `skimage.data.brick()` | crop, scale, rotation, flips, tint | crack, stain, hole   |
| weave    | texture: procedural plain weave       | pitch, angle, phase, yarn colours  | hole, thread, color  |
| nut      | object: hexagon nut on a background   | rotation, position, size, light    | scratch, chipped,    |
|          |                                       |                                    | color                |
| chip     | object: IC with 2x5 pins on a PCB     | position, rotation, size, colours  | missing_pin,         |
|          |                                       |                                    | bent_pin, scratch    |

Sensor noise (std 1/100) is added to every image. Sizes and intensities are given in image
units, so a build at 64 px shows the same kinds of scenes, with thinner detail.

Defects are composited onto a normal rendering of the same sample; the mask is the set of
pixels whose defect layer covers at least half the pixel (alpha >= 0.5), or for parts that
move or vanish, the union of the part's old and new footprint. Sizes range from small to
medium and colours stay in the range of normal variability, so global statistics (mean
colour, variance) do not separate defects from normal images.

Determinism: every image draws from its own `numpy.random.default_rng` seeded by
`SeedSequence(seed, spawn_key=(crc32(category), crc32(folder), index))`, so a category, a
folder or an image does not change when other categories or counts change, and the same
seed gives the same files. `embedded.json` records a SHA-256 of all pixel arrays
(`pixels_sha256`), which identifies a build independently of the PNG encoder.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import math
import pathlib
import shutil
import tempfile
import zlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from jaxad.errors import DataError

GENERATOR_VERSION = 1
EMBEDDED_CATEGORIES = ("brick", "weave", "nut", "chip")
EMBEDDED_DEFECTS = {
    "brick": ("crack", "stain", "hole"),
    "weave": ("hole", "thread", "color"),
    "nut": ("scratch", "chipped", "color"),
    "chip": ("missing_pin", "bent_pin", "scratch"),
}
_KINDS = {
    "brick": "texture, photo skimage.data.brick()",
    "weave": "texture, procedural plain-weave fabric",
    "nut": "object, hexagon nut on a matte background",
    "chip": "object, IC package with 2x5 pins on a PCB",
}
_GENERATOR = "jaxad.data.embedded"
_MANIFEST = "embedded.json"
_LIBRARIES = ("numpy", "scipy", "pillow", "scikit-image")  # their versions go into the manifest
_SUPERSAMPLE = 4  # curves and blobs are drawn at 4x and box-averaged, giving antialiased coverage
_SENSOR_NOISE = 0.01  # std of the pixel noise, in [0, 1] intensity units
_LUMA = np.array([0.299, 0.587, 0.114], np.float32).reshape(3, 1, 1)


# ----------------------------------------------------------------------------------------
# Drawing primitives. Images are float32 (3, S, S) in [0, 1] (channels first: NumPy broadcasts
# slowly over a last axis of 3); coverages are (S, S) in [0, 1].
# Geometry is given in image units (0..1 across the image), so shapes scale with S.
# ----------------------------------------------------------------------------------------


def _f32(values) -> np.ndarray:
  return np.asarray(values, np.float32)


def _rgb(values) -> np.ndarray:
  """A colour as a (3, 1, 1) float32 array that broadcasts over (3, S, S) images."""
  return np.asarray(values, np.float32).reshape(3, 1, 1)


def _point(values) -> tuple[float, float]:
  """A point as Python floats, which keep float32 arithmetic float32 (NumPy 2 promotion)."""
  return float(values[0]), float(values[1])


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (x, y) in image units, each (S, S) float32, read-only."""
  ticks = (np.arange(size, dtype=np.float32) + 0.5) / size
  x, y = np.meshgrid(ticks, ticks, indexing="xy")
  x.flags.writeable = y.flags.writeable = False
  return x, y


def _draw_coverage(size: int, draw_fn: Callable[[ImageDraw.ImageDraw, float], None]) -> np.ndarray:
  """Antialiased coverage of whatever `draw_fn(draw, scale)` paints (scale maps units to canvas px)."""
  canvas = Image.new("L", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), 0)
  draw_fn(ImageDraw.Draw(canvas), float(size * _SUPERSAMPLE))
  return np.asarray(canvas.reduce(_SUPERSAMPLE), np.float32) / np.float32(255)


def _polyline_coverage(size: int, points: np.ndarray, width: float) -> np.ndarray:
  """Coverage of a polyline of `width` (image units) through `points` (N, 2)."""
  def draw(d, scale):
    d.line([_point(p) for p in points * scale], fill=255, width=max(1, round(width * scale)), joint="curve")
  return _draw_coverage(size, draw)


def _polygon_coverage(size: int, points: np.ndarray) -> np.ndarray:
  def draw(d, scale):
    d.polygon([_point(p) for p in points * scale], fill=255)
  return _draw_coverage(size, draw)


def _disc_coverage(center: tuple[float, float], radius: float, size: int) -> np.ndarray:
  """Analytic antialiased coverage of a disc (one-pixel linear ramp at the edge)."""
  x, y = _grid(size)
  return np.clip(0.5 + (radius - np.hypot(x - center[0], y - center[1])) * size, 0.0, 1.0)


def _box_coverage(lx: np.ndarray, ly: np.ndarray, half_w: float, half_h: float, px_per_unit: float) -> np.ndarray:
  """Coverage of an axis-aligned box centred at 0 in local coordinates (lx, ly)."""
  outside = np.maximum(np.abs(lx) - half_w, np.abs(ly) - half_h)
  return np.clip(0.5 - outside * px_per_unit, 0.0, 1.0)


def _blob_polygon(rng: np.random.Generator, center: tuple[float, float], radius: float,
                  roughness: float = 0.25, n_vertices: int = 64) -> np.ndarray:
  """An irregular closed outline (N, 2): a tilted ellipse whose radius carries random harmonics."""
  theta = np.linspace(0.0, 2.0 * np.pi, n_vertices, endpoint=False)
  r = np.ones_like(theta)
  for k in range(2, 7):
    r += rng.uniform(-roughness, roughness) / math.sqrt(k - 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
  r = radius * np.maximum(r, 0.3)
  stretch, tilt = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
  dx, dy = r * np.cos(theta), r * stretch * np.sin(theta)
  return np.stack([center[0] + dx * math.cos(tilt) - dy * math.sin(tilt),
                   center[1] + dx * math.sin(tilt) + dy * math.cos(tilt)], axis=-1)


def _random_walk(rng: np.random.Generator, start: tuple[float, float], length: float, n_steps: int,
                 turn_std: float, curvature: float = 0.0) -> np.ndarray:
  """Points (n_steps + 1, 2) of a path with random heading changes plus a constant turn."""
  headings = rng.uniform(0, 2 * np.pi) + np.cumsum(curvature + rng.normal(0.0, turn_std, n_steps))
  steps = (length / n_steps) * np.stack([np.cos(headings), np.sin(headings)], axis=-1)
  return np.concatenate([[start], start + np.cumsum(steps, axis=0)], axis=0)


def _smooth_noise(rng: np.random.Generator, size: int, sigma_units: float | tuple[float, float]) -> np.ndarray:
  """Zero-mean, unit-std Gaussian-filtered noise (S, S) float32; sigma in image units, (y, x) or scalar."""
  sigma = tuple(float(s) * size for s in np.broadcast_to(sigma_units, (2,)))
  noise = ndimage.gaussian_filter(rng.standard_normal((size, size), np.float32), sigma=sigma, mode="wrap",
                                  truncate=3.0)
  return (noise - noise.mean()) / (noise.std() + np.float32(1e-6))


def _soften(coverage: np.ndarray, sigma_px: float) -> np.ndarray:
  return ndimage.gaussian_filter(coverage, sigma_px, mode="nearest")


def _over(image: np.ndarray, alpha: np.ndarray, layer) -> np.ndarray:
  """Alpha-composite `layer` ((3, 1, 1) colour or (3, S, S) image) over `image`."""
  return image * (1 - alpha) + layer * alpha


def _recolor(image: np.ndarray, colour) -> np.ndarray:
  """`image` with the hue of `colour` and its own luminance."""
  colour = _rgb(colour)
  return (image * _LUMA).sum(0) * (colour / (colour * _LUMA).sum())


def _point_inside(rng: np.random.Generator, region: np.ndarray, margin: float = 0.1) -> tuple[float, float]:
  """A uniformly drawn pixel centre (image units) where `region` > 0.9, `margin` away from the border."""
  inner = np.zeros_like(region)
  border = round(margin * region.shape[0])
  inner[border:-border, border:-border] = region[border:-border, border:-border]
  ys, xs = np.nonzero(inner > 0.9)
  k = rng.integers(len(ys))
  return float(xs[k] + 0.5) / region.shape[1], float(ys[k] + 0.5) / region.shape[0]


# ----------------------------------------------------------------------------------------
# Defects that paint on any surface (a texture, or an object's region).
# Each returns (image, alpha), alpha being the coverage of the defect layer.
# ----------------------------------------------------------------------------------------


def _scratch(rng, image, region, *, width_px, tone, start_region=None):
  """A thin smooth curve: tone > 0 adds light, tone < 0 scales the surface down by that fraction.

  The curve is centred inside `start_region` (default `region`) and clipped to `region`.
  """
  size = image.shape[-1]
  start = _point_inside(rng, region if start_region is None else start_region)
  path = _random_walk(rng, start, rng.uniform(0.12, 0.35), 24, turn_std=0.03, curvature=rng.uniform(-0.06, 0.06))
  path = path - path[12] + start  # centred on the start point, so most of it lands in the region
  alpha = _polyline_coverage(size, path, rng.uniform(*width_px) / 128) * region
  strength = tone * rng.uniform(0.7, 1.0)
  layer = np.clip(image + strength, 0, 1) if tone > 0 else image * (1 + strength)
  return _over(image, alpha, layer), alpha


def _crack(rng, image, region):
  """A jagged dark random walk with up to two thinner branches."""
  size = image.shape[-1]
  trunk = _random_walk(rng, _point_inside(rng, region), rng.uniform(0.2, 0.45), 40, turn_std=0.35)
  alpha = _polyline_coverage(size, trunk, rng.uniform(1.3, 2.2) / 128)
  for _ in range(rng.integers(0, 3)):
    branch = _random_walk(rng, _point(trunk[rng.integers(4, len(trunk))]), rng.uniform(0.08, 0.2), 16,
                          turn_std=0.35)
    alpha = np.maximum(alpha, _polyline_coverage(size, branch, rng.uniform(1.0, 1.5) / 128))
  alpha = alpha * region
  return _over(image, alpha, image * rng.uniform(0.15, 0.35)), alpha


def _stain(rng, image, region, *, radius, colour, strength):
  """A soft-edged irregular blob that takes the hue of `colour` (scaled by `strength`)."""
  size = image.shape[-1]
  blob = _polygon_coverage(size, _blob_polygon(rng, _point_inside(rng, region), rng.uniform(*radius)))
  alpha = np.clip(_soften(blob, rng.uniform(0.6, 1.6) * size / 128), 0, 1) * region
  return _over(image, alpha, _recolor(image, colour) * rng.uniform(*strength)), alpha


def _hole(rng, image, region, *, radius, backing):
  """A cavity: the surface replaced by a backing colour shaded from one side."""
  size = image.shape[-1]
  x, y = _grid(size)
  center = _point_inside(rng, region)
  blob = _polygon_coverage(size, _blob_polygon(rng, center, rng.uniform(*radius), roughness=0.35))
  light = rng.uniform(0, 2 * np.pi)
  across = math.cos(light) * (x - center[0]) + math.sin(light) * (y - center[1])
  depth = np.clip(0.6 + across / 0.08, 0.3, 1.0)
  layer = _rgb(backing) * depth * (0.8 + 0.4 * image)
  alpha = blob * region
  return _over(image, alpha, layer), alpha


# ----------------------------------------------------------------------------------------
# Categories: `sample` draws a normal scene, `render` turns it into an image, `defect`
# returns (defective image, alpha) for a scene and its normal image.
# ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _brick_photo(size: int) -> np.ndarray:
  """skimage's 512x512 brick photo, resized to 4x`size` (a sample crops about half of it)."""
  from skimage import data as skdata  # the photo ships inside the scikit-image wheel

  scaled = Image.fromarray(skdata.brick()).resize((4 * size, 4 * size), Image.Resampling.LANCZOS)
  return np.asarray(scaled, np.float32) / np.float32(255)


def _brick_sample(rng: np.random.Generator, size: int) -> np.ndarray:
  """A random crop (scale, small rotation, flips) of the brick photo, coloured and lit."""
  photo = _brick_photo(size)
  scale = rng.uniform(1.8, 2.2)  # photo pixels per output pixel
  angle = rng.uniform(-0.08, 0.08)
  cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
  margin = 0.5 * size * (abs(cos) + abs(sin)) + 2
  cx, cy = rng.uniform(margin, photo.shape[0] - margin, 2)
  half = size / 2
  # PIL's AFFINE maps output (x, y) to input (a x + b y + c, d x + e y + f).
  coeffs = (cos, -sin, cx - (cos - sin) * half, sin, cos, cy - (sin + cos) * half)
  crop = Image.fromarray(photo).transform((size, size), Image.Transform.AFFINE, coeffs,
                                          resample=Image.Resampling.BILINEAR)
  gray = np.asarray(crop, np.float32)
  if rng.random() < 0.5:
    gray = gray[:, ::-1]
  if rng.random() < 0.5:
    gray = gray[::-1, :]
  gray = (gray - 0.45) * rng.uniform(0.9, 1.1) + 0.45 + rng.uniform(-0.04, 0.04)
  x, y = _grid(size)
  light = rng.uniform(0, 2 * np.pi)
  gray = gray * (1 + rng.uniform(0, 0.1) * (math.cos(light) * (x - 0.5) + math.sin(light) * (y - 0.5)))
  mortar = np.clip((gray - 0.45) / 0.25, 0, 1)  # bright joints get a mortar colour
  brick_tint = _rgb([1.30, 0.78, 0.62]) * _rgb(rng.uniform(0.95, 1.05, 3))
  mortar_tint = _rgb([1.02, 0.96, 0.86]) * _rgb(rng.uniform(0.97, 1.03, 3))
  return gray * (brick_tint * (1 - mortar) + mortar_tint * mortar)


def _brick_defect(name, rng, image, _scene):
  region = np.ones(image.shape[1:], np.float32)
  if name == "crack":
    return _crack(rng, image, region)
  if name == "stain":
    colour = [0.45, 0.55, 0.40] if rng.random() < 0.5 else [0.40, 0.33, 0.30]
    return _stain(rng, image, region, radius=(0.05, 0.16), colour=colour, strength=(0.55, 0.75))
  return _hole(rng, image, region, radius=(0.045, 0.1), backing=(0.26, 0.17, 0.14))


def _weave_sample(rng: np.random.Generator, size: int) -> dict:
  """Plain weave: warp (vertical) and weft (horizontal) threads alternate over and under."""
  pitch = rng.uniform(0.058, 0.066)  # thread pitch in image units (about 8 px at 128)
  angle = rng.uniform(-0.05, 0.05)
  x, y = _grid(size)
  u = (x * math.cos(angle) + y * math.sin(angle)) / pitch + rng.uniform(0, 2)
  v = (y * math.cos(angle) - x * math.sin(angle)) / pitch + rng.uniform(0, 2)
  i, j = np.floor(u), np.floor(v)
  fu, fv = u - i, v - j
  across_warp = np.sqrt(np.clip(1 - ((fu - 0.5) / 0.44) ** 2, 0, 1))
  across_weft = np.sqrt(np.clip(1 - ((fv - 0.5) / 0.44) ** 2, 0, 1))
  arch_warp = 0.55 + 0.45 * np.sin(np.float32(np.pi) * fv)  # a thread is highest midway over a crossing
  arch_weft = 0.55 + 0.45 * np.sin(np.float32(np.pi) * fu)
  n_threads = math.ceil(1.1 / pitch) + 4
  gain_warp = _f32(rng.normal(1.0, 0.05, n_threads))[i.astype(np.int64) % n_threads]
  gain_weft = _f32(rng.normal(1.0, 0.05, n_threads))[j.astype(np.int64) % n_threads]
  warp = across_warp * arch_warp * gain_warp * (1 + 0.08 * _smooth_noise(rng, size, (0.03, 0.004)))
  weft = across_weft * arch_weft * gain_weft * (1 + 0.08 * _smooth_noise(rng, size, (0.004, 0.03)))
  warp_visible = np.where((i + j) % 2 == 0, across_warp > 0, across_weft == 0)
  shade = np.where(warp_visible, 0.25 + 0.75 * warp, 0.25 + 0.75 * weft)
  shade = np.where((across_warp == 0) & (across_weft == 0), np.float32(0.12), shade)
  jitter = _rgb(rng.uniform(0.96, 1.04, 3)) * rng.uniform(0.95, 1.05)
  warp_colour = _rgb([0.62, 0.52, 0.40]) * jitter
  weft_colour = _rgb([0.70, 0.60, 0.46]) * jitter
  image = shade * np.where(warp_visible, warp_colour, weft_colour)
  return {"image": image, "pitch": pitch, "weft_colour": weft_colour}


def _weave_defect(name, rng, image, scene):
  size = image.shape[-1]
  region = np.ones((size, size), np.float32)
  if name == "hole":
    return _hole(rng, image, region, radius=(0.03, 0.09), backing=(0.10, 0.09, 0.09))
  if name == "color":
    hues = [[0.75, 0.50, 0.75], [0.45, 0.62, 0.80], [0.80, 0.45, 0.35], [0.50, 0.75, 0.45]]
    return _stain(rng, image, region, radius=(0.05, 0.15), colour=hues[rng.integers(len(hues))],
                  strength=(0.95, 1.1))
  # "thread": a loose thread lying on the surface, shaded round, casting a shadow.
  path = _random_walk(rng, _point_inside(rng, region), rng.uniform(0.25, 0.55), 32, turn_std=0.12,
                      curvature=rng.uniform(-0.1, 0.1))
  width = scene["pitch"] * rng.uniform(0.45, 0.65)
  body = _polyline_coverage(size, path, width)
  core = _polyline_coverage(size, path, width * 0.4)
  shadow = _polyline_coverage(size, path + _f32([0.4, 0.6]) * width, width)
  layer = scene["weft_colour"] * rng.uniform(0.85, 1.2) * (0.55 + 0.45 * core)
  out = _over(image * (1 - 0.5 * shadow), body, layer)
  return out, np.maximum(body, shadow)  # alpha >= 0.5: covered, or darkened by at least a quarter


@dataclasses.dataclass
class _NutScene:
  size: int
  center: tuple[float, float]
  radius: float  # circumradius of the hexagon, image units
  rotation: float
  light: float  # direction of the light, radians
  metal: np.ndarray  # (3, 1, 1) base colour of the nut
  background: np.ndarray  # (3, S, S)
  grain: np.ndarray  # (S, S) fine surface noise
  cut: np.ndarray | None = None  # (S, S) coverage of a broken-off part


_NUT_BORE = 0.38  # bore radius / circumradius
_NUT_THREAD = 0.48  # outer radius of the visible thread / circumradius


def _nut_sample(rng: np.random.Generator, size: int) -> _NutScene:
  tone = rng.uniform(0.14, 0.20) * _rgb([0.95, 1.0, 1.08])
  background = (1 + 0.12 * _smooth_noise(rng, size, 0.05)) * tone
  metal = _rgb([0.62, 0.62, 0.60]) * rng.uniform(0.9, 1.08) * _rgb(rng.uniform(0.97, 1.03, 3))
  return _NutScene(size=size, center=_point(0.5 + rng.uniform(-0.04, 0.04, 2)),
                   radius=0.34 * rng.uniform(0.96, 1.04), rotation=rng.uniform(0, np.pi / 3),
                   light=rng.uniform(0, 2 * np.pi), metal=metal, background=background,
                   grain=_smooth_noise(rng, size, 0.004))


def _nut_body(scene: _NutScene) -> np.ndarray:
  """Coverage of the nut (hexagon with chamfered corners, minus its bore)."""
  x, y = _grid(scene.size)
  dx, dy = x - scene.center[0], y - scene.center[1]
  flats = scene.radius * math.cos(math.pi / 6)
  outside = np.full_like(x, -np.inf)
  for k in range(6):
    normal = scene.rotation + math.pi / 6 + k * math.pi / 3
    outside = np.maximum(outside, dx * math.cos(normal) + dy * math.sin(normal) - flats)
  hexagon = np.clip(0.5 - outside * scene.size, 0, 1)
  chamfer = _disc_coverage(scene.center, 0.95 * scene.radius, scene.size)
  bore = _disc_coverage(scene.center, _NUT_BORE * scene.radius, scene.size)
  body = hexagon * chamfer * (1 - bore)
  return body if scene.cut is None else body * (1 - scene.cut)


def _nut_render(scene: _NutScene) -> np.ndarray:
  x, y = _grid(scene.size)
  dx, dy = (x - scene.center[0]) / scene.radius, (y - scene.center[1]) / scene.radius
  r = np.hypot(dx, dy)
  toward_light = math.cos(scene.light) * dx + math.sin(scene.light) * dy
  face = 1 + 0.18 * toward_light + 0.04 * scene.grain
  bevel = 0.8 + 0.35 * toward_light / np.maximum(r, 1e-3)  # chamfer facets catch the light
  thread = 0.45 + 0.1 * np.sin(r * np.float32(2 * np.pi / 0.035))
  shade = np.where(r < _NUT_THREAD, thread, np.where(r > 0.8, bevel, face))
  bore = _disc_coverage(scene.center, _NUT_BORE * scene.radius, scene.size)
  image = _over(scene.background, bore, scene.background * 0.5)
  return _over(image, _nut_body(scene), shade * scene.metal)


def _nut_defect(name, rng, image, scene: _NutScene):
  body = _nut_body(scene)
  if name == "scratch":
    x, y = _grid(scene.size)
    r = np.hypot(x - scene.center[0], y - scene.center[1]) / scene.radius
    face = body * (r > _NUT_THREAD + 0.05) * (r < 0.75)
    tone = 0.35 if rng.random() < 0.5 else -0.55
    return _scratch(rng, image, body, width_px=(1.5, 2.5), tone=tone, start_region=face)
  if name == "color":
    return _stain(rng, image, body, radius=(0.04, 0.12), colour=[0.75, 0.42, 0.22], strength=(0.8, 1.0))
  # "chipped": a piece of the rim broken off, exposing the background.
  angle = scene.rotation + rng.integers(6) * math.pi / 3 + rng.uniform(-0.3, 0.3)
  at = (scene.center[0] + 0.9 * scene.radius * math.cos(angle), scene.center[1] + 0.9 * scene.radius * math.sin(angle))
  cut = _polygon_coverage(scene.size, _blob_polygon(rng, at, scene.radius * rng.uniform(0.14, 0.3)))
  broken = dataclasses.replace(scene, cut=cut)
  return _nut_render(broken), body - _nut_body(broken)


_CHIP_PINS_PER_SIDE = 5
_CHIP_BODY = (0.22, 0.27)  # half width, half height in chip units (1 unit = the image side at scale 1)
_CHIP_PIN = (0.065, 0.022)  # half length, half width
_CHIP_PAD = (0.05, 0.03)  # half length, half width; the pad sits under the outer part of the pin
_CHIP_TRACE = 0.008  # half width of the copper trace leaving each pad
_CHIP_PITCH = 2 * _CHIP_BODY[1] / _CHIP_PINS_PER_SIDE


@dataclasses.dataclass
class _ChipScene:
  size: int
  center: tuple[float, float]
  rotation: float
  scale: float
  board: np.ndarray  # (3, S, S)
  colours: dict[str, np.ndarray]
  pin_offsets: np.ndarray  # (pins, 2) small manufacturing jitter of each pin, chip units
  pin_angles: np.ndarray  # (pins,) rotation of each pin about its root, radians
  pin_present: np.ndarray  # (pins,) bool
  grain: np.ndarray  # (S, S)


def _chip_sample(rng: np.random.Generator, size: int) -> _ChipScene:
  green = _rgb(np.array([0.12, 0.36, 0.20]) * rng.uniform(0.9, 1.1) * rng.uniform(0.95, 1.05, 3))
  board = green * (1 + 0.1 * _smooth_noise(rng, size, 0.02))
  n_pins = 2 * _CHIP_PINS_PER_SIDE
  colours = {
      "trace": green * _rgb([1.5, 1.35, 1.3]),
      "pad": _rgb(np.array([0.80, 0.64, 0.36]) * rng.uniform(0.92, 1.05)),
      "body": _rgb(np.array([0.10, 0.10, 0.11]) * rng.uniform(0.85, 1.2)),
      "pin": _rgb(np.array([0.78, 0.78, 0.80]) * rng.uniform(0.9, 1.05)),
  }
  return _ChipScene(size=size, center=_point(0.5 + rng.uniform(-0.04, 0.04, 2)), rotation=rng.uniform(-0.07, 0.07),
                    scale=rng.uniform(0.96, 1.04), board=board, colours=colours,
                    pin_offsets=_f32(rng.normal(0, 0.002, (n_pins, 2))), pin_angles=np.zeros(n_pins, np.float32),
                    pin_present=np.ones(n_pins, bool), grain=_smooth_noise(rng, size, 0.01))


def _chip_frame(scene: _ChipScene) -> tuple[np.ndarray, np.ndarray]:
  """Chip-local coordinates (lx, ly) of every pixel centre."""
  x, y = _grid(scene.size)
  dx, dy = x - scene.center[0], y - scene.center[1]
  c, s = math.cos(scene.rotation), math.sin(scene.rotation)
  return (c * dx + s * dy) / scene.scale, (-s * dx + c * dy) / scene.scale


def _pin_index(lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
  """Index of the pin slot nearest each pixel: rows top to bottom, left side first."""
  row = np.clip(np.floor((ly + _CHIP_BODY[1]) / _CHIP_PITCH), 0, _CHIP_PINS_PER_SIDE - 1).astype(np.int64)
  return row + _CHIP_PINS_PER_SIDE * (lx >= 0)


def _pin_root(k: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Root point (x, y) on the body edge and outward direction (+1 right, -1 left) of pins k."""
  side = np.where(np.asarray(k) >= _CHIP_PINS_PER_SIDE, 1.0, -1.0).astype(np.float32)
  row = np.asarray(k) % _CHIP_PINS_PER_SIDE
  return side * _CHIP_BODY[0], (-_CHIP_BODY[1] + (row + 0.5) * _CHIP_PITCH).astype(np.float32), side


def _pin_coverage(scene: _ChipScene, k: np.ndarray | int, lx: np.ndarray, ly: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Coverage of pin k (per pixel when k is an array) and position along it (0 root, 1 tip)."""
  root_x, root_y, side = _pin_root(k)
  along = (lx - root_x - scene.pin_offsets[k, 0]) * side
  across = ly - root_y - scene.pin_offsets[k, 1]
  angle = scene.pin_angles[k]
  if np.any(angle):
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = cos * along + sin * across, cos * across - sin * along
  outside = np.maximum(np.abs(along - _CHIP_PIN[0]) - _CHIP_PIN[0], np.abs(across) - _CHIP_PIN[1])
  cov = np.clip(0.5 - outside * (scene.size * scene.scale), 0, 1)
  return cov, np.clip(along / (2 * _CHIP_PIN[0]), 0, 1)


def _chip_render(scene: _ChipScene) -> np.ndarray:
  lx, ly = _chip_frame(scene)
  px_per_unit = scene.size * scene.scale
  col = scene.colours
  slot = _pin_index(lx, ly)
  root_x, root_y, side = _pin_root(slot)
  outward = (lx - root_x) * side
  trace = np.clip(0.5 - np.maximum(-outward, np.abs(ly - root_y) - _CHIP_TRACE) * px_per_unit, 0, 1)
  image = _over(scene.board, trace, col["trace"])
  pad = _box_coverage(outward - 2 * _CHIP_PIN[0] + _CHIP_PAD[0] * 0.6, ly - root_y, *_CHIP_PAD, px_per_unit)
  image = _over(image, pad, col["pad"])
  body = _box_coverage(lx, ly, *_CHIP_BODY, px_per_unit)
  body_shade = 1 + 0.15 * scene.grain + 0.12 * (ly / _CHIP_BODY[1])
  image = _over(image, body, col["body"] * body_shade)
  marker = np.clip(0.5 - (np.hypot(lx + 0.14, ly + 0.19) - 0.03) * px_per_unit, 0, 1) * body
  image = _over(image, marker, col["body"] * 1.9)
  straight = scene.pin_present & (scene.pin_angles == 0)
  cov, along = _pin_coverage(scene, slot, lx, ly)
  cov = cov * straight[slot]
  for k in np.flatnonzero(scene.pin_present & ~straight):  # bent pins may reach into the next slot
    cov_k, along_k = _pin_coverage(scene, int(k), lx, ly)
    along = np.where(cov_k > cov, along_k, along)
    cov = np.maximum(cov, cov_k)
  shade = 0.7 + 0.45 * np.clip(1 - ((along - 0.35) / 0.3) ** 2, 0, 1)  # the bend catches the light
  return _over(image, cov, col["pin"] * shade)


def _chip_defect(name, rng, image, scene: _ChipScene):
  lx, ly = _chip_frame(scene)
  n_pins = 2 * _CHIP_PINS_PER_SIDE
  if name == "scratch":
    body = _box_coverage(lx, ly, _CHIP_BODY[0] - 0.015, _CHIP_BODY[1] - 0.015, scene.size * scene.scale)
    return _scratch(rng, image, body, width_px=(1.5, 2.5), tone=0.3)
  k = int(rng.integers(n_pins))
  before, _ = _pin_coverage(scene, k, lx, ly)
  if name == "missing_pin":
    changed = dataclasses.replace(scene, pin_present=np.arange(n_pins) != k)
    return _chip_render(changed), before
  angles = scene.pin_angles.copy()
  angles[k] = rng.choice([-1, 1]) * rng.uniform(0.3, 0.6)
  changed = dataclasses.replace(scene, pin_angles=angles)
  after, _ = _pin_coverage(changed, k, lx, ly)
  return _chip_render(changed), np.maximum(before, after)


@dataclasses.dataclass(frozen=True)
class _Category:
  sample: Callable[[np.random.Generator, int], object]  # draws a normal scene
  render: Callable[[object], np.ndarray]  # scene -> image
  defect: Callable[[str, np.random.Generator, np.ndarray, object], tuple[np.ndarray, np.ndarray]]


_CATEGORIES = {
    "brick": _Category(_brick_sample, lambda scene: scene, _brick_defect),
    "weave": _Category(_weave_sample, lambda scene: scene["image"], _weave_defect),
    "nut": _Category(_nut_sample, _nut_render, _nut_defect),
    "chip": _Category(_chip_sample, _chip_render, _chip_defect),
}


def _stable_id(text: str) -> int:
  return zlib.crc32(text.encode("utf-8"))


def generate_sample(category: str, defect: str, index: int, *, seed: int = 0, image_size: int = 128,
                    split: str = "test") -> tuple[np.ndarray, np.ndarray]:
  """One image of the embedded dataset and its mask, without touching the disk.

  Args:
    category: one of `EMBEDDED_CATEGORIES`.
    defect: "good" or one of `EMBEDDED_DEFECTS[category]`.
    index: image number inside its folder.
    seed: dataset seed.
    image_size: side of the square image in pixels.
    split: "train" or "test" (train images are always "good").

  Returns:
    (image (S, S, 3) uint8 RGB, mask (S, S) uint8 in {0, 255}; all zeros for "good").
  """
  if category not in _CATEGORIES or defect not in ("good",) + EMBEDDED_DEFECTS[category]:
    raise DataError(f"embedded dataset: no defect type {defect!r} in category {category!r}; "
                    f"categories and defects: {EMBEDDED_DEFECTS}")
  spec = _CATEGORIES[category]
  folder = f"{split}/{defect}"
  rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_stable_id(category), _stable_id(folder), index)))
  scene = spec.sample(rng, image_size)
  image = spec.render(scene)
  mask = np.zeros((image_size, image_size), bool)
  if defect != "good":
    min_area = max(4, image_size * image_size // 4000)
    for _ in range(20):  # a draw can land mostly outside its region; draw again from the same stream
      defective, alpha = spec.defect(defect, rng, image, scene)
      mask = alpha >= 0.5
      if mask.sum() >= min_area:
        break
    image = defective
  # Triangular noise (difference of two uniforms) with std _SENSOR_NOISE: 3x cheaper than normal.
  noise = rng.random(image.shape, np.float32) - rng.random(image.shape, np.float32)
  image = image + np.float32(_SENSOR_NOISE * math.sqrt(6)) * noise
  return (np.clip(np.rint(image * 255).transpose(1, 2, 0), 0, 255).astype(np.uint8), mask.astype(np.uint8) * 255)


# ----------------------------------------------------------------------------------------
# The tree on disk.
# ----------------------------------------------------------------------------------------


def _parameters(seed: int, image_size: int, categories: Sequence[str], n_train: int, n_test_good: int,
                n_test_per_defect: int) -> dict:
  return {"version": GENERATOR_VERSION, "seed": seed, "image_size": image_size, "categories": list(categories),
          "defects": {c: list(EMBEDDED_DEFECTS[c]) for c in categories}, "n_train": n_train,
          "n_test_good": n_test_good, "n_test_per_defect": n_test_per_defect}


def _read_manifest(root: pathlib.Path) -> dict | None:
  """The manifest of an embedded build at `root`, or None when there is none."""
  try:
    manifest = json.loads((root / _MANIFEST).read_text())
  except (OSError, ValueError):
    return None
  return manifest if isinstance(manifest, dict) and manifest.get("generator") == _GENERATOR else None


def _folder_counts(params: dict) -> dict[str, int]:
  counts = {}
  for category in params["categories"]:
    counts[f"{category}/train/good"] = params["n_train"]
    counts[f"{category}/test/good"] = params["n_test_good"]
    for defect in params["defects"][category]:
      counts[f"{category}/test/{defect}"] = params["n_test_per_defect"]
      counts[f"{category}/ground_truth/{defect}"] = params["n_test_per_defect"]
  return counts


def _is_complete(root: pathlib.Path, params: dict) -> bool:
  """Whether `root` holds a finished build with exactly these parameters (files counted, not read)."""
  manifest = _read_manifest(root)
  if manifest is None or manifest.get("parameters") != params:
    return False
  for folder, count in _folder_counts(params).items():
    path = root / folder
    if not path.is_dir() or sum(1 for p in path.iterdir() if p.suffix == ".png") != count:
      return False
  return True


def _readme(params: dict) -> str:
  size = params["image_size"]
  lines = [
      "jaxad embedded anomaly-detection dataset, MVTec AD layout, generated by jaxad.data.embedded.",
      f"Generator version {params['version']}, seed {params['seed']}, {size}x{size} RGB PNG images;",
      "ground-truth masks are 0/255 PNGs of the same size named <image stem>_mask.png.",
      f"Per category: {params['n_train']} train/good, {params['n_test_good']} test/good and "
      f"{params['n_test_per_defect']} test images per defect type.",
      "",
  ]
  lines += [f"  {c:6s} {_KINDS[c]}; defects: {', '.join(params['defects'][c])}" for c in params["categories"]]
  lines += ["", "Rebuild with: python -c \"from jaxad.data.embedded import build_embedded; build_embedded("
            f"'<root>', seed={params['seed']}, image_size={size}, categories={params['categories']}, "
            f"n_train={params['n_train']}, n_test_good={params['n_test_good']}, "
            f"n_test_per_defect={params['n_test_per_defect']})\"", ""]
  return "\n".join(lines)


def _save_png(array: np.ndarray, path: pathlib.Path) -> None:
  Image.fromarray(array).save(path, format="PNG", compress_level=1)  # level 1: 2x faster, 5% larger


def _write_tree(staging: pathlib.Path, params: dict) -> str:
  """Writes every category of `params` under `staging`; returns the SHA-256 of all pixel arrays."""
  digest = hashlib.sha256()
  for category in params["categories"]:
    folders = [("train", "good", params["n_train"]), ("test", "good", params["n_test_good"])]
    folders += [("test", defect, params["n_test_per_defect"]) for defect in params["defects"][category]]
    for split, defect, count in folders:
      image_dir = staging / category / split / defect
      mask_dir = staging / category / "ground_truth" / defect
      image_dir.mkdir(parents=True)
      if defect != "good":
        mask_dir.mkdir(parents=True)
      for index in range(count):
        image, mask = generate_sample(category, defect, index, seed=params["seed"],
                                      image_size=params["image_size"], split=split)
        digest.update(image.tobytes())
        _save_png(image, image_dir / f"{index:03d}.png")
        if defect != "good":
          digest.update(mask.tobytes())
          _save_png(mask, mask_dir / f"{index:03d}_mask.png")
  return digest.hexdigest()


def build_embedded(root: str | pathlib.Path, *, seed: int = 0, image_size: int = 128,
                   categories: Sequence[str] | None = None, n_train: int = 60, n_test_good: int = 15,
                   n_test_per_defect: int = 10, overwrite: bool = False) -> pathlib.Path:
  """Writes the embedded dataset under `root` in the MVTec AD layout and returns `root`.

  The tree is written to a staging folder beside `root` and moved into place at the end,
  so an interrupted build leaves no half-written category, and concurrent builds of the
  same dataset (e.g. test workers) both succeed.

  Args:
    root: output folder; created if missing.
    seed: dataset seed (non-negative integer); the same seed gives the same pixels.
    image_size: side of the square images, in pixels (at least 32).
    categories: subset of `EMBEDDED_CATEGORIES` (default: all of them).
    n_train: normal training images per category.
    n_test_good: normal test images per category.
    n_test_per_defect: test images (and masks) per defect type.
    overwrite: allow writing into a non-empty `root` that holds no embedded build; folders
      named like the categories are replaced, other files are left alone. A previous
      embedded build with other parameters is always replaced.

  Returns:
    `root` as a path. When it already holds a complete build with the same generator
    version and parameters, nothing is written.

  Raises:
    DataError: an argument is out of range, `root` is a file, or `root` is a non-empty
      folder without an embedded build and `overwrite` is False.
  """
  root = pathlib.Path(root)
  categories = tuple(EMBEDDED_CATEGORIES if categories is None else categories)
  unknown = sorted(set(categories) - set(EMBEDDED_CATEGORIES))
  if unknown or not categories or len(set(categories)) != len(categories):
    raise DataError(f"embedded dataset: categories must be distinct names from {list(EMBEDDED_CATEGORIES)}, "
                    f"got {list(categories)}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise DataError(f"embedded dataset: seed must be a non-negative integer, got {seed!r}")
  if image_size < 32:
    raise DataError(f"embedded dataset: image_size must be at least 32, got {image_size}")
  if min(n_train, n_test_good, n_test_per_defect) < 1 or max(n_train, n_test_good, n_test_per_defect) > 999:
    raise DataError("embedded dataset: n_train, n_test_good and n_test_per_defect must be between 1 and 999, "
                    f"got {n_train}, {n_test_good}, {n_test_per_defect}")
  params = _parameters(int(seed), int(image_size), categories, int(n_train), int(n_test_good),
                       int(n_test_per_defect))

  if root.exists() and not root.is_dir():
    raise DataError(f"{root}: exists and is not a folder; cannot build the embedded dataset there")
  if _is_complete(root, params):
    return root
  if root.is_dir() and any(root.iterdir()) and _read_manifest(root) is None and not overwrite:
    raise DataError(f"{root}: folder is not empty and holds no embedded build ({_MANIFEST} missing); "
                    "pass overwrite=True to write the embedded dataset into it anyway")

  root.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
  staging.chmod(0o755)  # mkdtemp makes it private, and it may become `root` itself
  try:
    pixels_sha256 = _write_tree(staging, params)
    (staging / "README.txt").write_text(_readme(params))
    manifest = {"generator": _GENERATOR, "parameters": params, "pixels_sha256": pixels_sha256,
                "libraries": {name: importlib.metadata.version(name) for name in _LIBRARIES}}
    (staging / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    try:
      staging.rename(root)  # atomic when root does not exist or is an empty folder
      return root
    except OSError:
      pass
    if _is_complete(root, params):  # a concurrent build finished first
      return root
    # Replace a previous build in place; its manifest goes first, so an interruption
    # leaves a folder that the next call recognises and rebuilds.
    previous = _read_manifest(root) or {}
    (root / _MANIFEST).unlink(missing_ok=True)
    stale = set(previous.get("parameters", {}).get("categories", [])) | set(categories)
    for category in sorted(stale & set(EMBEDDED_CATEGORIES)):
      if (root / category).is_dir():
        shutil.rmtree(root / category)
    for category in categories:
      (staging / category).rename(root / category)
    (staging / "README.txt").replace(root / "README.txt")
    (staging / _MANIFEST).replace(root / _MANIFEST)
    return root
  finally:
    shutil.rmtree(staging, ignore_errors=True)
