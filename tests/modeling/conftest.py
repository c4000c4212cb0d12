"""Tiny relation models on random images (CPU, small widths)."""

import atexit
import dataclasses
import shutil
import tempfile

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from tiny_configs import tiny_relation_cfg

import sgg_d2.modeling  # noqa: F401  (registers the models)
from sgg_d2.modeling.context import ContextInputs, build_context_model
from sgg_d2.structures import all_ordered_pairs

NUM_CLASSES, NUM_PREDICATES = 5, 4


TINY_TRAIN = "tests_tiny_sgg_train"


def _tiny_dicts():
    rng = np.random.default_rng(0)
    dicts = []
    for i in range(6):
        n = 4
        xy = rng.uniform(0, 60, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(16, 40, (n, 2))], 1)
        annos = [
            {"bbox": b.tolist(), "bbox_mode": BoxMode.XYXY_ABS, "category_id": int(c)}
            for b, c in zip(boxes, rng.integers(0, NUM_CLASSES, n))
        ]
        rels = np.array([[0, 1, i % NUM_PREDICATES], [2, 3, 0]], dtype=np.int64)
        dicts.append(
            {
                "file_name": f"{i}.jpg",
                "image_id": i,
                "height": 96,
                "width": 128,
                "annotations": annos,
                "relations": rels,
            }
        )
    return dicts


if TINY_TRAIN not in DatasetCatalog.list():
    DatasetCatalog.register(TINY_TRAIN, _tiny_dicts)
    MetadataCatalog.get(TINY_TRAIN).set(
        thing_classes=[f"c{i}" for i in range(NUM_CLASSES)],
        predicate_classes=[f"p{i}" for i in range(NUM_PREDICATES)],
        evaluator_type="scene_graph",
        train_split=TINY_TRAIN,
    )


_OUTPUT_DIRS = []  # one fresh folder per config, all removed when the test process exits
atexit.register(lambda: [shutil.rmtree(d, ignore_errors=True) for d in _OUTPUT_DIRS])


def tiny_cfg(context="MotifsContext", mode="sgcls", use_bias=True, output_dir=None):
    cfg = tiny_relation_cfg(NUM_CLASSES, NUM_PREDICATES, (TINY_TRAIN,), context, mode, use_bias)
    if output_dir is None:
        output_dir = tempfile.mkdtemp(prefix="sgg_tiny_")
        _OUTPUT_DIRS.append(output_dir)
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.TEST.DETECTIONS_PER_IMAGE = 20
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    return cfg


def random_input(num_objects, relations=None, seed=0, size=(96, 128)):
    """A model input dict (mapper format) with ``num_objects`` random GT boxes."""
    g = torch.Generator().manual_seed(seed)
    inst = Instances(size)
    xy = torch.rand(num_objects, 2, generator=g) * 60
    wh = 16 + torch.rand(num_objects, 2, generator=g) * 24
    inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1))
    inst.gt_classes = torch.randint(0, NUM_CLASSES, (num_objects,), generator=g)
    if relations is None:
        relations = [[i, i + 1, i % NUM_PREDICATES] for i in range(num_objects - 1)]
    return {
        "image": torch.randint(0, 255, (3, *size), generator=g).float(),
        "instances": inst,
        "relations": torch.as_tensor(np.asarray(relations, dtype=np.int64).reshape(-1, 3)),
        "height": 2 * size[0],
        "width": 2 * size[1],
    }


@pytest.fixture
def make_cfg():
    return tiny_cfg


@pytest.fixture
def make_input():
    return random_input


def context_inputs(
    num_objs,
    obj_dim,
    union_dim,
    num_classes,
    pairs=None,
    gt=False,
    seed=0,
    box_size=10,
    **fields,
):
    """Random inputs of a context model for images of ``num_objs`` objects: features,
    ``box_size``-wide boxes; ``pairs`` by default every ordered pair of each image (global
    indices); no union features when ``union_dim`` is None; ``fields``: further
    ``ContextInputs`` fields (e.g. ``features``, ``image_sizes``)."""
    g = torch.Generator().manual_seed(seed)
    n = sum(num_objs)
    if pairs is None:
        offsets = torch.tensor([0] + list(num_objs[:-1])).cumsum(0)
        pairs = torch.cat([all_ordered_pairs(k) + o for k, o in zip(num_objs, offsets)])
    xy = torch.rand(n, 2, generator=g) * 50
    return ContextInputs(
        obj_features=torch.randn(n, obj_dim, generator=g),
        obj_logits=torch.randn(n, num_classes, generator=g),
        box_layout=torch.rand(n, 9, generator=g),
        boxes=torch.cat([xy, xy + box_size], 1),
        num_objs=list(num_objs),
        pairs=pairs,
        num_pairs=[k * (k - 1) for k in num_objs],
        union_features=(
            None if union_dim is None else torch.randn(len(pairs), union_dim, generator=g)
        ),
        gt_labels=torch.randint(0, num_classes, (n,), generator=g) if gt else None,
        **fields,
    )


@pytest.fixture
def make_context_inputs():
    """:func:`context_inputs`: ``(num_objs, obj_dim, union_dim, num_classes, ...)``."""
    return context_inputs


def built_context(cfg, context_class, obj_dim, union_dim, options):
    """The context model ``context_class`` built from ``cfg`` through the registry (by its
    name) after setting ``options``, full config key -> value; checks its class."""
    cfg.MODEL.SGG.CONTEXT = context_class.__name__
    cfg.merge_from_list([x for key_value in options.items() for x in key_value])
    model = build_context_model(cfg, obj_dim, union_dim)
    assert isinstance(model, context_class)
    return model


@pytest.fixture
def build_context():
    """:func:`built_context`: ``(cfg, context_class, obj_dim, union_dim, options)``."""
    return built_context


def check_union_feature_errors(model, inputs):
    """A model that reads union features refuses ``inputs`` without them, and with another
    row count than there are pairs (``inputs`` must have more than 2 pairs)."""
    with pytest.raises(ValueError, match="union_features"):
        model(dataclasses.replace(inputs, union_features=None))
    short = dataclasses.replace(inputs, union_features=inputs.union_features[:2])
    with pytest.raises(ValueError, match=f"2 rows for {len(inputs.pairs)} pairs"):
        model(short)


@pytest.fixture
def union_feature_errors():
    """:func:`check_union_feature_errors`: ``(model, inputs)``."""
    return check_union_feature_errors
