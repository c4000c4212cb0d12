"""IMP (Xu, Zhu, Choy, Fei-Fei, "Scene Graph Generation by Iterative Message Passing",
CVPR 2017).

Every object is a node of the primal graph and every candidate pair an edge (a node of the
dual graph). Node states come from a GRU fed with the object's RoI feature, edge states
from a second GRU fed with the pair's union-box feature (both from a zero state). Then for
``num_iterations`` rounds, using the states of the previous round:

- node message: ``m_i = sum_{e = (i, j)} sigmoid(w_s . [h_i, h_e]) h_e
  + sum_{e = (j, i)} sigmoid(w_o . [h_i, h_e]) h_e`` (outgoing edges as subject, incoming
  edges as object);
- edge message: ``m_e = sigmoid(v_s . [h_s, h_e]) h_s + sigmoid(v_o . [h_o, h_e]) h_o``
  for the edge's subject ``s`` and object ``o``;
- each GRU takes its message as input and its previous state as hidden state.

The final node states give refined class logits (N, C) (also in PredCls, where the
predictor uses the GT labels); the final edge states are the pair features (R, H). The
frequency bias, when enabled, is added by the shared predictor. All pairs of the batch are
processed together (``index_add_`` over the global pair indices); an object without pairs
only receives zero messages.

``reduce="mean"`` (not the paper) divides each node message by its number of edges, so
the message scale does not depend on how many pairs were sampled around the node.
"""

import torch
from detectron2.config import configurable
from torch import nn

from .build import CONTEXT_REGISTRY, ContextInputs, ContextOutputs

__all__ = ["IMPContext", "node_messages", "edge_messages"]

REDUCTIONS = ("sum", "mean")


def node_messages(
    h_node: torch.Tensor,
    h_edge: torch.Tensor,
    pairs: torch.Tensor,
    subj_gate: nn.Module,
    obj_gate: nn.Module,
    reduce: str = "sum",
) -> torch.Tensor:
    """Gated sum (or mean) of the states of the edges around each node.

    Args:
        h_node: (N, H) node states; h_edge: (R, H) edge states.
        pairs: (R, 2) int64 (subject, object) node indices of the edges.
        subj_gate, obj_gate: maps (R, 2H) -> (R, 1), weights of outgoing/incoming edges.
        reduce: "sum" (paper) or "mean" over the node's edges.

    Returns:
        (N, H) messages; zero for nodes without edges.
    """
    s, o = pairs[:, 0], pairs[:, 1]
    w_s = torch.sigmoid(subj_gate(torch.cat([h_node[s], h_edge], 1)))
    w_o = torch.sigmoid(obj_gate(torch.cat([h_node[o], h_edge], 1)))
    msg = h_node.new_zeros(h_node.shape)
    msg = msg.index_add(0, s, w_s * h_edge).index_add(0, o, w_o * h_edge)
    if reduce == "mean":
        degree = torch.bincount(pairs.reshape(-1), minlength=len(h_node))
        msg = msg / degree.clamp(min=1).unsqueeze(1).to(msg.dtype)
    return msg


def edge_messages(
    h_node: torch.Tensor,
    h_edge: torch.Tensor,
    pairs: torch.Tensor,
    subj_gate: nn.Module,
    obj_gate: nn.Module,
) -> torch.Tensor:
    """Gated sum of each edge's subject and object node states.

    Args:
        h_node: (N, H); h_edge: (R, H); pairs: (R, 2) int64.
        subj_gate, obj_gate: maps (R, 2H) -> (R, 1).

    Returns:
        (R, H) messages.
    """
    h_s, h_o = h_node[pairs[:, 0]], h_node[pairs[:, 1]]
    w_s = torch.sigmoid(subj_gate(torch.cat([h_s, h_edge], 1)))
    w_o = torch.sigmoid(obj_gate(torch.cat([h_o, h_edge], 1)))
    return w_s * h_s + w_o * h_o


