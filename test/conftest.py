"""Shared pytest fixtures."""

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Lets plain `pytest` import the package from a source checkout.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
REFERENCE_DIR = Path(os.environ.get("HUMAN3R_REFERENCE_DIR", REPO_ROOT.parent / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    # Missing fixtures must fail loudly, never skip: these tests are the correctness evidence.
    assert REFERENCE_DIR.is_dir(), (
        f"reference fixtures not found at {REFERENCE_DIR}; set HUMAN3R_REFERENCE_DIR"
    )
    return REFERENCE_DIR


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """A test may set torch's thread count for itself; the next test starts with the value before."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
