"""tools/research/eval_transferred_masks.py: which config each option scores, box-filling
reference masks, the first-N-images dataset, and bad options named."""

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, Instances

from tools.research import eval_transferred_masks as tool


def _value(opts, key):
    return opts[opts.index(key) + 1]


def test_transfer_options_become_the_grounding_keys_on_the_frequency_baseline():
    args = tool.parse_args(["--weights", "joint.pth", "--options", "probs/cosine", "box/dot"])
    opts = tool.option_overrides(args, "probs/cosine")
    assert _value(opts, "MODEL.SGG.GROUNDING.TRANSFER_SPACE") == "probs"
    assert _value(opts, "MODEL.SGG.GROUNDING.SIMILARITY") == "cosine"
    assert _value(opts, "MODEL.SGG.CONTEXT") == "FrequencyBaseline"  # keeps detector classes
    assert _value(opts, "MODEL.SGG.GROUNDING.REFINE") == "False"
    assert _value(opts, "MODEL.SGG.DETECTOR_WEIGHTS") == "joint.pth"
    assert _value(opts, "MODEL.WEIGHTS") == ""  # the model starts from the joint detector
    box = tool.option_overrides(args, "box/dot")
    assert _value(box, "MODEL.SGG.GROUNDING.TRANSFER_SPACE") == "logits"
    default = tool.parse_args([])
    assert default.options == tool.TRANSFER_OPTIONS
    assert "MODEL.SGG.DETECTOR_WEIGHTS" not in tool.option_overrides(default, "logits/dot")


def test_relation_model_options_switch_refinement_at_test():
    args = tool.parse_args(["--relation-weights", "run/model_final.pth"])
    assert args.options == ["refined", "unrefined"]
    for option, refine in (("refined", "True"), ("unrefined", "False")):
        opts = tool.option_overrides(args, option)
        assert _value(opts, "MODEL.WEIGHTS") == "run/model_final.pth"
        assert _value(opts, "MODEL.SGG.GROUNDING.REFINE_AT_TEST") == refine


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--options", "refined"], "'refined': expected SPACE/SIMILARITY"),
        (["--relation-weights", "w.pth", "--options", "logits/dot"], "refined or unrefined"),
    ],
)
def test_bad_options_are_named(argv, match, capsys):
    with pytest.raises(SystemExit):
        tool.parse_args(argv)
    assert match in capsys.readouterr().err


class _Recorder(DatasetEvaluator):
    def process(self, inputs, outputs):
        self.masks = [o["instances"].pred_masks for o in outputs]


def test_box_masks_fill_each_box():
    inst = Instances((6, 8))
    inst.pred_boxes = Boxes(torch.tensor([[1.0, 2.0, 4.0, 5.0], [0.0, 0.0, 8.0, 6.0]]))
    inst.pred_masks = torch.zeros((2, 6, 8), dtype=torch.bool)
    recorder = _Recorder()
    tool.BoxMasks(recorder).process([{}], [{"instances": inst}])
    expected = torch.zeros((2, 6, 8), dtype=torch.bool)
    expected[0, 2:5, 1:4] = True
    expected[1] = True
    assert torch.equal(recorder.masks[0], expected)


def test_first_images_is_a_registered_prefix_with_the_same_metadata():
    DatasetCatalog.register("etm_test_set", lambda: [{"image_id": i} for i in range(5)])
    MetadataCatalog.get("etm_test_set").set(thing_classes=["a", "b"])
    try:
        assert tool.first_images("etm_test_set", 0) == "etm_test_set"
        name = tool.first_images("etm_test_set", 2)
        assert [d["image_id"] for d in DatasetCatalog.get(name)] == [0, 1]
        assert MetadataCatalog.get(name).thing_classes == ["a", "b"]
        assert tool.first_images("etm_test_set", 2) == name  # registered once
    finally:
        for catalog in (DatasetCatalog, MetadataCatalog):
            catalog.remove("etm_test_set")
            catalog.remove("etm_test_set_first2")
