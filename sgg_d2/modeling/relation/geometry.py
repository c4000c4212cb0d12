"""Box geometry for relations: union boxes and pair/object layout encodings (vectorised)."""

import torch

__all__ = ["union_boxes", "pair_geometry", "box_layout", "PAIR_GEOMETRY_DIM", "BOX_LAYOUT_DIM"]

PAIR_GEOMETRY_DIM = 9
BOX_LAYOUT_DIM = 9


def union_boxes(subj: torch.Tensor, obj: torch.Tensor) -> torch.Tensor:
    """Smallest box enclosing each (subject, object) pair.

    Args:
        subj, obj: (R, 4) XYXY boxes.

    Returns:
        (R, 4) XYXY union boxes.
    """
    return torch.cat(
        [torch.minimum(subj[:, :2], obj[:, :2]), torch.maximum(subj[:, 2:], obj[:, 2:])], 1
    )


def _centre_size(boxes: torch.Tensor):
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
    return boxes[:, :2] + 0.5 * wh, wh


def pair_geometry(subj: torch.Tensor, obj: torch.Tensor, image_size) -> torch.Tensor:
    """Relative layout of each pair, invariant to translation of the image.

    Features: (dx, dy) / w_s,h_s; log(w_o / w_s), log(h_o / h_s); IoU; union area / image
    area; (dx, dy) / image size; intersection over the object's area.

    Args:
        subj, obj: (R, 4) XYXY boxes.
        image_size: (height, width) of the image the boxes live in.

    Returns:
        (R, PAIR_GEOMETRY_DIM) float tensor.
    """
    h, w = float(image_size[0]), float(image_size[1])
    cs, ws = _centre_size(subj)
    co, wo = _centre_size(obj)
    delta = co - cs
    lt = torch.maximum(subj[:, :2], obj[:, :2])
    rb = torch.minimum(subj[:, 2:], obj[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_s, area_o = ws.prod(1), wo.prod(1)
    iou = inter / (area_s + area_o - inter)
    union = union_boxes(subj, obj)
    union_area = (union[:, 2:] - union[:, :2]).prod(1) / (h * w)
    scale = delta.new_tensor([w, h])
    return torch.stack(
        [
            delta[:, 0] / ws[:, 0],
            delta[:, 1] / ws[:, 1],
            torch.log(wo[:, 0] / ws[:, 0]),
            torch.log(wo[:, 1] / ws[:, 1]),
            iou,
            union_area,
            delta[:, 0] / scale[0],
            delta[:, 1] / scale[1],
            inter / area_o,
        ],
        dim=1,
    )


def box_layout(boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Normalised position and size of each box in its image (MOTIFS-style box info).

    Args:
        boxes: (N, 4) XYXY boxes.
        image_size: (height, width).

    Returns:
        (N, BOX_LAYOUT_DIM): x1/W, y1/H, x2/W, y2/H, cx/W, cy/H, w/W, h/H, area/(W*H).
    """
    h, w = float(image_size[0]), float(image_size[1])
    scale = boxes.new_tensor([w, h, w, h])
    norm = boxes / scale
    centre = 0.5 * (norm[:, :2] + norm[:, 2:])
    size = (norm[:, 2:] - norm[:, :2]).clamp(min=0)
    return torch.cat([norm, centre, size, size.prod(1, keepdim=True)], 1)
