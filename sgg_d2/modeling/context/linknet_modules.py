"""Building blocks of LinkNet (Woo et al., "LinkNet: Relational Embedding for Scene Graph",
NeurIPS 2018): per-image padding, the relational embedding module and its stack, and the
global context encoding with its multi-label loss. ``linknet.py`` assembles them.

Objects of a batch arrive concatenated, (N, D), with ``num_objs`` per image. The
relational embedding attends over all objects *of the same image*: the stack pads the
objects to (B, M, D) once (M = most objects in an image), masks the padding out of every
softmax, and gathers the N real rows back at the end, so there is no loop over objects.
"""

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "image_positions",
    "pad_by_image",
    "masked_row_softmax",
    "RelationalEmbedding",
    "RelationalEmbeddingStack",
    "GlobalContextEncoding",
    "valid_area_mean",
    "multilabel_targets",
    "global_context_loss",
]


def image_positions(num_objs: Sequence[int], device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Image index and position inside its image of every object.

    Args:
        num_objs: objects per image (B entries, summing to N).

    Returns:
        (N,) int64 image index, (N,) int64 position within the image.
    """
    counts = torch.as_tensor(list(num_objs), dtype=torch.long, device=device)
    image = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    starts = torch.cumsum(counts, 0) - counts
    return image, torch.arange(len(image), device=device) - starts[image]


def pad_by_image(x: torch.Tensor, num_objs: Sequence[int]):
    """Scatter concatenated objects into a zero-padded per-image batch.

    Args:
        x: (N, D) features, images concatenated.
        num_objs: objects per image (sums to N).

    Returns:
        padded (B, M, D), mask (B, M) bool (True = a real object), and the (image, position)
        index pair that gathers the N rows back: ``padded[image, position]``.
    """
    if sum(num_objs) != x.shape[0]:
        raise ValueError(f"num_objs sums to {sum(num_objs)} but there are {x.shape[0]} objects")
    image, position = image_positions(num_objs, x.device)
    width = max(num_objs, default=0)
    padded = x.new_zeros((len(num_objs), width, x.shape[1]))
    padded[image, position] = x
    mask = torch.zeros((len(num_objs), width), dtype=torch.bool, device=x.device)
    mask[image, position] = True
    return padded, mask, (image, position)


def masked_row_softmax(logits: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Row-wise softmax over the real objects of each image.

    Padding keys get the lowest finite value, hence a weight of exactly 0; a finite value
    (not -inf) keeps rows of padding queries finite, so no NaN reaches any gradient.

    Args:
        logits: (B, M, M) query-key scores.
        key_mask: (B, M) bool, True for real objects.

    Returns:
        (B, M, M) attention weights, each row summing to 1.
    """
    fill = torch.finfo(logits.dtype).min
    return logits.masked_fill(~key_mask[:, None, :], fill).softmax(dim=-1)


class RelationalEmbedding(nn.Module):
    """One relational embedding module of LinkNet (paper eqs. 1-3; eqs. 4-6 are the second).

    With X the (padded) inputs of one image (M, d)::

        R = softmax((X W)(X U)^T)          (M, M), row-wise, over the image's objects
        Y = X (+) fc_a(R (X H))            (M, d), element-wise sum (residual)
        Z = fc_b(Y)                        (M, out_dim)

    W, U, H are d x d/r matrices (no bias), r the reduction ratio; fc_a maps d/r back to d.
    The paper's notation for the first module is X = O0, R = R1, Y = O1, Z = O2.
    """

    def __init__(
        self, in_dim: int, out_dim: int, reduction: int, activate: bool, dropout: float = 0.0
    ):
        """
        Args:
            in_dim: d, width of the inputs.
            out_dim: width of Z.
            reduction: r; the query/key/value projections have width d // r (>= 1).
            activate: apply ReLU (and dropout) to Z: for intermediate embeddings, not for
                class logits or the final edge features.
            dropout: dropout on Z when ``activate``.
        """
        super().__init__()
        if reduction < 1 or in_dim // reduction < 1:
            raise ValueError(
                f"reduction ratio r={reduction} must be in [1, {in_dim}] for width {in_dim}"
            )
        width = in_dim // reduction
        self.query = nn.Linear(in_dim, width, bias=False)  # W
        self.key = nn.Linear(in_dim, width, bias=False)  # U
        self.value = nn.Linear(in_dim, width, bias=False)  # H
        self.fc_residual = nn.Linear(width, in_dim)  # fc_a
        self.fc_out = nn.Linear(in_dim, out_dim)  # fc_b
        self.activate = activate
        self.dropout = nn.Dropout(dropout) if activate and dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """
        Args:
            x: (B, M, d) padded inputs.
            mask: (B, M) bool, True for real objects.

        Returns:
            Y (B, M, d) and Z (B, M, out_dim); padding rows hold garbage, to be discarded.
        """
        attention = masked_row_softmax(self.query(x) @ self.key(x).transpose(1, 2), mask)
        y = x + self.fc_residual(attention @ self.value(x))
        z = self.fc_out(y)
        if self.activate:
            z = self.dropout(F.relu(z))
        return y, z


class RelationalEmbeddingStack(nn.Module):
    """K stacked relational embedding modules: in_dim -> hidden_dim -> ... -> out_dim.

    Module k maps its input to (Y_k, Z_k); Z_k is the next module's input. For objects with
    K = 2 this is the paper's O0 -> (O1, O2) -> (O3, O4): O3 the contextual object
    embedding, O4 the class logits.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_modules: int,
        reduction: int,
        dropout: float = 0.0,
    ):
        """
        Args:
            in_dim: width of the first module's input.
            hidden_dim: width of the intermediate embeddings Z_1 .. Z_{K-1}.
            out_dim: width of the last output Z_K (no activation).
            num_modules: K >= 1.
            reduction: r of every module.
            dropout: on the intermediate embeddings.
        """
        super().__init__()
        if num_modules < 1:
            raise ValueError(f"LinkNet needs at least one relational module, got {num_modules}")
        dims = [in_dim] + [hidden_dim] * (num_modules - 1)
        outs = [hidden_dim] * (num_modules - 1) + [out_dim]
        self.blocks = nn.ModuleList(
            RelationalEmbedding(d, o, reduction, activate=k < num_modules - 1, dropout=dropout)
            for k, (d, o) in enumerate(zip(dims, outs))
        )
        self.embed_dim = dims[-1]
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor, num_objs: Sequence[int]):
        """
        Args:
            x: (N, in_dim) inputs, images concatenated.
            num_objs: objects per image.

        Returns:
            Y_K (N, embed_dim), the last residual embedding, and Z_K (N, out_dim).
        """
        z, mask, index = pad_by_image(x, num_objs)
        for block in self.blocks:
            y, z = block(z, mask)
        return y[index], z[index]


def valid_area_mean(feature_map: torch.Tensor, image_sizes, stride: int) -> torch.Tensor:
    """Average of each image's map over its own valid area (not the batch's zero padding).

    Args:
        feature_map: (B, D, H, W) backbone map of a padded batch.
        image_sizes: per image (height, width) of the network input (before padding).
        stride: the map's stride w.r.t. the input; image i covers the top-left
            ceil(h_i / stride) x ceil(w_i / stride) cells.

    Returns:
        (B, D) per-image means.
    """
    if len(image_sizes) != feature_map.shape[0]:
        raise ValueError(
            f"{len(image_sizes)} image sizes for a map of {feature_map.shape[0]} images"
        )
    _, _, height, width = feature_map.shape
    sizes = torch.as_tensor([list(s) for s in image_sizes], device=feature_map.device)
    cells = torch.div(sizes + stride - 1, stride, rounding_mode="floor").clamp(min=1)
    rows = torch.arange(height, device=feature_map.device)[None, :, None] < cells[:, 0, None, None]
    cols = torch.arange(width, device=feature_map.device)[None, None, :] < cells[:, 1, None, None]
    mask = (rows & cols).to(feature_map.dtype)  # (B, H, W)
    total = (feature_map * mask[:, None]).sum(dim=(2, 3))
    return total / mask.sum(dim=(1, 2)).clamp(min=1)[:, None]


class GlobalContextEncoding(nn.Module):
    """Image-level context c and its multi-label class scores (the paper's GCE module).

    ``c = ReLU(fc(avgpool(feature map)))``, the average taken over each image's own valid
    area (:func:`valid_area_mean`), so that c does not depend on the other images of the
    batch or their padding; ``logits = fc_cls(c)`` predict which classes appear in the
    image, trained by :func:`global_context_loss`.
    """

    def __init__(self, in_channels: int, dim: int, num_classes: int, stride: int):
        """
        Args:
            in_channels: channels of the backbone map; stride: its stride.
            dim: width of c.
            num_classes: C, object classes.
        """
        super().__init__()
        self.stride = stride
        self.fc = nn.Linear(in_channels, dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, feature_map: torch.Tensor, image_sizes):
        """(B, in_channels, H, W), B (height, width) -> c (B, dim), multi-label logits (B, C)."""
        c = F.relu(self.fc(valid_area_mean(feature_map, image_sizes, self.stride)))
        return c, self.classifier(c)


def multilabel_targets(gt_classes: List[torch.Tensor], num_classes: int) -> torch.Tensor:
    """Per image, 1 for every class that has at least one GT instance.

    Args:
        gt_classes: B tensors (G_i,) int64 with values in [0, num_classes).

    Returns:
        (B, num_classes) float multi-hot targets.
    """
    for i, labels in enumerate(gt_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if len(bad):
            raise ValueError(
                f"gt_instances[{i}].gt_classes has class {int(bad[0])}; "
                f"expected values in [0, {num_classes})"
            )
    if not gt_classes:
        raise ValueError("multilabel_targets needs the GT classes of at least one image")
    device = gt_classes[0].device
    counts = torch.tensor([len(labels) for labels in gt_classes], device=device)
    image = torch.repeat_interleave(torch.arange(len(gt_classes), device=device), counts)
    targets = torch.zeros((len(gt_classes), num_classes), device=device)
    targets[image, torch.cat(gt_classes).long()] = 1.0
    return targets


LOSS_REDUCTIONS = ("sum", "mean")


def global_context_loss(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """Multi-label loss of the global context: binary cross-entropy per class.

    The paper writes ``L_gce = -sum_c M_c log M^_c`` with M the image's multi-hot class
    vector and M^ = sigmoid(logits). With sigmoid outputs that expression alone is
    minimised by predicting every class (M^ = 1); it is the positive half of the multi-label
    binary cross-entropy, which is used here with both halves,
    ``-sum_c [M_c log M^_c + (1 - M_c) log(1 - M^_c)]``, summed over the classes as in the
    paper and averaged over the images.

    Args:
        logits: (B, C) multi-label scores; targets: (B, C) in {0, 1}.
        reduction: "sum" over classes (paper) or "mean" (divides by C).

    Returns:
        Scalar loss.
    """
    if logits.shape != targets.shape:
        raise ValueError(
            f"global-context logits {tuple(logits.shape)} and targets "
            f"{tuple(targets.shape)} differ: one row of targets per image is expected"
        )
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(
            f"MODEL.SGG.LINKNET.GLOBAL_CONTEXT_LOSS_REDUCTION {reduction!r}; valid: "
            f"{', '.join(LOSS_REDUCTIONS)}"
        )
    per_class = F.binary_cross_entropy_with_logits(
        logits, targets.to(logits.dtype), reduction="none"
    )
    if reduction == "mean":
        return per_class.mean()
    return per_class.sum(dim=1).mean()
