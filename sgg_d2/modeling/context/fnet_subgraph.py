"""Factorizable Net, part 1: subgraph clustering and 2-D subgraph features.

Candidate pairs whose union boxes overlap strongly are merged into one *subgraph*: the
union boxes, scored by the product of their two objects' scores, go through NMS per
image; the kept boxes are the subgraphs, and every pair (kept or suppressed) is assigned
to the kept box of its image with the highest IoU with its own union box. No pair is
dropped, and no subgraph spans two images.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, pairwise_iou
from torch import nn
from torchvision.ops import nms

from ..relation.geometry import union_boxes

__all__ = [
    "SubgraphClusters",
    "object_scores",
    "cluster_subgraphs",
    "SubgraphIncidence",
    "subgraph_incidence",
    "SubgraphFeatures",
]


@dataclass
class SubgraphClusters:
    """Pairs of a batch grouped into subgraphs (images concatenated).

    Attributes:
        pair_to_subgraph: (R,) int64 global subgraph index of each pair.
        boxes: (S, 4) XYXY subgraph boxes.
        representative: (S,) int64 global index of the pair whose union box was kept.
        num_subgraphs: subgraphs per image; sums to S.
    """

    pair_to_subgraph: torch.Tensor
    boxes: torch.Tensor
    representative: torch.Tensor
    num_subgraphs: List[int]


def object_scores(obj_logits: torch.Tensor, gt_labels: Optional[torch.Tensor]) -> torch.Tensor:
    """(N,) confidence of each object: its max class probability, or 1 for known labels.

    Args:
        obj_logits: (N, C) detector logits.
        gt_labels: (N,) known labels (PredCls) or None.
    """
    if gt_labels is not None:
        return obj_logits.new_ones(len(obj_logits))
    return obj_logits.detach().softmax(dim=1).max(dim=1).values


def _cluster_image(union: torch.Tensor, scores: torch.Tensor, nms_thresh: float):
    """One image: kept pair indices (score order) and the local subgraph of each pair."""
    if len(union) == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=union.device)
        return empty, empty
    keep = nms(union, scores, nms_thresh)  # sorted by decreasing score
    iou = pairwise_iou(Boxes(union), Boxes(union[keep]))  # (R_i, K)
    # argmax returns the first maximum: among equal IoUs, the higher-scoring kept box.
    assign = iou.argmax(dim=1)
    # A kept box is its own subgraph even if another kept box is identical (thresh >= 1).
    assign[keep] = torch.arange(len(keep), device=union.device)
    return keep, assign


def cluster_subgraphs(
    boxes: torch.Tensor,
    pairs: torch.Tensor,
    num_pairs: Sequence[int],
    scores: torch.Tensor,
    nms_thresh: float,
    enlarge: bool = False,
) -> SubgraphClusters:
    """Merge each image's pairs into subgraphs by NMS over their union boxes.

    Args:
        boxes: (N, 4) XYXY object boxes, images concatenated.
        pairs: (R, 2) int64 global (subject, object) indices, grouped by image in order.
        num_pairs: pairs per image; sums to R.
        scores: (N,) object confidences; a union box scores ``score_s * score_o``.
        nms_thresh: IoU above which a union box is merged into a better one.
        enlarge: if True, a subgraph's box is enlarged to cover the union boxes of all its
            pairs; if False (the paper) it is the union box of its representative pair.

    Returns:
        :class:`SubgraphClusters`.
    """
    if sum(num_pairs) != len(pairs):
        raise ValueError(f"num_pairs sums to {sum(num_pairs)} but pairs has {len(pairs)} rows")
    union = union_boxes(boxes[pairs[:, 0]], boxes[pairs[:, 1]])
    pair_score = (scores[pairs[:, 0]] * scores[pairs[:, 1]]).detach()
    assign, reps, counts = [], [], []
    pair_start = sub_start = 0
    for r in num_pairs:
        rows = slice(pair_start, pair_start + r)
        keep, local = _cluster_image(union[rows].detach(), pair_score[rows], nms_thresh)
        assign.append(local + sub_start)
        reps.append(keep + pair_start)
        counts.append(len(keep))
        pair_start += r
        sub_start += len(keep)
    empty = pairs.new_zeros(0)
    pair_to_subgraph = torch.cat(assign) if assign else empty
    representative = torch.cat(reps) if reps else empty
    sub_boxes = union[representative]
    if enlarge and len(pairs):
        index = pair_to_subgraph.unsqueeze(1).expand(-1, 2)
        lo = sub_boxes[:, :2].scatter_reduce(0, index, union[:, :2], "amin")
        hi = sub_boxes[:, 2:].scatter_reduce(0, index, union[:, 2:], "amax")
        sub_boxes = torch.cat([lo, hi], dim=1)
    return SubgraphClusters(pair_to_subgraph, sub_boxes, representative, counts)


@dataclass
class SubgraphIncidence:
    """Distinct (object, subgraph) links of a batch: the object is the subject or the object
    of at least one pair of the subgraph.

    Attributes:
        obj_index: (M,) int64 global object index, sorted (then by subgraph).
        sub_index: (M,) int64 global subgraph index.
        num_objs: objects per image; num_subgraphs: subgraphs per image.
    """

    obj_index: torch.Tensor
    sub_index: torch.Tensor
    num_objs: List[int]
    num_subgraphs: List[int]

    def per_image(self) -> List[slice]:
        """Per image, the slice of its links (links are grouped by image, as objects are)."""
        image_of_obj = torch.repeat_interleave(
            torch.arange(len(self.num_objs), device=self.obj_index.device),
            torch.as_tensor(self.num_objs, device=self.obj_index.device),
        )
        counts = torch.bincount(image_of_obj[self.obj_index], minlength=len(self.num_objs))
        ends = counts.cumsum(0).tolist()
        return [slice(e - c, e) for e, c in zip(ends, counts.tolist())]


def subgraph_incidence(
    pairs: torch.Tensor, clusters: SubgraphClusters, num_objs: List[int]
) -> SubgraphIncidence:
    """Links between objects and the subgraphs of the pairs they take part in.

    Args:
        pairs: (R, 2) int64 global (subject, object) indices.
        clusters: the pairs' subgraphs (``cluster_subgraphs``).
        num_objs: objects per image.
    """
    num_sub = max(sum(clusters.num_subgraphs), 1)
    objs = pairs.reshape(-1)  # s_0, o_0, s_1, o_1, ...
    subs = clusters.pair_to_subgraph.repeat_interleave(2)
    key = torch.unique(objs * num_sub + subs)
    return SubgraphIncidence(
        key // num_sub, key % num_sub, list(num_objs), list(clusters.num_subgraphs)
    )


class SubgraphFeatures(nn.Module):
    """RoIAlign of the subgraph boxes to a P x P map, then two 3x3 convs with ReLU."""

    def __init__(
        self,
        in_features: Sequence[str],
        strides: Sequence[int],
        in_channels: int,
        out_channels: int,
        pool_size: int = 5,
        sampling_ratio: int = 0,
        pooler_type: str = "ROIAlignV2",
    ):
        """
        Args:
            in_features: backbone map names to pool from (the RoI heads' in-features).
            strides: stride of each of those maps (consecutive powers of two for FPN).
            in_channels: channels of those maps.
            out_channels: channels of the subgraph maps.
            pool_size: P, side of the pooled map.
        """
        super().__init__()
        if len(in_features) != len(strides):
            raise ValueError(f"{len(in_features)} in_features but {len(strides)} strides")
        self.in_features = list(in_features)
        self.pooler = ROIPooler(
            output_size=pool_size,
            scales=tuple(1.0 / s for s in strides),
            sampling_ratio=sampling_ratio,
            pooler_type=pooler_type,
        )
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.out_channels = out_channels

    def forward(
        self, features: Dict[str, torch.Tensor], boxes: torch.Tensor, num_subgraphs: List[int]
    ) -> torch.Tensor:
        """
        Args:
            features: backbone maps, name -> (B, C_in, H, W); B = len(num_subgraphs).
            boxes: (S, 4) XYXY subgraph boxes in the network input frame, images in order.
            num_subgraphs: subgraphs per image.

        Returns:
            (S, out_channels, P, P) subgraph maps.
        """
        missing = [f for f in self.in_features if f not in features]
        if missing:
            raise KeyError(f"F-Net subgraph features: backbone maps {missing} not in inputs")
        maps = [features[f] for f in self.in_features]
        pooled = self.pooler(maps, [Boxes(b) for b in boxes.split(num_subgraphs)])
        return self.convs(pooled)
