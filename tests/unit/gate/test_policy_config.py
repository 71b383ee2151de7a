"""GateConfig: per-rule groups read well in keepfit.yaml, unknown rules and replaced fields are explained."""

import pytest
import yaml
from pydantic import ValidationError

from keepfit.config import GATE_GROUPS, GateConfig


def test_naming_one_rules_group_keeps_the_others_default():
    policy = GateConfig.model_validate(yaml.safe_load("groups:\n  improvement: all\n"))
    assert policy.groups["improvement"] == "all"
    assert policy.groups["non_inferiority"] == "earlier test set"
    assert set(policy.groups) == set(GATE_GROUPS)


def test_an_unknown_rule_is_refused_with_the_known_ones():
    with pytest.raises(ValidationError, match="unknown rules \\['improvment'\\]"):
        GateConfig(groups={"improvment": "all"})


@pytest.mark.parametrize("field", ["max_slice_drop", "min_slice_size"])
def test_replaced_fields_say_what_replaced_them(field):
    with pytest.raises(ValidationError, match=f"gate.{field} was replaced by gate\\."):
        GateConfig.model_validate({field: 1})
