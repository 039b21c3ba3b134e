"""Reusable Flax Linen layers, pretrained backbones, and the tools to load their weights.

Weights come from PyTorch checkpoints read without torch (`torch_checkpoint`), are located
through the registry and cache in `weights`, and are converted to Flax variables by `convert`.
"""
