"""Optional ``torch.compile`` of the network's heavy parts (the engine's ``compile`` setting).

Compiled: every transformer block of the image encoder, DINOv2 and the two decoder streams,
and the dense heads that will run. They hold nearly all the compute, and each compiles to
one graph (``fullgraph``: a graph break raises instead of silently running eager). The
camera memory, detection and SMPL-X regression stay eager: tiny, and shaped by the number of
people. Decoder blocks are compiled with dynamic shapes because the image side grows by one
token per detected person; everything else has one shape per input resolution.

Compiled kernels reorder sums: outputs deviate from the eager fp32 path by ~1e-4 of their
range (``benchmarks/bench_engine.py`` prints the figure). The first frames of each input
size pay the compilation (seconds on a GPU, a minute or more on a small CPU).

``cuda-graphs`` instead replays the people-independent front (image encoder and DINOv2) as
one CUDA graph per input layout (``model.cuda_graphs``), eager otherwise; on a CPU it warns
and runs eager. Inductor's own CUDA graphs (``reduce-overhead``) are not offered: they graph
each compiled block, and the decoder keeps every layer's output alive across block calls,
which a per-block replay would overwrite.
"""

from __future__ import annotations

import logging

import torch

from .cuda_graphs import GraphedFront
from .network import Human3RNet

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs", "cuda-graphs")


def compile_network(net: Human3RNet, mode: str, backend: str = "inductor") -> Human3RNet:
    """Compile ``net``'s blocks in place (state-dict keys unchanged) and return it.

    ``backend`` other than inductor (e.g. ``aot_eager``) traces the same graphs without code
    generation; the tests use it to check that every part compiles as one graph."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "off":
        return net
    if mode == "cuda-graphs":
        device = next(net.parameters()).device
        if device.type != "cuda":
            log.warning("compile 'cuda-graphs' needs a CUDA device; the network is on %s: running eager", device)
        else:
            net.graphed_front = GraphedFront(net.encode_views)
        return net
    options = {"backend": backend, "fullgraph": True}
    if backend == "inductor":
        options["mode"] = mode
    static = [*net.enc_blocks, *net.backbone.encoder.blocks]
    head = net.downstream_head
    static += [dpt for dpt in (head.dpt_self, head.dpt_rgb, head.dpt_cross) if not _released(dpt)]
    for module in static:
        module.compile(dynamic=False, **options)
    for block in (*net.dec_blocks_state, *net.dec_blocks):
        block.compile(dynamic=True, **options)
    return net


def _released(module: torch.nn.Module) -> bool:
    """Freed by ``Human3RNet.release_unused`` (weights on the meta device)."""
    return any(p.is_meta for p in module.parameters())
