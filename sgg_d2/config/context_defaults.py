"""Config keys of the context models (``MODEL.SGG.MOTIFS``, ``IMP``, ``VCTREE``,
``LINKNET``, ``RELDN`` / ``CONTRASTIVE``, ``FNET``), one function per model; called by
:func:`sgg_d2.config.add_sgg_config`. A new model's section goes here
(docs/EXTENDING.md)."""

from detectron2.config import CfgNode as CN

__all__ = [
    "add_fnet_config",
    "add_imp_config",
    "add_linknet_config",
    "add_motifs_config",
    "add_reldn_config",
    "add_vctree_config",
]


def add_motifs_config(cfg: CN) -> None:
    """``MODEL.SGG.MOTIFS``: Neural Motifs (Zellers et al. 2018)."""
    m = cfg.MODEL.SGG.MOTIFS = CN()
    # BiLSTM layers of the object and edge contexts; object order ("leftright",
    # "confidence", "size", "random").
    m.NUM_OBJ_LAYERS = 1
    m.NUM_EDGE_LAYERS = 1
    m.ORDERING = "leftright"
    # Object-class decoder: "lstm" (the paper: each class conditioned on the previous ones
    # in the sequence order) or "linear" (a linear layer on each object's context alone).
    m.DECODER = "lstm"


def add_imp_config(cfg: CN) -> None:
    """``MODEL.SGG.IMP``: iterative message passing (Xu et al. 2017)."""
    imp = cfg.MODEL.SGG.IMP = CN()
    # Rounds of node <-> edge message passing (Xu et al. 2017 use 2).
    imp.NUM_ITERATIONS = 2
    # How a node pools the messages of its edges: "mean" (divided by the node's number of
    # edges, so ~256 sampled training pairs and all N(N-1) test pairs give messages of the
    # same scale) or "sum" (the paper's formula, whose scale grows with the degree).
    imp.MESSAGE_REDUCE = "mean"


def add_vctree_config(cfg: CN) -> None:
    """``MODEL.SGG.VCTREE``: VCTree (Tang et al. 2019) and how its trees are learned."""
    v = cfg.MODEL.SGG.VCTREE = CN()
    # Weight of the auxiliary loss that supervises the pairwise tree scores with
    # "this pair has a relation".
    v.SCORE_LOSS_WEIGHT = 1.0
    # How the tree construction is trained: "hybrid" (the paper: the score loss plus
    # REINFORCE on a sampled tree, reward = the relation recall it yields, baseline = the
    # greedy tree's recall) or "supervised" (the score loss only).
    v.TREE_LEARNING = "hybrid"
    # Weight of the REINFORCE term, and the K of the recall@K reward (per image, over its
    # sampled pairs ranked by their best predicate score).
    v.RL_LOSS_WEIGHT = 1.0
    v.REWARD_TOPK = 50


def add_linknet_config(cfg: CN) -> None:
    """``MODEL.SGG.LINKNET``: LinkNet (Woo et al. 2018) and its ablations."""
    ln = cfg.MODEL.SGG.LINKNET = CN()
    # Stacked relational embedding modules, and their reduction ratio r.
    ln.NUM_MODULES = 2
    ln.REDUCTION = 2
    # lambda_2: weight of the global-context multi-label loss.
    ln.GLOBAL_CONTEXT_LOSS_WEIGHT = 1.0
    # How that loss reduces over the C classes: "sum" (the paper's sum over classes, then
    # mean over images) or "mean" (also averaged over classes: lambda_2 / C in effect).
    ln.GLOBAL_CONTEXT_LOSS_REDUCTION = "sum"
    # Widths: of the object embedding O2 (and of the edge embedding, O3 keeps it through
    # the residual), and of the global context c (the paper: 256 and 512).
    ln.EMBEDDING_DIM = 256
    ln.GLOBAL_CONTEXT_DIM = 512
    # Ablations (the paper's Table 3): the global context c (module and loss) and the
    # geometric layout encoding of each pair.
    ln.GLOBAL_CONTEXT = True
    ln.GEOMETRIC_LAYOUT = True
    # Not the paper (off = the paper): LayerNorm on each part of G1 = [G0; K2 b] before the
    # classifier. G0 = E^s * E^o * F is a product of three small factors while K2 b is not,
    # and measured on the crowded world the layout path then takes over and G0 collapses
    # (docs/STUDIES.md, LinkNet); normalising both parts puts them on one scale.
    ln.PAIR_NORM = False
    # Geometric layout embedding K2 (Eq. 13): width (the paper: 128; 0 = MODEL.SGG.EMBED_DIM,
    # the earlier form) and activation after it ("none": the paper's linear K2 b; "relu":
    # the earlier form).
    ln.LAYOUT_DIM = 128
    ln.LAYOUT_ACTIVATION = "none"


