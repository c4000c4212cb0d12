"""Union-box features: each unordered pair pooled once at inference, outputs unchanged."""

import torch

from sgg_d2.modeling.relation.geometry import pair_geometry
from sgg_d2.modeling.relation.union_features import UnionFeatureExtractor
from sgg_d2.structures import all_ordered_pairs


def _setup(num_boxes=(30, 7), channels=8, size=160):
    torch.manual_seed(0)
    ext = UnionFeatureExtractor(["p2", "p3", "p4", "p5"], [4, 8, 16, 32], channels, 16)
    ext.chunk_size = 100  # several chunks per image
    maps = {f"p{k}": torch.randn(2, channels, size // 2**k, size // 2**k) for k in range(2, 6)}
    boxes = []
    for n in num_boxes:
        xy = torch.rand(n, 2) * (size - 40)
        boxes.append(torch.cat([xy, xy + 8 + torch.rand(n, 2) * 60], 1))
    return ext, maps, boxes, [(size, size)] * len(num_boxes)


def test_inference_equals_per_pair_pooling_bit_for_bit():
    ext, maps, boxes, sizes = _setup()
    pairs = [all_ordered_pairs(len(b)) for b in boxes]
    pairs[1] = pairs[1][torch.randperm(len(pairs[1]))][:20]  # some pairs without their reverse
    with torch.enable_grad():  # the training path pools every pair as it comes
        reference = ext(maps, boxes, pairs, sizes).detach()
    calls = []
    ext.pooler.register_forward_hook(lambda _m, args, _o: calls.append(len(args[1][0])))
    with torch.no_grad():
        fast = ext(maps, boxes, pairs, sizes)
    assert torch.equal(fast, reference)
    unordered = len(boxes[0]) * (len(boxes[0]) - 1) // 2
    reverse = pairs[1].flip(1).tolist()
    both = sum(p in reverse for p in pairs[1].tolist())
    assert sum(calls) == unordered + len(pairs[1]) - both // 2


def test_reversed_pair_shares_the_visual_part_only():
    ext, maps, boxes, sizes = _setup((5,))
    b = boxes[0]
    pairs = [torch.tensor([[0, 3], [3, 0]])]
    with torch.no_grad():
        out = ext(maps, boxes, pairs, sizes)
        visual = ext._visual([m[:1] for m in maps.values()], b, pairs[0][:1])
        layout = ext.layout(pair_geometry(b[[0, 3]], b[[3, 0]], sizes[0]))
    assert torch.equal(out, torch.relu(visual + layout))
    assert not torch.equal(out[0], out[1])  # the layout is directed


def test_no_pairs():
    ext, maps, boxes, sizes = _setup((1, 1))
    with torch.no_grad():
        out = ext(maps, boxes, [torch.zeros(0, 2, dtype=torch.int64)] * 2, sizes)
    assert out.shape == (0, 16)
