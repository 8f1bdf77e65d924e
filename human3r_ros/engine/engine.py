"""Streaming engine: one image in, one :class:`FrameResult` out, state kept on the device."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from human3r_ros.model import load_checkpoint
from human3r_ros.model.compiled import compile_network
from human3r_ros.model.hub import HubFile, ProgressCallback, resolve_checkpoint
from human3r_ros.model.network import Human3RNet, ViewOutput
from human3r_ros.model.postprocess import pose_encoding_to_c2w

from .body_model import BodyModel
from .camera_stream import CameraStream
from .cpu_memory import keep_freed_memory
from .frame_result import FrameResult, build_people
from .geometry import PoseChainer, frame_geometry
from .one_euro import OneEuroSettings
from .preprocess import PreparedView, preprocess_frame
from .recurrent import RecurrentState, advance
from .scene_cloud import CloudSelection, SceneCloud, kept_pixels
from .smoothing import PeopleSmoother
from .smplx_pose import people_pose_from_network
from .tracker import HumanTracker

log = logging.getLogger(__name__)


class Human3REngine:
    """Drives :class:`Human3RNet` over a stream of images.

    Per image: preprocessing, one network pass (two on a reset boundary: the reference
    processes the boundary frame as a reset view, then again from the fresh state), the
    plain or TTT3R state update, tracking, pose chaining across resets, focal estimation
    and the SMPL-X body model. Cost and memory do not grow with the stream length.

    Several cameras share the network, the body model and the settings: each camera has
    its own :class:`CameraStream` (``new_stream()``), and ``step_many`` runs one image per
    camera in one batched pass. ``step`` / ``reset`` without a stream use ``self.stream``.
    """

    def __init__(
        self,
        net: Human3RNet,
        body_model: BodyModel | None = None,
        *,
        ttt3r: bool = True,
        reset_interval: int = 100,
        size: int = 512,
        det_threshold: float = 0.3,
        max_people: int = 0,
        with_rgb: bool = False,
        keep_cpu_memory: bool = True,  # on CPU: tune glibc malloc process-wide (engine.cpu_memory)
        compile_mode: str = "off",  # torch.compile of the heavy blocks (model.compiled)
        smoothing: OneEuroSettings | None = None,  # per-track One-Euro filters (engine.smoothing)
        cloud_only: CloudSelection | None = None,  # frames carry this scene cloud, not dense maps
    ):
        if reset_interval < 0:
            raise ValueError(f"reset_interval must be >= 0 (0 = never), got {reset_interval}")
        self.net = net.release_unused(keep_rgb=with_rgb)  # the engine never asks for the world head
        compile_network(self.net, compile_mode)
        self.compile_mode = compile_mode
        self.device = next(net.parameters()).device
        if keep_cpu_memory and self.device.type == "cpu":
            keep_freed_memory()  # process-wide; see engine.cpu_memory
        self.body_model = body_model
        self.ttt3r = ttt3r
        self.reset_interval = reset_interval
        self.size = size
        self.det_threshold = det_threshold
        self.max_people = max_people
        self.with_rgb = with_rgb
        self.smoothing = smoothing
        # Set: each frame's scene cloud is selected where the pointmap lives, and it, the camera,
        # the human mask and the people are all that reach the host (FrameResult.cloud; the
        # dense pointmap, confidence, depth and detection maps stay None). May change between frames.
        self.cloud_only = cloud_only
        if body_model is None:
            log.warning("no SMPL-X body model given: people come with parameters and poses, without meshes")
        self.reset()

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | HubFile,
        body_model_dir: str | Path | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        ttt3r: bool = True,
        reset_interval: int = 100,
        size: int = 512,
        checkpoint_revision: str | None = None,
        download_progress: ProgressCallback | None = None,
        **kwargs,
    ) -> "Human3REngine":
        """``path``: a checkpoint file, or released weights by name (``human3r_672S`` ...) or
        :class:`HubFile`, downloaded on first use and verified (see :mod:`human3r_ros.model.hub`)."""
        path = resolve_checkpoint(path, checkpoint_revision, progress=download_progress)
        net = load_checkpoint(path, device=device, precision=precision)
        body = BodyModel(body_model_dir, device=device) if body_model_dir else None
        return cls(net, body, ttt3r=ttt3r, reset_interval=reset_interval, size=size, **kwargs)

    # ------------------------------------------------------------------------------------
    @property
    def has_body_model(self) -> bool:
        return self.body_model is not None

    @property
    def faces(self) -> np.ndarray | None:
        return None if self.body_model is None else self.body_model.faces

    def new_stream(self) -> CameraStream:
        """A fresh per-camera state (recurrent state, tracks, pose chain, smoothing) for one
        more camera served by this engine's network."""
        state, memory = self.net.initial_state()
        smoother = None if self.smoothing is None else PeopleSmoother(self.smoothing, self.body_model)
        return CameraStream(RecurrentState.initial(state, memory), HumanTracker(), PoseChainer(), smoother)

    def reset(self, stream: CameraStream | None = None) -> None:
        """Forget one camera's scene, trajectory and tracks (default: the engine's own camera,
        ``self.stream``); its next image starts anew. Other cameras are untouched."""
        if stream is None:
            self.stream = self.new_stream()
        else:
            vars(stream).update(vars(self.new_stream()))  # in place: callers keep their reference

    @property
    def _tracker(self) -> HumanTracker:  # the default camera's tracker (tests read its size)
        return self.stream.tracker

    def step(self, rgb: np.ndarray, stamp: float | None = None, stream: CameraStream | None = None) -> FrameResult:
        """Process one HxWx3 uint8 RGB image (grayscale / RGBA 8-bit are converted) of one
        camera (default: the engine's own, ``self.stream``)."""
        return self.step_many([(self.stream if stream is None else stream, rgb, stamp)])[0]

    def prepare(self, rgb: np.ndarray) -> PreparedView:
        """The model's input for one image, built on the CPU; ``step`` / ``step_many`` take it in
        place of the image, so that a pipeline prepares the next frame while the network runs.
        On CUDA its tensors are pinned, for copies that do not hold the host thread."""
        view = preprocess_frame(rgb, self.size, mhmr_res=self.net.config.mhmr_img_res)
        if self.device.type == "cuda":
            view = replace(view, img=view.img.pin_memory(), img_mhmr=view.img_mhmr.pin_memory())
        return view

    def step_many(self, frames: Sequence[tuple[CameraStream, np.ndarray | PreparedView, float | None]]
                  ) -> list[FrameResult]:
        """One image (or its :meth:`prepare` d view) for each of several cameras:
        ``[(stream, rgb, stamp), ...]`` -> one
        :class:`FrameResult` per entry, in order, equal to stepping each camera alone (float
        rounding). Images whose model input has the same size run as one batched forward pass
        (batch = cameras); each distinct size is one more pass. A camera whose image closes a
        reset chunk gets its second pass over that image in one more batch of such cameras."""
        streams = [stream for stream, _, _ in frames]
        if len({id(stream) for stream in streams}) != len(streams):
            raise ValueError("step_many takes at most one image per camera stream; a stream was given twice")
        views = [image if isinstance(image, PreparedView) else self.prepare(image) for _, image, _ in frames]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, view in enumerate(views):
            by_size.setdefault(view.true_shape, []).append(i)
        results: list[FrameResult | None] = [None] * len(frames)
        for members in by_size.values():
            group = self._step_group(
                [streams[i] for i in members], [views[i] for i in members], [frames[i][2] for i in members]
            )
            for i, result in zip(members, group):
                results[i] = result
        return results

    def _step_group(self, streams: list[CameraStream], views: list[PreparedView], stamps: list) -> list[FrameResult]:
        resets = [stream.reset_due(self.reset_interval) for stream in streams]
        passes = self._run_views(streams, views, resets)
        c2ws = [stream.chainer.push(chunk_c2w, reset)
                for stream, (_, _, chunk_c2w), reset in zip(streams, passes, resets)]
        boundary = [i for i, reset in enumerate(resets) if reset]
        if boundary:
            # second pass over the boundary frame opens the new chunk; its outputs are dropped
            again = self._run_views(
                [streams[i] for i in boundary], [views[i] for i in boundary], [False] * len(boundary)
            )
            for i, (_, _, copy_c2w) in zip(boundary, again):
                streams[i].chainer.push(copy_c2w, False)
        results = []
        for stream, view, (out, ids, _), c2w, stamp, reset in zip(streams, views, passes, c2ws, stamps, resets):
            result = self._frame_result(view, out, ids, c2w, stamp, reset, stream.count)
            if stream.smoother is not None:
                result.people = stream.smoother.smooth(result.people, stamp, result.c2w)
            stream.count += 1
            results.append(result)
        return results

    def _run_views(
        self, streams: list[CameraStream], views: list[PreparedView], reset_after: list[bool]
    ) -> list[tuple[ViewOutput, np.ndarray, torch.Tensor]]:
        """One forward pass over same-size views, each against its camera's state; advances
        each camera's state and tracks."""
        states = [stream.recurrent for stream in streams]
        img = _batch([view.img[None] for view in views]).to(self.device, non_blocking=True)
        img_mhmr = _batch([view.img_mhmr[None] for view in views]).to(self.device, non_blocking=True)
        fresh = [rs.fresh for rs in states]
        outs = self.net.forward_views(
            img, img_mhmr, _batch([rs.state for rs in states]), _batch([rs.memory for rs in states]), fresh,
            want_gate=self.ttt3r and not all(fresh), with_rgb=self.with_rgb,
            det_threshold=self.det_threshold,
        )
        passes = []
        for stream, rs, out, reset in zip(streams, states, outs, reset_after):
            gate = out.ttt3r_gate if self.ttt3r and not rs.fresh else None  # a batch computes it for all
            stream.recurrent = advance(rs, out.new_state, out.new_memory, gate, reset)
            ids = stream.tracker.update(out.tok_track)
            passes.append((out, ids, pose_encoding_to_c2w(out.dense["camera_pose_enc"])[0]))
        return passes

    # ------------------------------------------------------------------------------------
    def _frame_result(self, view, out: ViewOutput, ids, c2w, stamp, reset_now, index: int) -> FrameResult:
        d = out.dense
        h = out.humans
        geo = frame_geometry(
            d["pts3d_cam"][0], d["conf_cam"][0], c2w,
            h.det_scores_nms[0], None if h.mask is None else h.mask[0],
        )
        smpl = out.smpl
        # everything the frame reports, gathered for one copy to the host
        arrays = {"c2w": geo.c2w, "intrinsics": geo.intrinsics, "rotmat": smpl["smpl_rotmat"],
                  "betas": smpl["smpl_shape"], "transl": smpl["smpl_transl"], "expression": smpl["smpl_expression"],
                  "scores": h.det_scores_nms[h.view, h.row, h.col], "locations": h.loc_cut3r,
                  "cells": torch.stack((h.row, h.col), dim=-1)}
        selection = self.cloud_only
        if selection is None:
            arrays.update(pts3d_world=geo.pts3d_world, conf=geo.conf, depth=geo.depth, det_scores=geo.det_scores)
        else:
            pixels = kept_pixels(geo.pts3d_world, geo.conf, geo.msk, selection)
            arrays.update(cloud_points=geo.pts3d_world.reshape(-1, 3)[pixels], cloud_pixels=pixels)
        if geo.msk is not None:
            arrays["human_mask"] = geo.msk
        if "rgb" in d:
            arrays["rgb"] = d["rgb"][0]
        host = to_host(arrays)

        args = tuple(host.pop(k) for k in ("rotmat", "betas", "transl", "expression")) + (host["c2w"],)
        if self.body_model is not None and self.smoothing is None:
            people = self.body_model.evaluate(*args)
        else:  # poses only; with smoothing on, the smoother evaluates the body model once, on smoothed poses
            people, _ = people_pose_from_network(*args)
        scores = host.pop("scores")
        persons = build_people(people, ids, scores, host.pop("locations"), host.pop("cells"))
        if self.max_people and len(persons) > self.max_people:
            keep = sorted(np.argsort(-scores, kind="stable")[: self.max_people])
            persons = [persons[i] for i in keep]
        image = (view.img.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255.0
        image = image.round().clip(0, 255).astype(np.uint8, order="C")  # C order: gathered row-wise
        cloud = None
        if selection is not None:
            cloud = SceneCloud(host.pop("cloud_points"), host.pop("cloud_pixels"))
            host.update(pts3d_world=None, conf=None, depth=None, det_scores=None)
        return FrameResult(
            index=index,
            stamp=stamp,
            people=persons,
            reset=reset_now,
            image=image,
            crop=view.geometry,
            human_mask=host.pop("human_mask") if "human_mask" in host else np.zeros(view.true_shape, np.float32),
            rgb=host.pop("rgb", None),
            cloud=cloud,
            **host,
        )


HOST_DTYPES = {torch.float32: np.float32, torch.int64: np.int64, torch.int32: np.int32, torch.uint8: np.uint8,
               torch.bool: np.bool_}  # what to_host's buffer is read back as


def to_host(tensors: dict[str, torch.Tensor], gather: bool | None = None) -> dict[str, np.ndarray]:
    """Numpy copies of a frame's tensors: floating ones as float32, integer ones as they are.
    On a GPU they travel as one buffer of bytes (`gather`, the default off the CPU): one
    device-to-host copy and one wait for the frame instead of one per array. On the CPU they
    are viewed in place."""
    tensors = {k: t.detach().float() if t.is_floating_point() else t.detach() for k, t in tensors.items()}
    if gather is None:
        gather = any(t.device.type != "cpu" for t in tensors.values())
    if not gather:
        return {k: t.numpy() for k, t in tensors.items()}
    # widest elements first: every array then starts aligned to its own element size
    order = sorted(tensors, key=lambda k: -tensors[k].element_size())
    flat = torch.cat([tensors[k].reshape(-1).view(torch.uint8) for k in order]).cpu().numpy()
    out, start = {}, 0
    for k in order:
        t = tensors[k]
        size = t.numel() * t.element_size()
        out[k] = flat[start:start + size].view(HOST_DTYPES[t.dtype]).reshape(tuple(t.shape))
        start += size
    return {k: out[k] for k in tensors}


def _batch(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Batch-1 tensors stacked along the batch; a single one as it is (no copy)."""
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors)
