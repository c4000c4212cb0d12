"""Painting scenes into RGB images, JPEG encoding and RLE encoding."""

import io

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from .world import COLOURS

__all__ = ["paint", "encode_jpeg", "encode_rle"]

JPEG_QUALITY = 92
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
