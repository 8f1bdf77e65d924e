"""The node's model, from its parameters: the checkpoint file (a path, or released weights by
name through the Hugging Face cache), the device, and the engine. No ROS here: the node gives
its logger and a progress callback (the download's progress also goes to /diagnostics)."""

from __future__ import annotations

import os
from typing import Callable

from human3r_ros.engine.one_euro import OneEuroSettings


def checkpoint_file(s, log: Callable[[str], None], progress: Callable[[str], None]) -> str:
    """`s.checkpoint` as a file: a path as given, or a released name resolved (and on first use
    downloaded and verified)."""
    from human3r_ros.model.hub import is_weights_name, progress_logger, resolve_checkpoint

    if not s.checkpoint:
        raise ValueError("parameter 'checkpoint' is empty: set it to a Human3R checkpoint file or a released "
                         "name (e.g. human3r_672S)")
    if is_weights_name(s.checkpoint):
        log(f"checkpoint '{s.checkpoint}': released weights; a first download (3-5 GB) makes configure "
            "take minutes")
    path = resolve_checkpoint(s.checkpoint, s.checkpoint_revision or None,
                              progress=progress_logger(progress, every_s=5.0), log=log)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return path


def load_engine(s, checkpoint: str):
    """The engine on the device the parameters ask for (auto: CUDA when torch has it)."""
    if s.body_model_dir and not os.path.isdir(s.body_model_dir):
        raise FileNotFoundError(f"body_model_dir is not a folder: {s.body_model_dir}")
    import torch

    device = s.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device '{s.device}' requested but CUDA is not available to torch "
                           f"{torch.__version__}; set device:=cpu")
    from human3r_ros.engine import Human3REngine

    smoothing = None if s.smoothing == "off" else OneEuroSettings(
        s.smoothing_min_cutoff, s.smoothing_beta, s.smoothing_d_cutoff)
    return Human3REngine.from_checkpoint(
        checkpoint, body_model_dir=s.body_model_dir or None, device=device, precision=s.precision,
        ttt3r=s.ttt3r, reset_interval=s.reset_interval, size=s.image_size,
        det_threshold=s.detection_threshold, compile_mode=s.compile, smoothing=smoothing)
