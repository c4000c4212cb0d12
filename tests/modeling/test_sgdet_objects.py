"""SGDet objects: the detector's classes and scores, per-class NMS on the final classes."""

import math

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances, pairwise_iou

from sgg_d2.modeling.relation.postprocess import (
    object_predictions,
    scene_graph_outputs,
    suppress_duplicate_objects,
)
from sgg_d2.structures import Relations


def _softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_detector_class_and_score_include_background():
    # 2 real classes + background (last, Detectron2's order)
    det_logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 2.0]])
    det_probs = det_logits.softmax(dim=1)
    refined = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    labels, scores = object_predictions(
        refined, None, det_probs, torch.tensor([0, 1]), refined=False
    )
    assert labels.tolist() == [0, 1]
    expected = [_softmax([2, 0, 1])[0], _softmax([0, 3, 2])[1]]
    assert scores.tolist() == pytest.approx(expected)
    # dropping the background column before the softmax would give a larger score
    assert scores[0] < torch.tensor([2.0, 0.0]).softmax(0)[0]


def test_refined_label_flip_scores_the_new_class_with_the_detector():
    det_probs = torch.tensor([[0.7, 0.2, 0.1]])
    refined = torch.tensor([[0.0, 4.0]])  # the context flips class 0 -> 1
    labels, scores = object_predictions(refined, None, det_probs, torch.tensor([0]))
    assert labels.tolist() == [1]
    assert scores.tolist() == pytest.approx([0.2])


def test_predcls_and_sgcls_scores():
    logits = torch.tensor([[1.0, 0.0]])
    assert object_predictions(logits, torch.tensor([1]))[1].tolist() == [1.0]
    labels, scores = object_predictions(logits)
    assert labels.tolist() == [0] and scores.tolist() == pytest.approx([_softmax([1, 0])[0]])


def _result(boxes, labels, scores, pairs, pred):
    inst = Instances((100, 100))
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
    inst.pred_classes = torch.tensor(labels)
    inst.scores = torch.tensor(scores)
    probs = torch.zeros(len(pairs), 3)
    probs[torch.arange(len(pairs)), torch.tensor(pred)] = 0.9
    rels = Relations.from_pair_scores((100, 100), torch.tensor(pairs), probs, inst.scores)
    return {"instances": inst, "relations": rels}


def test_duplicates_after_a_label_flip_are_removed_with_their_relations():
    # 0: star 0.9; 1: the same object, detected as "triangle" but re-labelled "star" by the
    # context (IoU with 0 is 100/110 = 0.91); 2: another star far away; 3: a ring.
    boxes = [[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60], [5, 0, 15, 10]]
    result = _result(
        boxes,
        [0, 0, 0, 1],
        [0.9, 0.3, 0.8, 0.7],
        [[0, 2], [1, 2], [2, 3], [1, 3], [3, 1]],
        [0, 1, 2, 0, 1],
    )
    (out,) = suppress_duplicate_objects([result], 0.5)
    inst, rels = out["instances"], out["relations"]
    assert inst.pred_boxes.tensor.tolist() == [boxes[0], boxes[2], boxes[3]]
    assert inst.scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    # relations of object 1 are gone; indices renumbered (2 -> 1, 3 -> 2); order kept
    assert rels.pair_indices.tolist() == [[0, 1], [1, 2]]
    assert rels.predicates.tolist() == [0, 2]
    assert rels.scores.tolist() == pytest.approx([0.9 * 0.8 * 0.9, 0.8 * 0.7 * 0.9])


def test_overlapping_objects_of_different_final_classes_are_kept():
    # the detector called both "star"; the context re-labels one as "ring": not duplicates
    result = _result([[0, 0, 10, 10], [0, 0, 10, 11]], [0, 1], [0.9, 0.3], [[0, 1]], [0])
    (out,) = suppress_duplicate_objects([result], 0.5)
    assert len(out["instances"]) == 2 and out["relations"].pair_indices.tolist() == [[0, 1]]
    assert suppress_duplicate_objects([result], 0.0)[0] is result


def test_scene_graph_outputs_use_the_given_objects():
    boxes = [torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])]
    obj_logits = torch.tensor([[3.0, 0.0], [0.0, 3.0]])
    rel_logits = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    pairs = [torch.tensor([[0, 1], [1, 0]])]
    objects = (torch.tensor([0, 1]), torch.tensor([0.5, 0.4]))
    (out,) = scene_graph_outputs(boxes, [(40, 40)], obj_logits, None, pairs, rel_logits, 0, objects)
    p = rel_logits.softmax(1)[0, 1].item()
    assert out["instances"].scores.tolist() == pytest.approx([0.5, 0.4])
    assert out["relations"].scores.tolist() == pytest.approx([0.2 * p, 0.2 * p])


@pytest.mark.parametrize("context", ["MotifsContext", "FrequencyBaseline"])
def test_sgdet_model_outputs_have_no_same_class_duplicates(make_cfg, make_input, context):
    cfg = make_cfg(context, "sgdet")
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.9  # the detector keeps near-duplicates
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        out = model([make_input(4, seed=s) for s in range(2)])
    thresh = cfg.TEST.SGG.OBJECT_NMS_THRESH
    for result in out:
        inst, rels = result["instances"], result["relations"]
        assert len(inst) > 1
        iou = pairwise_iou(inst.pred_boxes, inst.pred_boxes)
        same = inst.pred_classes[:, None] == inst.pred_classes[None, :]
        off_diag = ~torch.eye(len(inst), dtype=torch.bool)
        assert not (iou[same & off_diag] > thresh).any()
        assert int(rels.pair_indices.max()) < len(inst)
        assert (inst.scores <= 1).all() and (inst.scores > 0).all()


def test_sgdet_scores_are_the_detectors_when_classes_are_not_refined(make_cfg, make_input):
    cfg = make_cfg("FrequencyBaseline", "sgdet")
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    inputs = [make_input(4, seed=3)]
    with torch.no_grad():
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        (det,) = model.roi_heads._detect(features, proposals)
        (out,) = model(inputs)
    inst = out["instances"]
    assert len(inst) > 0
    # every output object is one of the detector's detections, class and score unchanged
    for score, cls in zip(inst.scores.tolist(), inst.pred_classes.tolist()):
        match = (det.scores - score).abs() < 1e-6
        assert match.any() and cls in det.pred_classes[match].tolist()
    # the stored logits reproduce the detector's scores (softmax with background)
    probs = det.det_logits.softmax(dim=1)
    assert torch.allclose(probs[torch.arange(len(det)), det.pred_classes], det.scores)
