"""Datasets on the host side: readers for published layouts, the embedded dataset, TFDS and grain."""
