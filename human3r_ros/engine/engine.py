"""Streaming engine: one image in, one :class:`FrameResult` out, state kept on the device."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from human3r_ros.model import load_checkpoint
from human3r_ros.model.compiled import compile_network
from human3r_ros.model.hub import HubFile, ProgressCallback, resolve_checkpoint
from human3r_ros.model.network import Human3RNet, ViewOutput
from human3r_ros.model.postprocess import pose_encoding_to_c2w

from .body_model import BodyModel
from .cpu_memory import keep_freed_memory
from .frame_result import FrameResult, build_people
from .geometry import PoseChainer, frame_geometry
from .one_euro import OneEuroSettings
from .preprocess import PreparedView, preprocess_frame
from .recurrent import RecurrentState, advance
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

    def reset(self) -> None:
        """Forget the scene, the camera trajectory and the tracks; the next image starts anew."""
        state, memory = self.net.initial_state()
        self._state = RecurrentState.initial(state, memory)
        self._tracker = HumanTracker()
        self._chainer = PoseChainer()
        self._count = 0
        self._smoother = None if self.smoothing is None else PeopleSmoother(self.smoothing, self.body_model)

    def _run_view(self, view: PreparedView, reset_after: bool) -> tuple[ViewOutput, np.ndarray, torch.Tensor]:
        rs = self._state
        img = view.img[None].to(self.device, non_blocking=True)
        img_mhmr = view.img_mhmr[None].to(self.device, non_blocking=True)
        out = self.net.forward_view(
            img, img_mhmr, rs.state, rs.memory, rs.fresh,
            want_gate=self.ttt3r and not rs.fresh, with_rgb=self.with_rgb,
            det_threshold=self.det_threshold,
        )
        self._state = advance(rs, out.new_state, out.new_memory, out.ttt3r_gate, reset_after)
        ids = self._tracker.update(out.tok_track)
        c2w = pose_encoding_to_c2w(out.dense["camera_pose_enc"])[0]
        return out, ids, c2w

    def step(self, rgb: np.ndarray, stamp: float | None = None) -> FrameResult:
        """Process one HxWx3 uint8 RGB image (grayscale / RGBA 8-bit are converted)."""
        view = preprocess_frame(rgb, self.size, mhmr_res=self.net.config.mhmr_img_res)
        reset_now = self.reset_interval > 0 and (self._count + 1) % self.reset_interval == 0
        out, ids, c2w_chunk = self._run_view(view, reset_after=reset_now)
        c2w = self._chainer.push(c2w_chunk, reset_now)
        if reset_now:
            # second pass over the boundary frame opens the new chunk; its outputs are dropped
            _, _, copy_c2w = self._run_view(view, reset_after=False)
            self._chainer.push(copy_c2w, False)
        result = self._frame_result(view, out, ids, c2w, stamp, reset_now)
        if self._smoother is not None:
            result.people = self._smoother.smooth(result.people, stamp, result.c2w)
        self._count += 1
        return result

    # ------------------------------------------------------------------------------------
    def _frame_result(self, view, out: ViewOutput, ids, c2w, stamp, reset_now) -> FrameResult:
        d = out.dense
        h = out.humans
        geo = frame_geometry(
            d["pts3d_cam"][0], d["conf_cam"][0], c2w,
            h.det_scores_nms[0], None if h.mask is None else h.mask[0],
        )
        smpl = out.smpl
        args = (smpl["smpl_rotmat"], smpl["smpl_shape"], smpl["smpl_transl"], smpl["smpl_expression"], c2w)
        if self.body_model is not None:
            people = self.body_model.evaluate(*args)
        else:
            people, _ = people_pose_from_network(*[a.cpu() for a in args])
        scores = h.det_scores_nms[h.view, h.row, h.col].cpu().numpy()
        persons = build_people(
            people, ids, scores,
            h.loc_cut3r.cpu().numpy(),
            torch.stack((h.row, h.col), dim=-1).cpu().numpy(),
        )
        if self.max_people and len(persons) > self.max_people:
            keep = sorted(np.argsort(-scores, kind="stable")[: self.max_people])
            persons = [persons[i] for i in keep]
        image = (view.img.permute(1, 2, 0).numpy() * 0.5 + 0.5) * 255.0
        image = image.round().clip(0, 255).astype(np.uint8, order="C")  # C order: gathered row-wise
        cpu = lambda t: t.detach().cpu().numpy()  # noqa: E731
        return FrameResult(
            index=self._count,
            stamp=stamp,
            c2w=cpu(geo.c2w),
            intrinsics=cpu(geo.intrinsics),
            pts3d_world=cpu(geo.pts3d_world),
            conf=cpu(geo.conf),
            depth=cpu(geo.depth),
            human_mask=cpu(geo.msk) if geo.msk is not None else np.zeros(view.true_shape, np.float32),
            det_scores=cpu(geo.det_scores),
            people=persons,
            reset=reset_now,
            rgb=cpu(d["rgb"][0]) if "rgb" in d else None,
            image=image,
            crop=view.geometry,
        )
