"""Measured statistics and the ``SUCCESS.json`` summary of a generated synthetic world."""

from dataclasses import asdict
from typing import List

import numpy as np

from .aux_scene import MIN_VISIBLE_FRACTION, MIN_VISIBLE_PIXELS
from .scene import IMAGE_TAGS
from .vectors import VECTOR_DIM
from .world import AUX_CLASSES, DEFAULT_WORLD, HELD_OUT_TRIPLETS, WorldSpec
from .world_files import GENERATOR_VERSION
from .writers import ImageRecord

__all__ = ["predicate_counts", "world_statistics", "world_summary"]


def predicate_counts(records: List[ImageRecord], spec: WorldSpec = DEFAULT_WORLD) -> dict:
    """``{predicate name: count}`` over the relations of ``records``, in index order."""
    preds = np.concatenate([r.relations[:, 2] for r in records]).astype(np.int64)
    counts = np.bincount(preds, minlength=len(spec.predicates))
    return {p: int(c) for p, c in zip(spec.predicates, counts)}


def world_statistics(
    spec: WorldSpec, train: List[ImageRecord], test: List[ImageRecord], tags: dict
) -> dict:
    """Measured properties of a generated world (printed by the generator).

    Args:
        spec: the world's preset.
        train, test: scene-graph image records.
        tags: image_id -> list of :data:`IMAGE_TAGS`.

    Returns:
        dict with ``objects_per_image`` ({split: {min, max, mean}}),
        ``relations_per_image`` ({split: mean}), ``num_thing_classes``,
        ``num_predicates``, ``long_tail_ratio`` (most / least frequent train predicate;
        inf when one never occurs), ``tag_fractions`` ({split: {tag: fraction}}) and
        ``predicate_groups``.
    """
    out = {"objects_per_image": {}, "relations_per_image": {}, "tag_fractions": {}}
    for split, records in (("train", train), ("test", test)):
        n = np.array([len(r.labels) for r in records])
        out["objects_per_image"][split] = {
            "min": int(n.min()),
            "max": int(n.max()),
            "mean": round(float(n.mean()), 3),
        }
        out["relations_per_image"][split] = round(
            float(np.mean([len(r.relations) for r in records])), 3
        )
        out["tag_fractions"][split] = {
            t: round(float(np.mean([t in tags[r.image_id] for r in records])), 4)
            for t in IMAGE_TAGS
        }
    counts = np.array(list(predicate_counts(train, spec).values()), dtype=np.float64)
    ratio = float(counts.max() / counts.min()) if counts.min() > 0 else float("inf")
    out["num_thing_classes"] = len(spec.thing_classes)
    out["num_predicates"] = len(spec.predicates)
    out["long_tail_ratio"] = round(ratio, 2)
    out["predicate_groups"] = spec.predicate_groups
    return out


def world_summary(
    cfg, train, test, aux_train, aux_val, spec: WorldSpec, stats: dict, aux_stats: dict
) -> dict:
    """Contents of ``SUCCESS.json``.

    Args:
        cfg: the :class:`~.generate.WorldConfig`.
        train, test, aux_train, aux_val: image records of the four streams (non-empty).
        spec: the world's preset.
        stats: :func:`world_statistics` (stored for presets other than ``default``).
        aux_stats: ``{"train": ..., "val": ...}`` occlusion statistics of the auxiliary
            images (:func:`~.aux_scene.summarize_aux_statistics`).

    Returns:
        generator, version, parameters (also flattened), image id ranges, object /
        relation / predicate counts, vocabularies, held-out triplets, word vectors,
        ``auxiliary_masks`` (the occlusion statistics and the drop rule) and, except for
        the default world, ``preset`` and ``statistics``.
    """

    def n_obj(rs):
        return int(sum(len(r.labels) for r in rs))

    def n_rel(rs):
        return int(sum(len(r.relations) for r in rs))

    return {
        "generator": "sgg_d2.data.synthetic",
        "version": GENERATOR_VERSION,
        "parameters": asdict(cfg),
        **asdict(cfg),
        "image_id_ranges": {
            "train": [train[0].image_id, train[-1].image_id],
            "test": [test[0].image_id, test[-1].image_id],
            "mask_train": [aux_train[0].image_id, aux_train[-1].image_id],
            "mask_val": [aux_val[0].image_id, aux_val[-1].image_id],
        },
        "num_objects": {
            "train": n_obj(train),
            "test": n_obj(test),
            "mask_train": n_obj(aux_train),
            "mask_val": n_obj(aux_val),
        },
        "num_relations": {"train": n_rel(train), "test": n_rel(test)},
        "predicate_counts": {
            "train": predicate_counts(train, spec),
            "test": predicate_counts(test, spec),
        },
        "thing_classes": list(spec.thing_classes),
        "predicate_classes": list(spec.predicates),
        "aux_classes": list(AUX_CLASSES),
        "held_out_triplets": [list(t) for t in HELD_OUT_TRIPLETS],
        "word_vectors": {"file": "glove/synthetic.50d.txt", "dim": VECTOR_DIM},
        "auxiliary_masks": {
            "masks": "visible (modal): a later-drawn shape occludes earlier ones",
            "drop_rule": f"an instance is not annotated when its visible area is below "
            f"max({MIN_VISIBLE_PIXELS} px, {MIN_VISIBLE_FRACTION} x its shape's area)",
            **aux_stats,
        },
        # The default world's file has no preset keys, as before presets existed.
        **({} if spec.name == "default" else {"preset": spec.name, "statistics": stats}),
    }
