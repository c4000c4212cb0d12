"""TDE (Tang et al., CVPR 2020, "Unbiased Scene Graph Generation from Biased Training").

The paper reads a scene-graph model as a causal graph: the image I gives object features
X, X gives object labels Z, and the predicate Y depends on X (through the context model),
on Z (the frequency prior) and on I (the union box). It trains the model as usual and
removes at test time the part of the prediction that does not come from what the pair
looks like: the Total Direct Effect ``TDE = Y_x(u) - Y_{x_bar, z}(u)``, the prediction
minus the prediction of a counterfactual world in which X is wiped out (set to its mean
``x_bar``) while the labels stay ``z``.

:class:`CausalPredictor` replaces the shared ``RelationPredictor`` when
``MODEL.SGG.CAUSAL.ENABLED``. Three branches give (R, P + 1) logits each: the context
branch (``classifier``: a linear map of ``ContextOutputs.pair_features``), the visual
branch (``visual``: a linear map of the pair's union-box feature ``union_features``) and
the frequency branch (``freq_bias``: the shared :class:`FrequencyBias` of the pair's
labels). ``MODEL.SGG.CAUSAL.FUSION`` (:func:`fuse`): ``"sum"`` adds them, ``"gate"`` is
the paper's GATE, ``ctx * sigmoid(vis + freq + W_g x_e)`` with ``W_g`` a second linear map
of the pair features (``gate``).

What is averaged (the "untreated" X): the per-object inputs of the context stage, each a
moving average over the objects of every training batch with momentum
``MODEL.SGG.CAUSAL.MOMENTUM`` (the authors' 0.0005), kept in persistent buffers (saved in
checkpoints) and updated in training forwards only: the RoI features ``obj_features``, the
box layout ``box_layout`` (the authors average the position embedding with them) and the
class distribution ``softmax(obj_logits)`` (the authors average its embedding; fed back as
``log`` of the average). Read bias-corrected, ``avg / (1 - (1 - m)^n)`` after n updates
(the authors read their zero-initialised buffers as they are: the same after their 50k
iterations, and the mean of the batches seen, not a value shrunk towards 0, on a short
schedule). The union-box features (I) and the boxes are the image's and are kept.

At inference with ``MODEL.SGG.CAUSAL.EFFECT_TYPE`` other than ``"none"``, the context model
runs again on the same pairs with the averaged inputs (:meth:`counterfactual_inputs`):
``Y_{x_bar, z}`` with the factual pass' final labels given (``gt_labels``: the context sees
z and the frequency branch takes z), and, for NIE and TE, ``Y_{x_bar, z_bar}`` with the
labels left to the context (``z_bar``: its arg-max on the averaged inputs; PredCls' labels
are given, so there ``z_bar = z``). :func:`causal_effect`: ``TDE = Y_x,z - Y_x_bar,z``,
``NIE = Y_x_bar,z - Y_x_bar,z_bar`` (the effect of the labels alone; the paper's
subtracted term, ``TE - TDE``), ``TE = Y_x,z - Y_x_bar,z_bar``. The effect is taken on all
P + 1 logits, background included, and ranked as any logits are (softmax, background
column dropped), as in the authors' code. In sum fusion the visual branch cancels (I is
the same in both worlds) and so does the frequency branch in TDE.

Training adds each branch's own cross-entropy on the sampled pairs' labels
(``loss_tde_context``, ``loss_tde_visual``, ``loss_tde_frequency``, each weighted by
``MODEL.SGG.CAUSAL.AUX_LOSS_WEIGHT``; 0 = none) so that each branch predicts on its own;
with gate fusion only the context branch's, as in the authors' code.

Differences from the authors' code (one mechanism for every context model instead of hooks
inside MOTIFS / VCTree): their counterfactual keeps MOTIFS' object-context LSTM on the
real features and averages the decoder and edge-context inputs and the pair-box geometry;
here the context model runs on averaged inputs end to end. Their frequency branch takes
the class distributions under TDE in SGCls / SGDet; here it takes the final labels (z).
As in the authors' causal models, MOTIFS' / VCTree's pair features lose their union-box
gate under the causal predictor (``build_predictor.py``) and are gated by an embedding of
the pair's box geometry instead (``spatial_context``), averaged in the counterfactual
worlds; union-gated, the counterfactual kept each pair's visual evidence.

Context models: every one with pair features (MOTIFS, VCTree as in the paper; IMP,
LinkNet, RelDN, F-Net: their per-object inputs are averaged the same way; LinkNet, RelDN
and F-Net also read the boxes' geometry, which is kept). F-Net reads no union features:
they are computed for the visual branch. Not the Frequency baseline: no context branch.
"""

