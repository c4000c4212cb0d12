"""Checkpoint pieces of the trainer: damaged-checkpoint handling (resume from the last
intact one) and checked loading of detector weights (``MODEL.SGG.DETECTOR_WEIGHTS``).

Exact resume also needs the optimizer state (SGD momentum), which Detectron2 v0.6's
``DefaultTrainer`` leaves out and newer versions save themselves (the trainer adds it only
when it is missing), and the random states and data position of
:mod:`sgg_d2.engine.resume_state`.
"""

import logging
import os
import re
import urllib.parse
import urllib.request
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

__all__ = [
    "DamagedCheckpointError",
    "checkpoint_problem",
    "intact_checkpoints",
    "select_resume_checkpoint",
    "DetectorWeightsError",
    "DetectorWeightsCheckpointer",
    "local_weights_path",
]

logger = logging.getLogger(__name__)

DETECTOR_WEIGHTS_KEY = "MODEL.SGG.DETECTOR_WEIGHTS"


# --------------------------------------------------------------------------------------
# Damaged checkpoints
# --------------------------------------------------------------------------------------


class DamagedCheckpointError(RuntimeError):
    """The checkpoint to resume from is unreadable (message names the file and the damage)."""


def checkpoint_problem(path: str) -> Optional[str]:
    """What is wrong with checkpoint file ``path`` (None: it looks intact).

    ``torch.save`` writes a zip archive whose members carry CRC-32 checksums; every
    member is read and checked (cost: one read of the file, no unpickling).
    """
    if not os.path.isfile(path):
        return "the file does not exist"
    size = os.path.getsize(path)
    if size == 0:
        return "the file is empty (0 bytes)"
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            head = f.read(8)
        return (
            f"not a PyTorch checkpoint: {size} bytes without the zip archive that torch.save "
            f"writes (truncated, overwritten or another format; first bytes {head!r})"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"corrupt zip archive ({type(e).__name__}: {e})"
    if bad is not None:
        return f"corrupt: member {bad} fails its CRC check"
    return None


_ITERATION = re.compile(r"model_(\d+)\.pth$")


def intact_checkpoints(save_dir: str, exclude: Tuple[str, ...] = ()) -> List[Tuple[int, str]]:
    """Periodic checkpoints ``model_<iteration>.pth`` of ``save_dir`` that pass
    :func:`checkpoint_problem`, newest first, as (iteration, path); ``model_final.pth``
    counts as the newest. ``model_best.pth`` is not a resume point and is left out."""
    found = []
    for name in os.listdir(save_dir) if os.path.isdir(save_dir) else []:
        match = _ITERATION.match(name)
        path = os.path.join(save_dir, name)
        if os.path.abspath(path) in {os.path.abspath(p) for p in exclude}:
            continue
        if match or name == "model_final.pth":
            found.append((int(match.group(1)) if match else 1 << 62, path))
    found.sort(reverse=True)
    return [(it, path) for it, path in found if checkpoint_problem(path) is None]


def select_resume_checkpoint(save_dir: str, last: str, fall_back: bool) -> str:
    """The checkpoint to resume from: ``last`` (the target of ``last_checkpoint``) when it
    is intact; with ``fall_back`` the newest intact earlier one (logged).

    Raises:
        DamagedCheckpointError: ``last`` is damaged and ``fall_back`` is off (or nothing
            intact exists); the message names the file, the damage and the intact
            earlier checkpoint if there is one.
    """
    problem = checkpoint_problem(last)
    if problem is None:
        return last
    good = intact_checkpoints(save_dir, exclude=(last,))
    where = f"{os.path.join(save_dir, 'last_checkpoint')} points to {last}, which is damaged"
    if good and fall_back:
        logger.warning(
            "%s (%s); resuming from the newest intact earlier checkpoint %s "
            "(--resume-from-last-good / SOLVER.RESUME_FROM_LAST_GOOD)",
            where,
            problem,
            good[0][1],
        )
        return good[0][1]
    if good:
        hint = (
            f"The newest intact earlier checkpoint is {good[0][1]}: rerun with "
            "--resume-from-last-good (config SOLVER.RESUME_FROM_LAST_GOOD True) to resume "
            "from it, or delete the damaged file."
        )
    else:
        hint = f"No intact earlier checkpoint exists in {save_dir}: train again without --resume."
    raise DamagedCheckpointError(f"Cannot resume: {where}: {problem}. {hint}")


# --------------------------------------------------------------------------------------
# Detector weights (stage handoff)
# --------------------------------------------------------------------------------------


class DetectorWeightsError(ValueError):
    """``MODEL.SGG.DETECTOR_WEIGHTS`` is unreadable or does not fit the detector."""


def local_weights_path(path: str, key: str = DETECTOR_WEIGHTS_KEY) -> str:
    """A local file for ``path``: a plain path, a ``file://`` URL, or any URL Detectron2's
    ``PathManager`` handles (``detectron2://``, ``https://``: downloaded and cached, as for
    ``MODEL.WEIGHTS``).

    Raises:
        FileNotFoundError: naming ``key`` and the path.
    """
    local = path
    if path.startswith("file://"):
        local = urllib.request.url2pathname(urllib.parse.urlparse(path).path)
    elif "://" in path:
        try:
            local = PathManager.get_local_path(path)
        except Exception as e:  # network or handler errors: say which key and URL
            raise FileNotFoundError(f"{key}: cannot fetch {path} ({type(e).__name__}: {e})") from e
    if not os.path.isfile(local):
        raise FileNotFoundError(
            f"{key}: no such file {path}; train the detector first (its config is the "
            "*_detector.yaml next to this one) or point the key at it"
        )
    return local


class DetectorWeightsCheckpointer(DetectionCheckpointer):
    """Loads a detector checkpoint into a relation model and refuses one that does not fit.

    Detectron2 formats are read as by ``DetectionCheckpointer`` (``.pth``, model-zoo
    ``.pkl``); in addition:

    - an unreadable file, or one that holds no state dict (e.g. a bare tensor), is an error
      naming the file and the config key;
    - any detector parameter whose shape differs from the checkpoint's (e.g. another class
      count in the box predictor) is an error naming the key and both shapes;
    - fewer than ``min_match`` of the detector's parameters found is an error saying how
      many matched and listing a few unmatched names.

    The detector's parameters are those of ``model.detector_modules()`` (all of the model's
    when it has no such method). Parameters outside it (the relation head) are expected to
    be missing: they keep their initialisation, and one log line says how many entries were
    loaded and which modules' entries were left (counted per module), in place of
    Detectron2's per-parameter lists.

    Args:
        model: the relation model.
        min_match: required fraction of the detector's state-dict entries, in [0, 1].
        key: config key named in messages.
    """

    def __init__(self, model, min_match: float = 0.9, key: str = DETECTOR_WEIGHTS_KEY):
        super().__init__(model)
        self.min_match = float(min_match)
        self.key = key
        self._source = ""

    def load_weights(self, path: str) -> None:
        """Load the model weights of ``path`` (a path or URL); nothing else is read."""
        self._source = path
        self.load(local_weights_path(path, self.key), checkpointables=[])

    def _load_file(self, filename: str) -> Dict[str, Any]:
        where = f"{self.key}: {self._source or filename}"
        if filename.endswith((".pkl", ".pyth")):
            try:
                return super()._load_file(filename)
            except Exception as e:
                raise DetectorWeightsError(
                    f"{where} is not a readable Detectron2 checkpoint ({type(e).__name__}: {e})"
                ) from e
        try:
            loaded = torch.load(filename, map_location="cpu")
        except Exception as e:
            # torch's own message may advise weights_only=False, which misleads for a file
            # that is no checkpoint at all: say what the file is instead.
            what = checkpoint_problem(filename) or f"{type(e).__name__}: {str(e)[:200]}"
            raise DetectorWeightsError(
                f"{where} is not a readable PyTorch checkpoint (expected a file written by "
                f"torch.save, e.g. a detector's model_final.pth): {what}"
            ) from e
        if not isinstance(loaded, dict):
            raise DetectorWeightsError(
                f"{where} holds a {type(loaded).__name__}, not a checkpoint: expected a dict of "
                "parameter tensors (a state dict) or a Detectron2 checkpoint {'model': ...}"
            )
        state = loaded.get("model", loaded)
        if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
            raise DetectorWeightsError(
                f"{where}: its 'model' entry is not a dict of tensors (a state dict)"
            )
        return loaded if "model" in loaded else {"model": loaded}

    def _detector_keys(self) -> List[str]:
        model = self.model
        state_keys = list(model.state_dict().keys())
        if not hasattr(model, "detector_modules"):
            return state_keys
        ids = {id(m) for m in model.detector_modules() if m is not None}
        prefixes = tuple(f"{name}." for name, m in model.named_modules() if id(m) in ids)
        return [k for k in state_keys if k.startswith(prefixes)]

    def _load_model(self, checkpoint: Any):
        some_names = list(checkpoint["model"])[:3]  # Detectron2 pops "model" while loading
        incompatible = super()._load_model(checkpoint)
        where = f"{self.key}: {self._source}"
        detector = self._detector_keys()
        wrong_shape = [(k, a, b) for k, a, b in incompatible.incorrect_shapes if k in detector]
        if wrong_shape:
            k, shape_ckpt, shape_model = wrong_shape[0]
            hint = ""
            if "box_predictor" in k:
                hint = " (another class count? MODEL.ROI_HEADS.NUM_CLASSES must be the detector's)"
            raise DetectorWeightsError(
                f"{where}: parameter {k} has shape {tuple(shape_ckpt)} in the checkpoint but "
                f"{tuple(shape_model)} in the model{hint}; {len(wrong_shape)} detector "
                "parameter(s) differ in shape"
            )
        missing = set(incompatible.missing_keys)
        unmatched = [k for k in detector if k in missing]
        matched = len(detector) - len(unmatched)
        if detector and matched < self.min_match * len(detector):
            raise DetectorWeightsError(
                f"{where}: only {matched} of the detector's {len(detector)} parameters "
                f"({matched / len(detector):.0%}) are in the checkpoint, below "
                f"MODEL.SGG.DETECTOR_WEIGHTS_MIN_MATCH = {self.min_match}; unmatched e.g. "
                f"{', '.join(unmatched[:5])}; the checkpoint has e.g. "
                f"{', '.join(some_names) or 'nothing'}"
            )
        return incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        """One line instead of Detectron2's lists: how many entries loaded, and which
        groups of relation-stage entries keep their initialisation."""
        detector = set(self._detector_keys())
        missing = incompatible.missing_keys
        skipped = [k for k, _, _ in incompatible.incorrect_shapes]  # relation stage only here
        total = len(self.model.state_dict())
        left = [k for k in missing if k not in detector] + skipped
        line = (
            f"{self.key}: {self._source}: loaded {total - len(missing) - len(skipped)} of "
            f"the model's {total} entries; {len(left)} relation-stage entries left at their "
            f"initialisation: {self._group_counts(left)}"
        )
        if skipped:
            line += f" ({len(skipped)} of them of another shape in the checkpoint)"
        absent = [k for k in missing if k in detector]
        if absent:
            line += f"; detector entries not in the checkpoint: {self._group_counts(absent)}"
        if incompatible.unexpected_keys:
            unused = incompatible.unexpected_keys
            line += f"; checkpoint entries not used: {self._group_counts(unused)}"
        logger.info(line)

    @staticmethod
    def _group_counts(keys: List[str]) -> str:
        """'roi_heads.context (12), sgg_freq_counts (1)': entries counted per module
        (first two name components), in model order."""
        groups: Dict[str, int] = {}
        for k in keys:
            group = ".".join(k.split(".")[:2]) if "." in k else k
            groups[group] = groups.get(group, 0) + 1
        return ", ".join(f"{g} ({n})" for g, n in groups.items()) or "none"
