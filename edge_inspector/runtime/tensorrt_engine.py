"""Build (or reuse) a TensorRT engine from the exported ONNX graph: TensorRT 10.x (JetPack on a
Jetson) and 11.x (desktop, PyPI), the version decided at run time.

Precision lives in the graph (`export --precision fp16` writes FP16 layers around an FP32 bank
search): the network is strongly typed on every supported version. TensorRT 11 removed weak typing
(no BuilderFlag.FP16 / INT8, no INT8 calibrators); 10.12+ needs the STRONGLY_TYPED creation flag
for the same behaviour, and 11 ignores it. INT8 would need explicit Q/DQ nodes and is refused.
builder -> strongly typed network from the ONNX parser -> config (workspace, a persistent timing
cache, one optimisation profile for batch and bank rows) -> build_serialized_network. The engine
is cached beside the graph under a key of what makes it valid: the graph's hash (its precision
with it), the GPU, the TensorRT and CUDA versions and the profile.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.model.memory_bank.search import pad_bank
from edge_inspector.runtime import cuda_memory as cm
from edge_inspector.runtime.tensorrt_limits import check_limits

log = logging.getLogger(__name__)

try:
    import tensorrt as trt
except ImportError:  # reported by runtime.available()
    trt = None

WORKSPACE_BYTES = 2 << 30
SUPPORTED_MAJORS = (10, 11)


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built for: part of its cache key."""

    onnx_sha256: str
    gpu: str
    tensorrt: str
    cuda: str
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


def engine_spec(onnx_path: Path, banks: dict[str, np.ndarray], gpu: str, tensorrt: str, cuda: str,
                max_batch: int = 8, max_rows_factor: float = 2.0) -> EngineSpec:
    """What an engine for these banks is built for. The banks' rows are counted padded, as the
    graph takes them, so that `export` and the service (which pass them unpadded and padded) name
    the same engine."""
    padded = {n: int(pad_bank(b).shape[0]) for n, b in banks.items()}
    rows = tuple((n, r, int(r * max_rows_factor)) for n, r in padded.items())
    return EngineSpec(file_sha256(onnx_path), gpu, tensorrt, cuda, max_batch, rows)


def engine_path(onnx_path: Path, spec: EngineSpec) -> Path:
    return Path(onnx_path).with_suffix(f".{spec.key()}.engine")


def _logger():
    return trt.Logger(trt.Logger.WARNING)


def tensorrt_major() -> int:
    """The installed TensorRT's major version; one line for an unsupported one."""
    if trt is None:
        raise UserError("backend tensorrt unavailable: tensorrt is not installed")
    major = int(str(trt.__version__).split(".")[0])
    if major not in SUPPORTED_MAJORS:
        raise UserError(f"TensorRT {trt.__version__} is not supported: edge-inspector builds with TensorRT 10.x "
                        "(JetPack) or 11.x")
    return major


def network_flags() -> int:
    """Creation flags of a strongly typed network (10.x: the flag; 11: strongly typed always)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_engine(onnx_path: Path, banks: dict[str, np.ndarray], input_size: int, locations: dict[str, int],
                 max_batch: int = 8, max_rows_factor: float = 2.0, rebuild: bool = False) -> Path:
    """The engine for this graph on this GPU, built unless the cache holds it. Returns its path.
    banks: padded or not, the key is the same (the rows of the padded banks, as the graph takes them)."""
    tensorrt_major()
    onnx_path = Path(onnx_path)
    spec = engine_spec(onnx_path, banks, cm.gpu_name(), trt.__version__, cm.cuda_version(), max_batch,
                       max_rows_factor)
    check_limits(onnx_path, locations, max_batch, {n: m for n, _, m in spec.bank_rows})
    out = engine_path(onnx_path, spec)
    if out.is_file() and not rebuild:
        log.info("TensorRT engine from cache: %s", out)
        return out

    builder = trt.Builder(_logger())
    network = builder.create_network(network_flags())
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT cannot parse the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    channels_first = (3, input_size, input_size)
    profile.set_shape("image", (1, *channels_first), (1, *channels_first), (max_batch, *channels_first))
    for name, opt, most in spec.bank_rows:
        dim = int(banks[name].shape[1])
        profile.set_shape(name, (1, dim), (opt, dim), (most, dim))
    config.add_optimization_profile(profile)
    # the timing cache is shared by every build on this machine: rebuilds after a recalibration are quick
    cache_file = onnx_path.parent / "tensorrt.timing-cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building a strongly typed TensorRT %s engine for %s; this takes minutes once", trt.__version__,
             spec.gpu)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UserError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    cache_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(asdict(spec), indent=2) + "\n")
    return out
