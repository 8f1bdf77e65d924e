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

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
PRECISIONS = ("fp32", "fp16", "bf16")
COMPILE_MODES = ("off", "default", "max-autotune-no-cudagraphs")  # as model.compiled (checked by a test)
RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class Settings:
    """Current parameter values (the worker reads one consistent snapshot per frame)."""

    checkpoint: str = ""
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
    path_max_length: int = 1000


_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}


def _int_range(low: int, high: int, step: int = 0) -> dict:
    return {"integer_range": [IntegerRange(from_value=low, to_value=high, step=step)]}


def _float_range(low: float, high: float) -> dict:
    return {"floating_point_range": [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


# name -> (description, extra descriptor fields)
_SPECS = {
    "checkpoint": ("Human3R checkpoint: official .pth container or .safetensors. Loaded on configure.", {}),
    "body_model_dir": ("Folder containing smplx/SMPLX_NEUTRAL.npz. Empty: no body model (no joints or "
                       "meshes; body_<id> frames sit at the head joint instead of the pelvis).", {}),
    "device": ("Torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N.",
               {"additional_constraints": "auto | cpu | cuda | cuda:N"}),
    "precision": ("Network precision: fp32 (the published numerics), fp16 or bf16 (transformers in half "
                  "precision: half the memory, faster on GPUs and on CPUs with bf16 units; ~1e-2 deviation).",
                  {"additional_constraints": "fp32 | fp16 | bf16"}),
    "compile": ("torch.compile the network's transformer blocks and dense head: off, default or "
                "max-autotune-no-cudagraphs. Faster per frame (most on GPUs); the first frames of each image "
                "size compile (seconds on a GPU, a minute or more on a small CPU); ~1e-4 deviation.",
                {"additional_constraints": "off | default | max-autotune-no-cudagraphs"}),
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
                   "Applied on activate.", {}),
    "reliability": ("QoS reliability of the image subscription: best_effort (sensor data) or reliable. "
                    "Applied on activate.", {"additional_constraints": "best_effort | reliable"}),
    "autostart": ("Configure and activate right after start (instead of waiting for lifecycle commands).",
                  {"read_only": True}),
    "reset_on_deactivate": ("Clear the recurrent state and tracks when the node is deactivated.", {}),
    "path_max_length": ("Number of camera poses kept in ~/camera_path (0 = unlimited).",
                        _int_range(0, 1_000_000)),
}

# Read when the model is loaded.
ON_CONFIGURE = frozenset({"checkpoint", "body_model_dir", "device", "precision", "compile", "cpu_threads",
                          "image_size", "ttt3r", "reset_interval", "detection_threshold"})
DEFAULTS = Settings()


def descriptor(name: str) -> ParameterDescriptor:
    description, extra = _SPECS[name]
    if name in ON_CONFIGURE:
        description += " Read on configure: change it while unconfigured."
    return ParameterDescriptor(name=name, type=_TYPES[type(getattr(DEFAULTS, name))],
                               description=description, **extra)


def declare(node) -> Settings:
    """Declare every parameter on `node` (overrides from YAML/launch apply) and return a snapshot."""
    node.declare_parameters("", [(f.name, getattr(DEFAULTS, f.name), descriptor(f.name)) for f in fields(Settings)])
    return snapshot(node)


def snapshot(node) -> Settings:
    return Settings(**{f.name: node.get_parameter(f.name).value for f in fields(Settings)})


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
    if name == "reliability" and value not in RELIABILITIES:
        return f"reliability '{value}' must be one of {', '.join(RELIABILITIES)}"
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
