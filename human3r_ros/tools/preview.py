"""Top-down preview of a run: scene points, camera path and people, drawn with numpy + OpenCV.

The view looks down on the x-z plane of the world frame (the first camera's optical frame:
x right, y down, z forward), x to the right and z (forward) upwards, so it is not mirrored.
ROS-free: it takes plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

PLOT_PX = 640  # side of the square plot area
MARGIN = 60  # room for tick labels around the plot
HEADER_PX = 56
PANEL_PX = 320  # width of the side panel with the last input frame
BACKGROUND = (248, 248, 248)
GRID = (222, 222, 222)
INK = (40, 40, 40)
CAMERA = (20, 20, 20)
ALERT = (0, 0, 200)
MAX_POINTS = 80_000
POINT_OPACITY = 0.6
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class PersonTrack:
    """One track id over the run: head positions per frame and, with a body model, joints."""

    track_id: int
    heads: list = field(default_factory=list)  # (3,) world positions, in frame order
    joints: Optional[np.ndarray] = None  # (J, 3) joints in the last frame it was seen, if any


@dataclass
class PreviewData:
    points: np.ndarray  # (N, 3) world points of all frames
    colours: np.ndarray  # (N, 3) uint8 RGB
    camera_positions: np.ndarray  # (F, 3)
    camera_forward: np.ndarray  # (3,) optical axis of the last camera, world frame
    tracks: list  # PersonTrack
    palette: np.ndarray  # (K, 3) RGB in [0, 1]; track id i uses palette[i % K]
    title: str = ""
    subtitle: str = ""
    alert: bool = False  # subtitle in red (demo weights)
    last_image: Optional[np.ndarray] = None  # H x W x 3 RGB of the last input frame
    last_boxes: list = field(default_factory=list)  # (track_id, x, y, w, h) in last_image pixels


def _bgr(rgb01) -> tuple:
    r, g, b = (int(round(255 * c)) for c in rgb01[:3])
    return (b, g, r)


class _TopView:
    """World (x, z) metres -> plot pixels, equal scale on both axes."""

    def __init__(self, cloud_xz: np.ndarray, marks_xz: np.ndarray):
        """Frames the bulk of the cloud (1st-99th percentile: stray points do not shrink the
        view) and every mark (camera, people) in full."""
        cloud = cloud_xz[np.isfinite(cloud_xz).all(axis=1)]
        marks = marks_xz[np.isfinite(marks_xz).all(axis=1)]
        boxes = [np.percentile(cloud, [1, 99], axis=0)] if len(cloud) else []
        if len(marks):
            boxes.append(np.stack([marks.min(axis=0), marks.max(axis=0)]))
        if not boxes:
            boxes = [np.zeros((2, 2))]
        lo, hi = np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)
        centre, half = (lo + hi) / 2, max(float(np.max(hi - lo)) / 2 * 1.1, 0.5)
        self.lo = centre - half
        self.scale = PLOT_PX / (2 * half)  # px per metre
        self.span = 2 * half

    def px(self, xz: np.ndarray) -> np.ndarray:
        u = MARGIN + (xz[..., 0] - self.lo[0]) * self.scale
        v = HEADER_PX + MARGIN + PLOT_PX - (xz[..., 1] - self.lo[1]) * self.scale  # forward is up
        return np.stack([u, v], axis=-1)


def _nice_step(span: float) -> float:
    """Grid step of 1, 2 or 5 x 10^k metres giving 4-10 lines across `span`."""
    for exponent in range(-3, 4):
        for mantissa in (1, 2, 5):
            step = mantissa * 10.0**exponent
            if span / step <= 10:
                return step
    return 1000.0


def _draw_axes(img, view: _TopView) -> None:
    top, left = HEADER_PX + MARGIN, MARGIN
    step = _nice_step(view.span)
    for axis in (0, 1):
        start = np.ceil(view.lo[axis] / step) * step
        for value in np.arange(start, view.lo[axis] + view.span + 1e-9, step):
            label = f"{round(value / step) * step + 0.0:g}"  # + 0.0: no "-0"
            if axis == 0:
                u = int(round(view.px(np.array([value, view.lo[1]]))[0]))
                cv2.line(img, (u, top), (u, top + PLOT_PX), GRID, 1)
                cv2.putText(img, label, (u - 10, top + PLOT_PX + 18), FONT, 0.4, INK, 1, cv2.LINE_AA)
            else:
                v = int(round(view.px(np.array([view.lo[0], value]))[1]))
                cv2.line(img, (left, v), (left + PLOT_PX, v), GRID, 1)
                width = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
                cv2.putText(img, label, (left - 6 - width, v + 4), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (left + PLOT_PX, top + PLOT_PX), INK, 1)
    cv2.putText(img, "x (m), right", (left + PLOT_PX // 2 - 40, top + PLOT_PX + 40), FONT, 0.5, INK, 1, cv2.LINE_AA)
    label = np.full((20, 150, 3), BACKGROUND, np.uint8)
    cv2.putText(label, "z (m), forward", (2, 15), FONT, 0.5, INK, 1, cv2.LINE_AA)
    rotated = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + PLOT_PX // 2 - rotated.shape[0] // 2
    img[y0:y0 + rotated.shape[0], 2:2 + rotated.shape[1]] = rotated
    # scale bar: one grid step, bottom-right corner of the plot
    bar = int(round(step * view.scale))
    x1, y = left + PLOT_PX - 14, top + PLOT_PX - 16
    cv2.rectangle(img, (x1 - bar - 6, y - 22), (x1 + 6, y + 8), BACKGROUND, -1)
    cv2.line(img, (x1 - bar, y), (x1, y), INK, 3)
    for x in (x1 - bar, x1):
        cv2.line(img, (x, y - 5), (x, y + 5), INK, 1)
    cv2.putText(img, f"{step:g} m", (x1 - bar // 2 - 14, y - 9), FONT, 0.45, INK, 1, cv2.LINE_AA)


def _draw_points(img, view: _TopView, points: np.ndarray, colours: np.ndarray) -> None:
    keep = np.isfinite(points).all(axis=1)
    points, colours = points[keep], colours[keep]
    if len(points) > MAX_POINTS:  # even decimation keeps the preview fast and deterministic
        pick = np.linspace(0, len(points) - 1, MAX_POINTS).astype(np.int64)
        points, colours = points[pick], colours[pick]
    # draw from the floor up (y points down), so the uppermost surface shows, as seen from above
    order = np.argsort(-points[:, 1], kind="stable")
    uv = np.round(view.px(points[order][:, [0, 2]])).astype(np.int64)
    bgr = colours[order][:, ::-1]
    top, left = HEADER_PX + MARGIN, MARGIN
    layer = img.copy()
    for du in (0, 1):  # 2 x 2 px dots
        for dv in (0, 1):
            u, v = uv[:, 0] + du, uv[:, 1] + dv
            inside = (u >= left) & (u < left + PLOT_PX) & (v >= top) & (v < top + PLOT_PX)
            layer[v[inside], u[inside]] = bgr[inside]
    # faded, so the camera path and the people drawn on top stay readable
    cv2.addWeighted(layer, POINT_OPACITY, img, 1.0 - POINT_OPACITY, 0.0, dst=img)


def _draw_camera(img, view: _TopView, positions: np.ndarray, forward: np.ndarray) -> None:
    if len(positions) == 0:
        return
    uv = view.px(positions[:, [0, 2]])
    pts = np.round(uv).astype(np.int32)
    if len(pts) > 1:
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, CAMERA, 2, cv2.LINE_AA)
    for p in pts:
        cv2.circle(img, tuple(int(c) for c in p), 3, CAMERA, -1, cv2.LINE_AA)
    # the last camera as a small viewing wedge along its optical axis
    heading = np.array([forward[0], forward[2]], dtype=np.float64)
    if np.linalg.norm(heading) > 1e-6:
        heading /= np.linalg.norm(heading)
        side = np.array([heading[1], -heading[0]])
        tip = uv[-1]
        length = 28.0
        corners = [tip, tip + length * (np.array([heading[0], -heading[1]]) + 0.5 * np.array([side[0], -side[1]])),
                   tip + length * (np.array([heading[0], -heading[1]]) - 0.5 * np.array([side[0], -side[1]]))]
        cv2.polylines(img, [np.round(np.array(corners)).astype(np.int32)], True, CAMERA, 1, cv2.LINE_AA)
    _label(img, "start", tuple(int(c) for c in pts[0] + np.array([6, 16])), CAMERA, 0.4)
    _label(img, "camera", tuple(int(c) for c in pts[-1] + np.array([6, -8])), CAMERA, 0.45)


def _label(img, text: str, org: tuple, colour, scale: float = 0.5) -> None:
    """Text with a light halo, readable on top of the scene points."""
    cv2.putText(img, text, org, FONT, scale, BACKGROUND, 5, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, 2 if scale >= 0.5 else 1, cv2.LINE_AA)


def _free_spot(x: int, y: int, size: tuple, taken: list) -> tuple:
    """Move a label down until it overlaps no label placed before (people often stand close)."""
    w, h = size
    while any(x < tx + tw and tx < x + w and y - h < ty and ty - th < y for tx, ty, tw, th in taken):
        y += h + 4
    taken.append((x, y, w, h))
    return x, y


def _draw_people(img, view: _TopView, tracks: Sequence[PersonTrack], palette: np.ndarray) -> None:
    last_dots = []
    for track in tracks:
        colour = _bgr(palette[track.track_id % len(palette)])
        heads = np.array(track.heads, dtype=np.float64).reshape(-1, 3)
        uv = np.round(view.px(heads[:, [0, 2]])).astype(np.int32)
        if len(uv) > 1:
            cv2.polylines(img, [uv.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
        for p in uv[:-1]:
            cv2.circle(img, tuple(int(c) for c in p), 3, colour, -1, cv2.LINE_AA)
        if track.joints is not None and len(track.joints):
            for p in np.round(view.px(track.joints[:, [0, 2]])).astype(np.int32):
                cv2.circle(img, tuple(int(c) for c in p), 2, colour, -1, cv2.LINE_AA)
        last_dots.append((track.track_id, colour, tuple(int(c) for c in uv[-1])))
    for _, colour, last in last_dots:
        cv2.circle(img, last, 7, colour, -1, cv2.LINE_AA)
        cv2.circle(img, last, 7, INK, 1, cv2.LINE_AA)
    labels: list = []  # after every dot, so no dot hides a label
    for track_id, colour, last in last_dots:
        text = f"id {track_id}"
        wanted = (last[0] + 10, last[1] + 5)
        spot = _free_spot(*wanted, cv2.getTextSize(text, FONT, 0.5, 2)[0], labels)
        if spot != wanted:  # a leader line ties a moved label to its dot
            cv2.line(img, last, (spot[0] - 2, spot[1] - 5), colour, 1, cv2.LINE_AA)
        _label(img, text, spot, colour)


def _draw_panel(img, data: PreviewData, palette: np.ndarray) -> None:
    x0, y0 = MARGIN + PLOT_PX + MARGIN, HEADER_PX + MARGIN
    cv2.putText(img, "last input frame", (x0, y0 - 10), FONT, 0.5, INK, 1, cv2.LINE_AA)
    if data.last_image is not None:
        h, w = data.last_image.shape[:2]
        scale = PANEL_PX / w
        frame = cv2.resize(np.ascontiguousarray(data.last_image[..., ::-1]), (PANEL_PX, int(round(h * scale))),
                           interpolation=cv2.INTER_AREA)
        for track_id, x, y, bw, bh in data.last_boxes:
            p0 = (int(round(x * scale)), int(round(y * scale)))
            p1 = (int(round((x + bw) * scale)), int(round((y + bh) * scale)))
            colour = _bgr(palette[track_id % len(palette)])
            cv2.rectangle(frame, p0, p1, colour, 2)
            cv2.putText(frame, f"id {track_id}", (p0[0] + 2, max(p0[1] - 4, 12)), FONT, 0.45, colour, 2, cv2.LINE_AA)
        img[y0:y0 + frame.shape[0], x0:x0 + frame.shape[1]] = frame
        y0 += frame.shape[0] + 30
    legend = [("camera path (dots: one per frame)", CAMERA)]
    legend += [(f"person id {t.track_id}: head path, big dot = last", _bgr(palette[t.track_id % len(palette)]))
               for t in data.tracks[:12]]
    legend.append(("scene points: their image colour", INK))
    for i, (text, colour) in enumerate(legend):
        y = y0 + 22 * i
        cv2.circle(img, (x0 + 6, y - 4), 5, colour, -1, cv2.LINE_AA)
        cv2.putText(img, text, (x0 + 18, y), FONT, 0.42, INK, 1, cv2.LINE_AA)


def render_preview(data: PreviewData) -> np.ndarray:
    """The preview as an H x W x 3 BGR image (ready for cv2.imwrite)."""
    width = MARGIN + PLOT_PX + MARGIN + PANEL_PX + 20
    height = HEADER_PX + MARGIN + PLOT_PX + MARGIN
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    marks = [data.camera_positions.reshape(-1, 3)]
    marks += [np.array(t.heads, dtype=np.float64).reshape(-1, 3) for t in data.tracks]
    marks += [t.joints.reshape(-1, 3) for t in data.tracks if t.joints is not None]
    view = _TopView(data.points.reshape(-1, 3)[:, [0, 2]], np.concatenate(marks)[:, [0, 2]])
    _draw_axes(img, view)
    _draw_points(img, view, data.points.reshape(-1, 3), data.colours.reshape(-1, 3))
    _draw_camera(img, view, data.camera_positions.reshape(-1, 3), data.camera_forward)
    _draw_people(img, view, data.tracks, data.palette)
    _draw_panel(img, data, data.palette)
    cv2.putText(img, data.title, (MARGIN, 24), FONT, 0.6, INK, 1, cv2.LINE_AA)
    cv2.putText(img, data.subtitle, (MARGIN, 46), FONT, 0.5, ALERT if data.alert else INK, 1, cv2.LINE_AA)
    return img
