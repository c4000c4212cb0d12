"""TEST.AUG.ENABLED (test-time augmentation) is refused when the config is validated."""

import pytest

from sgg_d2.engine import load_config

BASE = "configs/synthetic/motifs_R18_FPN_predcls.yaml"


def test_tta_is_refused_at_config_validation_with_a_clear_message():
    with pytest.raises(ValueError) as err:
        load_config(BASE, ["TEST.AUG.ENABLED", "True"])
    message = str(err.value)
    assert "TEST.AUG.ENABLED" in message and "Set TEST.AUG.ENABLED False" in message


def test_tta_off_loads():
    assert load_config(BASE, ["TEST.AUG.ENABLED", "False"]).TEST.AUG.ENABLED is False
