"""Cross-camera fusion of the engine's per-camera people (ROS-free: numpy and scipy).

``Fuser(Rig(extrinsics)).fuse({camera: frame_result, ...})`` -> :class:`FusedFrame`.
"""

from human3r_ros.fusion.fuser import Fuser
from human3r_ros.fusion.people import FusedFrame, FusedPerson, PersonView
from human3r_ros.fusion.rig import Rig, pose_from_xyz_quat

__all__ = ["Fuser", "FusedFrame", "FusedPerson", "PersonView", "Rig", "pose_from_xyz_quat"]
