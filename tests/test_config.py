"""`--set key=value` parsing (jaxad.config): types follow the fields; "none" only where a field admits None."""

import dataclasses

import pytest

from jaxad.config import apply_overrides
from jaxad.errors import ConfigError
from jaxad.models.efficient_ad import config as ead_cfg
from jaxad.models.supersimplenet import config as ssn_cfg


def test_values_take_the_field_types_and_none_only_where_allowed():
  static = apply_overrides(ssn_cfg.Static(), {"image_size": "(128, 96)", "epochs": "40", "image_antialias": "true",
                                              "backbone_weights": "none", "mask_align_corners": "null"})
  assert static.image_size == (128, 96) and static.epochs == 40 and static.image_antialias is True
  assert static.backbone_weights is None and static.mask_align_corners is None
  # EfficientAD's documented penalty=none is the word, not None
  ead = ead_cfg.resolve(apply_overrides(ead_cfg.Static(), {"penalty": "none", "teacher": "random"}))
  assert ead.penalty == "none"
  with pytest.raises(ConfigError, match="epochs=none: this setting"):
    apply_overrides(ssn_cfg.Static(), {"epochs": "none"})
  with pytest.raises(ConfigError, match="expected true/false"):
    apply_overrides(ssn_cfg.Static(), {"image_antialias": "maybe"})
  assert dataclasses.replace(ssn_cfg.Static()) == apply_overrides(ssn_cfg.Static(), {"unknown_key": "1"})
