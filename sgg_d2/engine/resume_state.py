"""Exact resume's random states and data position.

Exact resume needs, besides Detectron2's model / scheduler / iteration and the optimizer:

- the random states of torch (CPU and CUDA), numpy and Python (:func:`capture_rng_state`);
- the data position: :class:`ResumableTrainLoader` counts the batches handed out, and a
  resumed run replays (and discards) that many batches before training on the next one;
- a data pipeline whose samples do not depend on when they are mapped: with
  ``DATALOADER.NUM_WORKERS 0`` each mapper call runs under random states of its own
  (:class:`SeededMapper`), because a replay maps samples under other global random
  states than the original run did, and Detectron2's aspect-ratio grouping hands samples
  mapped during the replay out after the resume.
"""

import contextlib
import logging
import random
from typing import Any, Callable, Dict, Iterable, Iterator, Sequence

import numpy as np
import torch
from detectron2.utils import comm
from torch.utils.data import get_worker_info

__all__ = [
    "capture_rng_state",
    "restore_rng_state",
    "isolated_rng",
    "ResumableTrainLoader",
    "SeededMapper",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Random states
# --------------------------------------------------------------------------------------


def capture_rng_state() -> Dict[str, Any]:
    """The global random states of torch (CPU, and CUDA when initialised), numpy and Python.

    Only tensors and plain Python values, so the state loads with
    ``torch.load(..., weights_only=True)``.
    """
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(gauss),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Dict[str, Any]) -> None:
    """Set the global random states captured by :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            logger.warning(
                "The checkpoint holds CUDA random states of %d devices, this process sees %d: "
                "CUDA random states are not restored",
                len(state["cuda"]),
                torch.cuda.device_count(),
            )


@contextlib.contextmanager
def isolated_rng():
    """Run a block without changing the global random states (torch, numpy, Python) that
    the code after it sees; e.g. evaluation during training, or replaying data batches."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


# --------------------------------------------------------------------------------------
# Data position
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded_rng(seed: int):
    """Run a block with the torch (CPU), numpy and Python random states seeded by ``seed``;
    the states before the block are restored after it."""
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)  # CPU only: a queued CUDA seed would outlive us
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])


class SeededMapper:
    """A training mapper whose random draws do not depend on when it is called.

    Why: with ``DATALOADER.NUM_WORKERS 0`` the mapper runs in the training process and,
    left alone, draws from the training's global random states (duplicate-relation
    filtering, Detectron2's random augmentations). A resumed run replays the batches before
    its checkpoint under other random states than the original run, and Detectron2's
    ``AspectRatioGroupedDataset`` keeps mapped samples waiting for a batch of their
    orientation: a sample mapped during the replay is handed out after the resume, mapped
    differently than in the uninterrupted run.

    How: in the main process each call runs under torch (CPU), numpy and Python random
    states seeded from (data seed, process rank, ``stream``, call number), where the call
    number counts this mapper's calls since :meth:`restart` (the loader restarts it with
    each new iterator, so a replay maps call ``k`` exactly as the original run did). The
    training's random states are restored after every call, so data loading never moves
    them. Inside a data-loader worker the mapper runs as it is: Detectron2 seeds each
    worker from the loader's base seed, which :class:`ResumableTrainLoader` fixes, and the
    worker's states are its own.

    Args:
        mapper: the dataset mapper (dataset dict -> model input).
        stream: distinguishes the mappers of one loader (e.g. 0: target, 1: auxiliary
            images), so that their call ``k`` get different seeds.
    """

    def __init__(self, mapper: Callable[[Dict], Any], stream: int = 0):
        self.mapper = mapper
        self.stream = int(stream)
        self.seed = 0
        self.calls = 0

    def restart(self, seed: int) -> None:
        """Count calls from 0 again, with data seed ``seed`` (a new loader iterator)."""
        self.seed, self.calls = int(seed), 0

    def sample_seed(self, call: int) -> int:
        """The 32-bit seed of call number ``call`` in this process."""
        entropy = (self.seed, comm.get_rank(), self.stream, int(call))
        return int(np.random.SeedSequence(entropy).generate_state(1)[0])

    def __call__(self, dataset_dict: Dict) -> Any:
        if get_worker_info() is not None:  # a worker: random states of its own already
            return self.mapper(dataset_dict)
        call, self.calls = self.calls, self.calls + 1
        with _seeded_rng(self.sample_seed(call)):
            return self.mapper(dataset_dict)

    def __repr__(self) -> str:
        return f"SeededMapper({self.mapper!r}, stream={self.stream})"


class ResumableTrainLoader:
    """An infinite training loader that knows how many batches it handed out and can
    continue after a given number of them, deterministically.

    - Each ``iter()`` starts the data pipeline afresh: the ``mappers``
      (:class:`SeededMapper`) restart their call count with ``seed``, and the loader's
      iterator is created, and its first batch fetched, with the torch generator seeded
      by ``seed`` + process rank (in isolation from the training's random states), so the
      base seed PyTorch draws for its data-loader workers is the same in every run.
    - ``skip(n)`` makes the next iteration replay and discard ``n`` batches (same worker
      seeds, same sampler order, same aspect-ratio grouping, same per-call mapper seeds in
      the main process), without touching the global random states, before handing out
      batch ``n``. Replaying reads the images again (no model compute).

    Every sample is thus mapped under the same random states as in an uninterrupted run,
    whenever it is mapped: by the process rank, and by its position in the stream of its
    process's mapper calls (``NUM_WORKERS 0``) or of its worker's (workers: Detectron2
    seeds worker ``w`` of rank ``r`` from base seed + ``w``; the sampler shards by rank).

    Args:
        loader: an iterable of batches (Detectron2's train loader).
        seed: seed of the data pipeline (``cfg.SEED``, or a random one saved in checkpoints).
        mappers: the :class:`SeededMapper` instances ``loader`` maps with.
    """

    def __init__(self, loader: Iterable, seed: int, mappers: Sequence[SeededMapper] = ()):
        self.loader = loader
        self.seed = int(seed)
        self.mappers = tuple(mappers)
        self.batches_consumed = 0
        self._skip = 0

    def skip(self, num_batches: int) -> None:
        """Continue after ``num_batches`` batches on the next ``iter()``."""
        self._skip = int(num_batches)

    def __iter__(self) -> Iterator:
        skip, self._skip = self._skip, 0
        for mapper in self.mappers:
            mapper.restart(self.seed)
        iterator = iter(self.loader)
        with isolated_rng():
            # the workers' base seed: identical in every run, distinct per process
            torch.manual_seed(self.seed + comm.get_rank())
            batch = next(iterator)
            for _ in range(skip - 1):
                next(iterator)
        if skip:
            logger.info("Data position restored: %d batches replayed and skipped", skip)
            batch = next(iterator)  # batch number `skip`, under the restored random states
        self.batches_consumed = skip + 1
        yield batch
        for batch in iterator:
            self.batches_consumed += 1
            yield batch
