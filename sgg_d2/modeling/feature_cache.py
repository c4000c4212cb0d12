"""Backbone maps of a frozen detector, kept per image across training iterations.

In the relation stage the detector is frozen (``MODEL.SGG.FREEZE_DETECTOR``), so the
backbone maps of an image depend on the image alone, and on a small dataset the same
images come back every epoch: on the synthetic worlds the backbone forward is about 60 %
of a CPU training step. With ``MODEL.SGG.FEATURE_CACHE_MB`` > 0 each training image's maps
are computed once, on the image alone (padded to the backbone's size divisibility, as at
inference with one image per batch), kept up to that many MB, and zero-padded into the
batch's frame when the image comes back.

What changes against the uncached pass: a batch of several images pads each image to the
batch's largest, and the padded area enters the image's maps through the convolutions'
borders and GroupNorm's statistics; cached maps are each image's own (the maps inference
computes), with zeros beyond them. Results therefore differ from an uncached run within
float noise of the frozen features, not bit for bit (docs/BENCHMARKS.md, the timed study).

Images are recognised by their content (a hash of the mapped image tensor and its shape),
so an augmentation that changes the image (a flip) is a different entry. The memory cache
lives as long as the model; a resumed run recomputes the same maps.

With ``MODEL.SGG.FEATURE_CACHE_DIR`` the maps are also written to (and read from) files,
one per image, in a subfolder named by a hash of the backbone's weights, the torch version,
the device type and the thread count: every run and evaluation that uses the same frozen
detector on the same images (a multi-seed study: ``tools/ablate.py`` passes
``OUT/feature_cache``) computes each image's maps once. At inference (one image per
batch) the cached maps are exactly the ones the backbone computes, so evaluation results
are bit-identical with and without the cache.
"""

import hashlib
import logging
import os
import tempfile
from typing import Dict, List, Optional

import torch
from detectron2.structures import ImageList

__all__ = ["FrozenFeatureCache"]

logger = logging.getLogger(__name__)


class FrozenFeatureCache:
    """Per-image backbone maps of a frozen detector, up to ``max_mb`` MB.

    Attributes:
        hits, misses: images served from memory / not found in memory so far.
        disk_hits: misses read from the disk cache.
        uncached: images not kept in memory because it was full.
    """

    def __init__(self, max_mb: float, directory: str = ""):
        """
        Args:
            max_mb: the most MB of maps kept in memory (0: none).
            directory: folder of the on-disk cache ("" for none).
        """
        if max_mb < 0 or (max_mb == 0 and not directory):
            raise ValueError(
                f"FrozenFeatureCache needs MODEL.SGG.FEATURE_CACHE_MB > 0 or a "
                f"MODEL.SGG.FEATURE_CACHE_DIR; got {max_mb} and {directory!r}"
            )
        self.directory = directory
        self._folder: Optional[str] = None  # directory/<weights hash>, set at first use
        self.max_bytes = int(max_mb * 2**20)
        self.bytes = 0
        self.hits = self.misses = self.uncached = self.disk_hits = 0
        self._store: Dict[tuple, Dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._store)

    def backbone_features(self, model, batched_inputs: List[dict]) -> Dict[str, torch.Tensor]:
        """The batch's backbone maps, each (B, C, H_l, W_l), from cached per-image maps.

        Args:
            model: a ``GeneralizedRCNN`` (``preprocess_image``, ``backbone``) whose backbone
                is frozen; called without gradient.
            batched_inputs: the batch's mapped inputs (``"image"``: (3, H, W) tensor).
        """
        per_image = [self._image_features(model, x) for x in batched_inputs]
        # zero-padded at the bottom / right to the batch's largest map, as Detectron2 pads
        return {
            name: ImageList.from_tensors([f[name] for f in per_image]).tensor
            for name in per_image[0]
        }

    def _image_features(self, model, inputs: dict) -> Dict[str, torch.Tensor]:
        image = inputs["image"]
        key = (tuple(image.shape), _digest(image))
        cached = self._store.get(key)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        maps = self._load(model, key)
        if maps is None:
            with torch.no_grad():
                single = model.preprocess_image([inputs])
                maps = {k: v[0] for k, v in model.backbone(single.tensor).items()}
            self._save(model, key, maps)
        self._keep(key, maps)
        return maps

    def _keep(self, key: tuple, maps: Dict[str, torch.Tensor]) -> None:
        """Keep ``maps`` in memory if they fit under the limit."""
        if self.max_bytes == 0:
            return
        size = sum(v.numel() * v.element_size() for v in maps.values())
        if self.bytes + size <= self.max_bytes:
            self._store[key] = maps
            self.bytes += size
        else:
            if self.uncached == 0:
                logger.warning(
                    "MODEL.SGG.FEATURE_CACHE_MB: the cache is full (%d images, %.0f MB); "
                    "images beyond it are recomputed at every visit",
                    len(self._store),
                    self.bytes / 2**20,
                )
            self.uncached += 1

    def _path(self, model, key: tuple) -> Optional[str]:
        if not self.directory:
            return None
        if self._folder is None:
            self._folder = os.path.join(self.directory, _backbone_digest(model.backbone))
            os.makedirs(self._folder, exist_ok=True)
        shape = "x".join(str(d) for d in key[0])
        return os.path.join(self._folder, f"{key[1].hex()}_{shape}.pt")

    def _load(self, model, key: tuple) -> Optional[Dict[str, torch.Tensor]]:
        path = self._path(model, key)
        if path is None or not os.path.exists(path):
            return None
        maps = torch.load(path, map_location=model.device, weights_only=True)
        self.disk_hits += 1
        return maps

    def _save(self, model, key: tuple, maps: Dict[str, torch.Tensor]) -> None:
        """Write ``maps`` to the disk cache atomically (parallel jobs share the folder)."""
        path = self._path(model, key)
        if path is None:
            return
        handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        os.close(handle)
        torch.save({k: v.cpu() for k, v in maps.items()}, tmp)
        os.replace(tmp, path)


def _digest(image: torch.Tensor) -> bytes:
    """16-byte BLAKE2 digest of a tensor's contents."""
    data = image.detach().contiguous().cpu().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).digest()


def _backbone_digest(backbone: torch.nn.Module) -> str:
    """Hash of the backbone's weights and of what else decides its float results (torch
    version, device type, thread count): the disk cache's subfolder name."""
    h = hashlib.blake2b(digest_size=12)
    for name, value in sorted(backbone.state_dict().items()):
        h.update(name.encode())
        h.update(value.detach().contiguous().cpu().numpy().tobytes())
    device = next(backbone.parameters()).device.type
    h.update(f"{torch.__version__}|{device}|{torch.get_num_threads()}".encode())
    return h.hexdigest()
