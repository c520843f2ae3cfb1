"""Torch dataset over decoded uint8 images held in memory (decoded once per run by `cache.py`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from monai.data.utils import set_rnd
from monai.data.utils import worker_init_fn as monai_worker_init_fn
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset, get_worker_info

from cxr.data.transforms import normalise


class DecodedImageDataset(Dataset):
    """Yields (normalised 1xHxW tensor, label); `augment` (MONAI Compose) runs on training items only."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float, augment=None):
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.mean, self.std = mean, std
        self.augment = augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = normalise(self.images[i], 0.0, 1.0)  # 0..1, so affine padding is black
        if self.augment is not None:
            x = convert_to_tensor(self.augment(x), track_meta=False)
        return (x - self.mean) / self.std, int(self.labels[i])


# Augmentation randomness. Every loader worker holds a copy of the dataset and so of its augmentation (one MONAI
# Compose with its own random state); copies left as they are would draw the same numbers in every worker. MONAI's
# worker_init_fn seeds each worker's copy from PyTorch's per-worker seed (base seed + worker id; the base seed is drawn
# per epoch, or once with persistent workers): distinct streams per worker, repeatable for a seed and worker count.
# cxr passes it explicitly (a plain torch DataLoader would not) and adds the DDP rank, since every rank draws the same
# base seed after seed_everything. Rank 0 keeps MONAI's seeds exactly, so single-device runs train as before.


def _rank_seed(seed: int, rank: int) -> int:
    return seed if rank == 0 else int(np.random.SeedSequence([seed % 2**63, rank]).generate_state(1)[0])


def seed_worker_augmentation(worker_id: int, rank: int = 0) -> None:
    """worker_init_fn: this worker's (and this rank's) own augmentation stream."""
    if rank == 0:
        monai_worker_init_fn(worker_id)
        return
    info = get_worker_info()
    set_rnd(info.dataset, seed=_rank_seed(info.seed, rank))


def augmentation_worker_init(rank: int) -> Callable[[int], None]:
    """The loader's worker_init_fn for DDP rank `rank` (a partial: picklable for spawned workers)."""
    return partial(seed_worker_augmentation, rank=rank)


def seed_main_process_augmentation(dataset: Dataset, rank: int) -> None:
    """With 0 workers the main process augments, seeded by MONAI's DataLoader as worker 0 would be, the same on every
    rank: ranks other than 0 get their own stream, the one their worker 0 would draw (so 0 and 1 worker agree)."""
    if rank == 0:
        return
    generator = torch.random.default_generator  # drawn and reset exactly as monai.data.DataLoader does
    initial = generator.initial_seed()
    seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
    generator.manual_seed(initial)
    set_rnd(dataset, seed=_rank_seed(seed, rank))
