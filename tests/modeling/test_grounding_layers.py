"""Grounding building blocks: Gaussian kernels, union frames, edges, nodes, refinement,
mask transfer (hand-made cases)."""

import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from sgg_d2.modeling.grounding.edges import EdgeGrounding, combine_masks
from sgg_d2.modeling.grounding.kernels import KernelParameterNet, gaussian_kernels, smooth_masks
from sgg_d2.modeling.grounding.mask_transfer import MaskTransferHead
from sgg_d2.modeling.grounding.nodes import NodeGrounding
from sgg_d2.modeling.grounding.refinement import (
    MaskRefinementHead,
    context_repr_dim,
    mask_pixel_loss,
)
from sgg_d2.modeling.grounding.union_frame import masks_in_frames


def test_gaussian_kernels_sum_to_one_and_are_symmetric_without_correlation():
    var_x = torch.tensor([1.0, 4.0, 0.3, 2.0])
    var_y = torch.tensor([1.0, 0.5, 6.0, 2.0])
    k = gaussian_kernels(var_x, var_y, torch.zeros(4), 9)
    assert k.shape == (4, 9, 9)
    torch.testing.assert_close(k.sum(dim=(1, 2)), torch.ones(4))
    torch.testing.assert_close(k, k.flip(1))  # y -> -y
    torch.testing.assert_close(k, k.flip(2))  # x -> -x
    torch.testing.assert_close(k[0], k[0].T)  # equal variances: x <-> y
    assert k[1, 4, 6] > k[1, 6, 4]  # larger variance along x spreads along columns
    assert k[0].argmax() == 4 * 9 + 4  # peak at the centre


def test_gaussian_kernel_moments_match_the_covariance():
    var_x, var_y, rho = torch.tensor([4.0]), torch.tensor([9.0]), torch.tensor([0.5])
    k = gaussian_kernels(var_x.double(), var_y.double(), rho.double(), 41)[0]
    off = torch.arange(41, dtype=torch.float64) - 20
    y, x = torch.meshgrid(off, off, indexing="ij")
    assert abs((k * x * x).sum() - 4.0) < 1e-3
    assert abs((k * y * y).sum() - 9.0) < 1e-3
    assert abs((k * x * y).sum() - 0.5 * 2.0 * 3.0) < 1e-3
    torch.testing.assert_close(k, k.flip(0).flip(1))  # point-symmetric even with rho != 0
    assert not torch.allclose(k, k.flip(1))
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernels(var_x, var_y, rho, 4)


def test_mask_lands_at_the_right_pixels_of_the_union_frame():
    # Box (8, 8)-(16, 16) holds a 4 x 4 mask: each mask pixel covers 2 x 2 image pixels.
    # Frame (0, 0)-(32, 32) at 16 x 16: each frame pixel is 2 x 2 image pixels, so frame
    # pixel (4 + r, 4 + c) is exactly mask pixel (r, c); everything else lies outside the box.
    mask = torch.tensor(
        [[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.25, 0.0, 0.0, 1.0]]
    )
    box = torch.tensor([[8.0, 8.0, 16.0, 16.0]])
    frame = torch.tensor([[0.0, 0.0, 32.0, 32.0]])
    out = masks_in_frames(mask[None], box, frame, 16)[0]
    expected = torch.zeros(16, 16)
    expected[4:8, 4:8] = mask
    torch.testing.assert_close(out, expected)


def test_union_frame_with_offset_and_non_square_boxes():
    # A full mask of box (10, 20)-(20, 24) in frame (10, 16)-(30, 36) sampled at 20 x 20
    # (1 px per frame pixel): ones exactly on rows 4..7 and columns 0..9.
    out = masks_in_frames(
        torch.ones(1, 6, 6),
        torch.tensor([[10.0, 20.0, 20.0, 24.0]]),
        torch.tensor([[10.0, 16.0, 30.0, 36.0]]),
        20,
    )[0]
    expected = torch.zeros(20, 20)
    expected[4:8, 0:10] = 1
    torch.testing.assert_close(out, expected)
    assert masks_in_frames(torch.ones(0, 6, 6), torch.zeros(0, 4), torch.zeros(0, 4), 8).shape == (
        0,
        8,
        8,
    )


