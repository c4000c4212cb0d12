"""Config keys of sgg_d2, added to a Detectron2 config by :func:`add_sgg_config`."""

from detectron2.config import CfgNode as CN

__all__ = ["add_sgg_config", "validate_sgg_config", "SGG_MODES"]

# PredCls: GT boxes and labels given; SGCls: GT boxes given; SGDet: nothing given.
SGG_MODES = ("predcls", "sgcls", "sgdet")


def add_sgg_config(cfg: CN) -> CN:
    """Add every sgg_d2 key, with its default, to a Detectron2 config (in place).

    Call it right after ``get_cfg()`` and before merging files. Validate with
    :func:`validate_sgg_config` after all merges.

    Returns:
        ``cfg``, for chaining.
    """
    cfg.MODEL.VGG = CN()
    # VGG-16 backbone (build_vgg16_backbone): "" (plain) or "BN" (VGG-16-BN layers).
    cfg.MODEL.VGG.NORM = ""

    cfg.MODEL.SGG = CN()
    # Evaluation/training protocol: "predcls" (GT boxes + labels), "sgcls" (GT boxes),
    # "sgdet" (detected boxes). Resolved once, in the ROI heads.
    cfg.MODEL.SGG.MODE = "sgdet"
    # A trained detector checkpoint loaded into the relation model before training starts
    # (stage handoff; training still starts at iteration 0). "" = none.
    cfg.MODEL.SGG.DETECTOR_WEIGHTS = ""
    # Fewer than this fraction of the detector's parameters found in DETECTOR_WEIGHTS is an
    # error (a checkpoint of another model would leave a random, frozen detector).
    cfg.MODEL.SGG.DETECTOR_WEIGHTS_MIN_MATCH = 0.9
    # --resume with a damaged last checkpoint: resume from the newest intact earlier one
    # (logged) instead of failing (train_net.py --resume-from-last-good sets it).
    cfg.SOLVER.RESUME_FROM_LAST_GOOD = False
    # "SGD" (Detectron2's optimizer: MOMENTUM, NESTEROV) or "ADAMW" (torch.optim.AdamW
    # with BETAS; WEIGHT_DECAY is then decoupled). Both take Detectron2's parameter groups
    # (WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS) and SOLVER.CLIP_GRADIENTS.
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BETAS = (0.9, 0.999)
    # Keep backbone, RPN and box head fixed (and in eval mode) in the relation stage.
    cfg.MODEL.SGG.FREEZE_DETECTOR = True
    # Context model, a name in CONTEXT_REGISTRY: FrequencyBaseline, IMPContext,
    # MotifsContext, VCTreeContext.
    cfg.MODEL.SGG.CONTEXT = "MotifsContext"
    # P, the number of real predicates (no background).
    cfg.MODEL.SGG.NUM_PREDICATES = 50
    # Add the frequency bias log p(predicate | subject class, object class) to the logits:
    # None ("auto") follows the context model's paper (its ``paper_frequency_bias``: on for
    # Frequency, MOTIFS, VCTree, RelDN; off for IMP, LinkNet, F-Net); True/False force it.
    cfg.MODEL.SGG.USE_FREQUENCY_BIAS = None
    # Relation pairs sampled per training image, and the largest positive fraction.
    cfg.MODEL.SGG.BATCH_SIZE_PER_IMAGE = 256
    cfg.MODEL.SGG.POSITIVE_FRACTION = 0.25
    # SGDet training: detections kept per image, and IoU for assigning them to GT objects.
    cfg.MODEL.SGG.TRAIN_DETECTIONS_PER_IMAGE = 64
    cfg.MODEL.SGG.MATCH_IOU_THRESHOLD = 0.5
    # Union-box features: output size, and pairs pooled at once (bounds peak memory).
    cfg.MODEL.SGG.UNION_DIM = 1024
    cfg.MODEL.SGG.UNION_CHUNK_SIZE = 1024
    cfg.MODEL.SGG.RELATION_BACKBONE = CN()
    # Pool union-box (predicate) features from a separate backbone of the detector's
    # architecture, initialised from MODEL.SGG.DETECTOR_WEIGHTS and trained with the relation
    # stage (RelDN); subject/object features stay the frozen detector's. Any context model.
    cfg.MODEL.SGG.RELATION_BACKBONE.ENABLED = False
    # Context models: class/box embedding size, hidden size, dropout.
    cfg.MODEL.SGG.EMBED_DIM = 128
    cfg.MODEL.SGG.CONTEXT_HIDDEN_DIM = 256
    cfg.MODEL.SGG.CONTEXT_DROPOUT = 0.0
    # Weight of the object-classification (refinement) loss in SGCls/SGDet.
    cfg.MODEL.SGG.OBJ_LOSS_WEIGHT = 1.0
    # Weight of the predicate cross-entropy (LinkNet's lambda_1).
    cfg.MODEL.SGG.REL_LOSS_WEIGHT = 1.0
    # Extra relation losses (names in RELATION_LOSS_REGISTRY) added for any context model.
    cfg.MODEL.SGG.EXTRA_RELATION_LOSSES = []

    cfg.MODEL.SGG.MOTIFS = CN()
    # BiLSTM layers of the object and edge contexts; object order ("leftright",
    # "confidence", "size", "random").
    cfg.MODEL.SGG.MOTIFS.NUM_OBJ_LAYERS = 1
    cfg.MODEL.SGG.MOTIFS.NUM_EDGE_LAYERS = 1
    cfg.MODEL.SGG.MOTIFS.ORDERING = "leftright"
    # Object-class decoder: "lstm" (the paper: each class conditioned on the previous ones
    # in the sequence order) or "linear" (a linear layer on each object's context alone).
    cfg.MODEL.SGG.MOTIFS.DECODER = "lstm"

    cfg.MODEL.SGG.IMP = CN()
    # Rounds of node <-> edge message passing (Xu et al. 2017 use 2).
    cfg.MODEL.SGG.IMP.NUM_ITERATIONS = 2
    # How a node pools the messages of its edges: "mean" (divided by the node's number of
    # edges, so ~256 sampled training pairs and all N(N-1) test pairs give messages of the
    # same scale) or "sum" (the paper's formula, whose scale grows with the degree).
    cfg.MODEL.SGG.IMP.MESSAGE_REDUCE = "mean"

    cfg.MODEL.SGG.VCTREE = CN()
    # Weight of the auxiliary loss that supervises the pairwise tree scores with
    # "this pair has a relation".
    cfg.MODEL.SGG.VCTREE.SCORE_LOSS_WEIGHT = 1.0
    # How the tree construction is trained: "hybrid" (the paper: the score loss plus
    # REINFORCE on a sampled tree, reward = the relation recall it yields, baseline = the
    # greedy tree's recall) or "supervised" (the score loss only).
    cfg.MODEL.SGG.VCTREE.TREE_LEARNING = "hybrid"
    # Weight of the REINFORCE term, and the K of the recall@K reward (per image, over its
    # sampled pairs ranked by their best predicate score).
    cfg.MODEL.SGG.VCTREE.RL_LOSS_WEIGHT = 1.0
    cfg.MODEL.SGG.VCTREE.REWARD_TOPK = 50

    cfg.MODEL.SGG.LINKNET = CN()
    # Stacked relational embedding modules, and their reduction ratio r.
    cfg.MODEL.SGG.LINKNET.NUM_MODULES = 2
    cfg.MODEL.SGG.LINKNET.REDUCTION = 2
    # lambda_2: weight of the global-context multi-label loss.
    cfg.MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_WEIGHT = 1.0
    # How that loss reduces over the C classes: "sum" (the paper's sum over classes, then
    # mean over images) or "mean" (also averaged over classes: lambda_2 / C in effect).
    cfg.MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_REDUCTION = "sum"
    # Widths: of the object embedding O2 (and of the edge embedding, O3 keeps it through
    # the residual), and of the global context c (the paper: 256 and 512).
    cfg.MODEL.SGG.LINKNET.EMBEDDING_DIM = 256
    cfg.MODEL.SGG.LINKNET.GLOBAL_CONTEXT_DIM = 512
    # Ablations (the paper's Table 3): the global context c (module and loss) and the
    # geometric layout encoding of each pair.
    cfg.MODEL.SGG.LINKNET.GLOBAL_CONTEXT = True
    cfg.MODEL.SGG.LINKNET.GEOMETRIC_LAYOUT = True
    # Not the paper (off = the paper): LayerNorm on each part of G1 = [G0; K2 b] before the
    # classifier. G0 = E^s * E^o * F is a product of three small factors while K2 b is not,
    # and measured on the crowded world the layout path then takes over and G0 collapses
    # (README "LinkNet layout"); normalising both parts puts them on one scale.
    cfg.MODEL.SGG.LINKNET.PAIR_NORM = False

    cfg.MODEL.SGG.RELDN = CN()
    # Hidden size of the spatial module's MLP.
    cfg.MODEL.SGG.RELDN.SPATIAL_DIM = 64
    # Add the subject-only and object-only logit branches (the paper's skip connections);
    # False for the ablation.
    cfg.MODEL.SGG.RELDN.SKIP_CONNECTIONS = True

    cfg.MODEL.SGG.CONTRASTIVE = CN()
    # Graphical contrastive losses (RelDN): weights lambda_1..3 of the class-agnostic,
    # entity-class-aware and predicate-class-aware losses, and their margins alpha_1..3.
    cfg.MODEL.SGG.CONTRASTIVE.WEIGHTS = (1.0, 0.5, 0.1)
    cfg.MODEL.SGG.CONTRASTIVE.MARGINS = (0.2, 0.2, 0.2)
    # Per-loss switches (ablation of L1 / L2 / L3 without editing WEIGHTS).
    cfg.MODEL.SGG.CONTRASTIVE.USE_L1 = True
    cfg.MODEL.SGG.CONTRASTIVE.USE_L2 = True
    cfg.MODEL.SGG.CONTRASTIVE.USE_L3 = True
    # Anchors (GT entities with a relation) drawn per image and side, independently of the
    # cross-entropy sample; every candidate pair of an anchor goes to the losses (RelDN's
    # release: 128). 0 = groups formed within the cross-entropy sample only (ablation).
    cfg.MODEL.SGG.CONTRASTIVE.ANCHORS_PER_IMAGE = 128

    cfg.MODEL.SGG.FNET = CN()
    # Subgraph clustering: NMS IoU threshold on pair union boxes.
    cfg.MODEL.SGG.FNET.SUBGRAPH_NMS_THRESH = 0.5
    # Side of the 2-D subgraph feature map (RoIAlign output), in cells.
    cfg.MODEL.SGG.FNET.SUBGRAPH_POOL_SIZE = 5
    # Rounds of spatial-weighted message passing (paper's full VG model: 2).
    cfg.MODEL.SGG.FNET.NUM_MPS = 2
    # Channels of the 2-D subgraph maps, and of the SRI bottleneck (paper: 512 / 256).
    cfg.MODEL.SGG.FNET.SUBGRAPH_DIM = 512
    cfg.MODEL.SGG.FNET.BOTTLENECK_DIM = 256
    # Object -> subgraph attention: "softmax" across the subgraph's objects at each
    # location (paper) or "sigmoid" gates averaged over the objects (ablation).
    cfg.MODEL.SGG.FNET.SPATIAL_NORM = "softmax"
    # SRI: bottleneck the subgraph map before the object kernels (paper's released code;
    # False: kernels on the full map, bottleneck per pair, the pre-paper variant).
    cfg.MODEL.SGG.FNET.SRI_REDUCE_FIRST = True
    # SRI ablations (paper: both off): a hidden FC with ReLU after the read-out, and the
    # subject/object vectors appended to the pair feature.
    cfg.MODEL.SGG.FNET.SRI_EXTRA_FC = False
    cfg.MODEL.SGG.FNET.SRI_OBJECT_SHORTCUT = False

    _add_grounding_config(cfg)

    # Flipping turns "left of" into "right of": off unless a config turns it on.
    cfg.INPUT.RANDOM_FLIP = "none"
    # Train-time quarter turns (0/90/180/270 degrees, uniform), for detector training on
    # orientation-free classes (the synthetic worlds' shapes); off for relation models.
    cfg.INPUT.RANDOM_ROTATE_90 = False

    # Auxiliary mask dataset(s) (COCO format) mixed into training batches: the joint
    # detector (JointRCNN) and the relation stage's mask refinement. () = none.
    cfg.DATASETS.AUX_TRAIN = ()
    # Long-run fraction of each batch's images drawn from DATASETS.AUX_TRAIN.
    cfg.DATASETS.AUX_FRACTION = 0.25

    cfg.DATASETS.SGG = CN()
    # Train-time: keep one predicate (chosen at random) per (subject, object) pair.
    cfg.DATASETS.SGG.FILTER_DUPLICATE_RELATIONS = True
    # Where dataset statistics (frequency tensor, zero-shot set) are cached; "" means
    # "<OUTPUT_DIR>/sgg_statistics".
    cfg.DATASETS.SGG.STATISTICS_CACHE_DIR = ""
    # Custom scene-graph JSON datasets registered when the config is loaded (train_net.py,
    # demo/demo.py, python -m sgg_d2.evaluation --config-file): a list of
    # [name, annotation_file, image_root] (format: datasets/README.md), e.g.
    # DATASETS.SGG.JSON '[["my_train", "my/train.json", "my/images"]]'.
    cfg.DATASETS.SGG.JSON = []

    cfg.TEST.SGG = CN()
    # K of R@K, mR@K, ng-R@K, zsR@K, A@K (number of kept triplets per image).
    cfg.TEST.SGG.RECALL_KS = (20, 50, 100)
    # IoU of subject and object boxes with the GT needed for a match (protocol: 0.5).
    cfg.TEST.SGG.IOU_THRESHOLD = 0.5
    # Triplet NMS (Factorizable Net): a triplet is dropped when a higher-scored one has the
    # same subject class, object class and predicate and both subject and object boxes
    # overlap it with IoU > this threshold. Applied in SGDet only (the authors' code skips
    # it with GT boxes). 0 = off (F-Net configs: 0.4, the authors' value).
    cfg.TEST.SGG.TRIPLET_NMS_THRESH = 0.0
    # SGDet: per-class NMS with this IoU on the objects' final classes (a context model that
    # re-classifies detections can turn two detections into same-class copies of one
    # object; MOTIFS applies the same NMS to its decoded classes). <= 0 = off.
    cfg.TEST.SGG.OBJECT_NMS_THRESH = 0.5
    # SGDet only: candidate pairs restricted to overlapping boxes (protocol flag).
    cfg.TEST.SGG.SGDET_OVERLAP_ONLY = False
    # Validation metric that selects model_best.pth during training (TEST.EVAL_PERIOD > 0;
    # DATASETS.TEST must be a validation split). "" disables.
    cfg.TEST.SGG.BEST_CHECKPOINT_METRIC = "sgg/mR@50"
    return cfg


