"""Camera encodings, input limits and the working-size shrink (human3r_ros.ros.image_decoding),
with real sensor_msgs messages made from the fixture frames by OpenCV's inverse conversions."""

import json

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from human3r_ros.engine import Human3REngine
from human3r_ros.engine.preprocess import crop_geometry, resize_and_crop
from human3r_ros.ros import image_decoding as dec

SIZE = 64  # the tiny checkpoint's image_size in test_engine
FRAMES = (0, 1, 5)  # 2, 1 and 2 people, one track across all three, in the tiny_plain fixture


@pytest.fixture(scope="module")
def frames(reference_dir):
    """Fixture frames cropped to an even width (packed YUV holds pixel pairs) and upscaled 2x
    (bilinear): a camera image is sharper than the model input, so that demosaicing and 4:2:2
    chroma lose detail the engine's resize would lose anyway, as on a real camera. At the
    fixture's own 78 px the random-weight tiny model flips detections near its threshold."""
    frames = np.load(reference_dir / "tiny_plain_io.npz")["frames_uint8"][list(FRAMES), :, :100]
    return np.stack([cv2.resize(f, (200, 156), interpolation=cv2.INTER_LINEAR) for f in frames])


@pytest.fixture(scope="module")
def engine(reference_dir):
    meta = json.loads(str(np.load(reference_dir / "tiny_plain_io.npz")["meta_json"]))
    return Human3REngine.from_checkpoint(reference_dir / "tiny_plain_checkpoint.pth", ttt3r=meta["use_ttt3r"],
                                         reset_interval=meta["reset_interval"] or 0, size=SIZE)


def run(engine, images):
    """People of each frame as (track id, head pixel) after a fresh start."""
    engine.reset()
    return [[(p.track_id, np.asarray(p.image_location, np.float64)) for p in engine.step(im).people]
            for im in images]


@pytest.fixture(scope="module")
def rgb8_people(engine, frames):
    """People of the rgb8 messages decoded as the node does (decode_image shrinks these
    200-px frames to the 128-px working size of a 64-px engine)."""
    people = run(engine, [dec.decode_image(raw_msg(f, "rgb8"), SIZE).rgb for f in frames])
    assert sum(len(f) for f in people) >= 5  # the comparisons must have people to compare
    return people


def assert_same_people(got, want, tolerance, what):
    for frame, (g, w) in enumerate(zip(got, want)):
        assert [i for i, _ in g] == [i for i, _ in w], (what, frame)
        for (_, a), (_, b) in zip(g, w):
            assert np.abs(a - b).max() <= tolerance, (what, frame, a, b)


def raw_msg(values: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """H x W [x C] array -> Image with `pad` junk bytes after every row."""
    h, w = values.shape[:2]
    if values.dtype == np.uint16:
        values = values.astype(">u2" if bigendian else "<u2")
    rows = np.ascontiguousarray(values).view(np.uint8).reshape(h, -1)
    rows = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian), step=rows.shape[1],
                 data=rows.tobytes())


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Bayer mosaic of an RGB image: each pixel keeps the channel its 2x2 pattern position names."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for k, letter in enumerate(pattern):
        r, c = divmod(k, 2)
        out[r::2, c::2] = rgb[r::2, c::2, "rgb".index(letter)]
    return out


def with_alpha(x):
    return np.dstack([x, np.full(x.shape[:2], 200, x.dtype)])


WIDE = lambda x: x.astype(np.uint16) * 257  # noqa: E731  8 -> 16 bit as cameras scale it
LOSSLESS = {  # encoding -> RGB -> message values; decodes back to the very same RGB
    "rgb8": lambda x: x, "bgr8": lambda x: x[..., ::-1], "rgba8": with_alpha,
    "bgra8": lambda x: with_alpha(x[..., ::-1]),
    "rgb16": WIDE, "bgr16": lambda x: WIDE(x[..., ::-1]), "rgba16": lambda x: with_alpha(WIDE(x)),
    "bgra16": lambda x: with_alpha(WIDE(x[..., ::-1])),
}
BAYER = [f"bayer_{p}{bits}" for p in ("rggb", "bggr", "gbrg", "grbg") for bits in (8, 16)]


def test_every_advertised_encoding_is_tested():
    tested = set(LOSSLESS) | set(BAYER) | {"mono8", "mono16", "yuv422", "yuv422_yuy2"}
    assert set(dec.SUPPORTED_ENCODINGS) == tested