def test_smoothing_with_a_delta_kernel_is_the_identity_and_gaussians_keep_mass():
    masks = torch.zeros(2, 9, 9)
    masks[:, 4, 4] = 1.0
    delta = torch.zeros(2, 3, 3)
    delta[:, 1, 1] = 1
    torch.testing.assert_close(smooth_masks(masks, delta), masks)
    k = gaussian_kernels(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.5]), torch.zeros(2), 5)
    out = smooth_masks(masks, k)
    torch.testing.assert_close(out.sum(dim=(1, 2)), torch.ones(2))
    torch.testing.assert_close(out[1, 2:7, 2:7], k[1])


def test_edge_combinations():
    a, b = torch.tensor([0.5, 1.0]), torch.tensor([0.4, 0.0])
    torch.testing.assert_close(combine_masks(a, b, "product"), torch.tensor([0.2, 0.0]))
    torch.testing.assert_close(combine_masks(a, b, "average"), torch.tensor([0.45, 0.5]))
    torch.testing.assert_close(combine_masks(a, b, "union"), torch.tensor([0.7, 1.0]))
    with pytest.raises(ValueError, match="EDGE_COMBINE"):
        EdgeGrounding(3, 8, combine="max")


def _edge_case():
    masks = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 15.0], [30.0, 0.0, 40.0, 8.0]])
    probs = torch.softmax(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), 1)
    pairs = torch.tensor([[0, 1], [1, 0], [0, 2]])
    return masks, boxes, probs, pairs


def test_gradients_reach_the_kernel_parameter_network():
    torch.manual_seed(0)
    edge = EdgeGrounding(4, union_dim=8, frame_size=12, kernel_size=5, mask_dim=6)
    # past initialisation (the residual W starts at 0, so the kernels get no gradient then)
    torch.nn.init.normal_(edge.fuse.proj.weight)
    masks, boxes, probs, pairs = _edge_case()
    out = edge(torch.rand(3, 8), masks, boxes, probs, pairs)
    assert out.shape == (3, 8)
    out.sum().backward()
    for p in edge.kernel_net.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_relation_mask_product_is_zero_for_far_apart_objects():
    edge = EdgeGrounding(4, union_dim=8, frame_size=16, kernel_size=3, mask_dim=6)
    masks, boxes, probs, pairs = _edge_case()
    with torch.no_grad():
        rel = edge.relation_masks(torch.ones_like(masks), boxes, probs, pairs)
    assert rel.shape == (3, 16, 16)
    # objects 0 and 2 are 20 px apart in a 40 px wide union box: nothing overlaps
    assert float(rel[2].max()) < 1e-6
    assert float(rel[0].max()) > 0.5  # objects 0 and 1 overlap on (5, 5)-(10, 10)


def test_kernel_parameter_net_ranges_and_initial_kernels():
    net = KernelParameterNet(5, init_var=2.0)
    var_x, var_y, rho = net(torch.eye(5))
    assert (var_x > 0.1).all() and (var_y > 0.1).all() and (rho.abs() < 0.9).all()
    net = KernelParameterNet(5, init_var=2.0)
    torch.nn.init.zeros_(net.mlp[2].weight)
    var_x, var_y, rho = net(torch.eye(5))
    torch.testing.assert_close(var_x, torch.full((5,), 2.0))
    torch.testing.assert_close(rho, torch.zeros(5))


def test_refinement_is_the_identity_at_initialisation_and_trains():
    head = MaskRefinementHead(in_dim=6, num_aux_classes=3, resolution=7)
    logits = torch.randn(4, 3, 14, 14)
    repr_ = torch.randn(4, 6, requires_grad=True)
    out = head(repr_, logits)
    assert torch.equal(out, logits)
    loss = mask_pixel_loss(out, torch.tensor([0, 1, 2, 0]), torch.ones(4, 14, 14))
    loss.backward()
    assert head.residual.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="3 rows for 4 masks"):
        head(torch.randn(3, 6), logits)


