"""`jaxad distill`: pre-train an EfficientAD teacher PDN by distilling a pretrained extractor (Algorithm 3).

  jaxad distill --out teacher_s.safetensors                    offline: EfficientNet-Lite0, bundled photos
  jaxad distill --extractor wide_resnet101_2 --images ~/imagenet/train --out teacher_s.safetensors   (nelson)

Then train with `jaxad fit --model efficient_ad --set teacher=teacher_s.safetensors`.
Defaults are nelson1425's: 60,000 steps of batch 16, 256 px (extractor 512 px), Adam 1e-4 / L2 1e-5,
targets normalised with μ, σ over 10,000 images.
"""

from __future__ import annotations

import argparse
import dataclasses


def register(subparsers) -> None:
  p = subparsers.add_parser("distill", help="pre-train an EfficientAD teacher by distillation", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--out", required=True, help="output weights file (.safetensors)")
  p.add_argument("--size", choices=("s", "m"), help="PDN size (default s)")
  p.add_argument("--extractor", help="pretrained backbone (default efficientnet_lite0; nelson: wide_resnet101_2)")
  p.add_argument("--extractor-weights", help="weights name or file (default: the backbone's registered weights)")
  p.add_argument("--images", help="'bundled' (default: offline photos, random crops) or a folder of images")
  p.add_argument("--image-size", type=int, help="PDN input side (default 256; the extractor sees twice that)")
  p.add_argument("--steps", type=int, help="training steps (default 60000)")
  p.add_argument("--batch-size", type=int, help="batch size (default 16)")
  p.add_argument("--stats-images", type=int, help="images for the target mean/std (default 10000)")
  p.add_argument("--out-channels", type=int, help="teacher channels C (default 384)")
  p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
  p.add_argument("--weight-decay", type=float, help="coupled L2 (default 1e-5)")
  p.add_argument("--seed", type=int, help="seed of the image stream and the PDN init (default 0)")
  p.add_argument("--save-every", type=int, help="also write the weights every N steps (default 1000)")
  p.add_argument("--max-minutes", type=float, help="stop early after this much wall time and save (default: no limit)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.set_defaults(func=main)


_FIELDS = ("size", "extractor", "extractor_weights", "images", "image_size", "steps", "batch_size", "stats_images",
           "out_channels", "lr", "weight_decay", "seed", "save_every")


def main(args) -> int:
  from jaxad.models.efficient_ad.distill import DistillConfig, distill

  config = DistillConfig(**{k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None})
  if args.max_minutes is not None:
    config = dataclasses.replace(config, max_seconds=60 * args.max_minutes)
  distill(config, args.out, progress=not args.no_progress)
  return 0
