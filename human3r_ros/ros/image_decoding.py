"""Camera messages -> 8-bit RGB arrays the engine takes (ROS-free: numpy and OpenCV).

Works on duck-typed messages (anything with the fields of sensor_msgs/Image or
CompressedImage), so rclpy messages in the node and rosbags messages in the offline tools share
it. Encodings follow cv_bridge: Bayer and YUV through OpenCV's colour conversions, 16-bit
channels scaled to 8 bits by 255/65535 (cv_bridge's convertTo factor).

Limits are checked before any pixel work: the smaller side must have MIN_SIDE pixels and the
image must crop to a model image (the engine's own rule, engine.preprocess). Images much larger
than the model input are shrunk first (decode_image), so an 8K frame never gets a full-size
RGB copy (mosaics and packed YUV are converted in bands of rows).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import NamedTuple, Optional

import cv2
import numpy as np
import PIL.Image

from human3r_ros.engine.preprocess import check_model_image_shape, resized_size

MIN_SIDE = 16  # px on the smaller side; below it there is no person to see
DEFAULT_SIZE = 512  # the engine's default image_size (long side of the model image)
# Images whose long side exceeds WORKING_SCALE * size are shrunk to that long side before
# the engine's own (LANCZOS) resize: the model image is unchanged but for resampling.
WORKING_SCALE = 2
_16_TO_8 = 255.0 / 65535.0  # cv_bridge's 16-bit -> 8-bit scale


class ImageConversionError(ValueError):
    """A camera message that cannot become an RGB image (truncated, empty, undecodable, too small)."""


class UnsupportedEncodingError(ImageConversionError):
    """The message's encoding is not a colour, grey, Bayer or YUV camera image."""


class _Layout(NamedTuple):
    channels: int  # values per pixel in the message
    bytes_per_value: int  # 1 or 2
    to_rgb: Optional[int]  # cv2 colour conversion code, None when already RGB
    shrink_first: bool  # pixels can be resized before the colour conversion (not mosaics or packed YUV)


# ROS bayer_<first row pair><second row pair>: OpenCV names the pattern by the second row's
# 2nd and 3rd pixels, so bayer_rggb is OpenCV's BayerBG (these names exist in every OpenCV 4).
_BAYER_TO_RGB = {"rggb": cv2.COLOR_BayerBG2RGB, "bggr": cv2.COLOR_BayerRG2RGB,
                 "gbrg": cv2.COLOR_BayerGR2RGB, "grbg": cv2.COLOR_BayerGB2RGB}

_RAW_ENCODINGS = {}
for _bits, _size in ((8, 1), (16, 2)):
    _RAW_ENCODINGS.update({
        f"rgb{_bits}": _Layout(3, _size, None, True),
        f"bgr{_bits}": _Layout(3, _size, cv2.COLOR_BGR2RGB, True),
        f"rgba{_bits}": _Layout(4, _size, cv2.COLOR_RGBA2RGB, True),
        f"bgra{_bits}": _Layout(4, _size, cv2.COLOR_BGRA2RGB, True),
        f"mono{_bits}": _Layout(1, _size, cv2.COLOR_GRAY2RGB, True),
    })
    _RAW_ENCODINGS.update({f"bayer_{p}{_bits}": _Layout(1, _size, code, False) for p, code in _BAYER_TO_RGB.items()})
del _bits, _size
_RAW_ENCODINGS["yuv422"] = _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY, False)  # UYVY
_RAW_ENCODINGS["yuv422_yuy2"] = _Layout(2, 1, cv2.COLOR_YUV2RGB_YUY2, False)  # YUYV
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the engine, and where its pixels lie in the camera image.

    rgb: H x W x 3 uint8, the camera image or (downscaled) a smaller copy of it.
    input_hw: (height, width) of the camera image in the message."""

    rgb: np.ndarray
    input_hw: tuple[int, int]

    @property
    def downscaled(self) -> bool:
        return self.rgb.shape[:2] != tuple(self.input_hw)

    def to_input_pixels(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) pixel (x, y) of `rgb` -> the same point in camera-image pixels (pixel
        centres at integers, as engine.preprocess.CropGeometry)."""
        (h0, w0), (h, w) = self.input_hw, self.rgb.shape[:2]
        scale = np.array([w0 / w, h0 / h])
        return (np.asarray(xy, dtype=np.float64) + 0.5) * scale - 0.5


