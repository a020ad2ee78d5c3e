"""Suite-wide settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The tests' models are tiny: one intra-op thread is faster than two fighting over two
    # cores with the test runner (and Ray's workers in the end-to-end tests).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
