"""The calibration report: one HTML page with its PNG figures beside it.

Score distributions of held-out normals and defect samples against the threshold, the expected
false-reject and escape rates, and overlays of the predicted mask (red) with the labelled defect
outline (green) on the images.
"""

from __future__ import annotations

import html
from pathlib import Path

import cv2
import numpy as np

from edge_inspector.calibration.held_out import rates


def overlay(image: np.ndarray, predicted: np.ndarray | None, truth: np.ndarray | None = None) -> np.ndarray:
    """BGR image with the predicted mask tinted red and the true mask outlined green."""
    out = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    out = out.copy()
    if predicted is not None and predicted.any():
        red = np.zeros_like(out)
        red[..., 2] = 255
        sel = predicted.astype(bool)
        out[sel] = (0.5 * out[sel] + 0.5 * red[sel]).astype(np.uint8)
    if truth is not None and truth.any():
        contours, _ = cv2.findContours(truth.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (0, 255, 0), 1)
    return out


def score_plot(path: Path, normal: np.ndarray, defect: np.ndarray, threshold: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless line PC
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=100)
    allv = np.concatenate([normal, defect, [threshold]])
    bins = np.linspace(allv.min(), allv.max(), 40)
    ax.hist(normal, bins=bins, alpha=0.7, label=f"held-out normals ({len(normal)})", color="#3b7dd8")
    if len(defect):
        ax.hist(defect, bins=bins, alpha=0.7, label=f"defect samples ({len(defect)})", color="#d8543b")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("image score (NG at or above the threshold)")
    ax.set_ylabel("images")
    ax.set_title("Score distributions")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def trade_off(threshold: float, normal: np.ndarray, defect: np.ndarray, normal_gate=None, defect_gate=None
              ) -> list[dict]:
    """False rejects (with their 95 % upper bound) and escapes at the chosen threshold and at lower
    ones (held-out normal score quantiles): what a stricter setting would cost and catch. Gates:
    which parts have a region, where NG also needs one (held_out.gates)."""
    levels = [threshold] + [float(np.quantile(normal, q)) for q in (0.98, 0.95, 0.9) if len(normal)]
    rows = []
    for t in sorted(set(levels), reverse=True):
        r = rates(normal, defect, t, normal_gate, defect_gate)
        rows.append({"threshold": round(t, 4), "false_rejects": r["false_reject_rate"] or 0.0,
                     "false_rejects_upper_95": r["false_reject_upper_95"], "escapes": r["escape_rate"]})
    return rows


def _trade_off_row(r: dict) -> str:
    escapes = "-" if r["escapes"] is None else f"{r['escapes']:.1%}"
    return (f"<tr><td>{r['threshold']:.4f}</td><td>{r['false_rejects']:.1%} (up to "
            f"{r['false_rejects_upper_95']:.1%})</td><td>{escapes}</td></tr>")


def write_report(folder: Path, station: str, threshold: float, normal_scores: np.ndarray, defect_scores: np.ndarray,
                 overlays: list[tuple[str, np.ndarray]], collection: dict, training: dict,
                 gate: tuple = (None, None), min_area: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    score_plot(folder / "scores.png", normal_scores, defect_scores, threshold)
    names = []
    for i, (caption, image) in enumerate(overlays):
        name = f"overlay_{i:02d}.png"
        cv2.imwrite(str(folder / name), image)
        names.append((name, caption))
    expected = rates(normal_scores, defect_scores, threshold, *gate)
    frr = expected["false_reject_rate"] if len(normal_scores) else float("nan")
    escape = expected["escape_rate"] if len(defect_scores) else float("nan")
    escape_text = (f"{escape:.1%} of {len(defect_scores)} defect samples let through (optimistic: the model was "
                   "trained on these few defects)" if len(defect_scores) else
                   "not estimated: no labelled defect samples; trained on synthetic anomalies alone "
                   "(add some with calibrate --defects)")
    upper = expected["false_reject_upper_95"]
    # with threshold.min_defect_area, NG needs a region too: the rates count it, and say so
    region_text = (f"NG: the score at or above the threshold and a region of at least {min_area} frame pixels "
                   "(threshold.min_defect_area), as the service judges" if min_area else
                   "NG: the score at or above the threshold (threshold.min_defect_area 0: no region needed)")
    rule = training.get("threshold_held_out", {}).get("rule")  # absent for a tiled station's frame threshold
    rule_text = {"empirical": " (rule empirical: just above the held-out normals' order statistic)",
                 "tail": " (rule tail: the quantile of a tail fitted to the held-out normals' top scores)",
                 }.get(rule, "")
    rows = "".join(_trade_off_row(r) for r in trade_off(threshold, normal_scores, defect_scores, *gate))
    rejected = "".join(f"<li>{html.escape(str(src))}: {html.escape(reason)}</li>"
                       for src, reason in collection.get("rejected", []))
    figures = "".join(f'<figure><img src="{n}" width="256"><figcaption>{html.escape(c)}</figcaption></figure>'
                      for n, c in names)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Calibration report: {html.escape(station)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}figure{{display:inline-block;margin:4px}}
td,th{{padding:2px 10px;text-align:left}}</style></head><body>
<h1>Calibration report: {html.escape(station)}</h1>
<table>
<tr><th>operating threshold</th><td>{threshold:.4f}{html.escape(rule_text)}</td></tr>
<tr><th>verdict</th><td>{html.escape(region_text)}</td></tr>
<tr><th>expected false-reject rate</th><td>{frr:.1%} of {len(normal_scores)} held-out normals rejected;
 with so few, the rate may really be up to {upper:.1%} (95 % Wilson bound)</td></tr>
<tr><th>expected escape rate</th><td>{escape_text}</td></tr>
<tr><th>normal samples kept / rejected</th><td>{collection.get('kept', '-')} / {len(collection.get('rejected', []))}</td></tr>
<tr><th>training</th><td>{training.get('iterations')} iterations, {training.get('seconds')} s</td></tr>
</table>
<h2>Trade-off</h2><p>What a lower threshold would cost in false rejects and catch in escapes (escapes on
the defect samples, optimistic: the model was trained on them).</p>
<table><tr><th>threshold</th><th>false rejects (held-out normals)</th><th>escapes</th></tr>{rows}</table>
<h2>Score distributions</h2><img src="scores.png" alt="score distributions">
<h2>Overlays</h2><p>Red: the model's defect mask. Green outline: the labelled defect.</p>{figures}
<h2>Rejected frames</h2><ul>{rejected or '<li>none</li>'}</ul>
</body></html>
"""
    out = folder / "index.html"
    out.write_text(page)
    return out
