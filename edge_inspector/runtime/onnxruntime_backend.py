"""ONNX Runtime backend: the exported graph, CPU or CUDA execution provider.

The banks are graph inputs. On CUDA they are copied to device memory once (OrtValue) and bound
to every run; on the CPU they are plain arrays that ONNX Runtime reads in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_inspector.errors import UserError
from edge_inspector.model.memory_bank.search import pad_bank
from edge_inspector.runtime.base import Backend

try:
    import onnxruntime as ort
except ImportError as exc:  # reported by runtime.available(), not a crash
    ort = None
    IMPORT_ERROR = str(exc)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_path: Path, banks: list[np.ndarray], device: str = "cpu", threads: int | None = None):
        if ort is None:
            raise UserError(f"backend onnxruntime unavailable: {IMPORT_ERROR}")
        if not Path(onnx_path).is_file():
            raise UserError(f"ONNX graph not found: {onnx_path} (run edge-inspector export --format onnx)")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.cuda = device.startswith("cuda")
        if self.cuda and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UserError("onnxruntime: CUDAExecutionProvider not available (install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if self.cuda else ["CPUExecutionProvider"]
        self.device_id = int(device.split(":")[1]) if ":" in device else 0
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        names = [i.name for i in self.session.get_inputs()]
        self.image_name, self.bank_names = names[0], names[1:]
        self.swap_banks(banks)

    def swap_banks(self, banks: list[np.ndarray]) -> None:
        if len(banks) != len(self.bank_names):
            raise UserError(f"onnxruntime: graph takes {len(self.bank_names)} memory banks, got {len(banks)}")
        banks = [pad_bank(b) for b in banks]  # whole blocks of rows, as the graph searches them
        if self.cuda:
            self.banks = [ort.OrtValue.ortvalue_from_numpy(b, "cuda", self.device_id) for b in banks]
        else:
            self.banks = banks

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.cuda:
            maps, scores = self.session.run(None, {self.image_name: images, **dict(zip(self.bank_names, self.banks))})
            return maps, scores
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.image_name, np.ascontiguousarray(images, dtype=np.float32))
        for name, value in zip(self.bank_names, self.banks):
            binding.bind_ortvalue_input(name, value)
        for out in self.session.get_outputs():
            binding.bind_output(out.name, "cpu")
        self.session.run_with_iobinding(binding)
        maps, scores = binding.copy_outputs_to_cpu()
        return maps, scores
