"""Batches of a prepared split as the training step wants them: uint8 (B, 3, H, W) tensors in a reproducible
per-epoch order (`ArrayLoader`), turned into float inputs in the step's memory format (`to_input`)."""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import torch

from ..data.prepared import ImageArrays
from .runtime import Precision


class ArrayLoader:
    """Batches of a prepared split as uint8 (B, 3, H, W) tensors, reproducible per epoch.

    Reading the memory-mapped rows of the next batch overlaps with the current step (one background thread).

    Args:
        data: a prepared split.
        batch_size: images per batch.
        shuffle: reshuffle every epoch with a generator seeded by (seed, epoch), so a resumed run sees the same
            order as an uninterrupted one.
        seed: base seed.
        device: where batches go.
    """

    def __init__(self, data: ImageArrays, batch_size: int, *, shuffle: bool, seed: int = 0,
                 device: torch.device | str = "cpu"):
        if len(data) == 0:
            raise ValueError("cannot iterate an empty split")
        self.data, self.batch_size, self.shuffle, self.seed = data, batch_size, shuffle, seed
        self.device = torch.device(device)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.data) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.data))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.data))

    def _fetch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.sort(idx)  # sequential reads from the memory map; order inside a batch does not matter
        x = torch.from_numpy(self.data.images[idx])  # (B, H, W, 3): fancy indexing copies the rows out of the map
        y = torch.from_numpy(self.data.labels[idx])
        if self.device.type == "cuda":  # pin before the permute: pinning a permuted view would copy it to NCHW
            x = x.pin_memory().to(self.device, non_blocking=True)
            y = y.pin_memory().to(self.device, non_blocking=True)
        return x.permute(0, 3, 1, 2), y  # (B, 3, H, W) with channels_last strides, no copy

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order()
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self._fetch, chunks[0])
            for nxt in chunks[1:] + [None]:
                batch = pending.result()
                if nxt is not None:
                    pending = pool.submit(self._fetch, nxt)
                yield batch


def to_input(x: torch.Tensor, precision: Precision) -> torch.Tensor:
    """uint8 or float batch -> float in [0, 1] in the step's memory format (one pass: cast and relayout together)."""
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    if x.dtype == torch.uint8:
        return x.to(dtype=torch.float32, memory_format=fmt).div_(255)
    return x.contiguous(memory_format=fmt)


def augmented_examples(data: ImageArrays, augment: Callable[..., torch.Tensor] | None, n: int,
                       seed: int) -> tuple[torch.Tensor, list[str]]:
    """A fixed sample of `n` training images as the model sees them (after `augment`), with their class names.

    Draws only from generators seeded by `seed`, never from the global RNG, so showing them changes no result."""
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n].sort().values.numpy()
    x = torch.from_numpy(data.images[idx]).permute(0, 3, 1, 2)  # (n, 3, H, W) uint8
    x = augment(x, torch.Generator().manual_seed(seed)) if augment else x.float() / 255
    return x, [data.classes[i] for i in data.labels[idx]]
