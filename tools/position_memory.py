#!/usr/bin/env python3
"""A memory per tile position against one memory for every tile, on the large-frame synthetic set.

Where parts are fixtured in the same place every time, a tile at one position of the frame always
sees the same stretch of the part. A memory of that position's training tiles alone cannot match a
defect to a normal pattern from elsewhere on the part (a dark pit to the bored hole's dark inside),
but gives each location fewer normals to match. This measures what that gives with the memory-bank
scorer (the baseline's features at strides 8 and 16: the part of KMDGAN that the memory decides),
in tiles mode exactly as the service cuts and stitches frames (inspection/frame.py). The frame
threshold is set on the held-out training frames (target 1 %). The set is synthetic and chooses
nothing; the parts of its frames sit within 3 px of the same place, as a fixtured part would.
Prints a table and writes JSON.

    python tools/position_memory.py [--normals 100 --per-defect 8 --rows 1024]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.config import InspectionConfig, MemoryBankModelConfig  # noqa: E402
from edge_inspector.data import load_split  # noqa: E402
from edge_inspector.data.imageio import read_image, to_tensor_layout  # noqa: E402
from edge_inspector.data.synthetic_product import write_large_frame_set  # noqa: E402
from edge_inspector.evaluation.harness import evaluate_frames, frames_of  # noqa: E402
from edge_inspector.inspection.frame import as_bgr, inspect_frame, padded, region, tile_boxes  # noqa: E402
from edge_inspector.model.memory_bank.fitting import build_memory_bank_scorer  # noqa: E402
from edge_inspector.model.memory_bank.search import SAMPLERS, nearest  # noqa: E402
from edge_inspector.model.scoring import split_holdout, threshold_from_normals  # noqa: E402

SIZE = 128  # model input and tile side: the tiles are inferred as cut
MEMORIES = ["one bank", "a bank per position", "a bank per position, every row"]


def tile_crops(image: np.ndarray, inspection) -> list[np.ndarray]:
    """The frame's tiles in the service's order (region, mirrored padding, overlap)."""
    x, y, w, h = region(image.shape[:2], inspection.roi)
    part = padded(as_bgr(image[y : y + h, x : x + w]), SIZE)
    return [part[ty : ty + SIZE, tx : tx + SIZE] for ty, tx in tile_boxes(part.shape[:2], SIZE, inspection.overlap)]


def position_rows(scorer, samples, inspection, batch: int = 16) -> torch.Tensor:
    """(tile positions, frames x locations, C): every training frame's feature rows, by tile position."""
    frames = []
    for s in samples:
        crops = tile_crops(read_image(s.image), inspection)
        f = torch.cat([scorer.features(torch.from_numpy(to_tensor_layout(crops[i : i + batch])))
                       for i in range(0, len(crops), batch)])
        frames.append(f.permute(0, 2, 3, 1).reshape(f.shape[0], -1, f.shape[1]))
    return torch.cat(frames, 1)


class PositionalPredict:
    """inspect_frame's Predict with a bank per tile position (or one for all): inspect_frame infers a
    frame's tiles in order, in batches, so the k-th image it passes is tile k mod positions. Each
    frame's score (its largest tile's) is kept in frame_scores."""

    def __init__(self, scorer, banks: list[torch.Tensor], positions: int):
        self.scorer, self.banks, self.positions = scorer, banks, positions
        self.k, self.running, self.frame_scores = 0, -np.inf, []

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(images)
        f = self.scorer.features(x)
        b, c, h, w = f.shape
        patch = torch.stack([
            nearest(f[i].permute(1, 2, 0).reshape(-1, c), self.banks[(self.k + i) % len(self.banks)])[0]
            .sqrt().view(1, h, w) for i in range(b)])
        maps = self.scorer.smooth(F.interpolate(patch, size=x.shape[-2:], mode="bilinear", align_corners=False))
        scores = patch.flatten(1).amax(1).numpy()
        for score in scores:  # a frame ends where its last tile is
            self.running = max(self.running, float(score))
            self.k = (self.k + 1) % self.positions
            if self.k == 0:
                self.frame_scores.append(self.running)
                self.running = -np.inf
        return maps[:, 0].numpy(), scores