def test_pixel_loss_hand_values():
    logits = torch.zeros(2, 2, 3, 3)
    logits[1, 1] = 100.0  # object 1, class 1: certain foreground
    gt = torch.stack([torch.ones(3, 3), torch.ones(3, 3)])
    loss = mask_pixel_loss(logits, torch.tensor([0, 1]), gt)
    torch.testing.assert_close(loss, torch.tensor(math.log(2) / 2))
    assert float(mask_pixel_loss(logits[:0], torch.zeros(0, dtype=torch.long), gt[:0])) == 0.0


def test_node_grounding_keeps_the_feature_width():
    node = NodeGrounding(obj_dim=10, mask_dim=4)
    out = node(torch.rand(3, 10), torch.rand(3, 28, 28))
    assert out.shape == (3, 10)


def _transfer_head(S):
    return MaskTransferHead(
        ShapeSpec(channels=4, height=7, width=7), num_classes=2, conv_dims=[4, 4], similarity=S
    )


def test_mask_transfer_orientation():
    # S is (d_g = 3 targets, d_m = 2 auxiliary); target g's logits = sum_m S[g, m] l_m.
    S = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    head = _transfer_head(S)
    aux = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 10.0)])[None].repeat(2, 1, 1, 1)
    every = head.transfer(aux)
    assert every.shape == (2, 3, 2, 2)
    torch.testing.assert_close(every[0, :, 0, 0], torch.tensor([1.0, 10.0, 7.75]))
    picked = head.transfer(aux, torch.tensor([2, 0]))
    torch.testing.assert_close(picked[:, 0, 0], torch.tensor([7.75, 1.0]))
    assert "similarity" not in head.state_dict()  # rebuilt from word vectors, not saved
    with pytest.raises(ValueError, match=r"expected \(d_g, 2\)"):
        _transfer_head(torch.zeros(3, 5))


class _Declared(torch.nn.Module):
    obj_repr_dim = 17


def test_context_repr_dim_declared_measured_or_refused():
    from sgg_d2.modeling.context.frequency import FrequencyBaseline
    from sgg_d2.modeling.context.motifs import MotifsContext

    assert context_repr_dim(_Declared(), 8, 8, 3) == 17
    motifs = MotifsContext(obj_dim=8, union_dim=6, num_classes=3, embed_dim=4, hidden_dim=5)
    motifs.train()
    assert context_repr_dim(motifs, 8, 6, 3) == 10  # BiLSTM: 2 x hidden
    assert motifs.training  # mode restored
    with pytest.raises(ValueError, match="FrequencyBaseline gives no obj_repr"):
        context_repr_dim(FrequencyBaseline(obj_dim=8, union_dim=6, num_classes=3), 8, 6, 3)


def test_transfer_space_logits_or_probabilities():
    S = torch.tensor([[1.0, 0.0], [0.25, 0.75], [2.0, 2.0]])
    aux = torch.stack([torch.full((2, 2), 0.0), torch.full((2, 2), 2.0)])[None]
    head = _transfer_head(S)  # default: logits
    p = torch.sigmoid(torch.tensor(2.0))
    logit_space = head.transfer_masks(aux)[0, :, 0, 0]
    torch.testing.assert_close(logit_space, torch.sigmoid(torch.tensor([0.0, 1.5, 4.0])))
    head.space = "probs"
    prob_space = head.transfer_masks(aux)[0, :, 0, 0]
    # S x sigmoid(l): 0.5; 0.25 * 0.5 + 0.75 * p; 2 * (0.5 + p) clipped to 1
    expected = torch.stack([torch.tensor(0.5), 0.125 + 0.75 * p, torch.tensor(1.0)])
    torch.testing.assert_close(prob_space, expected)
    torch.testing.assert_close(head.transfer_masks(aux, torch.tensor([1]))[0, 0, 0], expected[1])
    with pytest.raises(ValueError, match="TRANSFER_SPACE is 'pixels'"):
        MaskTransferHead(
            ShapeSpec(channels=4, height=7, width=7),
            num_classes=2,
            conv_dims=[4, 4],
            similarity=S,
            space="pixels",
        )
