"""Config keys of sgg_d2, added to a Detectron2 config by :func:`add_sgg_config`.

One small function per section adds its keys with their defaults and a comment saying
what each key does; :func:`add_sgg_config` calls them in order.
"""

from detectron2.config import CfgNode as CN

from .context_defaults import (
    add_fnet_config,
    add_imp_config,
    add_linknet_config,
    add_motifs_config,
    add_reldn_config,
    add_vctree_config,
)

__all__ = ["add_sgg_config", "check_choice", "validate_sgg_config", "SGG_MODES"]

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
    for add_section in (
        _add_stage_config,
        _add_solver_config,
        _add_relation_head_config,
        _add_causal_config,
        add_motifs_config,
        add_imp_config,
        add_vctree_config,
        add_linknet_config,
        add_reldn_config,
        add_fnet_config,
        _add_grounding_config,
        _add_input_config,
        _add_dataset_config,
        _add_sgg_data_config,
        _add_evaluation_config,
    ):
        add_section(cfg)
    return cfg


def _add_stage_config(cfg: CN) -> None:
    """``MODEL.SGG``: the mode and how the relation stage takes over the detector."""
    sgg = cfg.MODEL.SGG
    # Evaluation/training protocol: "predcls" (GT boxes + labels), "sgcls" (GT boxes),
    # "sgdet" (detected boxes). Resolved once, in the ROI heads.
    sgg.MODE = "sgdet"
    # A trained detector checkpoint loaded into the relation model before training starts
    # (stage handoff; training still starts at iteration 0). "" = none.
    sgg.DETECTOR_WEIGHTS = ""
    # Fewer than this fraction of the detector's parameters found in DETECTOR_WEIGHTS is an
    # error (a checkpoint of another model would leave a random, frozen detector).
    sgg.DETECTOR_WEIGHTS_MIN_MATCH = 0.9
    # Keep backbone, RPN and box head fixed (and in eval mode) in the relation stage.
    sgg.FREEZE_DETECTOR = True
    # Per-image backbone maps of the frozen detector, computed once per image, on the image
    # alone, and reused (modeling/feature_cache.py): MB kept in memory (0: none), and a
    # folder shared on disk by runs with the same detector ("": none). For small datasets
    # seen for many epochs (the synthetic worlds); VG150's maps do not fit in memory.
    sgg.FEATURE_CACHE_MB = 0
    sgg.FEATURE_CACHE_DIR = ""
    sgg.RELATION_BACKBONE = CN()
    # Pool union-box (predicate) features from a separate backbone of the detector's
    # architecture, initialised from MODEL.SGG.DETECTOR_WEIGHTS and trained with the relation
    # stage (RelDN); subject/object features stay the frozen detector's. Any context model.
    sgg.RELATION_BACKBONE.ENABLED = False


def _add_solver_config(cfg: CN) -> None:
    """``SOLVER``: the optimizer choice and resuming from a damaged checkpoint."""
    # --resume with a damaged last checkpoint: resume from the newest intact earlier one
    # (logged) instead of failing (train_net.py --resume-from-last-good sets it).
    cfg.SOLVER.RESUME_FROM_LAST_GOOD = False
    # "SGD" (Detectron2's optimizer: MOMENTUM, NESTEROV) or "ADAMW" (torch.optim.AdamW
    # with BETAS; WEIGHT_DECAY is then decoupled). Both take Detectron2's parameter groups
    # (WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS) and SOLVER.CLIP_GRADIENTS.
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BETAS = (0.9, 0.999)