def check_input_size(height: int, width: int, size: int = DEFAULT_SIZE) -> None:
    """Raise ImageConversionError when an image of height x width cannot go to the engine
    with image_size `size`: smaller side below MIN_SIDE, or the engine's crop rule."""
    if min(height, width) < MIN_SIDE:
        raise ImageConversionError(
            f"image of {height}x{width} (HxW) is too small: the smaller side needs at least {MIN_SIDE} px")
    try:
        check_model_image_shape((height, width), size)
    except ValueError as exc:
        raise ImageConversionError(str(exc)) from None


def working_shape(input_hw: tuple[int, int], size: int = DEFAULT_SIZE) -> Optional[tuple[int, int]]:
    """(H, W) to shrink an image to before the engine, or None to leave it alone.

    Images up to WORKING_SCALE * size on the long side are left alone. Larger ones get the
    long side WORKING_SCALE * size and the short side WORKING_SCALE times the engine's resized
    short side, so the engine resizes them to exactly the size (and crop) of the full image."""
    if max(input_hw) <= WORKING_SCALE * size:
        return None
    rh, rw = resized_size(input_hw, size)
    return WORKING_SCALE * rh, WORKING_SCALE * rw


def _shrink(pixels: np.ndarray, shape: Optional[tuple[int, int]]) -> np.ndarray:
    if shape is None:
        return pixels
    factor = min(pixels.shape[0] // shape[0], pixels.shape[1] // shape[1])
    if factor >= 2:  # a whole-number area average takes OpenCV's fast path (3x faster at 8K)
        pixels = cv2.resize(pixels, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)
    return cv2.resize(pixels, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _convert_and_shrink(pixels: np.ndarray, code: int, shape: tuple[int, int]) -> np.ndarray:
    """Colour-convert a mosaic or packed image band by band, each band area-averaged by a
    whole factor at once: never a full-size RGB copy."""
    height = pixels.shape[0]
    factor = min(height // shape[0], pixels.shape[1] // shape[1])
    if factor < 2:
        return _shrink(_to_8bit(_to_rgb(pixels, code)), shape)
    band = 2 * factor * -(-64 // factor)  # ~128 rows; even, so every band keeps the Bayer phase
    context = 2  # rows each side the demosaic reads across a band edge
    parts = []
    for top in range(0, height, band):
        first, last = max(top - context, 0), min(top + band + context, height)
        rgb = _to_rgb(pixels[first:last], code)[top - first:top - first + band]
        parts.append(cv2.resize(_to_8bit(rgb), None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA))
    return cv2.resize(np.concatenate(parts), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def _to_8bit(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    return cv2.convertScaleAbs(pixels, alpha=_16_TO_8)  # rounds and saturates like convertTo


def _to_rgb(pixels: np.ndarray, code: Optional[int]) -> np.ndarray:
    if code is None:
        return np.ascontiguousarray(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    return cv2.cvtColor(pixels, code)


def _raw_pixels(msg, layout: _Layout) -> np.ndarray:
    """Zero-copy view (height, width, channels) of an Image message's pixels (native byte
    order; 16-bit data of the other byte order is swapped into a copy)."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty image ({height}x{width})")
    pixel_bytes = layout.channels * layout.bytes_per_value
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is smaller than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if layout.channels == 2 and width % 2:
        raise ImageConversionError(f"{msg.encoding} packs pixel pairs: its width must be even, got {width}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    needed = (height - 1) * step + row_bytes  # the last row may come without its padding
    if data.size < needed:
        raise ImageConversionError(f"image data has {data.size} bytes, {height} rows of step {step} need {needed}")
    if layout.bytes_per_value == 1:
        return np.ndarray((height, width, layout.channels), np.uint8, data, strides=(step, layout.channels, 1))
    if step % 2 and height > 1:
        raise ImageConversionError(f"step {step} of a 16-bit {msg.encoding} image must be even")
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    pixels = np.ndarray((height, width, layout.channels), dtype, data,
                        strides=(step, 2 * layout.channels, 2))
    return pixels if dtype.isnative else pixels.astype(np.uint16)


def _unsupported(encoding: str) -> UnsupportedEncodingError:
    return UnsupportedEncodingError(
        f"image encoding '{encoding}' is not supported; accepted: {', '.join(SUPPORTED_ENCODINGS)} "
        "(depth, floating-point and other generic encodings such as 16UC1 or 32FC1 are not camera images)")


def _decode_raw(msg, size: int, shrink: bool) -> DecodedImage:
    layout = _RAW_ENCODINGS.get(msg.encoding)
    if layout is None:
        raise _unsupported(msg.encoding)
    pixels = _raw_pixels(msg, layout)
    height, width = pixels.shape[:2]
    check_input_size(height, width, size)
    target = working_shape((height, width), size) if shrink else None
    if layout.shrink_first:  # resize the message's own pixels: no full-size copy
        rgb = _to_rgb(_to_8bit(_shrink(pixels, target)), layout.to_rgb)
    elif target is None:  # mosaics and packed YUV need their colour conversion first
        rgb = _to_8bit(_to_rgb(pixels, layout.to_rgb))
    else:
        rgb = _convert_and_shrink(pixels, layout.to_rgb, target)
    return DecodedImage(rgb, (height, width))


def _compressed_header(data: np.ndarray) -> Optional[tuple[int, int, str]]:
    """(height, width, format) from a compressed image's header, None when Pillow cannot
    read it (imdecode then has the last word)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:  # reads the header, not the pixels
            return image.height, image.width, image.format
    except (OSError, SyntaxError, ValueError):
        return None


# JPEG decodes straight to 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling)
_JPEG_REDUCED = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}


def _decode_compressed(msg, size: int, shrink: bool) -> DecodedImage:
    if "compresseddepth" in msg.format.lower():
        raise UnsupportedEncodingError(
            f"compressed image format '{msg.format}' is a depth image; use a JPEG/PNG colour stream "
            "(image_transport 'compressed')")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image")
    # UNCHANGED keeps 16-bit PNGs 16-bit (scaled below as raw 16-bit images are)
    flags, target, header = cv2.IMREAD_UNCHANGED, None, _compressed_header(data) if shrink else None
    if header is not None:  # limits and working size before decoding
        height, width, file_format = header
        check_input_size(height, width, size)
        target = working_shape((height, width), size)
        factor = next((f for f in _JPEG_REDUCED if target is not None and file_format == "JPEG"
                       and height // f >= target[0] and width // f >= target[1]), None)
        if factor is not None:  # EXIF orientation ignored, as UNCHANGED does
            flags = _JPEG_REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    pixels = cv2.imdecode(data, flags)
    if pixels is None:
        raise ImageConversionError(
            f"could not decode compressed image (format '{msg.format}', {data.size} bytes): corrupt or not JPEG/PNG")
    if pixels.dtype not in (np.uint8, np.uint16):
        raise UnsupportedEncodingError(
            f"compressed image of {pixels.dtype} values; only 8- and 16-bit images are accepted")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[pixels.shape[2]]
    if header is None:
        height, width = pixels.shape[:2]
        check_input_size(height, width, size)
        target = working_shape((height, width), size) if shrink else None
    return DecodedImage(_to_rgb(_to_8bit(_shrink(pixels, target)), code), (height, width))


def decode_image(msg, size: int = DEFAULT_SIZE) -> DecodedImage:
    """sensor_msgs/Image or CompressedImage (duck-typed) -> DecodedImage for an engine with
    image_size `size`; images above WORKING_SCALE * size are shrunk (INTER_AREA) on the way.

    Raises UnsupportedEncodingError for encodings that are not camera images and
    ImageConversionError for malformed, truncated, corrupt, too small or too elongated ones."""
    if hasattr(msg, "encoding"):
        return _decode_raw(msg, size, shrink=True)
    return _decode_compressed(msg, size, shrink=True)


def raw_image_to_rgb(msg, size: int = DEFAULT_SIZE) -> np.ndarray:
    """sensor_msgs/Image-like (encoding, height, width, step, is_bigendian, data) -> H x W x 3
    uint8 RGB at full size. Honours `step` (row padding) and `is_bigendian` (16-bit); 16-bit
    values are scaled by 255/65535; limits as decode_image."""
    return _decode_raw(msg, size, shrink=False).rgb


def compressed_image_to_rgb(msg, size: int = DEFAULT_SIZE) -> np.ndarray:
    """sensor_msgs/CompressedImage-like (format, data; JPEG or PNG, 8 or 16 bit) -> H x W x 3
    uint8 RGB at full size; limits as decode_image."""
    return _decode_compressed(msg, size, shrink=False).rgb
