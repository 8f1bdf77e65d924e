"""human3r-process with several cameras: several file inputs, or one bag's several image topics.

One engine (one network) with a stream per camera; frames whose stamps lie within --sync-slop
form a frame set and run as one batched pass; with a rig file (--extrinsics) the people of a
set are fused across cameras (human3r_ros.fusion). The .npz output holds each camera's arrays
under "<camera>/<key>" (the single-camera keys) and the fused people under "fused_<key>". A bag
output (bag inputs only) holds what the node publishes for several cameras (MulticamBag).
"""

from __future__ import annotations

import json
import logging
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from human3r_ros.cli import CliError
from human3r_ros.cli.sinks import BagSink, write_npz

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


class MulticamNpz:
    """The .npz output: every camera's results and the fused frame sets, written on commit."""

    def __init__(self, output: Path, cameras: list[str], fusing: bool):
        self.output, self._fusing = output, fusing
        self.results = {n: [] for n in cameras}
        self.fused_frames = []

    def new_sequence(self, camera: str) -> None:
        pass  # frame_index restarting at 0 and frame_stamp show it

    def frame(self, camera: str, frame, result) -> None:
        self.results[camera].append(result)

    def fused(self, fused, frames: dict, rig, results: dict) -> None:
        self.fused_frames.append(fused)

    def commit(self, meta: dict) -> None:
        from human3r_ros.engine.npz_schema import to_npz_dict

        arrays = {f"{n}/{k}": v for n, r in self.results.items() if r for k, v in to_npz_dict(r).items()}
        if self._fusing:
            arrays.update(fused_arrays(self.fused_frames))
        arrays["meta_json"] = np.array(json.dumps(meta))
        write_npz(self.output, arrays)

    def abort(self) -> None:
        pass  # nothing on disk before commit


class MulticamBag:
    """The bag output (bag inputs only), as the node publishes several cameras: each camera's
    messages under /human3r/<camera>/ with its own TF frames (bag_messages.camera_options), the
    fused people on /human3r/humans with TF from the rig world and the cameras' clouds merged in it
    on /human3r/scene/points (BagMessages.fused). Written as frames come, moved to the output on
    commit."""

    def __init__(self, output: Path, options, sources: dict, copy_input: bool):
        from human3r_ros.cli.bag_messages import BagMessages, camera_options
        from human3r_ros.cli.bags import BagWriter, typestore

        self.writer = BagWriter(output)
        # each camera: the single-camera sink on the shared writer, with the node's per-camera names
        self.cameras = {n: BagSink(self.writer, camera_options(options, n), s.connections[0] if copy_input else None)
                        for n, s in sources.items()}
        self.fusion = BagMessages(typestore(), options)

    def new_sequence(self, camera: str) -> None:
        self.cameras[camera].new_sequence()

    def frame(self, camera: str, frame, result) -> None:
        self.cameras[camera].add(frame, result)

    def fused(self, fused, frames: dict, rig, results: dict) -> None:
        """`frames` / `results`: the fused cameras' input frames and results; stamped with the
        newest, as the node does. `rig`: the fuser's, after it placed the cameras new to it."""
        stamp_ns = max(f.stamp_ns for f in frames.values())
        log_ns = max(f.log_ns for f in frames.values())
        for topic, msg in self.fusion.fused(fused, stamp_ns, rig, results):
            self.writer.write(topic, msg, log_ns)

    def commit(self, meta: dict) -> None:
        self.writer.set_custom_data("human3r", json.dumps(meta))
        self.writer.commit()

    def abort(self) -> None:
        self.writer.abort()


def run_multicam(args, bag_input: bool, load_engine, meta: dict, output_options=None) -> int:
    """`output_options`: bag_messages.OutputOptions of a bag output (unused for an .npz)."""
    from human3r_ros.cli.sources import Window, model_input, open_file_source
    from human3r_ros.engine.stream import StampedStream, step_streams

    to_bag = args.output.suffix.lower() != ".npz"  # process.run's output check allows it for bags only
    if not bag_input and args.image_topic:
        raise CliError("--image-topic names a bag's topics: give a bag as --input")
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
        sink = (MulticamBag(args.output, output_options, sources, args.copy_input) if to_bag
                else MulticamNpz(args.output, names, fuser is not None))
        frames = {n: 0 for n in names}
        fused_sets = 0
        interrupted = False
        try:
            try:
                for members in frame_sets({n: iter(s) for n, s in sources.items()},
                                          round(args.sync_slop * NS_PER_S)):
                    outcomes = step_streams([(streams[n], model_input(engine, f), f.stamp_ns)
                                             for n, f in members.items()])
                    done = {}
                    for (name, frame), outcome in zip(members.items(), outcomes):
                        if outcome.note:
                            log.warning("%s: %s", frame.where, outcome.note)
                        if outcome.new_sequence:  # this result opens a new sequence (a new camera path)
                            sink.new_sequence(name)
                            if fuser is not None and name in rig:
                                fuser.reset_camera(name)
                        if outcome.result is not None:
                            sink.frame(name, frame, outcome.result)
                            frames[name] += 1
                            done[name] = outcome.result
                    fusable = {n: r for n, r in done.items() if n in rig}
                    if fuser is not None and fusable:
                        sink.fused(fuser.fuse(fusable), {n: members[n] for n in fusable}, fuser.rig, fusable)
                        fused_sets += 1
            except KeyboardInterrupt:
                interrupted = True
            sink.commit({**meta, "cameras": names, "extrinsics": rig, "frames": frames, "fused_sets": fused_sets,
                         "interrupted": interrupted})
        except BaseException:
            sink.abort()
            raise
    log.info("wrote %s: %s frames per camera, %d fused frame sets", args.output, frames, fused_sets)
    return 130 if interrupted else 0
