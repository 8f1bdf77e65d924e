#!/usr/bin/env python3
"""Draws the demo sample: a few frames of a simple room with three walking figures.

The frames in demo/sample/ are synthetic drawings (no real people, no photographs) made by this
script, so `make demo` has a bundled input that can be shared freely. Deterministic: the same
OpenCV version writes the same PNGs. Run from the repository root:

    python scripts/make_demo_sample.py [--out demo/sample] [--frames 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 320, 240
FOCAL = 250.0  # px; about a 65-degree horizontal field of view
NEAR = 0.1  # m; polygons are clipped here so nothing behind the camera is drawn
ROOM_X, ROOM_Z, ROOM_H = 3.0, 8.0, 2.8  # half width, depth, height (m); floor at y = 0, y up
TILE = 0.5  # floor tile size (m)
EYE_HEIGHT = 1.5
PITCH_DEG = 9.0  # looking slightly down (positive pitches the view downwards here)


def bgr(rgb):
    return tuple(int(c) for c in rgb[::-1])


class Camera:
    """Pinhole camera in a y-up world (x right, z into the room); image y grows downwards."""

    def __init__(self, position, yaw_deg: float):
        yaw, pitch = np.radians(yaw_deg), np.radians(PITCH_DEG)
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
        self.world_to_cam = (r_yaw @ r_pitch).T  # camera axes (x right, y up, z forward) in rows
        self.position = np.asarray(position, dtype=np.float64)

    def to_cam(self, pts) -> np.ndarray:
        return (np.asarray(pts, dtype=np.float64) - self.position) @ self.world_to_cam.T

    def project(self, cam_pts) -> np.ndarray:
        cam_pts = np.atleast_2d(cam_pts)
        u = WIDTH / 2 + FOCAL * cam_pts[:, 0] / cam_pts[:, 2]
        v = HEIGHT / 2 - FOCAL * cam_pts[:, 1] / cam_pts[:, 2]
        return np.stack([u, v], axis=1)


def clip_near(cam_poly: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon (camera coordinates) against z >= NEAR."""
    out = []
    for a, b in zip(cam_poly, np.roll(cam_poly, -1, axis=0)):
        a_in, b_in = a[2] >= NEAR, b[2] >= NEAR
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out)


def fill_polygon(img, cam: Camera, world_poly, colour) -> None:
    clipped = clip_near(cam.to_cam(world_poly))
    if len(clipped) >= 3:
        px = np.round(cam.project(clipped) * 16).astype(np.int32)  # 4 fractional bits
        cv2.fillPoly(img, [px], bgr(colour), lineType=cv2.LINE_AA, shift=4)


def quad(x0, x1, y0, y1, z0, z1, axis: str):
    """Axis-aligned rectangle in the plane x=const, y=const or z=const."""
    if axis == "x":
        return [(x0, y0, z0), (x0, y1, z0), (x0, y1, z1), (x0, y0, z1)]
    if axis == "y":
        return [(x0, y0, z0), (x1, y0, z0), (x1, y0, z1), (x0, y0, z1)]
    return [(x0, y0, z0), (x1, y0, z0), (x1, y1, z0), (x0, y1, z0)]