def _add_grounding_config(cfg: CN) -> None:
    """``MODEL.SGG.GROUNDING``: segmentation grounding (seed 004), docs/GROUNDING.md."""
    g = cfg.MODEL.SGG.GROUNDING = CN()
    # Ground objects and relations in masks transferred from the auxiliary mask head.
    g.ENABLED = False
    # d_m: classes of the auxiliary mask dataset (mask head and auxiliary box predictor).
    g.AUX_NUM_CLASSES = 80
    # Word-vector file giving the target x auxiliary similarity S ("" = none: error).
    g.WORD_VECTORS = ""
    # Its format: "auto", "glove" (text, no header), "word2vec", "word2vec_binary", "kv".
    g.WORD_VECTORS_FORMAT = "auto"
    # Normalisation of S: "dot" (the paper), "softmax" (rows), "cosine".
    g.SIMILARITY = "dot"
    # "softmax": temperature of the row softmax over dot products.
    g.SOFTMAX_TEMPERATURE = 1.0
    # "softmax": entries below this are zeroed (the row maximum is kept), rows renormalised.
    g.SOFTMAX_THRESHOLD = 0.0
    # Where S acts: "logits" (target logits = S x auxiliary logits, then sigmoid) or "probs"
    # (target mask = S x auxiliary probabilities, clipped to [0, 1]); docs/GROUNDING.md.
    g.TRANSFER_SPACE = "logits"
    # A target class named exactly like an auxiliary class takes that class's mask only
    # (one-hot row of S; not in the paper, so off by default).
    g.EXACT_NAME_MATCH = False
    # Optional JSON file {target class name: auxiliary class name} of one-hot rows of S.
    g.CLASS_MAPPING_FILE = ""
    # Cache folder of the class word vectors; "" = <OUTPUT_DIR>/grounding_cache.
    g.CACHE_DIR = ""
    # Grounded nodes: object features f_N([RoI feature, transferred mask]).
    g.NODES = True
    # Grounded edges: Gaussian-smoothed masks in the union-box frame fused with union features.
    g.EDGES = True
    # How a pair's two smoothed masks combine: "product" (the paper), "average", "union".
    g.EDGE_COMBINE = "product"
    # Side (pixels) of the union-box frame the masks are resampled into.
    g.UNION_MASK_SIZE = 32
    # Side (odd) of each object's learned Gaussian kernel, in union-frame pixels.
    g.KERNEL_SIZE = 9
    # Width of the mask encodings fed to the node and edge networks.
    g.MASK_FEATURE_DIM = 128
    # Mask refinement head on the context's object representation (zero-initialised).
    g.REFINE = True
    # Side of the refinement residual before upsampling to the mask head's resolution.
    g.REFINE_RESOLUTION = 14
    # Weight of the refinement pixel loss (auxiliary images, relation stage).
    g.REFINE_LOSS_WEIGHT = 1.0
    # Use the refined masks at inference (False: the transferred masks, for ablations).
    g.REFINE_AT_TEST = True
    # The paper's final model: the context's object representation refines the masks, which
    # then ground the nodes and edges of a second context pass whose outputs give the
    # relations (False: nodes and edges use the unrefined masks; one context pass).
    g.USE_REFINED_MASKS = True
    # Auxiliary images per batch cap their context pairs at this many (training).
    g.AUX_PAIRS_PER_IMAGE = 64
    # Box head of the auxiliary images: "shared" with the target classes, or "separate" (a
    # second box head of the same architecture, ``roi_heads.aux_box_head``); backbone and
    # RPN stay shared either way. docs/GROUNDING.md, "Joint detector vs plain detector".
    g.AUX_BOX_HEAD = "shared"
    # Joint detector: weight of the auxiliary losses (loss_cls_aux, loss_box_reg_aux,
    # loss_mask) against the target losses.
    g.AUX_LOSS_WEIGHT = 1.0


def validate_sgg_config(cfg: CN) -> None:
    """Check sgg_d2 keys after all merges; raise ``ValueError`` naming the bad key.

    Raises:
        ValueError: e.g. ``MODEL.SGG.MODE`` not one of :data:`SGG_MODES`.
    """
    mode = cfg.MODEL.SGG.MODE
    if mode not in SGG_MODES:
        raise ValueError(f"MODEL.SGG.MODE is {mode!r}; valid values are {', '.join(SGG_MODES)}")
    if cfg.TEST.AUG.ENABLED:
        raise ValueError(
            "TEST.AUG.ENABLED is True, but sgg_d2 has no test-time augmentation (neither for "
            "scene-graph models nor for its detector configs): merging relation predictions "
            "across flips and scales is not defined. Set TEST.AUG.ENABLED False."
        )