def banks_for(name: str, rows: torch.Tensor, per_position: int, single: int, seed: int) -> list[torch.Tensor]:
    """One row's banks: every position's own rows (all, or a coreset of per_position), or one coreset of
    single rows over every position's rows."""
    coreset = SAMPLERS["coreset"]
    if name == "one bank":
        flat = rows.reshape(-1, rows.shape[-1])
        return [flat[coreset(single, seed).rows(flat)].contiguous()]
    if name == "a bank per position, every row":
        return list(rows)
    return [r[coreset(per_position, seed).rows(r)].contiguous() for r in rows]


def measure(name: str, banks, scorer, positions: int, holdout, split, inspection, eval_size: int) -> dict:
    started = time.perf_counter()
    predict = PositionalPredict(scorer, banks, positions)
    for s in holdout:
        inspect_frame(read_image(s.image), predict, SIZE, inspection)
    threshold = threshold_from_normals(np.array(predict.frame_scores), 0.01)
    predict.frame_scores = []
    result = evaluate_frames(frames_of(split.test), predict, SIZE, threshold, inspection, eval_size,
                             total=len(split.test), progress=False)
    found = {}
    for s, score in zip(split.test, predict.frame_scores):
        if s.label:
            kind = found.setdefault(s.defect_type, [0, 0])
            kind[0] += int(score >= threshold)
            kind[1] += 1
    return {"memory": name, "rows": int(sum(b.shape[0] for b in banks)), "threshold": round(threshold, 4),
            "found_by_kind": {k: f"{a} of {n}" for k, (a, n) in sorted(found.items())},
            **result["metrics"], "ms_per_frame": result["ms_per_image"],
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--normals", type=int, default=100)
    p.add_argument("--per-defect", type=int, default=8)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=960)
    p.add_argument("--rows", type=int, default=1024, help="coreset rows per position (the subsampled row)")
    p.add_argument("--single", type=int, default=8192, help="coreset rows of the one bank (KMDGAN's default)")
    p.add_argument("--eval-size", type=int, default=960, help="grid the maps and masks are compared on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--memories", nargs="+", choices=MEMORIES, default=MEMORIES)
    p.add_argument("--out", type=Path, default=Path("reports/position_memory.json"))
    args = p.parse_args()
    torch.manual_seed(args.seed)
    inspection = InspectionConfig(mode="tiles", tile_size=SIZE, overlap=0.25)
    scorer = build_memory_bank_scorer(MemoryBankModelConfig(kind="memory-bank", input_size=SIZE))
    with tempfile.TemporaryDirectory(prefix="position-memory-") as tmp:
        root = write_large_frame_set(Path(tmp) / "set", args.normals, args.per_defect, args.width, args.height,
                                     seed=args.seed)
        split = load_split("folder", root)
        fit, holdout = split_holdout(split.train_normal)
        rows = position_rows(scorer, fit, inspection)
        print(f"{len(fit)} training frames, {len(holdout)} held out, {rows.shape[0]} tile positions, "
              f"{rows.shape[1]} rows each; test: {len(split.test)} frames", flush=True)
        table = []
        for name in args.memories:
            banks = banks_for(name, rows, args.rows, args.single, args.seed)
            table.append(measure(name, banks, scorer, rows.shape[0], holdout, split, inspection, args.eval_size))
            print(f"{name}: done", flush=True)
    keys = ["image_auroc", "pixel_auroc", "pixel_ap", "aupro", "false_reject_rate", "escape_rate"]
    print("| memory | rows | found by kind | " + " | ".join(keys) + " | ms/frame |")
    print("|" + "---|" * (len(keys) + 4))
    for r in table:
        found = ", ".join(f"{k} {v}" for k, v in r["found_by_kind"].items())
        print(f"| {r['memory']} | {r['rows']:,} | {found} | " + " | ".join(str(r.get(k)) for k in keys)
              + f" | {r['ms_per_frame']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": table}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
