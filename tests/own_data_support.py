"""Helpers of the tests on a user's own dataset (``own_data``): perfect box predictions
for Detectron2's COCOEvaluator, and the messages of one logger."""

import contextlib
import logging

import torch
from detectron2.structures import Boxes, BoxMode, Instances


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def logged(name: str):
    """The INFO+ messages logged to ``name`` (a handler on that logger itself: a Detectron2
    ``setup_logger(name="sgg_d2")`` earlier in the session stops propagation to pytest's)."""
    log, handler = logging.getLogger(name), _Collect()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def perfect_predictions(dicts):
    """COCOEvaluator inputs and outputs: every GT box predicted with score 1."""
    inputs, outputs = [], []
    for d in dicts:
        boxes = [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in d["annotations"]
        ]
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.ones(len(boxes))
        instances.pred_classes = torch.tensor([a["category_id"] for a in d["annotations"]])
        inputs.append({"image_id": d["image_id"]})
        outputs.append({"instances": instances})
    return inputs, outputs
