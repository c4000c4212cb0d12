"""Union boxes and layout encodings, checked against hand-computed values."""

import math

import torch

from sgg_d2.modeling.relation.geometry import box_layout, pair_geometry, union_boxes


def test_union_boxes():
    s = torch.tensor([[0.0, 10, 20, 30]])
    o = torch.tensor([[5.0, 0, 40, 25]])
    assert union_boxes(s, o).tolist() == [[0.0, 0, 40, 30]]


def test_pair_geometry_by_hand():
    s = torch.tensor([[0.0, 0, 10, 10]])  # centre (5, 5), 10 x 10
    o = torch.tensor([[5.0, 0, 25, 5]])  # centre (15, 2.5), 20 x 5
    g = pair_geometry(s, o, (50, 100))[0].tolist()
    inter = 5 * 5
    expected = [
        10 / 10,
        -2.5 / 10,
        math.log(20 / 10),
        math.log(5 / 10),
        inter / (100 + 100 - inter),
        25 * 10 / (50 * 100),
        10 / 100,
        -2.5 / 50,
        inter / 100,
    ]
    assert all(abs(a - b) < 1e-5 for a, b in zip(g, expected)), (g, expected)


def test_box_layout():
    lay = box_layout(torch.tensor([[10.0, 20, 30, 60]]), (100, 200))[0].tolist()
    expected = [0.05, 0.2, 0.15, 0.6, 0.1, 0.4, 0.1, 0.4, 0.04]
    assert all(abs(a - b) < 1e-6 for a, b in zip(lay, expected))
