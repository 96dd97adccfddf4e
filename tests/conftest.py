import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CXREPORT_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """The real data folder (../shared/data); tests using it skip where it is absent."""
    root = SHARED / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root
