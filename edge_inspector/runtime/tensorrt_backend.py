"""TensorRT backend: a built engine (see tensorrt_engine), name-based I/O tensors, execute_async_v3.

Device buffers are allocated once for the engine's largest batch; the memory banks are uploaded
once and stay on the GPU until swap_banks() replaces them (within the engine profile's row range:
a larger bank needs a new engine, and says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.model.memory_bank.search import pad_bank
from edge_inspector.runtime import cuda_memory as cm
from edge_inspector.runtime.base import Backend

try:
    import tensorrt as trt
except ImportError as exc:
    trt = None
    IMPORT_ERROR = str(exc)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine_file: Path, banks: list[np.ndarray]):
        if trt is None:
            raise UserError(f"backend tensorrt unavailable: {IMPORT_ERROR}")
        if not Path(engine_file).is_file():
            raise UserError(f"TensorRT engine not found: {engine_file} (run edge-inspector export --format tensorrt)")
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_file).read_bytes())
        if self.engine is None:
            raise UserError(f"{engine_file}: not an engine for this TensorRT version and GPU; rebuild it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.bank_names = [n for n in inputs if n != "image"]
        self.stream = cm.Stream()
        # the largest shapes of profile 0 size the buffers, allocated once
        _, _, most = self.engine.get_tensor_profile_shape("image", 0)
        self.max_batch, self.size = int(most[0]), int(most[2])
        self.image_buf = cm.DeviceBuffer(self.max_batch * 3 * self.size * self.size * 4)
        self.map_buf = cm.DeviceBuffer(self.max_batch * self.size * self.size * 4)
        self.score_buf = cm.DeviceBuffer(self.max_batch * 4)
        self.context.set_tensor_address("image", self.image_buf.ptr)
        self.context.set_tensor_address("anomaly_map", self.map_buf.ptr)
        self.context.set_tensor_address("image_score", self.score_buf.ptr)
        self.bank_bufs: list[cm.DeviceBuffer] = []
        self.swap_banks(banks)

    def swap_banks(self, banks: list[np.ndarray]) -> None:
        if len(banks) != len(self.bank_names):
            raise UserError(f"tensorrt: engine takes {len(self.bank_names)} memory banks, got {len(banks)}")
        bufs = []
        banks = [pad_bank(b) for b in banks]  # whole blocks of rows, as the graph searches them
        for name, bank in zip(self.bank_names, banks):
            lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
            if not lo[0] <= bank.shape[0] <= hi[0] or bank.shape[1] != hi[1]:
                raise UserError(f"tensorrt: bank {name} of shape {tuple(bank.shape)} is outside the engine's "
                                f"profile ({lo[0]}..{hi[0]} rows of {hi[1]}); re-export for this bank")
            bufs.append(cm.DeviceBuffer.of(np.ascontiguousarray(bank, dtype=np.float32)))
        for name, buf, bank in zip(self.bank_names, bufs, banks):
            self.context.set_input_shape(name, tuple(bank.shape))
            self.context.set_tensor_address(name, buf.ptr)
        self.bank_bufs = bufs  # the old buffers are freed only once the new ones are bound

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        out_maps, out_scores = [], []
        for start in range(0, len(images), self.max_batch):
            part = images[start : start + self.max_batch]
            b = len(part)
            self.context.set_input_shape("image", tuple(part.shape))
            self.image_buf.upload(part, self.stream)
            if not self.context.execute_async_v3(int(self.stream.handle)):
                raise UserError("tensorrt: execute_async_v3 failed (see the TensorRT log)")
            maps = np.empty((b, self.size, self.size), np.float32)
            scores = np.empty((b,), np.float32)
            self.map_buf.download(maps, self.stream)
            self.score_buf.download(scores, self.stream)
            self.stream.synchronize()
            out_maps.append(maps)
            out_scores.append(scores)
        return np.concatenate(out_maps), np.concatenate(out_scores)
