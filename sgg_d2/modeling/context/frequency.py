"""Frequency baseline (Zellers et al., "Neural Motifs", 2018): predicate from class pair.

No context and no visual pair features: the predicate is predicted by the frequency bias
log p(predicate | subject class, object class) alone (``RelationPredictor``; the bias is
this model, so ``paper_frequency_bias`` is True), on the detector's object classes.
"""

from detectron2.config import configurable

from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs

__all__ = ["FrequencyBaseline"]


@CONTEXT_REGISTRY.register()
class FrequencyBaseline(ContextModel):
    """Passes the detector's class logits through; gives no pair features."""

    pair_dim = None
    needs_union_features = False
    paper_frequency_bias = True

    @configurable
    def __init__(self, **shared):
        """
        Args:
            shared: the widths of :class:`ContextModel` (all unused: nothing is learned).
        """
        super().__init__(**shared)

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        return ContextOutputs(obj_logits=inputs.obj_logits)
