"""Relations: construction from pair scores, sorting, ties, Instances-like behaviour."""

import pytest
import torch

from sgg_d2.structures import Relations, all_ordered_pairs


def test_all_ordered_pairs_lists_every_ordered_pair_once():
    assert all_ordered_pairs(3).tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert all_ordered_pairs(1).shape == (0, 2)
    assert all_ordered_pairs(0).shape == (0, 2)
    assert len(all_ordered_pairs(40)) == 40 * 39


def test_from_pair_scores_argmax_triplet_score_and_sorting():
    pairs = torch.tensor([[0, 2], [0, 1], [1, 0]])
    predicate_scores = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])
    object_scores = torch.tensor([1.0, 0.5, 0.25])
    rel = Relations.from_pair_scores((30, 40), pairs, predicate_scores, object_scores)
    # (0,2): 1*0.25*0.5 = 0.125 (tie -> predicate 0); (0,1): 0.5*0.8 = 0.4; (1,0): 0.5*0.6
    assert rel.pair_indices.tolist() == [[0, 1], [1, 0], [0, 2]]
    assert rel.predicates.tolist() == [1, 0, 0]
    assert torch.allclose(rel.scores, torch.tensor([0.4, 0.3, 0.125]))
    assert torch.equal(rel.predicate_scores[0], torch.tensor([0.2, 0.8]))
    assert rel.image_size == (30, 40)
    assert rel.pair_indices.dtype == torch.int64


def test_from_pair_scores_keeps_input_order_among_equal_scores():
    pairs = torch.tensor([[1, 0], [0, 1], [2, 0], [0, 2]])
    predicate_scores = torch.tensor([[0.5], [0.9], [0.5], [0.5]])
    rel = Relations.from_pair_scores((10, 10), pairs, predicate_scores, torch.ones(3))
    assert rel.pair_indices.tolist() == [[0, 1], [1, 0], [2, 0], [0, 2]]


def test_indexing_cat_and_to_return_relations():
    rel = Relations.from_pair_scores(
        (10, 20), all_ordered_pairs(3), torch.rand(6, 4), torch.rand(3)
    )
    assert isinstance(rel[:2], Relations) and len(rel[:2]) == 2
    assert isinstance(rel[rel.scores > -1], Relations)
    both = Relations.cat([rel, rel[:1]])
    assert isinstance(both, Relations) and len(both) == 7
    assert isinstance(rel.to("cpu"), Relations) and rel.to("cpu").image_size == (10, 20)


def test_empty_has_zero_rows_and_predicate_width():
    rel = Relations.empty((5, 5), num_predicates=7)
    assert len(rel) == 0 and rel.predicate_scores.shape == (0, 7)
    rel.validate(num_instances=0)


def test_from_pair_scores_rejects_out_of_range_pair():
    with pytest.raises(ValueError, match=r"pair_indices range \[0, 3\] is outside \[0, 3\)"):
        Relations.from_pair_scores((5, 5), torch.tensor([[0, 3]]), torch.rand(1, 2), torch.ones(3))


def test_from_pair_scores_rejects_row_mismatch():
    with pytest.raises(ValueError, match=r"predicate_scores has shape \(2, 2\)"):
        Relations.from_pair_scores((5, 5), torch.tensor([[0, 1]]), torch.rand(2, 2), torch.ones(2))


def test_validate_names_the_bad_field():
    rel = Relations.from_pair_scores((5, 5), all_ordered_pairs(2), torch.rand(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match=r"outside \[0, 1\) of the image's 1 instances"):
        rel.validate(num_instances=1)
    rel.predicates = torch.zeros((2, 2), dtype=torch.int64)
    with pytest.raises(ValueError, match=r"predicates has shape \(2, 2\), expected \(2,\)"):
        rel.validate()
    missing = Relations((5, 5), scores=torch.zeros(1))
    with pytest.raises(ValueError, match="missing field"):
        missing.validate()
