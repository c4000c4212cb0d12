"""Pure metric core (numpy/torch, no Detectron2 catalog or process state).

- :mod:`.candidates`: pick the ranked (pair, predicate) candidates of one image (torch).
- :mod:`.matching`: IoU and prediction/GT matching rules (numpy).
- :mod:`.many_to_many`: the R@K matching, vectorised over many images.
- :mod:`.recall`: R@K, ng-R@K, mR@K, ng-mR@K, zsR@K, A@K (Visual Genome protocol).
- :mod:`.vrd`: VRD relationship/phrase detection recall (greedy one-to-one).
- :mod:`.openimages`: OpenImages R@50, AP, mAP/wmAP, score_wtd.
"""

from .candidates import (
    TripletCandidates,
    overlapping_pairs,
    select_graph_constrained,
    select_pair_predicates,
    stable_top_indices,
)
from .many_to_many import match_scene_graph_images
from .matching import (
    NO_MATCH,
    NOT_COMPARABLE,
    GroundTruthGraph,
    ImagePrediction,
    PredictedTriplets,
    box_iou,
    first_match_ranks,
    first_use_true_positives,
    greedy_one_to_one,
    matched_box_iou,
    phrase_overlaps,
    relation_overlaps,
    union_boxes,
)
from .openimages import aggregate_openimages, match_openimages_image, voc_average_precision
from .recall import (
    aggregate_scene_graph_recall,
    f_scores,
    group_mean_recall,
    match_scene_graph_image,
    zero_shot_mask,
)
from .vrd import aggregate_vrd_recall, match_vrd_image

__all__ = [
    "NO_MATCH",
    "NOT_COMPARABLE",
    "GroundTruthGraph",
    "ImagePrediction",
    "PredictedTriplets",
    "TripletCandidates",
    "aggregate_openimages",
    "aggregate_scene_graph_recall",
    "f_scores",
    "group_mean_recall",
    "aggregate_vrd_recall",
    "box_iou",
    "first_match_ranks",
    "first_use_true_positives",
    "greedy_one_to_one",
    "match_openimages_image",
    "match_scene_graph_image",
    "match_scene_graph_images",
    "matched_box_iou",
    "match_vrd_image",
    "overlapping_pairs",
    "phrase_overlaps",
    "relation_overlaps",
    "select_graph_constrained",
    "select_pair_predicates",
    "stable_top_indices",
    "union_boxes",
    "voc_average_precision",
    "zero_shot_mask",
]
