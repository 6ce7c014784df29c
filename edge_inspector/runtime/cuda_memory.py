"""Device memory for the TensorRT backend through cuda-python's runtime bindings.

Buffers are allocated once and reused; copies go through one stream. Importing this module never
fails: where cuda-python is missing, using it raises a one-line error.
"""

from __future__ import annotations

import numpy as np

from edge_inspector.errors import UserError

try:
    from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
except ImportError:
    try:
        from cuda import cudart  # older cuda-python
    except ImportError:
        cudart = None


def _call(result):
    """cuda-python returns (error, *values): raise on an error, else the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1]
        raise UserError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    return values[0] if len(values) == 1 else values


def _require() -> None:
    if cudart is None:
        raise UserError("backend tensorrt unavailable: cuda-python is not installed (pip install cuda-python)")


def gpu_name(device: int = 0) -> str:
    _require()
    props = _call(cudart.cudaGetDeviceProperties(device))
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")


def cuda_version() -> str:
    _require()
    v = _call(cudart.cudaRuntimeGetVersion())
    return f"{v // 1000}.{(v % 1000) // 10}"


class Stream:
    def __init__(self):
        _require()
        self.handle = _call(cudart.cudaStreamCreate())

    def synchronize(self) -> None:
        _call(cudart.cudaStreamSynchronize(self.handle))

    def __del__(self):
        if cudart is not None and getattr(self, "handle", None) is not None:
            cudart.cudaStreamDestroy(self.handle)


class DeviceBuffer:
    """nbytes of device memory, freed with the object."""

    def __init__(self, nbytes: int):
        _require()
        self.nbytes = int(nbytes)
        self.ptr = int(_call(cudart.cudaMalloc(max(self.nbytes, 1))))

    @classmethod
    def of(cls, array: np.ndarray) -> DeviceBuffer:
        buf = cls(array.nbytes)
        buf.upload(np.ascontiguousarray(array))
        return buf

    def upload(self, array: np.ndarray, stream: Stream | None = None) -> None:
        if array.nbytes > self.nbytes:
            raise UserError(f"{array.nbytes} bytes do not fit a {self.nbytes}-byte device buffer")
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        if stream is None:
            _call(cudart.cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind))
        else:
            _call(cudart.cudaMemcpyAsync(self.ptr, array.ctypes.data, array.nbytes, kind, stream.handle))

    def download(self, array: np.ndarray, stream: Stream | None = None) -> None:
        kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if stream is None:
            _call(cudart.cudaMemcpy(array.ctypes.data, self.ptr, array.nbytes, kind))
        else:
            _call(cudart.cudaMemcpyAsync(array.ctypes.data, self.ptr, array.nbytes, kind, stream.handle))

    def __del__(self):
        if cudart is not None and getattr(self, "ptr", None):
            cudart.cudaFree(self.ptr)
