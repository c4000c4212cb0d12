"""The built relation head adds the frequency bias exactly where the model's paper does."""

import pytest
from detectron2.modeling import build_model


@pytest.mark.parametrize(
    "context, paper",
    [
        ("FrequencyBaseline", True),
        ("MotifsContext", True),
        ("VCTreeContext", True),
        ("IMPContext", False),
        ("LinkNetContext", False),
    ],
)
def test_built_predictor_follows_the_paper_unless_forced(make_cfg, context, paper):
    cfg = make_cfg(context, "predcls", use_bias=None)  # None: "auto", the default
    head = build_model(cfg).roi_heads.relation_predictor
    assert (head.freq_bias is not None) is paper
    if context != "FrequencyBaseline":  # its only predictor is the bias
        forced = make_cfg(context, "predcls", use_bias=not paper)
        assert (build_model(forced).roi_heads.relation_predictor.freq_bias is not None) is (
            not paper
        )
