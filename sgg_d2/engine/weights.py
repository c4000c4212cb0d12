"""Strict loading of ``MODEL.WEIGHTS`` and of resume checkpoints.

Detectron2's checkpointer skips every entry whose shape differs from the model's (one
warning each) and leaves entries the checkpoint lacks at their initialisation. That is
right for a first training from an ImageNet backbone, and wrong when, say, a 3-class
checkpoint meets an 11-class config at inference: the run then succeeds with a partly
random model. :class:`StrictCheckpointer` refuses such loads:

- a shape mismatch is always an error, in one line: the file, the first mismatching
  entry (parameters before buffers), both shapes, and the config key behind it when it is
  a class or predicate count (``MODEL.ROI_HEADS.NUM_CLASSES``, ``MODEL.SGG.NUM_PREDICATES``,
  ``MODEL.SGG.GROUNDING.AUX_NUM_CLASSES``);
- a *complete* load must also fill every entry of the model and use every entry of the
  checkpoint (missing or unused entries are an error naming a few). Complete are
  inference and evaluation loads (``require_complete=True``: ``SceneGraphPredictor``,
  ``--eval-only``) and a resume (a load that restores the training state along with the
  model, e.g. ``--resume``);
- a weights-only load during training (``MODEL.WEIGHTS`` initialising a detector from an
  ImageNet backbone or another model) keeps Detectron2's behaviour for missing and unused
  entries: they are logged, not refused.

The intended partial load, a detector checkpoint into a relation model, goes through
``MODEL.SGG.DETECTOR_WEIGHTS`` (:class:`~sgg_d2.engine.checkpoint.DetectorWeightsCheckpointer`).
To fine-tune a detector from one trained on other classes, drop the checkpoint's
``roi_heads.box_predictor.*`` entries first.
"""

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["StrictCheckpointer", "WeightsMismatchError"]

# Entries whose first dimension is a count set in the config:
# (entry, config key, what it counts, rows that are not counted: the background row)
_COUNTS = (
    ("roi_heads.box_predictor.cls_score.weight", "MODEL.ROI_HEADS.NUM_CLASSES", "classes", 1),
    ("sgg_predicate_names", "MODEL.SGG.NUM_PREDICATES", "predicates", 0),
    (
        "roi_heads.aux_box_predictor.cls_score.weight",
        "MODEL.SGG.GROUNDING.AUX_NUM_CLASSES",
        "auxiliary classes",
        1,
    ),
)

# SceneGraphRCNN's metadata buffers (class/predicate names, statistics): weights written
# before they existed lack them, and the predictor then takes the names from a dataset.
_METADATA_PREFIX = "sgg_"


class WeightsMismatchError(ValueError):
    """A checkpoint does not fit the model built from the config (one-line message)."""


def count_hint(wrong_shapes: Sequence[Tuple[str, tuple, tuple]]) -> str:
    """What the config and the checkpoint disagree on, from the mismatching entries.

    Args:
        wrong_shapes: (entry, shape in the checkpoint, shape in the model) triples.

    Returns:
        e.g. "the config's MODEL.ROI_HEADS.NUM_CLASSES is 11, the checkpoint was trained
        with 3 classes"; a generic hint when no count entry differs.
    """
    shapes = {k: (ckpt, model) for k, ckpt, model in wrong_shapes}
    hints = [
        f"the config's {key} is {shapes[entry][1][0] - extra}, the checkpoint was trained "
        f"with {shapes[entry][0][0] - extra} {what}"
        for entry, key, what, extra in _COUNTS
        if entry in shapes
    ]
    if hints:
        return "; ".join(hints)
    return (
        "the config builds another model than the one the checkpoint was trained with "
        "(other widths or options?); use the config saved with the weights (its config.yaml)"
    )


def _examples(keys: Iterable[str], n: int = 3) -> str:
    keys = list(keys)
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


class StrictCheckpointer(DetectionCheckpointer):
    """Detectron2's ``DetectionCheckpointer`` that refuses weights that do not fit the
    model (policy in the module docstring). Reads the same formats (``.pth``, model-zoo
    ``.pkl``) and saves as it does.

    Args:
        model: the model to load into (a DDP wrapper is unwrapped, as by Detectron2).
        save_dir: folder of the checkpoints (``last_checkpoint``), as for Detectron2.
        require_complete: every load must fill every model entry and use every checkpoint
            entry (inference, evaluation); otherwise only loads that restore the training
            state (resume) must.
        key: the config key named in messages for weights-only loads.
        checkpointables: saved and restored with the model, as for Detectron2.

    Raises (from ``load`` / ``resume_or_load``):
        WeightsMismatchError: naming the file, the entry and both shapes (or the missing /
            unused entries), with a hint.
    """

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        require_complete: bool = False,
        key: str = "MODEL.WEIGHTS",
        **checkpointables,
    ):
        super().__init__(model, save_dir, **checkpointables)
        self.require_complete = bool(require_complete)
        self.key = key
        self._path = ""
        self._what = key  # the checkpoint's role in messages: the key, or a resume
        self._complete = self.require_complete

    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict:
        """As Detectron2's ``load``. A load that restores checkpointables (all of them when
        ``checkpointables`` is None) restores a training state, so it is complete."""
        self._path = path
        restores = bool(self.checkpointables if checkpointables is None else checkpointables)
        self._complete = self.require_complete or restores
        self._what = "resume checkpoint" if restores else self.key
        return super().load(path, checkpointables=checkpointables)

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        where = f"{self._what}: {self._path}"
        if incompatible.incorrect_shapes:
            order = self._entry_order()
            wrong = sorted(incompatible.incorrect_shapes, key=lambda e: order.get(e[0], 1 << 30))
            name, ckpt, model = wrong[0]
            others = f" ({len(wrong)} entries differ in shape)" if len(wrong) > 1 else ""
            raise WeightsMismatchError(
                f"{where}: parameter {name} has shape {tuple(ckpt)} in the checkpoint but "
                f"{tuple(model)} in the model{others}: {count_hint(wrong)}"
            )
        if self._complete:
            self._check_complete(incompatible, where)
        return incompatible

    def _entry_order(self) -> Dict[str, int]:
        """Position of each model entry: parameters first, then buffers."""
        names = [n for n, _ in self.model.named_parameters()]
        names += [n for n, _ in self.model.named_buffers()]
        return {n: i for i, n in enumerate(names)}

    def _check_complete(self, incompatible, where: str) -> None:
        missing = [k for k in incompatible.missing_keys if not k.startswith(_METADATA_PREFIX)]
        if missing:
            total = len(self.model.state_dict())
            detector_hint = ""
            if hasattr(self.model, "detector_modules"):
                detector_hint = (
                    " (a detector checkpoint? it starts a relation training through "
                    "MODEL.SGG.DETECTOR_WEIGHTS)"
                )
            raise WeightsMismatchError(
                f"{where}: the checkpoint lacks {len(missing)} of the model's {total} "
                f"entries, e.g. {_examples(missing)}{detector_hint}; give weights trained "
                "with this config"
            )
        if incompatible.unexpected_keys:
            unused = incompatible.unexpected_keys
            raise WeightsMismatchError(
                f"{where}: the checkpoint holds entries the model does not have "
                f"({len(unused)}: {_examples(unused)}): the config builds a smaller model than "
                "the one trained (another MODEL.SGG.CONTEXT, grounding off?); use the "
                "config saved with the weights (its config.yaml)"
            )
