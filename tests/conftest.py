"""Test-wide settings: float64 by default and seeded random number generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed torch's global generator before every test so results do not depend on order."""
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(torch.float64)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(12345)


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded torch generator."""
    return torch.Generator().manual_seed(12345)