from dataclasses import replace
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ...config import check_choice
from ..context.build import ContextInputs, ContextOutputs
from .causal_effects import EFFECT_TYPES, FUSIONS, causal_effect, fuse
from .geometry import BOX_LAYOUT_DIM, PAIR_GEOMETRY_DIM, pair_geometry
from .losses import relation_loss
from .predictor import FrequencyBias

__all__ = [
    "EFFECT_TYPES",
    "FUSIONS",
    "CausalPredictor",
    "causal_effect",
    "fuse",
]


class CausalPredictor(nn.Module):
    """Context, visual and frequency branches, moving averages of the context inputs and
    the counterfactual effects (see the module docstring).

    Attributes:
        classifier: the context branch, ``nn.Linear(pair_dim, P + 1)``.
        visual: the visual branch, ``nn.Linear(union_dim, P + 1)``.
        freq_bias: :class:`FrequencyBias` or None (``MODEL.SGG.USE_FREQUENCY_BIAS: False``).
        gate: ``nn.Linear(pair_dim, P + 1)`` (gate fusion) or None.
        spatial: with ``spatial_context``, the pair-geometry embedding that gates the
            context branch's input (``pair_geometry`` (R, 9) -> (R, pair_dim)), else None.
        avg_obj_features (D,), avg_box_layout (9,), avg_class_probs (C,),
            avg_pair_geometry (9,): the moving averages (buffers, not yet bias-corrected);
            num_updates: their update count.
    """

    def __init__(
        self,
        *,
        pair_dim: int,
        union_dim: int,
        obj_dim: int,
        num_classes: int,
        num_predicates: int,
        freq_tensor: Optional[torch.Tensor] = None,
        fusion: str = "sum",
        effect_type: str = "none",
        momentum: float = 0.0005,
        aux_loss_weight: float = 1.0,
        spatial_context: bool = False,
    ):
        """
        Args:
            pair_dim, union_dim, obj_dim: widths of the pair, union-box and RoI features.
            num_classes: C; num_predicates: P.
            freq_tensor: (C, C, P + 1) counts of the frequency branch, or None (no branch).
            fusion, effect_type: one of ``FUSIONS`` / ``EFFECT_TYPES``.
            momentum: m of the moving averages, in (0, 1].
            aux_loss_weight: weight of each branch's own cross-entropy (0: none).
            spatial_context: gate the context branch's pair features by an embedding of
                the pair's box geometry, averaged in the counterfactual worlds (the
                authors' causal MOTIFS / VCTree, whose pair features carry no union gate).
        """
        super().__init__()
        check_choice("MODEL.SGG.CAUSAL.FUSION", fusion, FUSIONS)
        check_choice("MODEL.SGG.CAUSAL.EFFECT_TYPE", effect_type, EFFECT_TYPES)
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"MODEL.SGG.CAUSAL.MOMENTUM is {momentum}; expected 0 < m <= 1")
        if aux_loss_weight < 0:
            raise ValueError(
                f"MODEL.SGG.CAUSAL.AUX_LOSS_WEIGHT is {aux_loss_weight}; expected >= 0"
            )
        self.effect_type, self.momentum = effect_type, float(momentum)
        self.aux_loss_weight = float(aux_loss_weight)
        self.classifier = nn.Linear(pair_dim, num_predicates + 1)
        self.visual = nn.Linear(union_dim, num_predicates + 1)
        self.freq_bias = FrequencyBias(freq_tensor) if freq_tensor is not None else None
        self.gate = nn.Linear(pair_dim, num_predicates + 1) if fusion == "gate" else None
        self.register_buffer("avg_obj_features", torch.zeros(obj_dim))
        self.register_buffer("avg_box_layout", torch.zeros(BOX_LAYOUT_DIM))
        self.register_buffer("avg_class_probs", torch.zeros(num_classes))
        self.register_buffer("avg_pair_geometry", torch.zeros(PAIR_GEOMETRY_DIM))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.spatial = None
        if spatial_context:
            self.spatial = nn.Sequential(
                nn.Linear(PAIR_GEOMETRY_DIM, 128),
                nn.ReLU(inplace=True),
                nn.Linear(128, pair_dim),
                nn.ReLU(inplace=True),
            )

    # ------------------------------------------------------------------ branches
    def branches(self, pair_features, subj_labels, obj_labels, union_features):
        """(ctx, vis, freq, gate) logits, each (R, P + 1); freq is 0 without the frequency
        branch, gate None in sum fusion."""
        if union_features is None:
            raise ValueError("CausalPredictor needs the pairs' union_features (visual branch)")
        ctx = self.classifier(pair_features)
        freq = 0
        if self.freq_bias is not None:
            freq = self.freq_bias(subj_labels, obj_labels)
        gate = self.gate(pair_features) if self.gate is not None else None
        return ctx, self.visual(union_features), freq, gate

    def forward(self, pair_features, subj_labels, obj_labels, union_features) -> torch.Tensor:
        """
        Args:
            pair_features: (R, pair_dim); subj_labels, obj_labels: (R,) int64 classes;
            union_features: (R, union_dim) of the same pairs.

        Returns:
            (R, P + 1) fused logits (:func:`fuse`).
        """
        return fuse(*self.branches(pair_features, subj_labels, obj_labels, union_features))

    def scorer(self, inputs: ContextInputs) -> Callable:
        """``(pair_features, subj_labels, obj_labels) -> logits`` on ``inputs``' pairs (their
        union features and geometry): the predictor as context models' losses call it
        (VCTree's reward); the geometry is computed only if it is called."""

        def score(pair_features, subj_labels, obj_labels):
            rep = self.context_rep(pair_features, self._geometry(inputs))
            return self(rep, subj_labels, obj_labels, inputs.union_features)

        return score

    def context_rep(self, pair_features, geometry: Optional[torch.Tensor]) -> torch.Tensor:
        """The context branch's input: ``pair_features`` (R, pair_dim), gated by the
        embedding of ``geometry`` ((R, 9) or (9,) the average) with ``spatial_context``."""
        if self.spatial is None:
            return pair_features
        return pair_features * self.spatial(geometry.to(pair_features.dtype))

    def _geometry(self, inputs: ContextInputs) -> Optional[torch.Tensor]:
        """(R, 9) ``pair_geometry`` of every pair, images in order; None without
        ``spatial_context``."""
        if self.spatial is None:
            return None
        out, pairs = [], inputs.pairs.split(list(inputs.num_pairs))
        for p, size in zip(pairs, inputs.image_sizes):
            out.append(pair_geometry(inputs.boxes[p[:, 0]], inputs.boxes[p[:, 1]], size))
        return torch.cat(out) if out else inputs.boxes.new_zeros((0, PAIR_GEOMETRY_DIM))

    # ------------------------------------------------------------- averages
    @torch.no_grad()
    def update_averages(
        self, inputs: ContextInputs, geometry: Optional[torch.Tensor] = None
    ) -> None:
        """Move the averages towards this batch's object means (training only; a no-op in
        eval mode or for a batch without objects).

        Args:
            geometry: the pairs' (R, 9) geometry when the caller has it (else computed).
        """
        if not self.training or len(inputs.obj_features) == 0:
            return
        batch = (inputs.obj_features, inputs.box_layout, inputs.obj_logits.softmax(dim=1))
        if self.spatial is not None and len(inputs.pairs):
            batch += (self._geometry(inputs) if geometry is None else geometry,)
        for avg, x in zip(self._buffers_averaged(), batch):
            avg.mul_(1.0 - self.momentum).add_(
                x.detach().mean(0).to(avg.dtype), alpha=self.momentum
            )
        self.num_updates += 1

    def _buffers_averaged(self):
        return (
            self.avg_obj_features,
            self.avg_box_layout,
            self.avg_class_probs,
            self.avg_pair_geometry,
        )

    def averages(self) -> Tuple[torch.Tensor, ...]:
        """Bias-corrected means (D,), (9,), (C,), (9,) of the object features, box layouts,
        class distributions and pair geometries seen in training.

        Raises:
            ValueError: no update yet (a model not trained with the causal predictor).
        """
        n = int(self.num_updates)
        if n == 0:
            raise ValueError(
                f"MODEL.SGG.CAUSAL.EFFECT_TYPE {self.effect_type!r} needs the feature averages "
                "of training, but this model has none (num_updates 0): evaluate a model trained "
                "with MODEL.SGG.CAUSAL.ENABLED, or set EFFECT_TYPE 'none'"
            )
        scale = 1.0 / (1.0 - (1.0 - self.momentum) ** n)
        return tuple(avg * scale for avg in self._buffers_averaged())

    def counterfactual_inputs(
        self, inputs: ContextInputs, labels: Optional[torch.Tensor]
    ) -> ContextInputs:
        """``inputs`` with every object's features, box layout and class distribution
        replaced by the averages; same pairs, boxes and union features.

        Args:
            labels: (N,) int64 labels given to the context (``gt_labels``), or None (the
                context labels the objects itself).
        """
        obj, layout, probs, _ = self.averages()
        n = len(inputs.obj_features)

        def rows(x, like):
            return x.to(like.dtype).expand(n, -1).contiguous()

        return replace(
            inputs,
            obj_features=rows(obj, inputs.obj_features),
            box_layout=rows(layout, inputs.box_layout),
            obj_logits=rows(probs.clamp(min=1e-12).log(), inputs.obj_logits),
            gt_labels=labels,
        )

    # ------------------------------------------------------------- the heads' calls
    def predict(
        self, inputs: ContextInputs, outputs: ContextOutputs, labels: torch.Tensor, context
    ) -> torch.Tensor:
        """The relation logits the ROI heads use; updates the averages in training.

        Args:
            inputs: what the context saw (with ``union_features``); outputs: its outputs.
            labels: (N,) int64 final object labels.
            context: the context model (called for the counterfactual passes).

        Returns:
            (R, P + 1): the fused logits (training, "none"), else the effect.
        """
        pairs, union = inputs.pairs, inputs.union_features
        subj, obj = labels[pairs[:, 0]], labels[pairs[:, 1]]
        geometry = self._geometry(inputs)
        rep = self.context_rep(outputs.pair_features, geometry)
        factual = self(rep, subj, obj, union)
        self.update_averages(inputs, geometry)  # a no-op at inference
        if self.training or self.effect_type == "none":
            return factual
        with torch.no_grad():
            kept = context(self.counterfactual_inputs(inputs, labels))
            fixed = self(self._untreated_rep(kept.pair_features), subj, obj, union)
            free = None
            if self.effect_type != "TDE":
                free = self._labels_free_logits(inputs, kept, context)
        return causal_effect(self.effect_type, factual, fixed, free)

    def _untreated_rep(self, pair_features: torch.Tensor) -> torch.Tensor:
        """The context branch's input in a counterfactual world: the pair geometry is its
        training average too."""
        if self.spatial is None:
            return pair_features
        return self.context_rep(pair_features, self.averages()[3].expand(len(pair_features), -1))

    def _labels_free_logits(self, inputs: ContextInputs, kept: ContextOutputs, context):
        """``Y_{x_bar, z_bar}``: labels given only in PredCls (not caused by X there)."""
        if inputs.gt_labels is not None:
            out, labels = kept, inputs.gt_labels
        else:
            out = context(self.counterfactual_inputs(inputs, None))
            labels = out.obj_logits.argmax(dim=1)
        pairs = inputs.pairs
        return self(
            self._untreated_rep(out.pair_features),
            labels[pairs[:, 0]],
            labels[pairs[:, 1]],
            inputs.union_features,
        )

    def losses(
        self, inputs: ContextInputs, outputs: ContextOutputs, labels, pair_labels, sample=None
    ) -> Dict[str, torch.Tensor]:
        """Each branch's own cross-entropy (sum fusion; gate: the context branch's only).

        Args:
            inputs, outputs: the context's inputs (with union features) and outputs.
            labels: (N,) int64 object labels; pair_labels: (R,) int64 relation labels.
            sample: rows of the pairs in the cross-entropy (bool mask or slice; all if None).

        Returns:
            ``loss_tde_context`` [, ``loss_tde_visual``, ``loss_tde_frequency``], weighted;
            empty with ``aux_loss_weight`` 0.
        """
        if self.aux_loss_weight == 0:
            return {}
        sample = slice(None) if sample is None else sample
        pairs = inputs.pairs
        branches = self.branches(
            self.context_rep(outputs.pair_features, self._geometry(inputs)),
            labels[pairs[:, 0]],
            labels[pairs[:, 1]],
            inputs.union_features,
        )
        names = ("context",) if self.gate is not None else ("context", "visual", "frequency")
        y = pair_labels[sample]
        return {
            f"loss_tde_{name}": self.aux_loss_weight * relation_loss(logits[sample], y)
            for name, logits in zip(names, branches)
            if torch.is_tensor(logits)  # no frequency branch: 0
        }
