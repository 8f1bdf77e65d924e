"""CUDA graphs for the network's people-independent front (the ``compile`` choice ``cuda-graphs``).

Per frame, the image encoder and DINOv2 launch several hundred small kernels whose shapes
depend only on the input size; on a fast GPU at batch 1 the launches, not the arithmetic,
bound them. Captured once per input layout and replayed, they cost one launch. What
follows depends on the people found (the decoder's token count, the SMPL-X regression,
the tracker) and stays eager.

A replay runs the kernels the capture recorded, on fixed input and output buffers: each
call copies its inputs in and returns copies of the outputs, because the next replay of the
same layout (a reset boundary's second pass over its frame) overwrites them. A capture that
fails leaves the front eager, with one warning, rather than failing every frame.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import torch

log = logging.getLogger(__name__)

WARMUP_RUNS = 2  # on the capture's stream before capture: library handles and workspaces are made there


@dataclass
class _Captured:
    graph: "torch.cuda.CUDAGraph"
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]


class GraphedFront:
    """Calls ``front(*inputs)`` through one CUDA graph per input layout (shapes, dtypes, device).

    ``front`` must take and return tensors only, launch work on the current stream and never
    wait for the host (no ``.item()``, no host-to-device copy): a capture refuses both. Each
    layout keeps its own graph and memory pool; a robot sees few layouts (one per camera
    batch size and image size)."""

    def __init__(self, front: Callable[..., tuple[torch.Tensor, ...]]):
        self._front = front
        self._captured: dict[tuple, _Captured] = {}
        self.failure: str | None = None  # why a capture failed; from then on the front runs eager

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.failure is not None:
            return self._front(*inputs)
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in inputs)
        with torch.cuda.device(inputs[0].device):  # streams and replay on the inputs' GPU
            captured = self._captured.get(key)
            if captured is None:
                try:
                    captured = self._captured[key] = self._capture(inputs)
                except RuntimeError as exc:
                    self.failure = f"{type(exc).__name__}: {exc}"
                    log.warning("CUDA graph capture failed, running eager from now on: %s", self.failure)
                    return self._front(*inputs)
            for static, given in zip(captured.inputs, inputs):
                static.copy_(given)
            captured.graph.replay()
            return tuple(t.clone() for t in captured.outputs)

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> _Captured:
        static = tuple(t.clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_RUNS):
                self._front(*static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # the warm-up's stream: library handles are made per stream, and making one is not capturable;
        # thread_local: the node's other threads (pinning the next frame) may call CUDA meanwhile
        with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
            outputs = self._front(*static)
        return _Captured(graph, static, tuple(outputs))
