"""Multi-process training: the DDP wrapper and a launch check.

- :func:`create_ddp_model` wraps the model as Detectron2's ``create_ddp_model`` does, but
  also for CPU processes (gloo backend: no ``device_ids``) and with
  ``find_unused_parameters`` for models whose trainable parameters do not all receive a
  gradient in every step: a relation model (its detector is frozen, i.e. excluded from
  DDP's reducer by ``requires_grad=False``, and e.g. the object classifier sits idle in
  PredCls) and the joint grounding detector (a batch may hold images of one dataset
  only, leaving the other box predictor unused).
- :func:`check_launch` turns Detectron2 v0.6's bare ``cuda is not available`` into a
  message that says what ``--num-gpus N`` needs.

Data sharding and evaluation need nothing of ours: Detectron2's ``TrainingSampler`` and
``InferenceSampler`` give each process its share, and the evaluators gather their
matches with ``detectron2.utils.comm.gather`` (``sgg_d2/evaluation/base.py``).
"""

import importlib
import inspect

import torch
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

__all__ = ["create_ddp_model", "launch_runs_on_cpu", "check_launch"]

# Meta-architectures whose every trainable parameter gets a gradient in every step.
_ALL_PARAMETERS_USED = ("GeneralizedRCNN",)


def create_ddp_model(model: torch.nn.Module, cfg) -> torch.nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` when there are several processes.

    Args:
        model: the built model (on ``cfg.MODEL.DEVICE``).
        cfg: the config; ``MODEL.META_ARCHITECTURE`` decides ``find_unused_parameters``.

    Returns:
        ``model`` itself in a single process, else the DDP wrapper.
    """
    if comm.get_world_size() == 1:
        return model
    device = next(model.parameters()).device
    kwargs = {
        "broadcast_buffers": False,  # as Detectron2's DefaultTrainer
        "find_unused_parameters": cfg.MODEL.META_ARCHITECTURE not in _ALL_PARAMETERS_USED,
    }
    if device.type == "cuda":
        kwargs["device_ids"] = [comm.get_local_rank()]
    return DistributedDataParallel(model, **kwargs)


def launch_runs_on_cpu() -> bool:
    """Whether the installed Detectron2's ``launch`` can start processes without a GPU.

    Upstream Detectron2 after v0.6 picks the gloo backend when CUDA is unavailable; v0.6
    (the registry copy) always uses NCCL. Both report version 0.6, so the launch module's
    source is what tells them apart.
    """
    # the module (``detectron2.engine.launch`` as an attribute is the function)
    launch_module = importlib.import_module("detectron2.engine.launch")
    return "gloo" in inspect.getsource(launch_module).lower()


def check_launch(num_gpus_per_machine: int, num_machines: int = 1) -> None:
    """Fail early, saying what is needed, when ``train_net.py --num-gpus N`` cannot start.

    Raises:
        SystemExit: several processes requested on a machine with fewer GPUs, where this
            Detectron2 needs one GPU per process.
    """
    if num_gpus_per_machine * num_machines <= 1:
        return
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus >= num_gpus_per_machine:
        return
    if gpus == 0 and launch_runs_on_cpu():
        return  # CPU processes with the gloo backend
    if gpus == 0:
        raise SystemExit(
            f"--num-gpus {num_gpus_per_machine}: no CUDA GPU is visible to torch, and this "
            "Detectron2 (v0.6, e.g. the registry copy that `make setup` installs) starts "
            "its processes with the NCCL backend, which needs one CUDA GPU per process. "
            f"Run on a machine with {num_gpus_per_machine} GPUs and a CUDA build of torch, "
            "use --num-gpus 1, or install Detectron2 from current source "
            "(`D2_SOURCE=<folder | .tar.gz | git URL> make setup`, README 'Installation'), "
            "whose launch runs CPU processes with the gloo backend."
        )
    raise SystemExit(
        f"--num-gpus {num_gpus_per_machine}: torch sees only {gpus} CUDA GPU(s) on this "
        f"machine; use --num-gpus {gpus} or fewer (one process per GPU)."
    )
