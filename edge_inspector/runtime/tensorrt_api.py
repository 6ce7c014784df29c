"""The TensorRT Python API that tensorrt_engine and tensorrt_backend use, and what TensorRT 11
removed, so that both can be checked against a `tensorrt` bindings wheel: by attribute where the
bindings import (a machine with the TensorRT libraries), by the names the bindings' shared object
declares where they do not (their pybind11 module carries every class, method and enum value name
as a string; the PyPI bindings wheel does not import without NVIDIA's libnvinfer)."""

from __future__ import annotations

from pathlib import Path

# (owner, name): every attribute the builder and backend touch
USED = [
    ("tensorrt", "Builder"), ("tensorrt", "Logger"), ("tensorrt", "OnnxParser"), ("tensorrt", "Runtime"),
    ("tensorrt", "MemoryPoolType"), ("tensorrt", "NetworkDefinitionCreationFlag"), ("tensorrt", "TensorIOMode"),
    ("Logger", "WARNING"), ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"), ("MemoryPoolType", "WORKSPACE"),
    ("TensorIOMode", "INPUT"),
    ("Builder", "create_network"), ("Builder", "create_builder_config"), ("Builder", "create_optimization_profile"),
    ("Builder", "build_serialized_network"), ("OnnxParser", "parse_from_file"), ("OnnxParser", "get_error"),
    ("OnnxParser", "num_errors"), ("IBuilderConfig", "set_memory_pool_limit"),
    ("IBuilderConfig", "add_optimization_profile"), ("IBuilderConfig", "create_timing_cache"),
    ("IBuilderConfig", "set_timing_cache"), ("IBuilderConfig", "get_timing_cache"),
    ("IOptimizationProfile", "set_shape"), ("ITimingCache", "serialize"),
    ("Runtime", "deserialize_cuda_engine"), ("ICudaEngine", "create_execution_context"),
    ("ICudaEngine", "num_io_tensors"), ("ICudaEngine", "get_tensor_name"), ("ICudaEngine", "get_tensor_mode"),
    ("ICudaEngine", "get_tensor_profile_shape"), ("IExecutionContext", "set_tensor_address"),
    ("IExecutionContext", "set_input_shape"), ("IExecutionContext", "execute_async_v3"),
]
# weak typing and implicit INT8, gone in TensorRT 11: the code must not use them
REMOVED_IN_11 = ["IInt8EntropyCalibrator2", "int8_calibrator", "set_calibration_profile"]


def declares(data: bytes, name: str) -> bool:
    """Whether a shared object's string table holds name. Names are NUL-terminated strings, and the
    linker merges a short one into the tail of a longer one ("INPUT" inside "CONDITIONAL_INPUT"):
    so a name counts where it ends a string. (A name that is only ever the tail of another name
    would pass wrongly; none of USED is.)"""
    return (name.encode() + b"\0") in data


def check(bindings_so: Path) -> dict:
    """What of USED a bindings build lacks, and which removed names it still declares."""
    data = Path(bindings_so).read_bytes()
    return {"missing": sorted({n for _, n in USED if not declares(data, n)}),
            "still_declared_removed": [n for n in REMOVED_IN_11 if declares(data, n)]}


def check_module(trt) -> list[str]:
    """Where the bindings import: each used attribute looked up on its owner."""
    owners = {"tensorrt": trt, "IBuilderConfig": trt.IBuilderConfig, "IOptimizationProfile": trt.IOptimizationProfile,
              "ITimingCache": trt.ITimingCache, "ICudaEngine": trt.ICudaEngine,
              "IExecutionContext": trt.IExecutionContext}
    return [f"{o}.{n}" for o, n in USED if not hasattr(owners.get(o) or getattr(trt, o), n)]
