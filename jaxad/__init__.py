"""jaxad: industrial visual anomaly detection in JAX (SimpleNet, SuperSimpleNet, EfficientAD)."""

__version__ = "0.1.0"
