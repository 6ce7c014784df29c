from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MAGNETIC_TILE = SHARED / "data" / "magnetic-tile"


@pytest.fixture
def magnetic_tile() -> Path:
    if not (MAGNETIC_TILE / "MT_Free").is_dir():
        pytest.skip(f"Magnetic Tile data not present at {MAGNETIC_TILE} (it is in CI, not on a user's machine)")
    return MAGNETIC_TILE


@pytest.fixture(scope="session")
def product_set(tmp_path_factory) -> Path:
    """The project's own small synthetic product set (folder layout), made once per session."""
    from edge_inspector.data.synthetic_product import write_product_set

    return write_product_set(tmp_path_factory.mktemp("product"), normals=30, per_defect=4, size=128, seed=3)
