"""SMPL-X neutral body model (``smplx`` package) placed with Human3R's outputs.

Human3R predicts the camera-frame position of the SMPL-X head joint rather
than the usual root translation. The body is therefore evaluated with zero
global orientation and zero translation, then placed so that its head joint
lands on the prediction:

    x_cam = R_cam (x - j_head_body) + transl_cam,   x_world = c2w x_cam

Frames: camera = OpenCV (x right, y down, z forward), world = first frame's
camera frame chained over resets; metres.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import torch

from human3r_ros.engine.smplx_pose import (
    SMPLX_HEAD_JOINT,
    SMPLX_NUM_JOINTS,
    SMPLX_NUM_VERTICES,
    SMPLX_PELVIS_JOINT,
    SmplxPeople,
    apply_transform,
    make_transform,
    people_pose_from_network,
)

NUM_BETAS = 10
NUM_EXPRESSION_COEFFS = 10


class BodyModelError(RuntimeError):
    """The SMPL-X model file is missing or unreadable."""


def smplx_model_file(model_dir: Union[str, Path]) -> Path:
    """Where the neutral SMPL-X model is expected inside ``model_dir``."""
    return Path(model_dir) / "smplx" / "SMPLX_NEUTRAL.npz"


class BodyModel:
    """SMPL-X neutral (10 betas, 10 expression coefficients, full-rotation
    hands with flat mean, no face contour), as used by the reference.

    ``model_dir`` must contain ``smplx/SMPLX_NEUTRAL.npz`` (the licensed file
    from https://smpl-x.is.tue.mpg.de, or a file with the same arrays).
    """

    def __init__(self, model_dir: Union[str, Path], device: Union[str, torch.device] = "cpu"):
        import smplx  # imported here so the pose-only path works without it

        model_file = smplx_model_file(model_dir)
        if not model_file.is_file():
            raise BodyModelError(
                f"SMPL-X neutral model not found: expected the file {model_file} "
                f"(give the folder that contains 'smplx/SMPLX_NEUTRAL.npz'; "
                f"the model is a licensed download from https://smpl-x.is.tue.mpg.de)")
        try:
            self._model = smplx.create(
                str(Path(model_dir)), model_type="smplx", gender="neutral", ext="npz",
                num_betas=NUM_BETAS, num_expression_coeffs=NUM_EXPRESSION_COEFFS,
                use_pca=False, flat_hand_mean=True, use_face_contour=False,
            ).to(device)
        except Exception as exc:  # corrupted / incompatible file
            raise BodyModelError(f"cannot load SMPL-X model {model_file}: {exc}") from exc
        self._model.eval()
        self.model_dir = Path(model_dir)
        self.device = torch.device(device)
        self.faces = np.asarray(self._model.faces, dtype=np.int64)  # (20908, 3) vertex indices

    @torch.inference_mode()
    def evaluate(self, rotmat, betas, transl_cam, expression, c2w) -> SmplxPeople:
        """Network outputs of one frame -> :class:`SmplxPeople` with meshes.

        rotmat (n,53,3,3): predicted rotations (root, 21 body, 15 left hand,
        15 right hand, jaw); betas (n,10); transl_cam (n,3): head joint in the
        camera frame, metres; expression (n,10); c2w (4,4) camera-to-world.
        """
        people, parts = people_pose_from_network(rotmat, betas, transl_cam, expression, c2w)
        n = len(people)
        if n == 0:
            return _with_empty_meshes(people)

        dev = self.device
        zeros3 = torch.zeros(n, 3, device=dev)
        out = self._model(
            betas=parts["betas"].to(dev),
            expression=parts["expression"].to(dev),
            global_orient=zeros3,
            body_pose=parts["body_pose"].reshape(n, -1).to(dev),
            left_hand_pose=parts["left_hand_pose"].reshape(n, -1).to(dev),
            right_hand_pose=parts["right_hand_pose"].reshape(n, -1).to(dev),
            jaw_pose=parts["jaw_pose"].to(dev),
            leye_pose=zeros3,
            reye_pose=zeros3,
            transl=zeros3,
        )
        verts_body = out.vertices.float().cpu()  # (n, V, 3), body-model frame
        joints_body = out.joints.float().cpu()  # (n, 127, 3)
        j_head = joints_body[:, SMPLX_HEAD_JOINT]

        r_cam, transl, c2w = parts["R_cam"], parts["transl_cam"], parts["c2w"]

        def to_cam(x: torch.Tensor) -> torch.Tensor:
            # Same order of operations as the reference: rotate about the
            # pelvis, re-centre on the rotated head joint, then translate.
            pelvis = joints_body[:, SMPLX_PELVIS_JOINT:SMPLX_PELVIS_JOINT + 1]
            rotated = (x - pelvis) @ r_cam.transpose(1, 2)
            head_rotated = (j_head[:, None] - pelvis) @ r_cam.transpose(1, 2)
            return rotated - head_rotated + transl[:, None]

        verts_cam = to_cam(verts_body)
        joints_cam = to_cam(joints_body)
        verts_world = apply_transform(c2w, verts_cam)
        joints_world = apply_transform(c2w, joints_cam)

        # x_cam = R (x - j_head) + t  ->  [R | t - R j_head]
        t_cam_body = transl - (r_cam @ j_head[..., None])[..., 0]
        T_cam_body = make_transform(people.R_cam, t_cam_body.numpy())
        T_world_body = (c2w.numpy()[None] @ T_cam_body).astype(np.float32)

        people.j_head_body = j_head.numpy()
        people.T_cam_body = T_cam_body
        people.T_world_body = T_world_body
        people.verts_cam = verts_cam.numpy()
        people.verts_world = verts_world.numpy()
        people.joints_cam = joints_cam.numpy()
        people.joints_world = joints_world.numpy()
        people.transl_pelvis_cam = joints_cam[:, SMPLX_PELVIS_JOINT].numpy()
        people.transl_pelvis_world = joints_world[:, SMPLX_PELVIS_JOINT].numpy()
        return people


def _with_empty_meshes(people: SmplxPeople) -> SmplxPeople:
    """Zero people: give the mesh fields their empty shapes instead of None."""
    def empty(*shape):
        return np.zeros((0, *shape), dtype=np.float32)

    people.j_head_body = empty(3)
    people.T_cam_body = empty(4, 4)
    people.T_world_body = empty(4, 4)
    people.verts_cam = empty(SMPLX_NUM_VERTICES, 3)
    people.verts_world = empty(SMPLX_NUM_VERTICES, 3)
    people.joints_cam = empty(SMPLX_NUM_JOINTS, 3)
    people.joints_world = empty(SMPLX_NUM_JOINTS, 3)
    people.transl_pelvis_cam = empty(3)
    people.transl_pelvis_world = empty(3)
    return people
