"""Human3R network (inference only, ROS-free).

``build_model`` makes the network for a released variant name or a construction string;
``load_checkpoint`` reads an official ``.pth`` container or a ``.safetensors`` file safely and
strictly and returns the network ready for inference.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .config import VARIANTS, Human3RConfig, config_for, describe, with_sizes_from_state_dict
from .network import Human3RNet

__all__ = ["Human3RConfig", "Human3RNet", "build_model", "load_checkpoint", "VARIANT_NAMES"]

VARIANT_NAMES = tuple(VARIANTS)
PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def build_model(name_or_config: str | Human3RConfig, device: str | torch.device = "cpu") -> Human3RNet:
    """Network for a variant name (``human3r_672S`` ...), a construction string or a config.

    Weights are randomly initialised (``device="meta"`` allocates nothing); load real ones
    with :func:`load_checkpoint`.
    """
    cfg = name_or_config if isinstance(name_or_config, Human3RConfig) else config_for(name_or_config)
    with torch.device(device):
        net = Human3RNet(cfg)
    return net.eval().requires_grad_(False)


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> Human3RNet:
    """Load an official checkpoint (``.pth`` container or ``.safetensors``) strictly.

    ``precision`` fp32 keeps the published numerics; fp16 / bf16 hold the transformers in
    half precision (half the memory, much faster on GPUs and on CPUs with bf16 units).
    """
    from .checkpoint import check_state_dict, read_checkpoint

    if precision not in PRECISION_DTYPES:
        raise ValueError(f"precision must be one of {sorted(PRECISION_DTYPES)}, got {precision!r}")
    contents = read_checkpoint(path)
    shapes = {k: tuple(v.shape) for k, v in contents.state_dict.items()}
    cfg = with_sizes_from_state_dict(contents.config, shapes, contents.overrides)
    net = build_model(cfg, device="meta")
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    check_state_dict(expected, contents.state_dict, path, describe(cfg))
    net = net.to_empty(device=device)
    net.load_state_dict(contents.state_dict, strict=True)
    return net.set_precision(PRECISION_DTYPES[precision]).eval().requires_grad_(False)