@pytest.mark.parametrize("encoding", sorted(LOSSLESS))
@pytest.mark.parametrize("pad, bigendian", [(0, False), (5, True)])
def test_lossless_encodings_decode_exactly(frames, encoding, pad, bigendian):
    # equal arrays give the engine equal people and ids: the engine is deterministic on CPU
    for rgb in frames:
        msg = raw_msg(LOSSLESS[encoding](rgb), encoding, pad if "16" not in encoding else 2 * pad, bigendian)
        out = dec.raw_image_to_rgb(msg, SIZE)
        assert out.dtype == np.uint8 and out.shape == rgb.shape
        np.testing.assert_array_equal(out, rgb)


def test_16bit_scales_as_cv_bridge():
    values = np.array([0, 128, 129, 255 * 257, 65535, 32895, 32896, 1000], np.uint16)
    msg = raw_msg(np.tile(values, (16, 2)), "mono16")
    out = dec.raw_image_to_rgb(msg, SIZE)[0, :8, 0]
    # cv_bridge: convertTo(CV_8U, 255/65535), rounding to nearest
    np.testing.assert_array_equal(out, np.round(values * (255 / 65535)).astype(np.uint8))
    swapped = raw_msg(np.tile(values, (16, 2)), "mono16", bigendian=True)
    np.testing.assert_array_equal(dec.raw_image_to_rgb(swapped, SIZE), dec.raw_image_to_rgb(msg, SIZE))


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_becomes_grey_rgb(frames, encoding):
    for rgb in frames:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        values = WIDE(grey) if encoding == "mono16" else grey
        out = dec.raw_image_to_rgb(raw_msg(values, encoding, pad=2, bigendian=True), SIZE)
        np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


