"""Generation of the whole synthetic world on disk (layout: ``datasets/synthetic_world.md``).

The bookkeeping files and their readers live in :mod:`.world_files`, the statistics and
the ``SUCCESS.json`` summary in :mod:`.summary`; both are re-exported here.
"""

import os
import re
import time
from dataclasses import dataclass
from typing import Callable, List

import numpy as np
from tqdm import tqdm

from .aux_scene import aux_scene_statistics, sample_aux_scene, summarize_aux_statistics
from .render import encode_jpeg, encode_rle, paint
from .scene import sample_scene
from .shapes import mask_box
from .summary import world_statistics, world_summary
from .vectors import VECTOR_DIM, build_word_vectors, write_glove
from .world import (
    HELD_OUT_TRIPLETS,
    WORLDS,
    ZERO_SHOT_PLANT_EVERY,
    WorldSpec,
    class_index,
    predicate_index,
    world_spec,
)
from .world_files import (
    GENERATOR_VERSION,
    SUCCESS_FILE,
    TAGS_FILE,
    is_complete,
    read_success,
    read_tags,
)
from .writers import (
    ImageRecord,
    write_coco_instances,
    write_json,
    write_openimages,
    write_scene_graph_json,
    write_visual_genome,
    write_vrd,
)

__all__ = [
    "GENERATOR_VERSION",
    "WorldConfig",
    "PRESET_CONFIGS",
    "TAGS_FILE",
    "generate_world",
    "read_success",
    "read_tags",
    "held_out_ids",
    "world_statistics",
]

# Independent random streams: image k of a stream is the same whatever the other counts.
_STREAM_TRAIN, _STREAM_TEST, _STREAM_MASK_TRAIN, _STREAM_MASK_VAL = 1, 2, 3, 4


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of a synthetic world (all written to ``SUCCESS.json``).

    Attributes:
        seed: base seed of every random stream.
        num_train: scene-graph images with h5 split 0 (the first ``num_val`` are val).
        num_val: validation images carved from the start of train.
        num_test: scene-graph images with h5 split 2.
        num_mask_train, num_mask_val: auxiliary COCO-format mask images.
        image_size: long side of every image in pixels.
    """

    seed: int = 0
    num_train: int = 400
    num_val: int = 50
    num_test: int = 100
    num_mask_train: int = 200
    num_mask_val: int = 50
    image_size: int = 160

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad parameter."""
        for key in ("num_train", "num_test", "num_mask_train", "num_mask_val"):
            if getattr(self, key) < 1:
                raise ValueError(
                    f"--{key.replace('_', '-')} must be >= 1, got {getattr(self, key)}"
                )
        if not 0 <= self.num_val < self.num_train:
            raise ValueError(
                f"--num-val must be in [0, --num-train), got {self.num_val} with "
                f"--num-train {self.num_train}"
            )
        if not 112 <= self.image_size <= 1024:
            raise ValueError(f"--image-size must be in [112, 1024], got {self.image_size}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")


# Default sizes of each preset (the command line overrides any of them).
PRESET_CONFIGS = {
    "default": WorldConfig(),
    "crowded": WorldConfig(
        num_train=600,
        num_val=50,
        num_test=100,
        num_mask_train=200,
        num_mask_val=50,
        image_size=224,
    ),  # fmt: skip
}
assert set(PRESET_CONFIGS) == set(WORLDS)


def held_out_ids() -> List[tuple]:
    """Held-out triplets as 0-based (subject class, predicate, object class)."""
    return [(class_index(s), predicate_index(p), class_index(o)) for s, p, o in HELD_OUT_TRIPLETS]


def _image_size(rng: np.random.Generator, size: int) -> tuple:
    # Square, landscape or portrait (short side 0.8 x long side), long side = size.
    short = int(round(0.8 * size))
    return [(size, size), (short, size), (size, short)][int(rng.choice(3, p=[0.5, 0.25, 0.25]))]