@CONTEXT_REGISTRY.register()
class IMPContext(nn.Module):
    """Iterative message passing between object (node) and pair (edge) GRUs.

    See the module docstring. ``pair_dim`` = ``hidden_dim``.
    """

    needs_union_features = True

    @configurable
    def __init__(
        self,
        *,
        obj_dim: int,
        union_dim: int,
        num_classes: int,
        hidden_dim: int = 256,
        num_iterations: int = 2,
        dropout: float = 0.0,
        reduce: str = "sum",
    ):
        """
        Args:
            obj_dim: size of the RoI features; union_dim: size of union-box features.
            num_classes: C, real object classes.
            hidden_dim: H, size of the node and edge GRU states.
            num_iterations: rounds of message passing (0 = the GRUs' first states only).
            dropout: dropout on the projected RoI and union features.
            reduce: node-message reduction, one of ``REDUCTIONS``.
        """
        super().__init__()
        if num_iterations < 0:
            raise ValueError(f"IMP num_iterations must be >= 0, got {num_iterations}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"IMP reduce {reduce!r}; valid: {', '.join(REDUCTIONS)}")
        self.num_iterations = num_iterations
        self.reduce = reduce
        self.obj_proj = nn.Sequential(
            nn.Linear(obj_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.union_proj = nn.Sequential(
            nn.Linear(union_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.node_gru = nn.GRUCell(hidden_dim, hidden_dim)
        self.edge_gru = nn.GRUCell(hidden_dim, hidden_dim)
        self.node_subj_gate = nn.Linear(2 * hidden_dim, 1)
        self.node_obj_gate = nn.Linear(2 * hidden_dim, 1)
        self.edge_subj_gate = nn.Linear(2 * hidden_dim, 1)
        self.edge_obj_gate = nn.Linear(2 * hidden_dim, 1)
        self.classifier = nn.Linear(hidden_dim, num_classes)
        self.pair_dim = hidden_dim

    @classmethod
    def from_config(cls, cfg, obj_dim, union_dim):
        m = cfg.MODEL.SGG
        return {
            "obj_dim": obj_dim,
            "union_dim": union_dim,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "hidden_dim": m.CONTEXT_HIDDEN_DIM,
            "num_iterations": m.IMP.NUM_ITERATIONS,
            "dropout": m.CONTEXT_DROPOUT,
            "reduce": m.IMP.MESSAGE_REDUCE,
        }

    def initial_states(self, inputs: ContextInputs):
        """(N, H) node and (R, H) edge states before any message."""
        if inputs.union_features is None:
            raise ValueError("IMPContext needs inputs.union_features (needs_union_features)")
        if len(inputs.union_features) != len(inputs.pairs):
            raise ValueError(
                f"union_features has {len(inputs.union_features)} rows for "
                f"{len(inputs.pairs)} pairs"
            )
        h_node = self.node_gru(self.obj_proj(inputs.obj_features))
        h_edge = self.edge_gru(self.union_proj(inputs.union_features))
        return h_node, h_edge

    def forward(self, inputs: ContextInputs) -> ContextOutputs:
        """
        Returns:
            ``obj_logits`` (N, C) from the final node states and ``pair_features`` (R, H),
            the final edge states of ``inputs.pairs``.
        """
        h_node, h_edge = self.initial_states(inputs)
        pairs = inputs.pairs
        for _ in range(self.num_iterations):
            node_msg = node_messages(
                h_node, h_edge, pairs, self.node_subj_gate, self.node_obj_gate, self.reduce
            )
            edge_msg = edge_messages(h_node, h_edge, pairs, self.edge_subj_gate, self.edge_obj_gate)
            h_node, h_edge = self.node_gru(node_msg, h_node), self.edge_gru(edge_msg, h_edge)
        return ContextOutputs(
            obj_logits=self.classifier(h_node), pair_features=h_edge, obj_repr=h_node
        )
