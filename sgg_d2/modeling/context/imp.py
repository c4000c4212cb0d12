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
paper's predicate classifier has no frequency prior (``paper_frequency_bias = False``;
``MODEL.SGG.USE_FREQUENCY_BIAS: True`` adds it). All pairs of the batch are processed
together (``index_add_`` over the global pair indices); an object without pairs only
receives zero messages.

Message scale (``MODEL.SGG.IMP.MESSAGE_REDUCE``): the paper sums the node messages, so a
node's message grows with its number of edges: in training a node sees a few of the ~256
sampled pairs of its image, at test all N(N-1) candidate pairs (up to ~2(N-1) per node),
and the GRU gets inputs of a scale it never saw. The default "mean" divides each node
message by the node's number of edges, which makes the scale independent of the number
of pairs; "sum" is the paper's formula.
"""

import torch
from detectron2.config import configurable
from torch import nn

from .build import CONTEXT_REGISTRY, ContextInputs, ContextModel, ContextOutputs

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
        reduce: "mean" over the node's edges (the scale does not depend on the degree) or
            "sum" (paper).

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
class IMPContext(ContextModel):
    """Iterative message passing between object (node) and pair (edge) GRUs.

    See the module docstring. ``pair_dim`` = ``hidden_dim``.
    """

    paper_frequency_bias = False
    config_section = "IMP"
    config_keys = {
        "num_iterations": "NUM_ITERATIONS",
        "reduce": "MESSAGE_REDUCE",
    }

    @configurable
    def __init__(self, *, num_iterations: int = 2, reduce: str = "mean", **shared):
        """
        Args:
            num_iterations: rounds of message passing (0 = the GRUs' first states only).
            reduce: node-message reduction, one of ``REDUCTIONS``.
            shared: the widths of :class:`ContextModel` (``hidden_dim``: H, the size of
                the node and edge GRU states; ``dropout`` on the projected RoI and union
                features; ``embed_dim`` is unused).
        """
        super().__init__(**shared)
        if num_iterations < 0:
            raise ValueError(f"IMP num_iterations must be >= 0, got {num_iterations}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"IMP reduce {reduce!r}; valid: {', '.join(REDUCTIONS)}")
        self.num_iterations = num_iterations
        self.reduce = reduce
        h = self.hidden_dim
        self.obj_proj = nn.Sequential(
            nn.Linear(self.obj_dim, h), nn.ReLU(), nn.Dropout(self.dropout_p)
        )
        self.union_proj = nn.Sequential(
            nn.Linear(self.union_dim, h), nn.ReLU(), nn.Dropout(self.dropout_p)
        )
        self.node_gru = nn.GRUCell(h, h)
        self.edge_gru = nn.GRUCell(h, h)
        self.node_subj_gate = nn.Linear(2 * h, 1)
        self.node_obj_gate = nn.Linear(2 * h, 1)
        self.edge_subj_gate = nn.Linear(2 * h, 1)
        self.edge_obj_gate = nn.Linear(2 * h, 1)
        self.classifier = nn.Linear(h, self.num_classes)
        self.pair_dim = h

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