def _record(image_id: int, labels, visible: np.ndarray, colours, relations) -> ImageRecord:
    return ImageRecord(
        image_id=image_id,
        height=int(visible.shape[1]),
        width=int(visible.shape[2]),
        labels=np.asarray(labels, dtype=np.int64),
        boxes=np.stack([mask_box(m) for m in visible]).astype(np.int64),
        colours=np.asarray(colours, dtype=np.int64),
        segmentations=[encode_rle(m) for m in visible],
        areas=visible.reshape(len(visible), -1).sum(axis=1).astype(np.int64),
        relations=np.asarray(relations, dtype=np.int64).reshape(-1, 3),
    )


def _scene_image(
    cfg: WorldConfig, stream: int, k: int, image_id: int, folder: str, spec: WorldSpec
):
    rng = np.random.default_rng([cfg.seed, stream, k])
    height, width = _image_size(rng, cfg.image_size)
    held_out = held_out_ids()
    if stream == _STREAM_TEST:
        zero_shot = held_out[(k // ZERO_SHOT_PLANT_EVERY) % len(held_out)]
        zero_shot = zero_shot if k % ZERO_SHOT_PLANT_EVERY == 0 else None
        scene = sample_scene(rng, height, width, zero_shot=zero_shot, spec=spec)
    else:
        scene = sample_scene(rng, height, width, held_out=frozenset(held_out), spec=spec)
    _write_bytes(
        os.path.join(folder, f"{image_id}.jpg"), encode_jpeg(paint(rng, scene.masks, scene.colours))
    )
    record = _record(image_id, scene.labels, scene.visible, scene.colours, scene.relations)
    return record, scene.tags


def _aux_image(cfg: WorldConfig, stream: int, k: int, image_id: int, folder: str, spec=None):
    rng = np.random.default_rng([cfg.seed, stream, k])
    height, width = _image_size(rng, cfg.image_size)
    scene = sample_aux_scene(rng, height, width)
    _write_bytes(
        os.path.join(folder, f"{image_id}.jpg"), encode_jpeg(paint(rng, scene.masks, scene.colours))
    )
    keep = scene.annotated  # every shape is painted; the hidden ones are not annotated
    record = _record(
        image_id, scene.labels[keep], scene.visible[keep], scene.colours[keep], np.zeros((0, 3))
    )
    return record, aux_scene_statistics(scene)


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _remove_stale_images(folder: str, keep_ids: set) -> None:
    # A previous, larger world may have left "<id>.jpg" files that no annotation lists.
    for name in os.listdir(folder):
        match = re.fullmatch(r"(\d+)\.jpg", name)
        if match and int(match.group(1)) not in keep_ids:
            os.remove(os.path.join(folder, name))


def generate_world(
    root: str,
    cfg: WorldConfig,
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    preset: str = "default",
) -> dict:
    """Generate (or keep) the synthetic world under ``root``.

    ``preset`` names the world (``default`` or ``crowded``, see :data:`WORLDS`); the
    crowded world also writes ``tags.json`` (predicate groups and per-image tags).

    If ``root/SUCCESS.json`` exists with the same parameters and generator version and
    ``force`` is False, nothing is written. Otherwise ``SUCCESS.json`` is removed first
    and written last, so its presence means the world is complete.

    Returns:
        The contents of ``SUCCESS.json`` (for the crowded world it includes
        ``preset`` and ``statistics``, see :func:`world_statistics`).
    """
    cfg.validate()
    spec = world_spec(preset)
    success = os.path.join(root, SUCCESS_FILE)
    if not force and is_complete(root, cfg, log, preset):
        log(
            f"synthetic world already complete in {root} (same parameters); "
            "use --force to regenerate"
        )
        return read_success(root)
    start = time.perf_counter()
    if os.path.exists(success):
        os.remove(success)
    if os.path.exists(os.path.join(root, TAGS_FILE)):  # a previous crowded world's
        os.remove(os.path.join(root, TAGS_FILE))
    train, test, aux_train, aux_val, tags, aux_stats = _generate_images(root, cfg, progress, spec)
    _write_annotations(root, cfg, train, test, aux_train, aux_val, spec)
    stats = world_statistics(spec, train, test, tags)
    if spec.name != "default":
        write_json(
            os.path.join(root, TAGS_FILE),
            {
                "preset": spec.name,
                "predicate_groups": spec.predicate_groups,
                "image_tags": {str(r.image_id): tags[r.image_id] for r in train + test},
            },
        )
    summary = world_summary(cfg, train, test, aux_train, aux_val, spec, stats, aux_stats)
    # Written last and atomically: its presence means the world is complete.
    write_json(success + ".tmp", summary)
    os.replace(success + ".tmp", success)
    log(f"synthetic world written to {root} in {time.perf_counter() - start:.1f} s")
    return summary


def _generate_images(root: str, cfg: WorldConfig, progress: bool, spec: WorldSpec) -> tuple:
    """Sample, paint and save every image; return the records of the four streams, the
    tags (image_id -> list) of the scene-graph images and the auxiliary images' occlusion
    statistics ({split: :func:`~.aux_scene.summarize_aux_statistics`})."""
    image_dir = os.path.join(root, "images")
    aux_dir = os.path.join(root, "coco_masks", "images")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(aux_dir, exist_ok=True)
    total = cfg.num_train + cfg.num_test + cfg.num_mask_train + cfg.num_mask_val
    bar = tqdm(total=total, desc="synthetic world", unit="img", disable=not progress)

    def run(fn, stream, count, first_id, folder):
        out = []
        for k in range(count):
            out.append(fn(cfg, stream, k, first_id + k, folder, spec))
            bar.update(1)
        return out

    train = run(_scene_image, _STREAM_TRAIN, cfg.num_train, 1, image_dir)
    test = run(_scene_image, _STREAM_TEST, cfg.num_test, cfg.num_train + 1, image_dir)
    tags = {r.image_id: list(t) for r, t in train + test}
    train, test = [r for r, _ in train], [r for r, _ in test]
    aux_train = run(_aux_image, _STREAM_MASK_TRAIN, cfg.num_mask_train, 1, aux_dir)
    aux_val = run(_aux_image, _STREAM_MASK_VAL, cfg.num_mask_val, cfg.num_mask_train + 1, aux_dir)
    bar.close()
    aux_stats = {
        split: summarize_aux_statistics([s for _, s in out])
        for split, out in (("train", aux_train), ("val", aux_val))
    }
    aux_train, aux_val = [r for r, _ in aux_train], [r for r, _ in aux_val]
    _remove_stale_images(image_dir, {r.image_id for r in train + test})
    _remove_stale_images(aux_dir, {r.image_id for r in aux_train + aux_val})
    return train, test, aux_train, aux_val, tags, aux_stats


def _write_annotations(root, cfg, train, test, aux_train, aux_val, spec) -> None:
    val, train_only = train[: cfg.num_val], train[cfg.num_val :]
    write_visual_genome(root, train + test, [0] * len(train) + [2] * len(test), spec)
    write_vrd(os.path.join(root, "vrd"), train, test, spec)
    write_openimages(
        os.path.join(root, "openimages", "annotations"),
        {"train": train_only, "val": val, "test": test},
        spec,
    )
    next_id = 1
    for split, records in (("train", train_only), ("val", val), ("test", test)):
        path = os.path.join(root, "json", f"scene_graphs_{split}.json")
        next_id = write_scene_graph_json(path, records, next_id, spec)
    for split, records in (("train", aux_train), ("val", aux_val)):
        path = os.path.join(root, "coco_masks", "annotations", f"instances_{split}.json")
        write_coco_instances(path, records, f"sgg_d2 synthetic auxiliary masks ({split})")
    write_glove(
        os.path.join(root, "glove", f"synthetic.{VECTOR_DIM}d.txt"),
        build_word_vectors(cfg.seed, spec=spec),
    )
