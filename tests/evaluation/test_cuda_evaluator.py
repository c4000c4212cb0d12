"""The scene-graph evaluator fed with model outputs on CUDA tensors (``pytest -m cuda``;
skipped without a GPU): the metrics equal the hand-computed ones of the CPU test."""

import pytest
import torch
from test_sg_evaluator import (  # noqa: F401 (dataset: the CPU test's fixture)
    EXPECTED_PREDCLS,
    dataset,
    dataset_dicts,
    make_evaluator,
    model_output,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_predcls_metrics_from_cuda_outputs(dataset, tmp_path):  # noqa: F811 (fixture)
    evaluator = make_evaluator(dataset, output_dir=str(tmp_path))
    evaluator.reset()
    for record in dataset_dicts():
        out = model_output(record)
        out = {"instances": out["instances"].to("cuda"), "relations": out["relations"].to("cuda")}
        assert out["relations"].scores.is_cuda if len(out["relations"]) else True
        evaluator.process([{"image_id": record["image_id"]}], [out])
    assert evaluator.evaluate()["sgg"] == pytest.approx(EXPECTED_PREDCLS)