def draw_room(img, cam: Camera) -> None:
    X, Z, H = ROOM_X, ROOM_Z, ROOM_H
    back = -1.0  # the room continues a little behind the camera
    fill_polygon(img, cam, quad(-X, X, 0, H, Z, Z, "z"), (214, 204, 182))  # back wall
    fill_polygon(img, cam, quad(-X, -X, 0, H, back, Z, "x"), (190, 200, 212))  # left wall
    fill_polygon(img, cam, quad(X, X, 0, H, back, Z, "x"), (206, 192, 176))  # right wall
    fill_polygon(img, cam, quad(-X, X, H, H, back, Z, "y"), (236, 234, 228))  # ceiling
    for i, x in enumerate(np.arange(-X, X, TILE)):  # checkered floor gives strong perspective cues
        for j, z in enumerate(np.arange(back, Z, TILE)):
            shade = (156, 120, 86) if (i + j) % 2 else (196, 162, 122)
            fill_polygon(img, cam, quad(x, x + TILE, 0, 0, z, z + TILE, "y"), shade)
    # furniture and decorations: a door, a window, two pictures, a skirting board, a cupboard
    fill_polygon(img, cam, quad(1.6, 2.5, 0, 2.05, Z - 0.01, Z - 0.01, "z"), (120, 82, 52))
    fill_polygon(img, cam, quad(-2.2, -0.6, 1.1, 2.1, Z - 0.01, Z - 0.01, "z"), (150, 196, 230))
    fill_polygon(img, cam, quad(-1.43, -1.37, 1.1, 2.1, Z - 0.02, Z - 0.02, "z"), (245, 245, 245))
    fill_polygon(img, cam, quad(-X + 0.01, -X + 0.01, 1.2, 1.9, 2.0, 3.2, "x"), (60, 120, 90))
    fill_polygon(img, cam, quad(X - 0.01, X - 0.01, 1.3, 1.8, 3.5, 4.3, "x"), (200, 70, 60))
    for x_wall, sign in ((-X, 1), (X, -1)):
        fill_polygon(img, cam, quad(x_wall + sign * 0.01, x_wall + sign * 0.01, 0, 0.12, back, Z, "x"), (90, 80, 70))
    fill_polygon(img, cam, quad(-X, -X + 0.6, 0, 0.9, 6.0, 6.0, "z"), (110, 96, 80))  # cupboard front
    fill_polygon(img, cam, quad(-X + 0.6, -X + 0.6, 0, 0.9, 6.0, 7.2, "x"), (92, 80, 66))  # its side
    fill_polygon(img, cam, quad(-X, -X + 0.6, 0.9, 0.9, 6.0, 7.2, "y"), (140, 124, 104))  # its top


# Figures: ground position (x, z) in frame 0, walking velocity (m per frame), facing, colours.
FIGURES = [
    dict(start=(-1.3, 3.2), velocity=(0.07, 0.0), height=1.75, phase=0.0,
         shirt=(40, 90, 180), trousers=(40, 40, 60), skin=(224, 172, 140)),
    dict(start=(1.3, 4.6), velocity=(-0.04, -0.05), height=1.68, phase=1.6,
         shirt=(200, 60, 50), trousers=(70, 60, 50), skin=(150, 100, 70)),
    dict(start=(0.1, 6.3), velocity=(0.0, 0.0), height=1.62, phase=0.8, waving=True,
         shirt=(60, 160, 80), trousers=(50, 50, 90), skin=(236, 196, 160)),
]


def figure_joints(fig: dict, frame: int) -> dict:
    """3D joints (world, metres) of a simple walking figure in frame `frame`."""
    s = fig["height"] / 1.75
    x = fig["start"][0] + fig["velocity"][0] * frame
    z = fig["start"][1] + fig["velocity"][1] * frame
    walking = any(fig["velocity"])
    swing = 0.45 * np.sin(fig["phase"] + 0.9 * frame) if walking else 0.0
    heading = np.arctan2(fig["velocity"][0], fig["velocity"][1]) if walking else np.pi  # facing the camera
    side = np.array([np.cos(heading), 0.0, -np.sin(heading)])  # body's right-left axis
    fwd = np.array([np.sin(heading), 0.0, np.cos(heading)])
    base = np.array([x, 0.0, z])

    def at(lateral, height, forward=0.0):
        return base + s * (lateral * side + forward * fwd) + np.array([0.0, s * height, 0.0])

    j = {
        "head": at(0, 1.62), "neck": at(0, 1.45),
        "l_shoulder": at(-0.2, 1.42), "r_shoulder": at(0.2, 1.42),
        "l_hip": at(-0.1, 0.95), "r_hip": at(0.1, 0.95),
    }
    for name, sign, lat in (("l", 1, -0.1), ("r", -1, 0.1)):
        leg = sign * swing
        j[f"{name}_knee"] = at(lat, 0.52, 0.45 * np.sin(leg))
        j[f"{name}_foot"] = at(lat, 0.06, 0.9 * np.sin(leg) - 0.05)
        arm = -leg
        j[f"{name}_elbow"] = at(1.3 * lat + np.sign(lat) * 0.05, 1.12, 0.3 * np.sin(arm))
        j[f"{name}_hand"] = at(1.3 * lat + np.sign(lat) * 0.07, 0.82, 0.6 * np.sin(arm))
    if fig.get("waving"):
        wave = 0.25 * np.sin(1.3 * frame)
        j["r_elbow"] = at(0.42, 1.45, 0.05)
        j["r_hand"] = at(0.48 + wave, 1.85, 0.05)
    return j


