"""Segmentation grounding, issue 29 items 2-3: f_N / f_E fusion that starts as the identity,
and the class-probability-weighted node mask of Eq. 5 (hand-made cases)."""

import pytest
import torch

from sgg_d2.modeling.grounding.edges import EdgeGrounding
from sgg_d2.modeling.grounding.module import SegmentationGrounding, expected_masks
from sgg_d2.modeling.grounding.nodes import MaskFusion, NodeGrounding

D, M = 6, 8


def test_residual_node_fusion_is_the_identity_at_initialisation_and_trains():
    torch.manual_seed(0)
    node = NodeGrounding(D, mask_dim=5)  # default: residual
    z, masks = torch.randn(4, D), torch.rand(4, M, M)
    out = node(z, masks)
    assert torch.equal(out, z)  # exactly the plain features
    (out * torch.randn(4, D)).sum().backward()
    assert node.fuse.proj.weight.grad is not None
    assert node.fuse.proj.weight.grad.abs().sum() > 0  # W learns from the first step


def test_residual_edge_fusion_is_the_identity_at_initialisation_and_trains():
    torch.manual_seed(0)
    edge = EdgeGrounding(3, union_dim=D, frame_size=12, kernel_size=3, mask_dim=5)
    union = torch.randn(2, D)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0]])
    pairs = torch.tensor([[0, 1], [1, 0]])
    out = edge(union, torch.rand(2, M, M), boxes, torch.softmax(torch.randn(2, 3), 1), pairs)
    assert torch.equal(out, union)
    (out * torch.randn(2, D)).sum().backward()
    assert edge.fuse.proj.weight.grad.abs().sum() > 0


def test_concat_fusion_is_the_earlier_form_and_keeps_its_parameter_names():
    torch.manual_seed(0)
    node = NodeGrounding(D, mask_dim=5, fusion="concat")
    z, masks = torch.randn(4, D), torch.rand(4, M, M)
    out = node(z, masks)
    linear = node.fuse.get_submodule("0")
    ref = torch.relu(linear(torch.cat([z, node.encoder(masks)], 1)))
    assert torch.equal(out, ref) and not torch.allclose(out, z)
    assert {"fuse.0.weight", "fuse.0.bias"} <= set(node.state_dict())  # old checkpoints load
    with pytest.raises(ValueError, match="MODEL.SGG.GROUNDING.FUSION"):
        MaskFusion(D, 5, "gated")


def test_expected_mask_by_hand_two_classes():
    m0, m1 = torch.zeros(2, 2), torch.ones(2, 2)
    m1[0, 0] = 0.5
    class_masks = torch.stack([m0, m1])[None].repeat(2, 1, 1, 1)  # (N=2, C=2, 2, 2)
    probs = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    out = expected_masks(class_masks, probs)
    assert out.shape == (2, 2, 2)
    torch.testing.assert_close(out[0], 0.25 * m0 + 0.75 * m1)  # weights sum to 1
    assert out[0, 0, 0] == 0.375 and out[0, 1, 1] == 0.75
    assert torch.equal(out[1], m0)  # one-hot: that class's mask


class _MaskHead:
    """Transfer by a fixed similarity in logit space (as MaskTransferHead "logits")."""

    def __init__(self, similarity):
        self.similarity = similarity  # (C, d_m)

    def transfer_masks(self, aux_logits, labels=None):
        if labels is None:
            return torch.einsum("gm,nmhw->nghw", self.similarity, aux_logits).sigmoid()
        return torch.einsum("nm,nmhw->nhw", self.similarity[labels], aux_logits).sigmoid()


def _grounding(node_mask):
    torch.manual_seed(0)
    return SegmentationGrounding(
        num_classes=2,
        obj_dim=D,
        union_dim=D,
        num_aux_classes=3,
        edges=False,
        mask_dim=5,
        node_mask=node_mask,
    )


def test_node_mask_weights_the_class_masks_by_the_class_distribution():
    head = _MaskHead(torch.tensor([[2.0, 0.0, 0.0], [0.0, -1.0, 3.0]]))
    aux = torch.randn(3, 3, M, M)
    logits = torch.tensor([[0.0, 1.0], [2.0, -2.0], [0.3, 0.3]])
    state = _grounding("expected").objects(aux, head, logits)
    probs = logits.softmax(1)
    by_hand = probs[:, 0, None, None] * head.transfer_masks(aux, torch.zeros(3, dtype=torch.long))
    by_hand += probs[:, 1, None, None] * head.transfer_masks(aux, torch.ones(3, dtype=torch.long))
    assert state.node_masks.shape == (3, M, M)
    torch.testing.assert_close(state.node_masks, by_hand)
    assert torch.equal(state.masks, head.transfer_masks(aux, probs.argmax(1)))  # edges: hard
    assert not torch.allclose(state.node_masks, state.masks)
    # the earlier form: the arg-max class's mask grounds the node
    legacy = _grounding("argmax").objects(aux, head, logits)
    assert legacy.node_masks is None and torch.equal(legacy.masks, state.masks)


def test_predcls_node_mask_is_unchanged_the_gt_class_mask():
    head = _MaskHead(torch.randn(2, 3))
    aux, gt = torch.randn(3, 3, M, M), torch.tensor([1, 0, 1])
    g = _grounding("expected")
    torch.nn.init.normal_(g.node.fuse.proj.weight)  # past initialisation: the mask matters
    state = g.objects(aux, head, torch.randn(3, 2), gt_labels=gt)
    assert state.node_masks is None  # one-hot expectation = the GT class's mask
    torch.testing.assert_close(
        expected_masks(head.transfer_masks(aux), state.class_probs), state.masks
    )
    z = torch.randn(3, D)
    legacy = _grounding("argmax")
    legacy.load_state_dict(g.state_dict())
    legacy_state = legacy.objects(aux, head, torch.randn(3, 2), gt_labels=gt)
    assert torch.equal(g.node_features(z, state), legacy.node_features(z, legacy_state))
    with pytest.raises(ValueError, match="NODE_MASK"):
        _grounding("topk")
