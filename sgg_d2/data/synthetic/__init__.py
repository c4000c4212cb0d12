"""A deterministic synthetic scene-graph world written in every real dataset format.

Run ``python -m sgg_d2.data.synthetic --root datasets/synthetic [--preset crowded]``; the
worlds (classes, predicates and their rules, files) are described in ``datasets/README.md``.
"""

from .generate import (
    GENERATOR_VERSION,
    PRESET_CONFIGS,
    WorldConfig,
    generate_world,
    held_out_ids,
    read_success,
    read_tags,
)
from .scene import IMAGE_TAGS
from .world import (
    AUX_CLASSES,
    CROWDED_WORLD,
    DEFAULT_WORLD,
    HELD_OUT_TRIPLETS,
    MASK_DEPENDENT_PREDICATES,
    PREDICATES,
    THING_CLASSES,
    WorldSpec,
)

__all__ = [
    "GENERATOR_VERSION",
    "WorldConfig",
    "generate_world",
    "held_out_ids",
    "read_success",
    "read_tags",
    "PRESET_CONFIGS",
    "IMAGE_TAGS",
    "WorldSpec",
    "DEFAULT_WORLD",
    "CROWDED_WORLD",
    "AUX_CLASSES",
    "HELD_OUT_TRIPLETS",
    "MASK_DEPENDENT_PREDICATES",
    "PREDICATES",
    "THING_CLASSES",
]
