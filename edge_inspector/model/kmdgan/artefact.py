"""The model artefact: one safetensors file with weights, memory banks and the metadata to run it.

Tensors: `generator.*` (the whole network, backbone included, so the file runs on its own) and
`memory.<stride>` (one bank per matched stride). Metadata (safetensors' string header):
`format` and `metadata`, a JSON object with the input size, normalisation, backbone, module
switches, operating threshold, training record, package version and a SHA-256 of all tensors.
Loading checks all of it and refuses a mismatched or corrupt file with one line.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import safe_open
from safetensors.torch import save_file

from edge_inspector import __version__
from edge_inspector.config import KMDGANModelConfig
from edge_inspector.errors import UserError
from edge_inspector.model.backbone import MEAN, STD, VARIANTS, EfficientNetLiteFeatures
from edge_inspector.model.kmdgan.network import STRIDES, KMDGANArchitecture, KMDGANGenerator
from edge_inspector.model.scoring import THRESHOLD_RULES

FORMAT = "edge-inspector.kmdgan/2"  # /2: the checksum covers the metadata as well as the tensors
FORMAT_TENSORS_ONLY = "edge-inspector.kmdgan/1"  # still read; its metadata is validated, not checksummed


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checksum(tensors: dict[str, torch.Tensor], meta: dict) -> str:
    """Tensors and metadata (all of it but the checksum itself), canonical JSON."""
    body = json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((_digest(tensors) + body).encode()).hexdigest()


def _validate(meta: dict) -> KMDGANArchitecture:
    """The metadata checked with the config's own rules: an edited or foreign file is refused."""
    fields = dict(meta["architecture"])
    # the map's guided filter was an option from 2026-12-03 to 12-05 (removed: it lost on held-out
    # real defects); the artefacts of that version load where it was off, as they all were by default
    radius = fields.pop("map_guide_radius", 0)
    fields.pop("map_guide_eps", None)
    if radius:
        raise ValueError(f"map_guide_radius {radius}: the map's guided filter is no longer supported, retrain")
    arch = KMDGANArchitecture(**fields)
    KMDGANModelConfig(kind="kmdgan", input_size=meta["input_size"])  # same bounds as a station file
    threshold = float(meta["threshold"])
    if not math.isfinite(threshold):
        raise ValueError(f"threshold {threshold} is not finite")
    if not 0 < float(meta.get("pixel_threshold", 0.5)) < 1:
        raise ValueError(f"pixel_threshold {meta['pixel_threshold']} not within (0, 1)")
    if meta.get("pixel_extent") is not None and not 0 < float(meta["pixel_extent"]) < 1:
        raise ValueError(f"pixel_extent {meta['pixel_extent']} not within (0, 1)")
    if meta.get("backbone", "efficientnet-lite0") not in VARIANTS:
        raise ValueError(f"backbone {meta['backbone']!r} unknown")
    if arch.blend not in ("geometric", "max", "none"):
        raise ValueError(f"map_blend {arch.map_blend!r} unknown")
    if arch.score_scale not in ("spread", "gap"):
        raise ValueError(f"score_scale {arch.score_scale!r} unknown")
    if arch.threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"threshold_rule {arch.threshold_rule!r} unknown")
    if not 0 <= float(arch.mask_score_floor) < 1:
        raise ValueError(f"mask_score_floor {arch.mask_score_floor} not within [0, 1)")
    # the mask score's values, and logit taking no floor: the station file's own rules
    KMDGANModelConfig(kind="kmdgan", mask_score=arch.mask_score, mask_score_floor=arch.mask_score_floor)
    if not set(arch.match_strides) <= set(STRIDES):
        raise ValueError(f"match_strides {arch.match_strides} not within {STRIDES}")
    if not set(arch.map_strides) <= set(arch.match_strides):
        raise ValueError(f"map_strides {arch.map_strides} not within match_strides {arch.match_strides}")
    sides = [int(meta["input_size"]) // s for s in arch.match_strides]
    if arch.position_sides and arch.position_sides != sides:
        raise ValueError(f"position_sides {arch.position_sides} do not fit input_size {meta['input_size']}")
    return arch


def save_artefact(path: Path, model: KMDGANGenerator, banks: list[torch.Tensor], threshold: float,
                  input_size: int, training: dict, pixel_threshold: float = 0.5,
                  pixel_extent: float | None = None) -> Path:
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"memory.{s}": b.detach().cpu().contiguous() for s, b in zip(model.matched, banks)})
    meta = {
        "version": __version__,
        "input_size": input_size,
        "normalisation": {"mean": MEAN, "std": STD, "channels": "RGB", "range": "[0, 1] before normalisation"},
        "backbone": model.backbone.name,
        "architecture": model.arch.as_dict(),
        "threshold": threshold,
        "pixel_threshold": pixel_threshold,
        "pixel_extent": pixel_extent,
        "training": training,
    }
    meta["sha256"] = checksum(tensors, meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


class LoadedModel:
    """A generator with its banks and metadata, ready for inference."""

    def __init__(self, model: KMDGANGenerator, banks: list[torch.Tensor], meta: dict, path: Path):
        self.model, self.banks, self.meta, self.path = model, banks, meta, path

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def pixel_threshold(self) -> float:
        """The anomaly-map level chosen on training data (0.5 in artefacts older than the choice)."""
        return float(self.meta.get("pixel_threshold", 0.5))

    @property
    def pixel_extent(self) -> float | None:
        """The hysteresis level masks extend down to (model/mask_cut.cut_mask); None: a plain
        cut at the pixel threshold (artefacts older than the choice, or where it chose none)."""
        value = self.meta.get("pixel_extent")
        return None if value is None else float(value)

    @property
    def input_size(self) -> int:
        return int(self.meta["input_size"])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(images, *self.banks)


def load_artefact(path: Path) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model artefact not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
            # copied out of the mapping: a file overwritten in place (cp over it) must not pull the
            # running model's memory from under it (SIGBUS)
            tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}
    except Exception as exc:  # truncated, not safetensors, bad header
        raise UserError(f"model artefact corrupt: {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    fmt = header.get("format")
    if fmt not in (FORMAT, FORMAT_TENSORS_ONLY):
        raise UserError(f"model artefact {path}: format {fmt!r}, expected {FORMAT!r}")
    try:
        meta = json.loads(header["metadata"])
        arch = _validate(meta)
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        why = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else \
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(f"model artefact {path}: metadata incomplete or invalid ({why})") from None
    expected = checksum(tensors, meta) if fmt == FORMAT else _digest(tensors)
    if expected != meta.get("sha256"):
        raise UserError(f"model artefact {path}: content does not match its checksum (corrupt or altered)")
    # the backbone's weights are in the file: build it empty-handed, then load them with the rest
    model = KMDGANGenerator(arch, _empty_backbone(meta.get("backbone", "efficientnet-lite0")))
    state = {k.removeprefix("generator."): v for k, v in tensors.items() if k.startswith("generator.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"model artefact {path}: weights do not fit the architecture it declares: "
                        f"{str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else exc}") from None
    banks = []
    for i, s in enumerate(model.matched):
        bank = tensors.get(f"memory.{s}")
        want = model.backbone.channels[STRIDES.index(s)]
        if bank is None or bank.ndim != 2 or bank.shape[1] != want or bank.shape[0] == 0:
            raise UserError(f"model artefact {path}: memory bank for stride {s} missing or not (N, {want})")
        banks.append(bank.float())
    model.eval()
    return LoadedModel(model, banks, meta, path)


def _empty_backbone(name: str) -> EfficientNetLiteFeatures:
    return EfficientNetLiteFeatures(STRIDES, weights=False, name=name)


def update_artefact(src: Path, dst: Path, **changes) -> Path:
    """A copy of src with its metadata changed (weights and banks as they are), validated and
    checksummed anew: new operating thresholds, a record of who changed them, how it was trained."""
    load_artefact(src)  # a corrupt or altered source is refused here, not copied
    with safe_open(str(src), framework="pt") as fh:
        meta = json.loads(fh.metadata()["metadata"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    meta.update(changes)
    try:
        _validate(meta)
    except ValueError as exc:
        raise UserError(f"{dst}: metadata refused: {exc}") from None
    meta["sha256"] = checksum(tensors, meta)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(dst.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "metadata": json.dumps(meta)})
    tmp.replace(dst)
    return dst


def retune_artefact(src: Path, dst: Path, threshold: float, pixel_threshold: float, record: dict) -> Path:
    """New operating thresholds; record (who, when, from what) is kept as `retuned`."""
    return update_artefact(src, dst, threshold=float(threshold), pixel_threshold=float(pixel_threshold),
                           retuned=record)
