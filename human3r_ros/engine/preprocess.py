"""One camera image -> the tensors Human3R consumes (CUT3R input and Multi-HMR square input).

Reproduces the reference loader for `size != 224`: resize the long side to `size` with Pillow
(LANCZOS when shrinking, BICUBIC otherwise), centre-crop both sides to multiples of 16, scale
to [-1, 1]; then letterbox that tensor into an R x R square (bilinear, pad -1) for Multi-HMR.
Works on one frame at a time, so it can run on a live stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

PATCH = 16  # CUT3R patch size: the model image must be a multiple of it in both sides
MHMR_FOV_DEG = 60.0  # Multi-HMR's assumed field of view for its square input
PAD_VALUE = -1.0  # letterbox value, in the [-1, 1] normalised space (black)

_ACCEPTED = (
    "accepted: uint8 arrays shaped HxW or HxWx1 (grayscale), HxWx3 (RGB) or HxWx4 (RGBA, alpha is dropped)"
)


@dataclass(frozen=True)
class CropGeometry:
    """Where the model image sits in the input image. Pixel coordinates put pixel centres at
    integers (the convention of Human3R's principal point (W//2, H//2))."""

    input_hw: tuple[int, int]  # (H0, W0) of the image given to preprocess_frame
    resized_hw: tuple[int, int]  # after the long-side resize, before the crop
    crop_top_left: tuple[int, int]  # (top, left) of the crop, in resized pixels
    true_shape: tuple[int, int]  # (H, W) model image = crop size

    def model_to_input_affine(self) -> np.ndarray:
        """3x3 A with [x_in, y_in, 1] = A [x, y, 1]: undo the crop offset, then the per-axis
        resize (a pixel centre i of the resized image lies at (i + 0.5) * scale - 0.5)."""
        (h0, w0), (rh, rw) = self.input_hw, self.resized_hw
        sx, sy = w0 / rw, h0 / rh
        top, left = self.crop_top_left
        return np.array([[sx, 0.0, sx * (left + 0.5) - 0.5], [0.0, sy, sy * (top + 0.5) - 0.5], [0.0, 0.0, 1.0]])

    def model_px_to_input_px(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) model-image (x, y) -> the same point in input-image pixels (float64)."""
        a = self.model_to_input_affine()
        return np.asarray(uv, dtype=np.float64) @ a[:2, :2].T + a[:2, 2]

    def intrinsics_in_input(self, K: np.ndarray) -> np.ndarray:
        """3x3 pinhole K of the model image -> K of the same camera in the input image (float64)."""
        return self.model_to_input_affine() @ np.asarray(K, dtype=np.float64)


@dataclass(frozen=True)
class PreparedView:
    img: torch.Tensor  # (3, H, W) float32 in [-1, 1], CPU (reference `view_img`)
    img_mhmr: torch.Tensor  # (3, R, R) float32, letterboxed with -1 (reference `view_img_mhmr`)
    K_mhmr: torch.Tensor  # (3, 3) float32, 60-degree pinhole of the R x R image (unused by the model)
    geometry: CropGeometry

    @property
    def true_shape(self) -> tuple[int, int]:
        return self.geometry.true_shape


def resized_size(input_hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) after scaling the long side to `size` (Python round, as the reference)."""
    h0, w0 = input_hw
    long_side = max(h0, w0)
    return int(round(h0 * size / long_side)), int(round(w0 * size / long_side))


def centre_crop_box(resized_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the reference's centre crop. Sides become multiples of 16;
    a square image is cropped to 4:3 landscape (half-height = 3/4 half-width)."""
    h, w = resized_hw
    cx, cy = w // 2, h // 2
    half_w, half_h = ((2 * cx) // PATCH) * (PATCH // 2), ((2 * cy) // PATCH) * (PATCH // 2)
    if w == h:
        half_h = 3 * half_w / 4
    # Pillow rounds float crop boxes with Python round; do it here to get integer sizes.
    return tuple(int(round(v)) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))


def model_image_shape(input_hw: tuple[int, int], size: int = 512) -> tuple[int, int]:
    left, top, right, bottom = centre_crop_box(resized_size(input_hw, size))
    return bottom - top, right - left


def crop_geometry(input_hw: tuple[int, int], size: int = 512) -> CropGeometry:
    """Where the model image of an (H, W) input sits in it, without touching pixels."""
    rh, rw = resized_size(input_hw, size)
    left, top, right, bottom = centre_crop_box((rh, rw))
    return CropGeometry(tuple(input_hw), (rh, rw), (top, left), (bottom - top, right - left))


def check_model_image_shape(input_hw: tuple[int, int], size: int = 512) -> None:
    """Raise ValueError when an (H, W) image cannot become a model image at `size` (both crop
    sides must keep a 16-px patch). The one place of this rule: the engine and the message
    decoders both call it."""
    h0, w0 = input_hw
    h, w = model_image_shape((h0, w0), size)
    if h < PATCH or w < PATCH:
        rh, rw = resized_size((h0, w0), size)
        raise ValueError(
            f"image of {h0}x{w0} (HxW) becomes {rh}x{rw} after scaling its long side to {size}, "
            f"which crops to {h}x{w}; both sides must keep at least one {PATCH}-px patch "
            "(the image is too small or too elongated)"
        )
    if h % PATCH or w % PATCH:
        raise ValueError(f"size={size} crops a {h0}x{w0} image to {h}x{w}, not a multiple of {PATCH}; use size=512")


def validate_image(image: np.ndarray, size: int = 512) -> np.ndarray:
    """Check a camera image and return it as a contiguous HxWx3 uint8 RGB array.

    Grayscale (HxW, HxWx1) is replicated to RGB and RGBA loses its alpha, which is what
    Pillow's convert("RGB") does in the reference loader. Anything else raises ValueError /
    TypeError naming what was received and what is accepted."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy.ndarray, got {type(image).__name__}; {_ACCEPTED}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"image dtype {image.dtype} is not supported; {_ACCEPTED}. "
            "Convert 16-bit or floating-point images to 8 bits (0..255) first"
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"image shape {image.shape} is not supported; {_ACCEPTED}")
    h0, w0 = image.shape[:2]
    if h0 == 0 or w0 == 0:
        raise ValueError(f"image shape {image.shape} is empty; {_ACCEPTED}")
    if not isinstance(size, int) or size < PATCH:
        raise ValueError(f"size must be an integer >= {PATCH} (Human3R uses 512), got {size!r}")
    if size == 224:
        raise ValueError("size=224 selects the reference's square-crop path for 224-px models; Human3R uses 512")
    check_model_image_shape((h0, w0), size)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    return np.ascontiguousarray(image)


def resize_and_crop(rgb: np.ndarray, size: int) -> tuple[np.ndarray, CropGeometry]:
    """Validated HxWx3 uint8 -> cropped HxWx3 uint8 model image, plus its geometry."""
    geometry = crop_geometry(rgb.shape[:2], size)
    (rh, rw), (top, left), (h, w) = geometry.resized_hw, geometry.crop_top_left, geometry.true_shape
    img = PIL.Image.fromarray(rgb)  # HxWx3 uint8 -> mode "RGB"
    resample = PIL.Image.LANCZOS if max(rgb.shape[:2]) > size else PIL.Image.BICUBIC
    img = img.resize((rw, rh), resample)  # Pillow returns a copy when the size is unchanged
    img = img.crop((left, top, left + w, top + h))
    return np.asarray(img), geometry


def normalise(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3, H, W) float32 in [-1, 1], with the same float32 ops as
    ToTensor + Normalize(0.5, 0.5)."""
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
    return torch.from_numpy((chw - np.float32(0.5)) / np.float32(0.5))


def letterbox_square(img: torch.Tensor, res: int) -> torch.Tensor:
    """(3, H, W) -> (3, res, res): fit inside (bilinear, no antialias), centre, pad with -1.
    Sizes are truncated like the reference (int(H * scale)); the extra pad row/col goes
    bottom/right. The input must be contiguous (the CPU kernel rounds differently otherwise)."""
    _, h, w = img.shape
    scale = min(res / h, res / w)
    new_h, new_w = int(h * scale), int(w * scale)
    resized = F.interpolate(img.contiguous()[None], size=(new_h, new_w), mode="bilinear", align_corners=False)
    top, left = (res - new_h) // 2, (res - new_w) // 2
    padding = (left, res - new_w - left, top, res - new_h - top)
    return F.pad(resized, padding, mode="constant", value=PAD_VALUE)[0]


def square_pinhole_intrinsics(res: int, fov_deg: float = MHMR_FOV_DEG) -> torch.Tensor:
    """K of an res x res image with the given horizontal FOV, principal point (res//2, res//2)."""
    focal = res / (2 * math.tan(math.radians(fov_deg) / 2))
    return torch.tensor([[focal, 0.0, res // 2], [0.0, focal, res // 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def preprocess_frame(rgb: np.ndarray, size: int = 512, *, mhmr_res: int) -> PreparedView:
    """Camera image (see validate_image for accepted layouts) -> PreparedView.

    `mhmr_res` is the checkpoint's Multi-HMR input resolution (`mhmr_img_res`: 672 or 896)."""
    rgb = validate_image(rgb, size)
    cropped, geometry = resize_and_crop(rgb, size)
    img = normalise(cropped)
    return PreparedView(img, letterbox_square(img, mhmr_res), square_pinhole_intrinsics(mhmr_res), geometry)