def lossy_images(frames, encoding):
    if encoding.startswith("bayer_"):
        pattern, bits = encoding[6:10], int(encoding[10:])
        return [raw_msg(mosaic(WIDE(f) if bits == 16 else f, pattern), encoding, pad=4) for f in frames]
    code = {"yuv422": cv2.COLOR_RGB2YUV_UYVY, "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUY2}[encoding]
    return [raw_msg(cv2.cvtColor(f, code), encoding, pad=4) for f in frames]


@pytest.mark.parametrize("encoding", BAYER + ["yuv422", "yuv422_yuy2"])
def test_subsampled_encodings_keep_the_image(frames, encoding):
    decoded = [dec.raw_image_to_rgb(m, SIZE) for m in lossy_images(frames, encoding)]
    for rgb, out in zip(frames, decoded):
        assert out.shape == rgb.shape and out.dtype == np.uint8
        # demosaicing and 4:2:2 chroma lose detail at edges only: mean error per channel
        # measured <= 1.0 level; another Bayer pattern gives 11-15, swapped channels more
        error = np.abs(out.astype(int) - rgb).mean(axis=(0, 1))
        assert error.max() < 3, (encoding, error)
        swapped = np.abs(out.astype(int) - rgb[..., ::-1]).mean(axis=(0, 1))
        assert swapped[[0, 2]].min() > error[[0, 2]].max(), (encoding, error, swapped)
    if encoding.endswith("16"):  # the 16-bit mosaic of x * 257 is the 8-bit one, scaled
        eight = [dec.raw_image_to_rgb(m, SIZE) for m in lossy_images(frames, encoding[:-2] + "8")]
        for a, b in zip(decoded, eight):
            assert np.abs(a.astype(int) - b).max() <= 1


# Head pixels (model-input pixels of the 64-px image) may move by this much under demosaicing
# and chroma subsampling: a quarter of the model's 4-px detection cell, well below a shift to
# another detection (measured: at most 0.2 px).
HEAD_TOLERANCE_PX = 1.0


@pytest.mark.parametrize("encoding", ["bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8",
                                      "yuv422", "yuv422_yuy2", "bgr16"])
def test_engine_sees_the_same_people(engine, frames, rgb8_people, encoding):
    if encoding == "bgr16":
        msgs = [raw_msg(LOSSLESS[encoding](f), encoding, bigendian=True) for f in frames]
    else:
        msgs = lossy_images(frames, encoding)
    people = run(engine, [dec.decode_image(m, SIZE).rgb for m in msgs])
    assert_same_people(people, rgb8_people, 0.0 if encoding == "bgr16" else HEAD_TOLERANCE_PX, encoding)


def test_working_size_gives_the_engine_the_same_people(engine, frames, rgb8_people):
    # full-size frames (the engine resizes 200 -> 64 itself) against the shrunk ones above
    assert_same_people(run(engine, frames), rgb8_people, HEAD_TOLERANCE_PX, "full size")


# ----------------------------------------------------------------------------- compressed

def test_compressed_8_and_16_bit(frames):
    rgb = frames[0]
    ok, png = cv2.imencode(".png", rgb[..., ::-1])
    np.testing.assert_array_equal(dec.compressed_image_to_rgb(CompressedImage(format="png", data=png.tobytes())), rgb)
    ok, png16 = cv2.imencode(".png", WIDE(rgb[..., ::-1]))
    msg = CompressedImage(format="rgb16; png compressed rgb16", data=png16.tobytes())
    np.testing.assert_array_equal(dec.compressed_image_to_rgb(msg), rgb)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ok, png16 = cv2.imencode(".png", WIDE(grey))
    out = dec.compressed_image_to_rgb(CompressedImage(format="mono16; png compressed mono16", data=png16.tobytes()))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = dec.compressed_image_to_rgb(CompressedImage(format="jpeg", data=jpg.tobytes()))
    assert out.shape == rgb.shape and np.abs(out.astype(int) - rgb).mean() < 4


def test_corrupt_compressed_payloads(frames):
    ok, jpg = cv2.imencode(".jpg", frames[0])
    for data in (b"not an image", jpg.tobytes()[:40]):
        with pytest.raises(dec.ImageConversionError, match="could not decode.*corrupt"):
            dec.compressed_image_to_rgb(CompressedImage(format="jpeg", data=data))
    with pytest.raises(dec.ImageConversionError, match="empty"):
        dec.decode_image(CompressedImage(format="jpeg", data=b""))


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("encoding", ["16UC1", "32FC1", "8UC3", "64FC1", "nv12", ""])
def test_depth_float_and_unknown_encodings_are_refused(encoding):
    msg = Image(height=32, width=32, encoding=encoding, step=128, data=bytes(32 * 128))
    with pytest.raises(dec.UnsupportedEncodingError, match=f"'{encoding}' is not supported; accepted: rgb8") as err:
        dec.decode_image(msg)
    assert "yuv422" in str(err.value) and "bayer_rggb16" in str(err.value)


def test_truncated_and_malformed_data():
    with pytest.raises(dec.ImageConversionError, match="has 3000 bytes, 32 rows of step 96 need 3072"):
        dec.decode_image(Image(height=32, width=32, encoding="rgb8", step=96, data=bytes(3000)))
    with pytest.raises(dec.ImageConversionError, match="has 2047 bytes"):
        dec.decode_image(Image(height=32, width=32, encoding="mono16", step=64, data=bytes(2047)))
    with pytest.raises(dec.ImageConversionError, match="step 60 is smaller"):
        dec.decode_image(Image(height=32, width=32, encoding="yuv422", step=60, data=bytes(2048)))
    with pytest.raises(dec.ImageConversionError, match="width must be even"):
        dec.decode_image(Image(height=32, width=33, encoding="yuv422_yuy2", step=66, data=bytes(32 * 66)))
    with pytest.raises(dec.ImageConversionError, match="empty image"):
        dec.decode_image(Image(height=0, width=32, encoding="rgb8", step=96))


@pytest.mark.parametrize("h, w, message", [
    (1, 1, "1x1 .* too small: the smaller side needs at least 16 px"),
    (15, 200, "15x200 .* too small"),
    (2, 1000, "2x1000 .* too small: the smaller side"),
    (16, 1000, "16x1000 .*crops to 0x512.*too small or too elongated"),  # the engine's rule
    (1000, 20, "1000x20 .*too small or too elongated"),
])
def test_images_the_engine_cannot_take_are_refused(h, w, message):
    msg = Image(height=h, width=w, encoding="mono8", step=w, data=bytes(h * w))
    with pytest.raises(dec.ImageConversionError, match=message):
        dec.decode_image(msg)
    ok, png = cv2.imencode(".png", np.zeros((h, w), np.uint8))
    with pytest.raises(dec.ImageConversionError, match=message):
        dec.decode_image(CompressedImage(format="png", data=png.tobytes()))


# ----------------------------------------------------------------------------- working size

@pytest.mark.parametrize("hw", [(4320, 7680), (2160, 3840), (3000, 4000), (1080, 1920), (1201, 1601)])
def test_working_shape_keeps_the_model_image(hw):
    shape = dec.working_shape(hw, 512)
    assert shape is not None and max(shape) == 1024
    assert crop_geometry(shape, 512).true_shape == crop_geometry(hw, 512).true_shape
    assert crop_geometry(shape, 512).resized_hw == crop_geometry(hw, 512).resized_hw
    assert dec.working_shape((720, 1280), 1024) is None and dec.working_shape((288, 512), 512) is None


def test_huge_images_are_shrunk_to_the_same_model_input():
    # a smooth 4K scene: the model image after the shrink equals today's within resampling
    h, w = 2160, 3840
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.dstack([127 + 120 * np.sin(x / 97), 127 + 120 * np.cos(y / 61), (x + y) * 255 / (h + w)])
    rgb = rgb.astype(np.uint8)
    for msg in (raw_msg(rgb, "rgb8", pad=16), raw_msg(rgb[..., ::-1].copy(), "bgr8")):
        decoded = dec.decode_image(msg, 512)
        assert decoded.downscaled and decoded.rgb.shape == (576, 1024, 3) and decoded.input_hw == (h, w)
        today, geometry = resize_and_crop(rgb, 512)
        shrunk, shrunk_geometry = resize_and_crop(decoded.rgb, 512)
        assert shrunk.shape == today.shape and shrunk_geometry.crop_top_left == geometry.crop_top_left
        assert np.abs(shrunk.astype(int) - today).max() <= 3
    # model pixels map back to the same camera pixels through both paths
    model_px = np.array([[0.0, 0.0], [100.5, 37.25], [511.0, 287.0]])
    through_shrink = decoded.to_input_pixels(shrunk_geometry.model_px_to_input_px(model_px))
    np.testing.assert_allclose(through_shrink, geometry.model_px_to_input_px(model_px), atol=1e-9)
    # mosaics and packed YUV are converted in bands of rows: the same as converting the whole
    # image and shrinking it (OpenCV's own conversions), but for the rounding of 16-bit values
    for msg in (raw_msg(mosaic(WIDE(rgb), "gbrg"), "bayer_gbrg16", pad=8, bigendian=True),
                raw_msg(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY), "yuv422", pad=4)):
        banded = dec.decode_image(msg, 512)
        assert banded.rgb.shape == (576, 1024, 3) and banded.input_hw == (h, w)
        whole = cv2.resize(dec.raw_image_to_rgb(msg), None, fx=1 / 3, fy=1 / 3, interpolation=cv2.INTER_AREA)
        whole = cv2.resize(whole, (1024, 576), interpolation=cv2.INTER_AREA)
        assert np.abs(banded.rgb.astype(int) - whole).max() <= 1, msg.encoding
    small = dec.decode_image(raw_msg(rgb[:288, :512], "rgb8"), 512)  # small images are untouched
    assert not small.downscaled
    np.testing.assert_array_equal(small.rgb, rgb[:288, :512])
    np.testing.assert_array_equal(small.to_input_pixels(model_px), model_px)


