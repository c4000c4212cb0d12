"""A generated synthetic world loads through every sgg_d2 loader with identical contents."""

import os

import numpy as np
import pytest

from sgg_d2.data.openimages import load_openimages
from sgg_d2.data.scene_graph_json import load_scene_graph_json
from sgg_d2.data.synthetic import PREDICATES, THING_CLASSES
from sgg_d2.data.synthetic.generate import WorldConfig, generate_world
from sgg_d2.data.visual_genome import load_visual_genome
from sgg_d2.data.vrd import load_vrd

CFG = WorldConfig(seed=2, num_train=10, num_val=3, num_test=6, num_mask_train=1, num_mask_val=1)
C, P = len(THING_CLASSES), len(PREDICATES)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic_loaders"))
    generate_world(out, CFG, progress=False, log=lambda _msg: None)
    return out


def content(d):
    """Image id, size, objects and relation triplets; VG boxes are 1024-frame rounded."""
    objects = [(a["category_id"], tuple(np.round(a["bbox"]).astype(int))) for a in d["annotations"]]
    rels = sorted((objects[s], objects[o], int(p)) for s, o, p in d["relations"])
    return str(d["image_id"]), d["height"], d["width"], sorted(objects), rels


@pytest.mark.parametrize("split, count", [("train", 7), ("val", 3), ("test", 6)])
def test_vg_openimages_and_json_loaders_agree(root, split, count):
    images = os.path.join(root, "images")
    vg = load_visual_genome(
        os.path.join(root, "VG-SGG-with-attri.h5"),
        os.path.join(root, "VG-SGG-dicts-with-attri.json"),
        os.path.join(root, "image_data.json"),
        images,
        split,
        val_size=CFG.num_val,
    )
    oi = load_openimages(
        os.path.join(root, "openimages", "annotations", f"vrd-{split}-anno.json"), images, C, P
    )
    sg = load_scene_graph_json(os.path.join(root, "json", f"scene_graphs_{split}.json"), images)
    assert len(vg) == count
    assert [content(d) for d in vg] == [content(d) for d in oi] == [content(d) for d in sg]
    assert all(os.path.isfile(d["file_name"]) for d in vg)
    for d in sg:  # the JSON also carries the instance masks
        assert all(isinstance(a["segmentation"], dict) for a in d["annotations"])


@pytest.mark.parametrize("split", ["train", "test"])
def test_vrd_loader_agrees_on_relations(root, split):
    images = os.path.join(root, "images")
    vg = load_visual_genome(
        os.path.join(root, "VG-SGG-with-attri.h5"),
        os.path.join(root, "VG-SGG-dicts-with-attri.json"),
        os.path.join(root, "image_data.json"),
        images,
        split,
        val_size=0,
    )
    vrd = load_vrd(os.path.join(root, "vrd", f"annotations_{split}.json"), images, C, P)
    # VRD only lists objects that take part in a relation: compare the relations.
    assert [content(d)[4] for d in vrd] == [content(d)[4] for d in vg]
