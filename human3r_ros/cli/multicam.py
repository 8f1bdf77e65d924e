"""human3r-process with several cameras: several file inputs, or one bag's several image topics.

One engine (one network) with a stream per camera; frames whose stamps lie within --sync-slop
form a frame set and run as one batched pass; with a rig file (--extrinsics) the people of a
set are fused across cameras (human3r_ros.fusion). The .npz output holds each camera's arrays
under "<camera>/<key>" (the single-camera keys) and the fused people under "fused_<key>".
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from human3r_ros.cli import CliError

log = logging.getLogger("human3r-process")
NS_PER_S = 1_000_000_000


def camera_names(args, bag_input: bool) -> list[str]:
    """A camera's name: its file's stem, or its bag topic without the leading '/'."""
    names = [t.lstrip("/") for t in args.image_topic] if bag_input else [p.stem for p in args.input]
    if len(set(names)) != len(names):
        raise CliError(f"several cameras need distinct names (file stems or topics), got {names}")
    return names


def load_rig(path: Path | None, cameras: list[str]) -> dict[str, list[float]]:
    """--extrinsics YAML: camera name -> [x, y, z, qx, qy, qz, qw] of its optical frame in the rig
    frame (the node's extrinsics.<camera> layout; a top-level 'extrinsics:' key is allowed)."""
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CliError(f"--extrinsics {path}: cannot read: {exc}") from None
    data = data.get("extrinsics", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise CliError(f"--extrinsics {path}: expected a mapping camera -> [x, y, z, qx, qy, qz, qw]")
    unknown = sorted(set(data) - set(cameras))
    if unknown:
        raise CliError(f"--extrinsics {path}: cameras {unknown} are not among the inputs {cameras}")
    return {str(c): list(v) for c, v in data.items()}


def frame_sets(iterators: dict, slop_ns: int):
    """Merge the cameras' frames (each in time order) into sets: the earliest waiting frame and
    every other camera's next frame within `slop_ns` of it."""
    heads = {name: next(it, None) for name, it in iterators.items()}
    while any(frame is not None for frame in heads.values()):
        first = min(frame.stamp_ns for frame in heads.values() if frame is not None)
        members = {name: frame for name, frame in heads.items()
                   if frame is not None and frame.stamp_ns - first <= slop_ns}
        yield members
        for name in members:
            heads[name] = next(iterators[name], None)


def fused_arrays(fused_frames: list) -> dict[str, np.ndarray]:
    """The fused people of every set as arrays (one row per person)."""
    rows = [(i, f.stamp, p) for i, f in enumerate(fused_frames) for p in f.people]
    def stack(name, shape):
        return np.array([np.asarray(getattr(p, name), np.float32) for _, _, p in rows], np.float32).reshape(-1, *shape)
    return {
        "fused_set": np.array([i for i, _, _ in rows], np.int64),
        "fused_stamp": np.array([np.nan if s is None else s for _, s, _ in rows], np.float64),
        "fused_id": np.array([p.person_id for _, _, p in rows], np.int64),
        "fused_views_json": np.array([json.dumps({v.camera: int(v.track_id) for v in p.views}) for _, _, p in rows]),
        "fused_head_position_world": stack("head_position_world", (3,)),
        "fused_global_orient_world": stack("global_orient_world", (3,)),
        "fused_body_pose": stack("body_pose", (21, 3)),
        "fused_betas": stack("betas", (10,)),
        "fused_rig_pose": np.array([f.rig_pose for f in fused_frames], np.float64).reshape(-1, 4, 4),
    }


def run_multicam(args, bag_input: bool, load_engine, write_npz, meta: dict) -> int:
    from human3r_ros.cli.sources import Window, open_file_source
    from human3r_ros.engine.stream import StampedStream, step_streams

    if args.output.suffix.lower() != ".npz":
        raise CliError("several cameras write an .npz output (per-camera and fused arrays)")
    if bag_input and len(args.input) > 1:
        raise CliError("give one bag with several --image-topic, or several non-bag --input files")
    names = camera_names(args, bag_input)
    rig = load_rig(args.extrinsics, names)
    window = Window(args.start, args.duration)
    with ExitStack() as stack:
        if bag_input:
            from human3r_ros.cli.bags import BagSource

            sources = {n: stack.enter_context(BagSource(args.input[0], window, t))
                       for n, t in zip(names, args.image_topic)}
        else:
            sources = {n: stack.enter_context(open_file_source(p, window, args.fps)) for n, p in zip(names, args.input)}
        engine = load_engine(args)
        streams = {n: StampedStream(engine, engine.new_stream()) for n in names}
        fuser = None
        if rig:
            from human3r_ros.fusion import Fuser, Rig

            try:
                fuser = Fuser(Rig(rig))
            except ValueError as exc:
                raise CliError(f"--extrinsics {args.extrinsics}: {exc}") from None
        results = {n: [] for n in names}
        fused = []
        interrupted = False
        try:
            for members in frame_sets({n: iter(s) for n, s in sources.items()}, round(args.sync_slop * NS_PER_S)):
                outcomes = step_streams([(streams[n], f.rgb, f.stamp_ns) for n, f in members.items()])
                done = {}
                for (name, frame), outcome in zip(members.items(), outcomes):
                    if outcome.note:
                        log.warning("%s: %s", frame.where, outcome.note)
                    if outcome.result is not None:
                        results[name].append(outcome.result)
                        done[name] = outcome.result
                    if outcome.new_sequence and fuser is not None and name in rig:
                        fuser.reset_camera(name)
                fusable = {n: r for n, r in done.items() if n in rig}
                if fuser is not None and fusable:
                    fused.append(fuser.fuse(fusable))
        except KeyboardInterrupt:
            interrupted = True
    from human3r_ros.engine.npz_schema import to_npz_dict

    arrays = {f"{n}/{k}": v for n in names if results[n] for k, v in to_npz_dict(results[n]).items()}
    if fuser is not None:
        arrays.update(fused_arrays(fused))
    meta = {**meta, "cameras": names, "extrinsics": rig, "frames": {n: len(r) for n, r in results.items()},
            "fused_sets": len(fused), "interrupted": interrupted}
    arrays["meta_json"] = np.array(json.dumps(meta))
    write_npz(args.output, arrays)
    log.info("wrote %s: %s frames per camera, %d fused frame sets", args.output, meta["frames"], len(fused))
    return 130 if interrupted else 0
