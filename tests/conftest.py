"""Shared fixtures. Real datasets come from ../shared/data (or $NERFLITE_SHARED_DATA) and are
optional: tests that need them are marked slow and skip when the folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("NERFLITE_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Return a function name -> path of a real dataset, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = shared_data_root() / name
        if not path.is_dir():
            pytest.skip(f"real dataset {path} not available")
        return path

    return get


@pytest.fixture
def one_thread():
    """One intra-op thread: tiny models are faster without it, and a shared CI box stays responsive."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
