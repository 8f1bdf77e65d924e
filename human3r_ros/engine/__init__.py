"""Streaming engine (ROS-free): images in, :class:`FrameResult` out."""

from .frame_result import FrameResult, Person

__all__ = ["FrameResult", "Person", "Human3REngine"]


def __getattr__(name):
    # the engine pulls in torch and the network: load it only when asked for
    if name == "Human3REngine":
        from .engine import Human3REngine

        return Human3REngine
    raise AttributeError(name)
