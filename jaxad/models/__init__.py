"""Registry of methods: name → `Method` record (explicit, no discovery)."""

from __future__ import annotations

import importlib

from jaxad.errors import ConfigError

_MODULES = {
    "efficient_ad": "jaxad.models.efficient_ad.steps",
    "simplenet": "jaxad.models.simplenet.steps",
    "supersimplenet": "jaxad.models.supersimplenet.steps",
}


def get_method(name: str):
  """The `Method` record of a registered method."""
  if name not in _MODULES:
    raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_MODULES))}")
  return importlib.import_module(_MODULES[name]).METHOD


def available() -> list[str]:
  return sorted(_MODULES)