def _add_relation_head_config(cfg: CN) -> None:
    """``MODEL.SGG``: the context model, pair sampling, widths and loss weights."""
    sgg = cfg.MODEL.SGG
    # Context model, a name in CONTEXT_REGISTRY (sgg_d2/modeling/context/, one file each):
    # FrequencyBaseline (frequency.py), IMPContext (imp.py), MotifsContext (motifs.py),
    # VCTreeContext (vctree.py), LinkNetContext (linknet.py), RelDNContext (reldn.py),
    # FactorizableNetContext (fnet.py).
    sgg.CONTEXT = "MotifsContext"
    # P, the number of real predicates (no background).
    sgg.NUM_PREDICATES = 50
    # Add the frequency bias log p(predicate | subject class, object class) to the logits:
    # None ("auto") follows the context model's paper (its ``paper_frequency_bias``: on for
    # Frequency, MOTIFS, VCTree, RelDN; off for IMP, LinkNet, F-Net); True/False force it.
    sgg.USE_FREQUENCY_BIAS = None
    # Relation pairs sampled per training image, and the largest positive fraction.
    sgg.BATCH_SIZE_PER_IMAGE = 256
    sgg.POSITIVE_FRACTION = 0.25
    # SGDet training: detections kept per image, and IoU for assigning them to GT objects.
    sgg.TRAIN_DETECTIONS_PER_IMAGE = 64
    sgg.MATCH_IOU_THRESHOLD = 0.5
    # Union-box features: output size, and pairs pooled at once (bounds peak memory).
    sgg.UNION_DIM = 1024
    sgg.UNION_CHUNK_SIZE = 1024
    # Context models: class/box embedding size, hidden size, dropout.
    sgg.EMBED_DIM = 128
    sgg.CONTEXT_HIDDEN_DIM = 256
    sgg.CONTEXT_DROPOUT = 0.0
    # Weight of the object-classification (refinement) loss in SGCls/SGDet.
    sgg.OBJ_LOSS_WEIGHT = 1.0
    # Weight of the predicate cross-entropy (LinkNet's lambda_1).
    sgg.REL_LOSS_WEIGHT = 1.0
    # Extra relation losses (names in RELATION_LOSS_REGISTRY) added for any context model.
    sgg.EXTRA_RELATION_LOSSES = []
    # Debiasing (docs/MODELS.md, "Debiasing"; sgg_d2/modeling/relation/debias.py), any
    # context model. Post-hoc logit adjustment (Menon et al. 2021) at inference: predicate
    # logits minus TAU * log p(predicate) of the training split; background untouched;
    # 0 = off. Applies to an already trained model (--eval-only ... TAU 1.0).
    sgg.LOGIT_ADJUSTMENT = CN()
    sgg.LOGIT_ADJUSTMENT.TAU = 0.0
    # Class weights of the predicate cross-entropy from the training split's predicate
    # counts: "none", "inverse" (1 / n_p) or "effective_number" (Cui et al. 2019:
    # (1 - beta) / (1 - beta^n_p)); predicate weights normalised to mean 1, background 1.
    sgg.PREDICATE_LOSS_WEIGHTING = "none"
    # beta of the effective number of samples, in [0, 1).
    sgg.EFFECTIVE_NUMBER_BETA = 0.999


def _add_causal_config(cfg: CN) -> None:
    """``MODEL.SGG.CAUSAL``: TDE (Tang et al. 2020) for any context model with pair
    features; docs/MODELS.md, "TDE"; sgg_d2/modeling/relation/causal.py."""
    c = cfg.MODEL.SGG.CAUSAL = CN()
    # The causal predictor (context, visual and frequency branches, moving averages of the
    # context inputs) instead of the shared predictor.
    c.ENABLED = False
    # Fusion of the branches' logits: "sum" or "gate" (ctx * sigmoid(vis + freq + gate)).
    c.FUSION = "sum"
    # At inference only: "none" (the fused logits), "TDE", "NIE" or "TE" (a second,
    # counterfactual context pass on the averaged inputs). Training ignores it.
    c.EFFECT_TYPE = "none"
    # Momentum of the moving averages, updated each training step (the authors' 0.0005).
    c.MOMENTUM = 0.0005
    # Weight of each branch's own cross-entropy (sum fusion: all three; gate: context); 0 off.
    c.AUX_LOSS_WEIGHT = 1.0


def _add_grounding_config(cfg: CN) -> None:
    """``MODEL.SGG.GROUNDING``: segmentation grounding (seed 004), docs/GROUNDING.md."""
    g = cfg.MODEL.SGG.GROUNDING = CN()
    # Ground objects and relations in masks transferred from the auxiliary mask head.
    g.ENABLED = False
    # d_m: classes of the auxiliary mask dataset (mask head and auxiliary box predictor).
    g.AUX_NUM_CLASSES = 80
    _add_similarity_config(g)
    _add_grounded_model_config(g)


def _add_similarity_config(g: CN) -> None:
    """``MODEL.SGG.GROUNDING``: the lingual similarity S that transfers the masks."""
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


def _add_grounded_model_config(g: CN) -> None:
    """``MODEL.SGG.GROUNDING``: grounded nodes and edges, mask refinement, auxiliary heads."""
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
    # How f_N / f_E fuse the mask encoding into the RoI / union feature z: "residual"
    # (z + W enc(m), W zero-initialised: the identity at initialisation) or "concat"
    # (ReLU(W [z, enc(m)]), freshly initialised; the earlier form).
    g.FUSION = "residual"
    # The mask that grounds a node (Eq. 5, masks over classes): "expected" (sum over target
    # classes of p(c) x the transferred mask of c; PredCls: the GT class's mask) or "argmax"
    # (the mask of the GT / arg-max class only; the earlier form).
    g.NODE_MASK = "expected"
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


def _add_input_config(cfg: CN) -> None:
    """``INPUT``: the train-time augmentations that sgg_d2 adds or changes."""
    # Flipping turns "left of" into "right of": off unless a config turns it on.
    cfg.INPUT.RANDOM_FLIP = "none"
    # Train-time quarter turns (0/90/180/270 degrees, uniform), for detector training on
    # orientation-free classes (the synthetic worlds' shapes); off for relation models.
    cfg.INPUT.RANDOM_ROTATE_90 = False


def _add_dataset_config(cfg: CN) -> None:
    """``DATASETS``: the auxiliary mask datasets and ``DATASETS.SGG`` (relation data)."""
    # Auxiliary mask dataset(s) (COCO format) mixed into training batches: the joint
    # detector (JointRCNN) and the relation stage's mask refinement. () = none.
    cfg.DATASETS.AUX_TRAIN = ()
    # Long-run fraction of each batch's images drawn from DATASETS.AUX_TRAIN.
    cfg.DATASETS.AUX_FRACTION = 0.25


