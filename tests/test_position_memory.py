"""tools/position_memory.py: each tile of a frame is matched against its own position's memory."""

from pathlib import Path

import numpy as np
import torch


def test_each_tile_is_matched_against_the_memory_of_its_own_position(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "tools"))
    import position_memory as pm

    from edge_inspector.config import InspectionConfig, MemoryBankModelConfig
    from edge_inspector.data import load_split
    from edge_inspector.data.imageio import read_image
    from edge_inspector.data.synthetic_product import write_large_frame_set
    from edge_inspector.inspection.frame import inspect_frame
    from edge_inspector.model.memory_bank.fitting import build_memory_bank_scorer

    split = load_split("folder", write_large_frame_set(tmp_path, normals=5, per_defect=1, width=300, height=200))
    inspection = InspectionConfig(mode="tiles", tile_size=pm.SIZE, overlap=0.25, batch=4)
    scorer = build_memory_bank_scorer(MemoryBankModelConfig(kind="memory-bank", input_size=pm.SIZE))
    frames = split.train_normal[:2]
    rows = pm.position_rows(scorer, frames, inspection)
    positions = rows.shape[0]
    assert positions == len(pm.tile_crops(read_image(frames[0].image), inspection)) == 6  # 3 x 2 tiles
    assert rows.shape[1] == 2 * 16 * 16  # two frames' 16 x 16 locations per position

    def inspected(banks):  # the first frame, which is in every memory below, and then the second
        predict = pm.PositionalPredict(scorer, banks, positions)
        found = [inspect_frame(read_image(s.image), predict, pm.SIZE, inspection) for s in frames]
        return predict, found

    # its own position's rows hold each tile itself: distance 0 everywhere (up to float32 rounding of
    # the one-matmul distance), across batches of 4 tiles
    own, found = inspected(list(rows))
    assert max(own.frame_scores) < 0.1 and [f.score for f in found] == own.frame_scores
    # a position's memory shifted by one: the tiles meet other stretches of the part
    shifted, _ = inspected(list(torch.roll(rows, 1, 0)))
    assert min(shifted.frame_scores) > 100 * max(own.frame_scores)
    # one bank of every row matches each tile anywhere: as close as its own position's
    one, _ = inspected([rows.reshape(-1, rows.shape[-1])])
    assert np.allclose(one.frame_scores, own.frame_scores, atol=1e-2)
    assert pm.banks_for("a bank per position", rows, 100, 0, 0)[0].shape == (100, rows.shape[-1])
