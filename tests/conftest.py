import os
from pathlib import Path

# two emulated Basler cameras for the pylon tests; pypylon reads this when it is first imported
os.environ.setdefault("PYLON_CAMEMU", "2")

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


@pytest.fixture(scope="session")
def tiny_kmdgan(product_set, tmp_path_factory):
    """(split, trained model): KMDGAN trained 40 iterations at 128 px on the product set, once."""
    from edge_inspector.config import KMDGANModelConfig
    from edge_inspector.data import load_split
    from edge_inspector.model.kmdgan.training import train_kmdgan

    split = load_split("folder", product_set)
    cfg = KMDGANModelConfig(kind="kmdgan", input_size=128, bank_size=2000, iterations=40, batch_size=6)
    out = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return split, train_kmdgan(split, cfg, out, target_false_reject_rate=0.1, seed=1, progress=False)


@pytest.fixture(scope="session")
def replay_200(product_set, tmp_path_factory) -> Path:
    """200 replay frames (the product set's parts, good and defective, in turn) for the service tests."""
    import shutil

    files = sorted(product_set.rglob("*.png"))
    files = [f for f in files if "masks" not in f.parts]
    out = tmp_path_factory.mktemp("replay")
    for i in range(200):
        shutil.copy(files[i % len(files)], out / f"frame_{i:04d}.png")
    return out