def _add_sgg_data_config(cfg: CN) -> None:
    """``DATASETS.SGG``: how relation datasets are filtered, registered, checked and cached;
    ``DATALOADER.SGG_RESAMPLING``: how training images are resampled."""
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
    # Before training, image files of DATASETS.TRAIN are checked (exist, size = the
    # annotations' width/height; sgg_d2.data.validate): -1 all, 0 none, N > 0 an evenly
    # spread sample of N per dataset (for VG-sized data).
    cfg.DATASETS.SGG.VALIDATE_IMAGES = -1
    # BGNN's bi-level resampling of the training images (Li et al. 2021; sgg_d2/data/
    # resampling.py), for any model: images repeated by the rarest predicate they hold,
    # r_i = max_p max(1, sqrt(REPEAT_THRESHOLD / f_p)), f_p the predicate's share of all
    # training relations; in an image with r_i > 1, a relation of predicate p is dropped
    # with probability min(1, max(0, DROP_RATE * (1 - r_p / r_i))). The authors' values
    # (PySGG's BGNN training: REPEAT_FACTOR 0.13, INSTANCE_DROP_RATE 1.6).
    cfg.DATALOADER.SGG_RESAMPLING = CN()
    cfg.DATALOADER.SGG_RESAMPLING.ENABLED = False
    cfg.DATALOADER.SGG_RESAMPLING.REPEAT_THRESHOLD = 0.13
    cfg.DATALOADER.SGG_RESAMPLING.DROP_RATE = 1.6


def _add_evaluation_config(cfg: CN) -> None:
    """``TEST.SGG``: the relation metrics, test-time suppression and model selection."""
    t = cfg.TEST.SGG = CN()
    # K of R@K, mR@K, ng-R@K, zsR@K, A@K (number of kept triplets per image).
    t.RECALL_KS = (20, 50, 100)
    # IoU of subject and object boxes with the GT needed for a match (protocol: 0.5).
    t.IOU_THRESHOLD = 0.5
    # Triplet NMS (Factorizable Net): a triplet is dropped when a higher-scored one has the
    # same subject class, object class and predicate and both subject and object boxes
    # overlap it with IoU > this threshold. Applied in SGDet only (the authors' code skips
    # it with GT boxes). 0 = off (F-Net configs: 0.4, the authors' value).
    t.TRIPLET_NMS_THRESH = 0.0
    # SGDet: per-class NMS with this IoU on the objects' final classes (a context model that
    # re-classifies detections can turn two detections into same-class copies of one
    # object; MOTIFS applies the same NMS to its decoded classes). <= 0 = off.
    t.OBJECT_NMS_THRESH = 0.5
    # SGDet only: candidate pairs restricted to overlapping boxes (protocol flag).
    t.SGDET_OVERLAP_ONLY = False
    # mR@K[head] / [body] / [tail]: predicate classes grouped by their number of instances
    # in the dataset's train_split (docs/EVALUATION.md, "Head, body and tail"). MODE
    # "count": head > HEAD_ABOVE, tail < TAIL_BELOW instances (PySGG's VG150 groups);
    # "share": the same on the share of all training instances (HEAD_SHARE_ABOVE,
    # TAIL_SHARE_BELOW; for small datasets); "off": not reported.
    t.PREDICATE_GROUPS = CN()
    t.PREDICATE_GROUPS.MODE = "count"
    t.PREDICATE_GROUPS.HEAD_ABOVE = 10000
    t.PREDICATE_GROUPS.TAIL_BELOW = 500
    t.PREDICATE_GROUPS.HEAD_SHARE_ABOVE = 0.10
    t.PREDICATE_GROUPS.TAIL_SHARE_BELOW = 0.03
    # Validation metric that selects model_best.pth during training (TEST.EVAL_PERIOD > 0;
    # DATASETS.TEST must be a validation split). "" disables.
    t.BEST_CHECKPOINT_METRIC = "sgg/mR@50"


def check_choice(key: str, value, choices) -> None:
    """Raise a ``ValueError`` naming config ``key``, its ``value`` and the valid ``choices``
    when ``value`` is not one of them."""
    if value not in choices:
        raise ValueError(f"{key} is {value!r}; valid values are {', '.join(map(str, choices))}")


def validate_sgg_config(cfg: CN) -> None:
    """Check sgg_d2 keys after all merges; raise ``ValueError`` naming the bad key.

    Raises:
        ValueError: e.g. ``MODEL.SGG.MODE`` not one of :data:`SGG_MODES`.
    """
    check_choice("MODEL.SGG.MODE", cfg.MODEL.SGG.MODE, SGG_MODES)
    if cfg.TEST.AUG.ENABLED:
        raise ValueError(
            "TEST.AUG.ENABLED is True, but sgg_d2 has no test-time augmentation (neither for "
            "scene-graph models nor for its detector configs): merging relation predictions "
            "across flips and scales is not defined. Set TEST.AUG.ENABLED False."
        )
