"""Parameters of the human3r node: one table of specs, declaration, validation, a typed snapshot.

Types and ranges are enforced by rclpy from the descriptors; `validation_error` adds the checks a
descriptor cannot express (choices, patterns, frames that must differ). Parameters marked
`on_configure` are read when the model loads, so the node refuses to change them while a model is
loaded (cleanup first): a silent no-op change would be worse than a clear refusal.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Mapping, Optional

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.parameter import Parameter

from human3r_ros.engine.one_euro import OneEuroSettings

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs", "cuda-graphs")  # as model.compiled (a test checks)
RELIABILITIES = ("best_effort", "reliable")
PIPELINE_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class Settings:
    """Current parameter values (the worker reads one consistent snapshot per frame)."""

    checkpoint: str = ""
    checkpoint_revision: str = ""
    body_model_dir: str = ""
    device: str = "auto"
    precision: str = "fp32"
    compile: str = "off"
    cpu_threads: int = 0
    image_size: int = 512
    ttt3r: bool = True
    reset_interval: int = 100
    detection_threshold: float = 0.3
    max_people: int = 0
    publish_cloud: bool = True
    publish_markers: bool = True
    publish_path: bool = True
    publish_tf: bool = True
    publish_vertices: bool = False
    cloud_confidence_threshold: float = 1.5
    cloud_decimation: int = 2
    cloud_remove_humans: bool = True
    world_frame: str = "human3r_world"
    camera_frame: str = "human3r_camera"
    body_frame_prefix: str = "body_"
    compressed: bool = False
    reliability: str = "best_effort"
    autostart: bool = False
    reset_on_deactivate: bool = False
    pipeline: str = "auto"
    path_max_length: int = 1000
    smoothing: str = "off"
    smoothing_min_cutoff: float = OneEuroSettings.min_cutoff  # the filter's own defaults, in one place
    smoothing_beta: float = OneEuroSettings.beta
    smoothing_d_cutoff: float = OneEuroSettings.d_cutoff
    camera_info: str = ""
    rectify: bool = False
    hri: bool = False
    hri_body_timeout: float = 5.0
    cameras: tuple = ()
    sync_slop: float = 0.05
    rig_frame: str = ""
    fusion_gate: float = 0.6
    fusion_estimate_scale: bool = True


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          tuple: ParameterType.PARAMETER_STRING_ARRAY}
SMOOTHINGS = ("off", "one_euro")
CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _int_range(low: int, high: int, step: int = 0) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=step)]}


def _float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


# name -> (description, extra descriptor fields)
_SPECS = {
    "checkpoint": ("Human3R checkpoint: a file (official .pth container or .safetensors) or a released name "
                   "(human3r_672S, human3r_672B, human3r_672L, human3r_896L), downloaded from Hugging Face on first "
                   "use into the HF cache and verified (weights CC BY-NC-SA 4.0: non-commercial); the first "
                   "download makes configure take minutes.", {}),
    "checkpoint_revision": ("With a released name in 'checkpoint': the huggingface.co/faneggg/human3r commit to "
                            "use instead of the pinned one (empty: pinned).", {}),
    "body_model_dir": ("Folder containing smplx/SMPLX_NEUTRAL.npz. Empty: no body model (no joints or "
                       "meshes; body_<id> frames sit at the head joint instead of the pelvis).", {}),
    "device": ("Torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N.",
               {"additional_constraints": "auto | cpu | cuda | cuda:N"}),
    "precision": ("Network precision: fp32 (the published numerics), fp16 or bf16 (transformers in half "
                  "precision: half the memory, faster on GPUs and on CPUs with bf16 units; ~1e-2 deviation).",
                  {"additional_constraints": "fp32 | fp16 | bf16"}),
    "compile": ("default or max-autotune-no-cudagraphs: torch.compile the network's transformer blocks and "
                "dense head; faster per frame (most on GPUs); the first frames of each image size compile "
                "(seconds on a GPU, a minute or more on a small CPU); ~1e-4 deviation. cuda-graphs: replay the "
                "image encoder and DINOv2 as one CUDA graph per image size (CUDA only; eager on a CPU). off: eager.",
                {"additional_constraints": "off | default | max-autotune-no-cudagraphs | cuda-graphs"}),
    "cpu_threads": ("Torch CPU threads for the network (0 = torch's default). Fewer threads leave cores to "
                    "the rest of the robot; on CPU-only machines this bounds the node's share.",
                    _int_range(0, 1024)),
    "image_size": ("Long side of the model input in pixels (512 for the released checkpoints); the image "
                   "is then centre-cropped to multiples of 16. 224 (square-crop models) is not supported.",
                   _int_range(64, 1024, 16)),
    "ttt3r": ("Use the TTT3R confidence-gated state update (steadier over long sequences).", {}),
    "reset_interval": ("Reset the recurrent state every N frames, keeping the world frame (0 = never).",
                       _int_range(0, 1_000_000)),
    "detection_threshold": ("Minimum person detection score (0..1).", _float_range(0.0, 1.0)),
    "max_people": ("Publish at most this many people, highest scores first (0 = unlimited).",
                   _int_range(0, 1000)),
    "publish_cloud": ("Publish the scene point cloud on ~/scene/points.", {}),
    "publish_markers": ("Publish RViz markers (SMPL-X meshes or joints, id labels) on ~/markers.", {}),
    "publish_path": ("Publish the camera trajectory on ~/camera_path.", {}),
    "publish_tf": ("Broadcast world -> camera and world -> body_<id> on /tf.", {}),
    "publish_vertices": ("Fill Human.vertices (10475 x 3 floats per person) in ~/humans.", {}),
    "cloud_confidence_threshold": ("Keep scene points with pointmap confidence >= this (confidence is >= 1).",
                                   _float_range(1.0, 1000.0)),
    "cloud_decimation": ("Keep every N-th pixel in both directions in the scene cloud.", _int_range(1, 64)),
    "cloud_remove_humans": ("Leave pixels of the human mask out of the scene cloud.", {}),
    "world_frame": ("TF frame of the reconstruction (the first camera's optical frame).", {}),
    "camera_frame": ("TF frame of the estimated camera (optical axes), child of world_frame. Must not be the "
                     "robot's own camera frame (that frame already has a parent).", {}),
    "body_frame_prefix": ("Prefix of the per-person TF frames: <prefix><id>.", {}),
    "compressed": ("Subscribe to sensor_msgs/CompressedImage on 'image' instead of sensor_msgs/Image. "
                   "Applied at once (subscribes anew).", {}),
    "reliability": ("QoS reliability of the image subscription: best_effort (sensor data; receives from any "
                    "publisher) or reliable (cannot receive from a best-effort camera). Applied at once.",
                    {"additional_constraints": "best_effort | reliable"}),
    "autostart": ("Configure and activate right after start (instead of waiting for lifecycle commands).",
                  {"read_only": True}),
    "reset_on_deactivate": ("Clear the recurrent state and tracks when the node is deactivated.", {}),
    "pipeline": ("on: decode and preprocess the next frame, and publish the previous one, on threads of their "
                 "own while the network runs the current one; off: one thread does each frame start to end; auto: "
                 "on with CUDA, off on the CPU (where the stages compete for the same cores: slower on 2 cores). "
                 "Applied on activate.", {"additional_constraints": "auto | on | off"}),
    "path_max_length": ("Number of camera poses kept in ~/camera_path (0 = unlimited).",
                        _int_range(0, 1_000_000)),
    "smoothing": ("Temporal smoothing of each tracked person's position, orientation and joint rotations: off, "
                  "or one_euro (One-Euro filter per track, rotations on SO(3)).",
                  {"additional_constraints": "off | one_euro"}),
    "smoothing_min_cutoff": ("One-Euro cutoff at rest, Hz: lower is smoother but lags more.",
                             _float_range(0.01, 100.0)),
    "smoothing_beta": ("One-Euro cutoff increase per m/s (positions) or rad/s (rotations): higher lags less "
                       "in fast motion.", _float_range(0.0, 100.0)),
    "smoothing_d_cutoff": ("One-Euro cutoff of the speed estimate, Hz.", _float_range(0.01, 100.0)),
    "camera_info": ("sensor_msgs/CameraInfo topic of the camera (relative names are remapped and namespaced; "
                    "with several cameras, <camera>/<camera_info>); empty: unused. Enables rectify and the "
                    "calibrated-focal diagnostics. Applied on activate.", {}),
    "rectify": ("Undistort images with the newest CameraInfo (plumb_bob, rational_polynomial, equidistant) "
                "before the model, which assumes a pinhole camera. Applied on activate.", {}),
    "hri": ("Publish REP-155 (ROS4HRI) bodies: /humans/bodies/tracked and per body roi, cropped and skeleton2d; "
            "body_<id> TF frames then use the REP-155 body ids. Applied on activate.", {}),
    "hri_body_timeout": ("Seconds after which the per-body REP-155 topics of a body no longer tracked go away.",
                         _float_range(0.1, 3600.0)),
    "cameras": ("Camera names served by this node (empty: one camera on 'image'). Camera <name> is read from "
                "<name>/image, its outputs go under ~/<name>/, and people seen by several cameras are fused on "
                "~/humans. Per camera: <name>.compressed, <name>.reliability, extrinsics.<name>.",
                {"read_only": True}),
    "sync_slop": ("Largest stamp difference (s) between the cameras' frames fused into one set.",
                  _float_range(0.0, 10.0)),
    "rig_frame": ("With several cameras: the TF frame of the rig; when tf2_ros is available the extrinsics come "
                  "from TF (rig_frame -> each image's frame_id) instead of extrinsics.<camera>. Empty: parameters.",
                  {}),
    "fusion_gate": ("Largest association cost between two cameras' people (0.8 per metre + 0.2 per radian of "
                    "body-pose difference); farther pairs are never fused.", _float_range(0.01, 100.0)),
    "fusion_estimate_scale": ("Estimate each camera's scale against the rig's metric extrinsics from people "
                              "seen by two cameras and from the rig's turns (reported on /diagnostics).", {}),
}

# Read when the model is loaded.
ON_CONFIGURE = frozenset({"checkpoint", "checkpoint_revision", "body_model_dir", "device", "precision", "compile",
                          "cpu_threads", "image_size", "ttt3r", "reset_interval", "detection_threshold",
                          "smoothing", "smoothing_min_cutoff", "smoothing_beta", "smoothing_d_cutoff",
                          "fusion_gate", "fusion_estimate_scale"})
# Read on activate; refused while active (a silent no-op change would be worse than a refusal).
ON_ACTIVATE = frozenset({"camera_info", "rectify", "hri", "hri_body_timeout", "rig_frame", "pipeline"})
DEFAULTS = Settings()


def descriptor(name: str) -> ParameterDescriptor:
    description, extra = _SPECS[name]
    if name in ON_CONFIGURE:
        description += " Read on configure: change it while unconfigured."
    if name in ON_ACTIVATE:
        description += " Change it while inactive."
    return ParameterDescriptor(name=name, type=_TYPES[type(getattr(DEFAULTS, name))],
                               description=description, **extra)


def _default(name: str):
    value = getattr(DEFAULTS, name)
    # an empty list has no type of its own: declared by type, it reads back as unset
    return Parameter.Type.STRING_ARRAY if isinstance(value, tuple) else value


def declare(node) -> Settings:
    """Declare every parameter on `node` (overrides from YAML/launch apply) and return a snapshot."""
    node.declare_parameters("", [(f.name, _default(f.name), descriptor(f.name)) for f in fields(Settings)])
    return snapshot(node)


def _value(node, name: str):
    value = node.get_parameter_or(name, None).value
    return tuple(value or ()) if isinstance(getattr(DEFAULTS, name), tuple) else value


def snapshot(node) -> Settings:
    return Settings(**{f.name: _value(node, f.name) for f in fields(Settings)})


def declare_camera_parameters(node, cameras, settings: Settings) -> None:
    """Per-camera parameters for several cameras: <camera>.compressed and <camera>.reliability
    (defaults: the node-wide values) and extrinsics.<camera> ([x, y, z, qx, qy, qz, qw] of the
    camera's optical frame in the rig frame; unset: that camera is not fused)."""
    for camera in cameras:
        node.declare_parameters("", [
            (f"{camera}.compressed", settings.compressed, ParameterDescriptor(
                type=ParameterType.PARAMETER_BOOL, description=f"Camera {camera}: {_SPECS['compressed'][0]}")),
            (f"{camera}.reliability", settings.reliability, ParameterDescriptor(
                type=ParameterType.PARAMETER_STRING, description=f"Camera {camera}: {_SPECS['reliability'][0]}",
                additional_constraints="best_effort | reliable")),
            (f"extrinsics.{camera}", Parameter.Type.DOUBLE_ARRAY, ParameterDescriptor(
                type=ParameterType.PARAMETER_DOUBLE_ARRAY, read_only=True,
                description=(f"Pose of camera {camera}'s optical frame in the rig frame: [x, y, z, qx, qy, qz, qw] "
                             "(metres, unit quaternion), e.g. from the robot's URDF. Unset: not fused."))),
        ])


def camera_input(node, camera: str, settings: Settings) -> tuple[bool, str]:
    """(compressed, reliability) of one camera (the node-wide values for the single camera "")."""
    if not camera:
        return settings.compressed, settings.reliability
    return (node.get_parameter(f"{camera}.compressed").value, node.get_parameter(f"{camera}.reliability").value)


def camera_extrinsics(node, camera: str):
    value = node.get_parameter_or(f"extrinsics.{camera}", None).value
    return None if value is None or len(value) == 0 else list(value)


def _frame_error(name: str, value: str) -> Optional[str]:
    if not value or value.startswith("/") or any(c.isspace() for c in value):
        return f"{name} '{value}' must be a non-empty TF frame name without leading '/' or spaces"
    return None


def validation_error(name: str, value, current: Mapping[str, object]) -> Optional[str]:
    """Reason why `name` cannot take `value` given the other `current` values, or None if fine."""
    if name == "device" and not DEVICE_PATTERN.match(value):
        return f"device '{value}' must be auto, cpu, cuda or cuda:N"
    if name == "precision" and value not in PRECISIONS:
        return f"precision '{value}' must be one of {', '.join(PRECISIONS)}"
    if name == "compile" and value not in COMPILE_MODES:
        return f"compile '{value}' must be one of {', '.join(COMPILE_MODES)}"
    if name == "pipeline" and value not in PIPELINE_MODES:
        return f"pipeline '{value}' must be one of {', '.join(PIPELINE_MODES)}"
    if (name == "reliability" or name.endswith(".reliability")) and value not in RELIABILITIES:
        return f"{name} '{value}' must be one of {', '.join(RELIABILITIES)}"
    if name == "smoothing" and value not in SMOOTHINGS:
        return f"smoothing '{value}' must be one of {', '.join(SMOOTHINGS)}"
    if name == "cameras":
        bad = [c for c in value if not CAMERA_NAME.match(c)]
        if bad or len(set(value)) != len(value):
            return (f"cameras {list(value)}: names must be distinct, start with a letter and hold only letters, "
                    "digits and '_' (they become topic and frame names)")
    if name == "image_size" and (value % 16 or value == 224):
        return (f"image_size {value} must be a multiple of 16 other than 224 "
                "(224 selects the square-crop path of 224-px models)")
    if name in ("world_frame", "camera_frame"):
        error = _frame_error(name, value)
        if error:
            return error
        other = "camera_frame" if name == "world_frame" else "world_frame"
        if value == current.get(other):
            return f"{name} '{value}' must differ from {other}"
    if name == "body_frame_prefix" and (not value or "/" in value or any(c.isspace() for c in value)):
        return f"body_frame_prefix '{value}' must be non-empty, without '/' or spaces"
    return None


def check_all(settings: Settings) -> Optional[str]:
    """First problem among all current values (used once after declaration), or None."""
    values = asdict(settings)
    for name, value in values.items():
        error = validation_error(name, value, values)
        if error:
            return error
    return None
