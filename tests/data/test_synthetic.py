"""The synthetic world on disk: determinism, exact real formats, splits, zero-shot, CLI."""

import hashlib
import json
import os

import h5py
import numpy as np
import pytest
from pycocotools import mask as mask_util

from sgg_d2.data.synthetic import HELD_OUT_TRIPLETS, PREDICATES, THING_CLASSES
from sgg_d2.data.synthetic import generate as generate_module
from sgg_d2.data.synthetic.__main__ import main
from sgg_d2.data.synthetic.generate import WorldConfig, generate_world

TINY = WorldConfig(seed=7, num_train=12, num_val=4, num_test=20, num_mask_train=4, num_mask_val=3)
VG_KEYS = {
    "active_object_mask", "attributes", "boxes_1024", "boxes_512", "img_to_first_box",
    "img_to_first_rel", "img_to_last_box", "img_to_last_rel", "labels", "predicates",
    "relationships", "split",
}  # fmt: skip


def quiet(_msg):
    return None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synthetic"))
    generate_world(root, TINY, progress=False, log=quiet)
    return root


def load(root, *parts):
    with open(os.path.join(root, *parts)) as f:
        return json.load(f)


def file_hashes(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def json_masks_by_image(root):
    """image id -> list of decoded visible masks, from the custom JSON of every split."""
    out = {}
    for split in ("train", "val", "test"):
        for ann in load(root, "json", f"scene_graphs_{split}.json")["annotations"]:
            out.setdefault(ann["image_id"], []).append(mask_util.decode(ann["segmentation"]))
    return out


def test_same_seed_gives_byte_identical_files(world, tmp_path):
    again = str(tmp_path / "again")
    generate_world(again, TINY, progress=False, log=quiet)
    first, second = file_hashes(world), file_hashes(again)
    assert sorted(first) == sorted(second)
    assert first == second  # annotations, h5 and JPEG bytes alike
    expected = {"SUCCESS.json", "VG-SGG-with-attri.h5", "glove/synthetic.50d.txt"}
    assert expected <= set(first) and "images/32.jpg" in first and "images/33.jpg" not in first
    other = str(tmp_path / "other")
    generate_world(other, WorldConfig(**{**TINY.__dict__, "seed": 8}), progress=False, log=quiet)
    assert file_hashes(other)["VG-SGG-with-attri.h5"] != first["VG-SGG-with-attri.h5"]


def test_vg_h5_structure_and_boxes(world):
    with h5py.File(os.path.join(world, "VG-SGG-with-attri.h5"), "r") as f:
        assert set(f.keys()) == VG_KEYS
        d = {k: f[k][()] for k in f}
    n_img, n_obj = 32, d["labels"].shape[0]
    assert d["labels"].shape == (n_obj, 1) and d["attributes"].shape == (n_obj, 10)
    assert d["boxes_1024"].dtype == np.int32 and d["boxes_1024"].shape == (n_obj, 4)
    assert d["split"].tolist() == [0] * 12 + [2] * 20
    assert 1 <= d["labels"].min() and d["labels"].max() <= len(THING_CLASSES)
    assert 1 <= d["predicates"].min() and d["predicates"].max() <= len(PREDICATES)
    first, last = d["img_to_first_box"], d["img_to_last_box"]
    assert first[0] == 0 and last[-1] == n_obj - 1 and (first[1:] == last[:-1] + 1).all()
    assert (last - first + 1 >= 2).all()  # 2-6 objects per image
    rel_first, rel_last = d["img_to_first_rel"], d["img_to_last_rel"]
    assert (rel_first[1:] == rel_last[:-1] + 1).all() and rel_last[-1] == len(d["predicates"]) - 1
    image_data = load(world, "image_data.json")
    assert [e["image_id"] for e in image_data] == list(range(1, n_img + 1))
    masks = json_masks_by_image(world)
    for i, entry in enumerate(image_data):
        rels = d["relationships"][rel_first[i] : rel_last[i] + 1]
        assert rel_first[i] >= 0 and (rels >= first[i]).all() and (rels <= last[i]).all()
        long_side = max(entry["width"], entry["height"])
        for side in (1024, 512):
            cxcywh = d[f"boxes_{side}"][first[i] : last[i] + 1].astype(float)
            corners = np.concatenate(
                [cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1
            )
            corners *= long_side / side
            truth = []
            for m in masks[entry["image_id"]]:
                assert m.shape == (entry["height"], entry["width"])
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                truth.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            np.testing.assert_allclose(corners, np.array(truth, float), atol=1.0)
        assert os.path.isfile(os.path.join(world, "images", f"{entry['image_id']}.jpg"))


def test_dicts_json_counts_match_h5(world):
    dicts = load(world, "VG-SGG-dicts-with-attri.json")
    assert dicts["idx_to_label"]["1"] == THING_CLASSES[0] and dicts["label_to_idx"]["ring"] == 2
    assert dicts["idx_to_predicate"] == {str(i + 1): p for i, p in enumerate(PREDICATES)}
    assert dicts["attribute_to_idx"]["red"] == 1
    with h5py.File(os.path.join(world, "VG-SGG-with-attri.h5"), "r") as f:
        labels, preds = f["labels"][:, 0], f["predicates"][:, 0]
        colours = f["attributes"][:, 0]
    assert sum(dicts["object_count"].values()) == len(labels)
    assert dicts["object_count"]["ball"] == int((labels == 1).sum())
    assert dicts["predicate_count"]["left of"] == int((preds == 1).sum())
    assert sum(dicts["attribute_count"].values()) == len(colours) and colours.min() >= 1


def triplets_vg(root, split_code):
    with h5py.File(os.path.join(root, "VG-SGG-with-attri.h5"), "r") as f:
        labels, rels = f["labels"][:, 0] - 1, f["relationships"][()]
        preds, split = f["predicates"][:, 0] - 1, f["split"][()]
        first, last = f["img_to_first_rel"][()], f["img_to_last_rel"][()]
    out = []
    for i in np.flatnonzero(split == split_code):
        for r in range(first[i], last[i] + 1):
            s, o = rels[r]
            out.append((THING_CLASSES[labels[s]], PREDICATES[preds[r]], THING_CLASSES[labels[o]]))
    return out


def triplets_json(root, split):
    data = load(root, "json", f"scene_graphs_{split}.json")
    cls = {a["id"]: THING_CLASSES[a["category_id"] - 1] for a in data["annotations"]}
    return [
        (cls[r["subject_id"]], PREDICATES[r["predicate_id"] - 1], cls[r["object_id"]])
        for r in data["relations"]
    ]


def test_zero_shot_triplets_held_out_of_train_only(world):
    held = set(HELD_OUT_TRIPLETS)
    train = triplets_vg(world, 0) + triplets_json(world, "train") + triplets_json(world, "val")
    for entries in load(world, "vrd", "annotations_train.json").values():
        train += [
            (THING_CLASSES[e["subject"]["category"]], PREDICATES[e["predicate"]],
             THING_CLASSES[e["object"]["category"]])
            for e in entries
        ]  # fmt: skip
    assert len(train) > 40 and not held & set(train)
    # Every 4th test image plants one held-out triplet (round robin): 20 images, all 5.
    assert held <= set(triplets_vg(world, 2)) and held <= set(triplets_json(world, "test"))
    success = load(world, "SUCCESS.json")
    assert [tuple(t) for t in success["held_out_triplets"]] == list(HELD_OUT_TRIPLETS)


def test_val_carve_out_is_the_same_images_in_every_format(world):
    ids = {
        split: [
            e["img_fn"] for e in load(world, "openimages", "annotations", f"vrd-{split}-anno.json")
        ]
        for split in ("train", "val", "test")
    }
    assert ids == {
        "val": ["1", "2", "3", "4"],
        "train": [str(i) for i in range(5, 13)],
        "test": [str(i) for i in range(13, 33)],
    }
    for split in ("train", "val", "test"):
        images = load(world, "json", f"scene_graphs_{split}.json")["images"]
        assert [str(im["id"]) for im in images] == ids[split]
        assert all(im["file_name"] == f"{im['id']}.jpg" for im in images)
    vrd_train = load(world, "vrd", "annotations_train.json")
    assert list(vrd_train) == [f"{i}.jpg" for i in range(1, 13)]
    assert load(world, "SUCCESS.json")["num_val"] == 4


def test_formats_describe_the_same_objects_and_relations(world):
    oi = {e["img_fn"]: e for split in ("train", "val", "test")
          for e in load(world, "openimages", "annotations", f"vrd-{split}-anno.json")}  # fmt: skip
    vrd = {
        **load(world, "vrd", "annotations_train.json"),
        **load(world, "vrd", "annotations_test.json"),
    }
    for split in ("train", "val", "test"):
        data = load(world, "json", f"scene_graphs_{split}.json")
        anns = {}
        for a in data["annotations"]:
            x, y, w, h = a["bbox"]
            anns[a["id"]] = (a["image_id"], a["category_id"] - 1, [x, y, x + w, y + h])
        for image in data["images"]:
            entry = oi[str(image["id"])]
            assert entry["img_size"] == [image["width"], image["height"]]
            mine = [(c, b) for i, c, b in anns.values() if i == image["id"]]
            assert [(c, b) for c, b in zip(entry["det_labels"], entry["bbox"])] == mine
            rels = [r for r in data["relations"] if r["image_id"] == image["id"]]
            ids = [k for k, v in anns.items() if v[0] == image["id"]]
            as_oi = [
                [ids.index(r["subject_id"]), ids.index(r["object_id"]), r["predicate_id"] - 1]
                for r in rels
            ]
            assert as_oi == entry["rel"]
            as_vrd = [
                (anns[r["subject_id"]][1:], r["predicate_id"] - 1, anns[r["object_id"]][1:])
                for r in rels
            ]
            got = [
                ((e["subject"]["category"], [e["subject"]["bbox"][k] for k in (2, 0, 3, 1)]),
                 e["predicate"],
                 (e["object"]["category"], [e["object"]["bbox"][k] for k in (2, 0, 3, 1)]))
                for e in vrd[image["file_name"]]
            ]  # fmt: skip
            assert got == as_vrd
    categories = load(world, "openimages", "annotations", "categories_dict.json")
    assert categories == {"obj": list(THING_CLASSES), "rel": list(PREDICATES)}
    assert load(world, "vrd", "predicates.json") == list(PREDICATES)


def erode(mask, steps=2):
    out = mask.copy()
    for _ in range(steps):
        out &= np.roll(out, 1, 0) & np.roll(out, -1, 0) & np.roll(out, 1, 1) & np.roll(out, -1, 1)
    return out


def flat_object(pixels, mask, background):
    """Away from edges (JPEG ringing) a visible mask is one flat colour, unlike the grey."""
    core = erode(mask)
    values = pixels[core]
    return values.std(axis=0).max() < 20 and np.abs(values.mean(axis=0) - background).max() > 40


def test_instance_masks_match_the_painted_pixels(world):
    from PIL import Image

    masks = json_masks_by_image(world)
    for image_id in (1, 5, 13, 14, 20):
        pixels = np.asarray(Image.open(os.path.join(world, "images", f"{image_id}.jpg")), float)
        ms = [m.astype(bool) for m in masks[image_id]]
        background = pixels[erode(~np.any(ms, axis=0), 3)].mean(axis=0)
        assert all(flat_object(pixels, m, background) for m in ms if erode(m).sum() >= 10)
        # Control: the same masks moved by 7 px no longer fit the painted shapes.
        moved = [np.roll(m, (7, 7), axis=(0, 1)) for m in ms]
        assert not all(flat_object(pixels, m, background) for m in moved)


def test_long_tail_and_mask_dependent_share_in_default_world(tmp_path):
    summary = generate_world(str(tmp_path), WorldConfig(), progress=False, log=quiet)
    counts = summary["predicate_counts"]["train"]
    assert min(counts.values()) > 0
    assert max(counts.values()) > 10 * min(counts.values())
    mask_dependent = ("touching", "on", "behind", "inside", "in hole of", "around")
    share = sum(counts[p] for p in mask_dependent) / sum(counts.values())
    assert 0.25 < share < 0.6
    assert summary["num_relations"]["train"] == sum(counts.values())


WRITERS = (
    "write_visual_genome", "write_vrd", "write_openimages", "write_scene_graph_json",
    "write_coco_instances", "write_glove", "write_json", "_write_bytes",
)  # fmt: skip


def test_success_written_last_and_removed_first(tmp_path, monkeypatch):
    root = str(tmp_path)
    success = os.path.join(root, "SUCCESS.json")
    calls = []

    def recorder(name, real):
        def wrapped(*args, **kwargs):
            calls.append((name, str(args[0]), os.path.exists(success)))
            return real(*args, **kwargs)

        return wrapped

    for name in WRITERS:
        monkeypatch.setattr(generate_module, name, recorder(name, getattr(generate_module, name)))
    small = WorldConfig(num_train=3, num_val=1, num_test=2, num_mask_train=1, num_mask_val=1)
    generate_world(root, small, progress=False, log=quiet)
    assert calls[-1][:2] == ("write_json", success + ".tmp")  # then renamed atomically
    assert os.path.isfile(success) and not os.path.exists(success + ".tmp")
    assert len({c[0] for c in calls}) == len(WRITERS) and not any(c[2] for c in calls[:-1])

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(generate_module, "write_glove", broken)
    assert os.path.exists(success)
    with pytest.raises(OSError, match="disk full"):
        generate_world(root, small, force=True, progress=False, log=quiet)
    assert not os.path.exists(success)  # an interrupted run never looks complete


def test_cli_skips_complete_world_unless_forced(tmp_path, capsys, monkeypatch):
    args = ["--root", str(tmp_path), "--num-train", "3", "--num-val", "1", "--num-test", "2",
            "--num-mask-train", "1", "--num-mask-val", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "held out of train (zero-shot): star in hole of frame" in out
    stale = tmp_path / "images" / "999.jpg"
    stale.write_bytes(b"old")
    h5 = tmp_path / "VG-SGG-with-attri.h5"
    before = h5.stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("regenerated although the world is complete")

    with monkeypatch.context() as m:
        m.setattr(generate_module, "sample_scene", fail)
        assert main(args) == 0
    assert "already complete" in capsys.readouterr().out and h5.stat().st_mtime_ns == before
    assert main(args + ["--force"]) == 0
    assert "already complete" not in capsys.readouterr().out and not stale.exists()
    assert main(args[:-1] + ["--seed", "1", "--no-progress"]) == 0  # other parameters
    assert load(str(tmp_path), "SUCCESS.json")["seed"] == 1


def test_unreadable_success_file_is_named_and_regenerated(tmp_path):
    small = WorldConfig(num_train=2, num_val=0, num_test=1, num_mask_train=1, num_mask_val=1)
    (tmp_path / "SUCCESS.json").write_text("{truncated")
    messages = []
    summary = generate_world(str(tmp_path), small, progress=False, log=messages.append)
    assert messages[0].startswith(f"regenerating: {tmp_path / 'SUCCESS.json'}: not valid JSON")
    assert load(str(tmp_path), "SUCCESS.json") == summary and summary["num_val"] == 0
    assert load(str(tmp_path), "json", "scene_graphs_val.json")["images"] == []


def test_cli_rejects_bad_parameters(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "--num-train", "5", "--num-val", "5"]) == 2
    assert "--num-val must be in [0, --num-train)" in capsys.readouterr().err
    assert main(["--root", str(tmp_path), "--image-size", "64"]) == 2
    assert "--image-size" in capsys.readouterr().err
    assert not os.listdir(tmp_path)
