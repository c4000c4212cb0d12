"""Painting scenes into RGB images, JPEG encoding, RLE encoding, and auxiliary mask scenes."""

import io
from dataclasses import dataclass
from typing import List

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from .relations import pair_statistics
from .shapes import Shape, draw_mask, sample_shape_param
from .world import AUX_CLASSES, AUX_SHAPES, COLOURS

__all__ = ["paint", "encode_jpeg", "encode_rle", "AuxScene", "sample_aux_scene"]

JPEG_QUALITY = 92
_AUX_GAP = 3.0  # auxiliary shapes never touch: each mask is exactly the drawn shape
_PALETTE = np.array([rgb for _, rgb in COLOURS], dtype=np.float64)


def paint(rng: np.random.Generator, masks: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Paint shapes in draw order on a plain or noisy grey background.

    Args:
        masks: bool (N, H, W) amodal masks, later ones on top.
        colours: int (N,) indices into :data:`COLOURS` (jittered per object).

    Returns:
        uint8 (H, W, 3) RGB image.
    """
    height, width = masks.shape[1:]
    grey = rng.uniform(25.0, 105.0) + rng.uniform(-12.0, 12.0, size=3)
    sigma = rng.uniform(0.0, 8.0)  # 0 = plain background
    image = grey + sigma * rng.standard_normal((height, width, 3))
    for mask, colour in zip(masks, colours):
        rgb = _PALETTE[colour] + rng.uniform(-20.0, 20.0, size=3)
        image[mask] = rgb + sigma * rng.standard_normal((int(mask.sum()), 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of a uint8 (H, W, 3) RGB image (deterministic for a given Pillow)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def encode_rle(mask: np.ndarray) -> dict:
    """COCO RLE of a bool (H, W) mask, ``counts`` as an ASCII str (JSON-ready)."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


@dataclass
class AuxScene:
    """One auxiliary (COCO-format) image: shapes of the auxiliary classes, never touching.

    Attributes:
        labels: int64 (N,) 0-based indices into :data:`AUX_CLASSES`.
        shapes: the N drawn shapes.
        masks: bool (N, H, W); they do not overlap, so visible = amodal.
        colours: int64 (N,).
    """

    labels: np.ndarray
    shapes: List[Shape]
    masks: np.ndarray
    colours: np.ndarray


def _aux_shape(rng: np.random.Generator, label: int, height: int, width: int) -> Shape:
    kinds = AUX_SHAPES[AUX_CLASSES[label]]
    kind = kinds[int(rng.integers(len(kinds)))]
    r = float(rng.uniform(9.0, max(12.0, 0.2 * min(height, width))))
    # Thin shapes reach past r by their half-thickness; keep the whole shape in the image.
    b = r * 1.1 + 1.0
    return Shape(
        kind,
        float(rng.uniform(b, max(b, width - b))),
        float(rng.uniform(b, max(b, height - b))),
        r,
        float(rng.uniform(0.0, 2 * np.pi)),
        sample_shape_param(rng, kind, r),
    )


def sample_aux_scene(rng: np.random.Generator, height: int, width: int) -> AuxScene:
    """Sample 1-4 non-touching auxiliary shapes fully inside a (height, width) image."""
    want = int(rng.integers(1, 5))
    labels, shapes, masks = [], [], []
    for _ in range(want * 30):
        if len(labels) == want:
            break
        label = int(rng.integers(len(AUX_CLASSES)))
        shape = _aux_shape(rng, label, height, width)
        mask = draw_mask(shape, height, width)
        border = mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
        if border or mask.sum() < 60:
            continue
        if masks:
            gap = pair_statistics(np.stack(masks + [mask]), np.zeros(len(masks) + 1, bool))
            if gap["gap"][-1, :-1].min() <= _AUX_GAP:
                continue
        labels.append(label)
        shapes.append(shape)
        masks.append(mask)
    if not labels:
        raise RuntimeError(f"could not place an auxiliary shape in a {width}x{height} image")
    colours = rng.integers(len(COLOURS), size=len(labels)).astype(np.int64)
    return AuxScene(np.array(labels, dtype=np.int64), shapes, np.stack(masks), colours)
