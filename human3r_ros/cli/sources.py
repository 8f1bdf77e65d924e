"""Frame sources of the offline tool: videos, image folders and ``.npz`` arrays (bags: bags.py).

Each source is a context manager and an iterator of :class:`Frame` over the selected time
window, decoding one frame at a time so long inputs never sit in memory. Frame times of these
inputs are ``index / fps``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from human3r_ros.cli import CliError
from human3r_ros.ros.msg_arrays import NS_PER_S

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    """One input image. index: position in the input (frame number, file rank, array row, bag
    message rank); stamp_ns: its time (bags: header stamp); log_ns / raw: a bag message's log
    time and serialized bytes (None for other inputs); where: names it in messages."""

    index: int
    stamp_ns: int
    rgb: np.ndarray
    where: str
    log_ns: Optional[int] = None
    raw: Optional[bytes] = None


def model_input(engine, frame: Frame):
    """The frame's model input (engine.prepare); an image the model cannot take is a clear error
    naming the frame."""
    try:
        return engine.prepare(frame.rgb)
    except (ValueError, TypeError) as exc:  # validate_image: dtype, layout, size
        raise CliError(f"{frame.where}: {exc}") from None


def is_bag(path: Path) -> bool:
    """A ROS 2 bag: an .mcap / .db3 file, or a folder with metadata.yaml or storage files."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file() or any(path.glob("*.db3")) or any(path.glob("*.mcap"))
    return path.suffix.lower() in (".mcap", ".db3")


@dataclass(frozen=True)
class Window:
    """Frames whose time t (seconds from the input's start) satisfies start <= t < start + duration."""

    start: float = 0.0
    duration: Optional[float] = None

    def frame_range(self, fps: float) -> tuple[int, Optional[int]]:
        """[first, stop) frame indices at `fps`; stop None = to the end. The 1e-9 guards against
        float noise putting a frame exactly on a boundary on the wrong side."""
        first = max(0, math.ceil(self.start * fps - 1e-9))
        stop = None if self.duration is None else max(first, math.ceil((self.start + self.duration) * fps - 1e-9))
        return first, stop

    def describe(self) -> str:
        end = "the end" if self.duration is None else f"{self.start + self.duration:g} s"
        return f"between {self.start:g} s and {end}"


def _count(first: int, stop: Optional[int], available: Optional[int]) -> Optional[int]:
    end = available if stop is None else (stop if available is None else min(stop, available))
    return None if end is None else max(0, end - first)


class Source:
    """Base of the frame sources: iterate for frames, close (or use `with`) to release the input.
    Subclasses set `total` (frames in the window; None when unknown) and `window`."""

    total: Optional[int] = None

    def _set_window(self, window: Window, fps: float, available: Optional[int]) -> None:
        """Frame-indexed sources: frames `_first` .. `_stop` of `available` at `fps`."""
        self.window = window
        self.fps = fps
        self._first, self._stop = window.frame_range(fps)
        self.total = _count(self._first, self._stop, available)

    def _stamp_ns(self, index: int) -> int:
        return round(index * NS_PER_S / self.fps)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSource(Source):
    """A video file read with OpenCV (whatever codecs its FFmpeg build has)."""

    def __init__(self, path: Path, window: Window, fps: Optional[float] = None):
        import cv2

        self.path = path
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise CliError(f"cannot open {path} as a video (unknown format, unsupported codec or not a video file)")
        file_fps = self._cap.get(cv2.CAP_PROP_FPS)
        frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._set_window(window, fps or (file_fps if file_fps and file_fps > 0 else DEFAULT_FPS),
                         frames if frames > 0 else None)  # the container's count is an estimate

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while self._stop is None or index < self._stop:
            ok, bgr = self._cap.read()
            if not ok:
                if index == 0:
                    raise CliError(f"{self.path}: no frame could be decoded (empty or unreadable video)")
                break
            if index >= self._first:
                yield Frame(index, self._stamp_ns(index), np.ascontiguousarray(bgr[..., ::-1]),
                            f"{self.path} frame {index}")
            index += 1

    def close(self) -> None:
        self._cap.release()


def _natural_key(name: str):
    # frame_2.png before frame_10.png; zero-padded names sort the same either way
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _png_bit_depth(path: Path) -> Optional[int]:
    """Bits per channel from a PNG header (None for other files). Pillow silently reduces 16-bit
    colour PNGs to 8 bits, so 16-bit files are caught here instead."""
    with open(path, "rb") as f:
        head = f.read(25)
    if len(head) == 25 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return head[24]
    return None


def read_image_file(path: Path) -> np.ndarray:
    """8-bit image file -> uint8 HxWx3 RGB as the reference loader reads it (Pillow, EXIF
    orientation applied, grayscale / palette / RGBA converted to RGB). 16-bit files are refused."""
    import PIL.Image
    import PIL.ImageOps

    if _png_bit_depth(path) == 16:
        raise CliError(f"{path}: 16-bit image; Human3R takes 8-bit images, convert it to 8 bits (0..255) first")
    try:
        with PIL.Image.open(path) as img:
            img = PIL.ImageOps.exif_transpose(img)
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's errors for truncated / unknown files
        raise CliError(f"{path}: cannot read image: {exc}") from None


class FolderSource(Source):
    """The png/jpg/jpeg/bmp files of a folder in natural name order, one frame each."""

    def __init__(self, path: Path, window: Window, fps: Optional[float] = None):
        self.path = path
        self.files = sorted((f for f in path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda f: _natural_key(f.name))
        if not self.files:
            raise CliError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        self._set_window(window, fps or DEFAULT_FPS, len(self.files))

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self._first, self._first + self.total):
            file = self.files[index]
            yield Frame(index, self._stamp_ns(index), read_image_file(file), str(file))


class ArraySource(Source):
    """An .npz file holding ``frames_uint8`` (N x H x W x 3 RGB), as the reference fixtures do."""

    KEY = "frames_uint8"

    def __init__(self, path: Path, window: Window, fps: Optional[float] = None):
        self.path = path
        try:
            with np.load(path, allow_pickle=False) as z:
                if self.KEY not in z.files:
                    raise CliError(f"{path}: no '{self.KEY}' array (N x H x W x 3 uint8 RGB); "
                                   f"keys: {', '.join(z.files) or 'none'}")
                self.frames = z[self.KEY]
        except (OSError, ValueError) as exc:
            raise CliError(f"{path}: cannot read as .npz: {exc}") from None
        if self.frames.ndim not in (3, 4) or len(self.frames) == 0:
            raise CliError(f"{path}: '{self.KEY}' has shape {self.frames.shape}; expected N x H x W x 3 with N >= 1")
        self._set_window(window, fps or DEFAULT_FPS, len(self.frames))

    def __iter__(self) -> Iterator[Frame]:
        for index in range(self._first, self._first + self.total):
            yield Frame(index, self._stamp_ns(index), self.frames[index], f"{self.path} frame {index}")


def open_file_source(path: Path, window: Window, fps: Optional[float] = None):
    """Video, image folder or .npz source for `path` (bags are opened by bags.BagSource)."""
    if path.is_dir():
        return FolderSource(path, window, fps)
    if path.suffix.lower() == ".npz":
        return ArraySource(path, window, fps)
    return VideoSource(path, window, fps)
