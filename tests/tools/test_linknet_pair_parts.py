"""tools/research/linknet_pair_parts.py: the G0 / layout split of LinkNet's logits, by hand."""

from types import SimpleNamespace

import pytest
import torch
from modeling.test_linknet_context import UNION_DIM, make_inputs, make_model

from tools.research import linknet_pair_parts


def fake_model(context, num_predicates=5):
    torch.manual_seed(1)
    classifier = torch.nn.Linear(context.pair_dim, num_predicates + 1)
    heads = SimpleNamespace(
        context=context, relation_predictor=SimpleNamespace(classifier=classifier)
    )
    return SimpleNamespace(roi_heads=heads), classifier


def test_part_statistics_split_the_logits_exactly():
    context = make_model().eval()
    model, classifier = fake_model(context)
    inputs = [make_inputs([3, 2]), make_inputs([4], seed=1)]

    class Runner:  # model(batch) runs the context on the batch's inputs
        roi_heads = model.roi_heads

        def __call__(self, batch):
            return context(batch[0])

    stats = linknet_pair_parts.part_statistics(Runner(), [[x] for x in inputs], images=2)
    expected = []
    with torch.no_grad():
        for x in inputs:
            g = context(x).pair_features
            g0, lay = g[:, :UNION_DIM], g[:, UNION_DIM:]
            w = classifier.weight
            # the two parts add up to the classifier's logits (minus its bias)
            assert torch.allclose(
                g0 @ w[:, :UNION_DIM].T + lay @ w[:, UNION_DIM:].T + classifier.bias,
                classifier(g),
                atol=1e-5,
            )
            expected.append(
                [
                    g0.norm(dim=1).mean(),
                    lay.norm(dim=1).mean(),
                    (g0 @ w[:, :UNION_DIM].T).std(dim=1).mean(),
                    (lay @ w[:, UNION_DIM:].T).std(dim=1).mean(),
                ]
            )
    assert stats == pytest.approx(torch.tensor(expected).mean(dim=0).tolist(), rel=1e-5)


def test_refuses_linknet_without_layout():
    context = make_model(geometric_layout=False).eval()
    model, _ = fake_model(context)
    with pytest.raises(SystemExit, match="not LinkNet with its layout"):
        linknet_pair_parts.part_statistics(model, [], images=1)
