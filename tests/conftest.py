"""Fixtures shared by several test folders."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread and restore the count after (the suite runs beside other processes on
    2 cores, where 2 torch threads thrash)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
