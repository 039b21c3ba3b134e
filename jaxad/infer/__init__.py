"""Fast inference: a trained model's predict compiled once per (shape, dtype), streamed, exportable."""

from jaxad.infer.engine import DTYPES, InferenceEngine, cast_floats

__all__ = ["DTYPES", "InferenceEngine", "cast_floats"]
