"""PyTorch backend: eager, CPU or CUDA (FP16 on CUDA)."""

from __future__ import annotations

import numpy as np
import torch

from edge_inspector.model.kmdgan.artefact import LoadedModel
from edge_inspector.runtime.base import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: LoadedModel, device: str = "cpu", fp16: bool | None = None):
        self.device = torch.device(device)
        # FP16 only when asked (runtime.precision): it is not verdict-equal on every model
        self.dtype = torch.float16 if fp16 else torch.float32
        self.model = model.model.to(self.device, self.dtype).eval()
        self.swap_banks([b.numpy() for b in model.banks])

    def swap_banks(self, banks: list[np.ndarray]) -> None:
        # uploaded once, and kept in FP32 in every precision: the search runs in FP32 (nearest)
        self.banks = [torch.as_tensor(b).to(self.device, torch.float32) for b in banks]

    @torch.no_grad()
    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(images).to(self.device, self.dtype)
        maps, scores = self.model(x, *self.banks)
        return maps.float().cpu().numpy(), scores.float().cpu().numpy()
