"""The evaluation harness: run a model over the test part, compute every protocol metric, report."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_inspector import __version__
from edge_inspector.data.loader import iter_batches
from edge_inspector.data.sample import Split
from edge_inspector.metrics import protocol_metrics

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # images -> (maps, scores)

METRIC_NAMES = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "aupro": "AUPRO (FPR<=0.3)",
    "image_f1_max": "image F1-max",
    "false_reject_rate": "false rejects @ threshold",
    "escape_rate": "escapes @ threshold",
}


def evaluate(predict: Predict, split: Split, size: int, threshold: float, batch_size: int = 1,
             progress: bool = True) -> dict:
    """Metrics over split.test; time per image is the model call only (reading excluded)."""
    maps, scores, masks, labels = [], [], [], []
    seconds = 0.0
    test = split.test
    for batch in tqdm(iter_batches(test, size, batch_size), total=-(-len(test) // batch_size),
                      desc="evaluate", disable=not progress):
        start = time.perf_counter()
        m, s = predict(batch.images)
        seconds += time.perf_counter() - start
        maps.append(np.asarray(m, dtype=np.float32))
        scores.append(np.asarray(s, dtype=np.float64))
        masks.append(batch.masks)
        labels += [s.label for s in batch.samples]
    scores_all = np.concatenate(scores)
    result = {
        "metrics": protocol_metrics(np.array(labels), scores_all, np.concatenate(masks), np.concatenate(maps), threshold),
        "threshold": threshold,
        "split": split.sizes(),
        "test_images_evaluated": len(labels),
        "test_images_skipped": len(test) - len(labels),
        "ms_per_image": round(1000 * seconds / max(len(labels), 1), 1),
        "batch_size": batch_size,
        "input_size": size,
        "version": __version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {_cpu_count()} cores",
    }
    return result


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def format_table(result: dict) -> str:
    rows = [(METRIC_NAMES[k], f"{v:.4f}") for k, v in result["metrics"].items() if k in METRIC_NAMES]
    sizes = result["split"]
    rows += [
        ("operating threshold", f"{result['threshold']:.4f}"),
        ("split (train / few-shot / test normal / test anomalous)",
         f"{sizes['train_normal']} / {sizes['few_shot']} / {sizes['test_normal']} / {sizes['test_anomalous']}"),
        ("test images skipped (unreadable)", str(result["test_images_skipped"])),
        (f"time per image (batch {result['batch_size']})", f"{result['ms_per_image']} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    head = f"{result.get('model', 'model')} on {result.get('dataset', 'dataset')} (edge-inspector {result['version']})"
    return "\n".join([head, "-" * len(head)] + [f"{k:<{width}}  {v}" for k, v in rows])


def write_json(result: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path
