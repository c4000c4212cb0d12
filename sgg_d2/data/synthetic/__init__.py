"""A deterministic synthetic scene-graph world written in every real dataset format.

Run ``python -m sgg_d2.data.synthetic --root datasets/synthetic``; the world (classes,
predicates and their rules, files) is described in ``datasets/synthetic_world.md``.
"""

from .generate import GENERATOR_VERSION, WorldConfig, generate_world, held_out_ids, read_success
from .world import (
    AUX_CLASSES,
    HELD_OUT_TRIPLETS,
    MASK_DEPENDENT_PREDICATES,
    PREDICATES,
    THING_CLASSES,
)

__all__ = [
    "GENERATOR_VERSION",
    "WorldConfig",
    "generate_world",
    "held_out_ids",
    "read_success",
    "AUX_CLASSES",
    "HELD_OUT_TRIPLETS",
    "MASK_DEPENDENT_PREDICATES",
    "PREDICATES",
    "THING_CLASSES",
]