LIMBS = [  # (from, to, colour key, width in metres)
    ("l_hip", "l_knee", "trousers", 0.13), ("l_knee", "l_foot", "trousers", 0.11),
    ("r_hip", "r_knee", "trousers", 0.13), ("r_knee", "r_foot", "trousers", 0.11),
    ("l_shoulder", "l_elbow", "shirt", 0.09), ("l_elbow", "l_hand", "skin", 0.07),
    ("r_shoulder", "r_elbow", "shirt", 0.09), ("r_elbow", "r_hand", "skin", 0.07),
]


def draw_figure(img, cam: Camera, fig: dict, frame: int) -> None:
    joints = figure_joints(fig, frame)
    cam_j = {k: cam.to_cam(v[None])[0] for k, v in joints.items()}
    if min(p[2] for p in cam_j.values()) < NEAR:
        return
    px = {k: cam.project(p[None])[0] for k, p in cam_j.items()}
    depth = cam_j["neck"][2]

    def limb(a, b, colour, width):
        thickness = max(2, int(round(FOCAL * width / depth)))
        p0, p1 = (tuple(np.round(px[n]).astype(int)) for n in (a, b))
        cv2.line(img, p0, p1, bgr(fig[colour]), thickness, cv2.LINE_AA)

    # limbs further from the camera first, so nearer ones overlap them
    order = sorted(LIMBS, key=lambda limb_: -(cam_j[limb_[0]][2] + cam_j[limb_[1]][2]))
    behind = [l_ for l_ in order if (cam_j[l_[0]][2] + cam_j[l_[1]][2]) / 2 > depth]
    front = [l_ for l_ in order if l_ not in behind]
    for a, b, colour, width in behind:
        limb(a, b, colour, width)
    torso = np.array([px["l_shoulder"], px["r_shoulder"], px["r_hip"], px["l_hip"]])
    cv2.fillConvexPoly(img, np.round(torso * 16).astype(np.int32), bgr(fig["shirt"]), cv2.LINE_AA, shift=4)
    limb("l_shoulder", "r_shoulder", "shirt", 0.1)
    limb("l_hip", "r_hip", "trousers", 0.12)
    limb("neck", "neck", "skin", 0.08)
    for a, b, colour, width in front:
        limb(a, b, colour, width)
    radius = FOCAL * 0.11 * fig["height"] / 1.75 / cam_j["head"][2]
    centre = tuple(np.round(px["head"] * 16).astype(int))
    cv2.circle(img, centre, int(round(radius * 16)), bgr(fig["skin"]), -1, cv2.LINE_AA, shift=4)
    hair = (int(centre[0]), int(centre[1] - radius * 16 * 0.35))
    axes = (int(radius * 16), int(radius * 16 * 0.7))
    cv2.ellipse(img, hair, axes, 0, 180, 360, (30, 30, 40), -1, cv2.LINE_AA, shift=4)


def render(frame: int, n_frames: int) -> np.ndarray:
    t = frame / max(n_frames - 1, 1)
    cam = Camera(position=(-0.3 + 0.6 * t, EYE_HEIGHT, 0.0), yaw_deg=-6.0 + 12.0 * t)  # slow pan to the right
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    draw_room(img, cam)
    far_to_near = sorted(FIGURES, key=lambda f: -cam.to_cam(np.array([figure_joints(f, frame)["neck"]]))[0, 2])
    for fig in far_to_near:
        draw_figure(img, cam, fig, frame)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "demo" / "sample")
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.frames):
        path = args.out / f"frame_{i:03d}.png"
        cv2.imwrite(str(path), render(i, args.frames), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(path)


if __name__ == "__main__":
    main()