def add_reldn_config(cfg: CN) -> None:
    """``MODEL.SGG.RELDN`` and ``MODEL.SGG.CONTRASTIVE``: RelDN (Zhang et al. 2019)."""
    r = cfg.MODEL.SGG.RELDN = CN()
    # Hidden size of the spatial module's MLP.
    r.SPATIAL_DIM = 64
    # Add the subject-only and object-only logit branches (the paper's skip connections);
    # False for the ablation.
    r.SKIP_CONNECTIONS = True
    c = cfg.MODEL.SGG.CONTRASTIVE = CN()
    # Graphical contrastive losses (RelDN): weights lambda_1..3 of the class-agnostic,
    # entity-class-aware and predicate-class-aware losses, and their margins alpha_1..3.
    c.WEIGHTS = (1.0, 0.5, 0.1)
    c.MARGINS = (0.2, 0.2, 0.2)
    # Per-loss switches (ablation of L1 / L2 / L3 without editing WEIGHTS).
    c.USE_L1 = True
    c.USE_L2 = True
    c.USE_L3 = True
    # Anchors (GT entities with a relation) drawn per image and side, independently of the
    # cross-entropy sample; every candidate pair of an anchor goes to the losses (RelDN's
    # release: 128). 0 = groups formed within the cross-entropy sample only (ablation).
    c.ANCHORS_PER_IMAGE = 128
    # How each loss averages its groups: "anchor" (the paper's Eqs. 3, 5, 7: the mean over
    # each anchor's groups, then over the anchors that have a group with a positive and a
    # negative) or "flat" (one mean over all groups: anchors with several classes or
    # predicates weigh more; the earlier form).
    c.GROUP_WEIGHTING = "anchor"
    # Which GT predicates of a pair L3 (predicate-class aware) sees: "all" (Eq. 7: a pair is
    # a positive of the group of each of its GT predicates; needs the pairs' duplicates,
    # DATASETS.SGG.FILTER_DUPLICATE_RELATIONS False) or "sampled" (the one predicate its
    # cross-entropy label carries; the earlier form).
    c.L3_PREDICATES = "all"


def add_fnet_config(cfg: CN) -> None:
    """``MODEL.SGG.FNET``: Factorizable Net (Li et al. 2018) and its ablations."""
    f = cfg.MODEL.SGG.FNET = CN()
    # Subgraph clustering: NMS IoU threshold on pair union boxes.
    f.SUBGRAPH_NMS_THRESH = 0.5
    # Side of the 2-D subgraph feature map (RoIAlign output), in cells.
    f.SUBGRAPH_POOL_SIZE = 5
    # Rounds of spatial-weighted message passing (paper's full VG model: 2).
    f.NUM_MPS = 2
    # Channels of the 2-D subgraph maps, and of the SRI bottleneck (paper: 512 / 256).
    f.SUBGRAPH_DIM = 512
    f.BOTTLENECK_DIM = 256
    # Object -> subgraph attention: "softmax" across the subgraph's objects at each
    # location (paper) or "sigmoid" gates averaged over the objects (ablation).
    f.SPATIAL_NORM = "softmax"
    # Order of the SRI steps, which the paper leaves ambiguous: True bottlenecks the
    # subgraph map before the object kernels (the authors' released code); False applies
    # the kernels to the full map and bottlenecks each pair.
    f.SRI_REDUCE_FIRST = True
    # SRI ablations (paper: both off): a hidden FC with ReLU after the read-out, and the
    # subject/object vectors appended to the pair feature.
    f.SRI_EXTRA_FC = False
    f.SRI_OBJECT_SHORTCUT = False
    # How SRI joins the subject-, subgraph- and object-maps before the read-out FC_p:
    # "concat" (the paper: [S(i); S_k; S(j)], one read-out weight per part) or "sum" (the
    # three maps summed, one shared read-out; the earlier form).
    f.SRI_COMBINE = "concat"
    # SMP subgraph -> object: "paper" (each subgraph map average-pooled to a vector, softmax
    # over the object's subgraphs of o_i . FC(ReLU s_k), o' = o + FC(ReLU s~)) or "spatial"
    # (attention over every location of the linked subgraphs, o' = relu(o + W m); earlier).
    f.SMP_OBJECT_UPDATE = "paper"
