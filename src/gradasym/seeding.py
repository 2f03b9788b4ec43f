"""One seed drives everything, through independent named streams.

Every source of randomness in a run (network initialisation, exploration noise,
master's random selection, replay sampling, training and evaluation environments)
gets its own generator derived from the run seed and a stream name, so that
changing how one stream is consumed never shifts another, and all configurations
of a sweep with the same seed start from identical networks and devices.
Global numpy/random/torch state is never read or written.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

STREAMS = ("networks", "exploration", "replay", "env", "eval_env", "policy", "remedies")


def _stream_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def seed_sequence(seed: int, name: str) -> np.random.SeedSequence:
    """A SeedSequence for stream ``name`` of run seed ``seed``."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return np.random.SeedSequence([int(seed), _stream_key(name)])


def numpy_generator(seed: int, name: str) -> np.random.Generator:
    """An independent numpy Generator for stream ``name``."""
    return np.random.Generator(np.random.PCG64(seed_sequence(seed, name)))


def torch_generator(seed: int, name: str) -> torch.Generator:
    """An independent CPU torch.Generator for stream ``name``."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed_sequence(seed, name).generate_state(1, np.uint64)[0] & ((1 << 63) - 1)))
    return g