def test_rosbags_messages_decode_as_rclpy_ones(frames):
    # the offline tools read bags with rosbags: its messages carry numpy arrays, not array.array
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    Header, Time = store.types["std_msgs/msg/Header"], store.types["builtin_interfaces/msg/Time"]
    for encoding, values in (("bayer_grbg16", mosaic(WIDE(frames[0]), "grbg")),
                             ("yuv422_yuy2", cv2.cvtColor(frames[0], cv2.COLOR_RGB2YUV_YUY2))):
        ros = raw_msg(values, encoding, pad=6, bigendian=True)
        bag = store.types["sensor_msgs/msg/Image"](
            header=Header(stamp=Time(sec=0, nanosec=0), frame_id="camera"), height=ros.height, width=ros.width,
            encoding=encoding, is_bigendian=ros.is_bigendian, step=ros.step,
            data=np.frombuffer(bytes(ros.data), np.uint8))
        np.testing.assert_array_equal(dec.raw_image_to_rgb(bag), dec.raw_image_to_rgb(ros))
        assert dec.decode_image(bag, SIZE).input_hw == frames[0].shape[:2]


def test_huge_compressed_images_are_decoded_small():
    h, w = 2160, 3840
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.dstack([127 + 120 * np.sin(x / 97), 127 + 120 * np.cos(y / 61), (x + y) * 255 / (h + w)]).astype(np.uint8)
    today, geometry = resize_and_crop(rgb, 512)
    ok, jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    ok, png16 = cv2.imencode(".png", WIDE(rgb[..., ::-1]))
    for data in (jpg, png16):  # JPEG decodes at 1/2 size (DCT scaling), PNG whole then shrunk
        decoded = dec.decode_image(CompressedImage(format="jpeg", data=data.tobytes()), 512)
        assert decoded.input_hw == (h, w) and decoded.rgb.shape == (576, 1024, 3)
        shrunk, shrunk_geometry = resize_and_crop(decoded.rgb, 512)
        assert shrunk_geometry.crop_top_left == geometry.crop_top_left
        assert np.abs(shrunk.astype(int) - today).max() <= 4
    # full-size decoding stays available (and the limits are read from the header first)
    assert dec.compressed_image_to_rgb(CompressedImage(format="jpeg", data=jpg.tobytes())).shape == (h, w, 3)
