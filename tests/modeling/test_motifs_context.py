"""MOTIFS context: sequential LSTM class decoder (order dependence), linear flag, config."""

from functools import partial
from pathlib import Path

import pytest
import torch

from sgg_d2.modeling.context import TrainingTargets, build_context_model
from sgg_d2.modeling.context.motifs import LSTMObjectDecoder, MotifsContext, object_orders

OBJ_DIM, UNION_DIM, EMBED, HIDDEN, C = 6, 5, 3, 4, 3
DIMS = {"obj_dim": OBJ_DIM, "union_dim": UNION_DIM, "num_classes": C}  # inputs and model
CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture
def make_inputs(make_context_inputs):
    """Random inputs with every ordered pair of each image, 5-pixel boxes."""
    return partial(make_context_inputs, **DIMS, box_size=5)


def make_model(decoder="lstm"):
    torch.manual_seed(0)
    return MotifsContext(**DIMS, embed_dim=EMBED, hidden_dim=HIDDEN, decoder=decoder).eval()


def test_decoder_conditions_each_object_on_the_previous_ones_only():
    torch.manual_seed(0)
    decoder = LSTMObjectDecoder(ctx_dim=5, num_classes=C, embed_dim=3, hidden_dim=4)
    ctx = torch.randn(4, 5)
    order = [torch.tensor([2, 0, 3, 1])]  # sequence: 2, 0, 3, 1
    changed = ctx.clone()
    changed[3] += 1.0  # the third object of the sequence
    with torch.no_grad():
        a, b = decoder(ctx, order), decoder(changed, order)
    assert torch.equal(a[[2, 0]], b[[2, 0]])  # earlier objects: unchanged
    assert not torch.allclose(a[3], b[3]) and not torch.allclose(a[1], b[1])  # object 1 too
    # Object 1 (last) depends on object 3 through the state and the fed-back class; with
    # the fed classes fixed, it still does through the LSTM state.
    feed = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        fa, fb = decoder(ctx, order, feed), decoder(changed, order, feed)
    assert not torch.allclose(fa[1], fb[1])
    # The same object decoded in another order gets another distribution.
    with torch.no_grad():
        other = decoder(ctx, [torch.tensor([1, 3, 0, 2])])
    assert not torch.allclose(other[2], a[2])


def test_decoder_feeds_the_given_or_decoded_class_back():
    torch.manual_seed(1)
    decoder = LSTMObjectDecoder(ctx_dim=5, num_classes=C, embed_dim=3, hidden_dim=4)
    ctx = torch.randn(3, 5)
    order = [torch.tensor([0, 1, 2])]
    with torch.no_grad():
        free = decoder(ctx, order)
        # Feeding the decoded classes explicitly is the same as letting it decode.
        same = decoder(ctx, order, free.argmax(1))
        unknown = decoder(ctx, order, torch.full((3,), -1))
        other = decoder(ctx, order, (free.argmax(1) + 1) % C)
    assert torch.allclose(free, same) and torch.allclose(free, unknown)
    assert torch.allclose(other[0], free[0])  # the first object only sees the start token
    assert not torch.allclose(other[1], free[1])


def test_decoder_batches_images_of_different_lengths():
    torch.manual_seed(2)
    decoder = LSTMObjectDecoder(ctx_dim=5, num_classes=C, embed_dim=3, hidden_dim=4)
    ctx = torch.randn(6, 5)
    orders = [torch.tensor([1, 0]), torch.tensor([], dtype=torch.long), torch.tensor([4, 2, 5, 3])]
    with torch.no_grad():
        together = decoder(ctx, orders)
        first = decoder(ctx[:2], [torch.tensor([1, 0])])
        last = decoder(ctx[2:], [torch.tensor([2, 0, 3, 1])])
    assert torch.allclose(together[:2], first, atol=1e-6)
    assert torch.allclose(together[2:], last, atol=1e-6)
    assert decoder(ctx[:0], [torch.tensor([], dtype=torch.long)]).shape == (0, C)


@pytest.mark.parametrize("decoder", ["lstm", "linear"])
@pytest.mark.parametrize("gt", [False, True])
def test_shapes_and_gradients(make_inputs, decoder, gt):
    model = make_model(decoder).train()
    gt_classes = torch.tensor([0, -1, 2, 1, 1, 0, -1, 2])
    inputs = make_inputs([4, 1, 0, 3], gt=gt, training=TrainingTargets(obj_gt_classes=gt_classes))
    out = model(inputs)
    assert out.obj_logits.shape == (8, C) and out.pair_features.shape == (18, UNION_DIM)
    (out.obj_logits.square().sum() + out.pair_features.square().sum()).backward()
    assert all(p.grad is not None for p in model.decoder.parameters())


def test_linear_decoder_ignores_the_other_objects(make_inputs):
    """The flag's variant: each object's class from its own context only."""
    model = make_model("linear")
    inputs = make_inputs([4])
    with torch.no_grad():
        obj_ctx = model.obj_ctx(model.obj_input(inputs), object_orders(inputs, "leftright"))
        assert torch.allclose(model(inputs).obj_logits, model.decoder(obj_ctx))


def test_config_defaults_and_errors(sgg_cfg):
    cfg = sgg_cfg
    cfg.merge_from_file(str(CONFIGS / "vg150" / "motifs_X101_FPN_sgdet.yaml"))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = C
    assert cfg.MODEL.SGG.MOTIFS.DECODER == "lstm"
    model = build_context_model(cfg, OBJ_DIM, UNION_DIM)
    assert isinstance(model.decoder, LSTMObjectDecoder)
    assert MotifsContext.paper_frequency_bias is True
    cfg.MODEL.SGG.MOTIFS.DECODER = "linear"
    assert isinstance(build_context_model(cfg, OBJ_DIM, UNION_DIM).decoder, torch.nn.Linear)
    with pytest.raises(ValueError, match="MODEL.SGG.MOTIFS.DECODER 'gru'"):
        make_model("gru")
