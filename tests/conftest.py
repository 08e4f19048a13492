import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHARED_DATA = Path(
    os.environ.get("SCSPECIES_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder with the full Baron files and ortholog tables; tests using it skip when absent."""
    if not (SHARED_DATA / "baron_human_counts.h5ad").exists():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA
