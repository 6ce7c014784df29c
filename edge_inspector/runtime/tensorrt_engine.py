"""Build (or reuse) a TensorRT engine from the exported ONNX graph, with the TensorRT 10 API.

builder -> network from the ONNX parser -> builder config (FP16, optional INT8 from calibration
images, a persistent timing cache, one optimisation profile for batch and bank rows) ->
build_serialized_network. The engine is cached under the models folder by a key of what makes it
valid: the ONNX graph's hash, the GPU, the TensorRT and CUDA versions, the precision and the
profile; a changed key builds a new engine, the old one is left for its own key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.runtime import cuda_memory as cm
from edge_inspector.runtime.tensorrt_limits import check_limits

log = logging.getLogger(__name__)

try:
    import tensorrt as trt
except ImportError:  # reported by runtime.available()
    trt = None

WORKSPACE_BYTES = 2 << 30


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built for: part of its cache key."""

    onnx_sha256: str
    gpu: str
    tensorrt: str
    cuda: str
    fp16: bool = True
    int8: bool = False
    max_batch: int = 8
    bank_rows: tuple[tuple[str, int, int], ...] = ()  # (input name, opt rows, max rows)

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def engine_path(onnx_path: Path, spec: EngineSpec) -> Path:
    return Path(onnx_path).with_suffix(f".{spec.key()}.engine")


def _logger():
    return trt.Logger(trt.Logger.WARNING)


class _Calibrator(trt.IInt8EntropyCalibrator2 if trt is not None else object):
    """Feeds calibration images (with the real banks bound) to TensorRT's INT8 calibration."""

    def __init__(self, images: np.ndarray, banks: dict[str, np.ndarray], cache: Path, batch: int = 4):
        super().__init__()
        self.images, self.batch, self.cache, self.pos = images, batch, cache, 0
        self.image_buf = cm.DeviceBuffer(images[:batch].nbytes)
        self.bank_bufs = {n: cm.DeviceBuffer.of(b) for n, b in banks.items()}

    def get_batch_size(self) -> int:
        return self.batch

    def get_batch(self, names):  # noqa: D401 - TensorRT's signature
        if self.pos + self.batch > len(self.images):
            return None
        self.image_buf.upload(np.ascontiguousarray(self.images[self.pos : self.pos + self.batch]))
        self.pos += self.batch
        return [self.image_buf.ptr if n == "image" else self.bank_bufs[n].ptr for n in names]

    def read_calibration_cache(self):
        return self.cache.read_bytes() if self.cache.is_file() else None

    def write_calibration_cache(self, cache) -> None:
        self.cache.write_bytes(bytes(cache))


def build_engine(onnx_path: Path, banks: dict[str, np.ndarray], input_size: int, locations: dict[str, int],
                 fp16: bool = True, int8_images: np.ndarray | None = None, max_batch: int = 8,
                 max_rows_factor: float = 2.0, rebuild: bool = False) -> Path:
    """The engine for this graph on this GPU, built unless the cache holds it. Returns its path."""
    if trt is None:
        raise UserError("backend tensorrt unavailable: tensorrt is not installed")
    onnx_path = Path(onnx_path)
    rows = tuple((n, int(b.shape[0]), int(b.shape[0] * max_rows_factor)) for n, b in banks.items())
    check_limits(onnx_path, locations, max_batch, {n: m for n, _, m in rows})
    spec = EngineSpec(file_sha256(onnx_path), cm.gpu_name(), trt.__version__, cm.cuda_version(), fp16,
                      int8_images is not None, max_batch, rows)
    out = engine_path(onnx_path, spec)
    if out.is_file() and not rebuild:
        log.info("TensorRT engine from cache: %s", out)
        return out

    builder = trt.Builder(_logger())
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    calibrator = None
    if int8_images is not None:
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _Calibrator(int8_images, banks, onnx_path.with_suffix(".int8-calibration"))
        config.int8_calibrator = calibrator
    profile = builder.create_optimization_profile()
    channels_first = (3, input_size, input_size)
    profile.set_shape("image", (1, *channels_first), (1, *channels_first), (max_batch, *channels_first))
    for name, opt, most in rows:
        dim = int(banks[name].shape[1])
        profile.set_shape(name, (1, dim), (opt, dim), (most, dim))
    config.add_optimization_profile(profile)
    if calibrator is not None:
        config.set_calibration_profile(profile)
    # the timing cache is shared by every build on this machine: rebuilds after a recalibration are quick
    cache_file = onnx_path.parent / "tensorrt.timing-cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building TensorRT engine (%s) for %s; this takes minutes once", "INT8" if calibrator else
             "FP16" if fp16 else "FP32", spec.gpu)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out
