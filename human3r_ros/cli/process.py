"""``human3r-process``: run Human3R offline over a video, an image folder, an ``.npz`` array or a
ROS 2 bag, and write the results as an ``.npz`` (fixture key names) or as a bag with the topics
the live node publishes (stamped with the input's stamps, logged at the input's log times).

Outputs appear only when complete: they are written next to the final path and renamed at
the end; a failed run leaves nothing. Ctrl-C stops early and keeps what was done.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Iterable, Optional

from human3r_ros import __version__
from human3r_ros.cli import CliError
from human3r_ros.cli.sinks import BagSink, NpzSink
from human3r_ros.cli.sources import Frame, Window, is_bag, model_input, open_file_source
from human3r_ros.engine.one_euro import OneEuroSettings
from human3r_ros.engine.stream import StampedStream
from human3r_ros.model.compiled import COMPILE_MODES

PROG = "human3r-process"
log = logging.getLogger(PROG)


# --------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Run Human3R (4D humans + camera + scene) offline on a video, an image folder, an .npz "
                    "array or a ROS 2 bag.",
        epilog="Examples:\n"
               f"  {PROG} --checkpoint human3r_672S.pth --body-model models --input clip.mp4 --output clip.npz\n"
               f"  {PROG} --checkpoint human3r_672S.pth --input run.mcap --image-topic /camera/image_raw "
               "--output run_human3r.mcap",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = p.add_argument_group("input / output")
    io.add_argument("--input", required=True, type=Path, metavar="PATH", action="append",
                    help="video file, folder of png/jpg/jpeg/bmp images (natural name order), .npz with "
                         "'frames_uint8' (N x H x W x 3 RGB), or ROS 2 bag (.mcap file, or bag folder); "
                         "several non-bag --input: several cameras, named by their file stems")
    io.add_argument("--output", required=True, type=Path, metavar="PATH",
                    help="results: out.npz; for bag inputs also out.mcap or a sqlite3 bag folder (several "
                         "cameras: topics under /human3r/<camera>/, fused people on /human3r/humans)")
    io.add_argument("--overwrite", action="store_true", help="replace an existing output")
    io.add_argument("--image-topic", metavar="TOPIC", action="append", default=[],
                    help="bag inputs: Image or CompressedImage topic (default: the only one); several: "
                         "several cameras, named by their topics")
    io.add_argument("--extrinsics", type=Path, metavar="YAML",
                    help="several cameras: camera name -> [x, y, z, qx, qy, qz, qw] of its optical frame in the rig "
                         "frame; people are then fused across cameras")
    io.add_argument("--sync-slop", type=float, default=0.05, metavar="SEC",
                    help="several cameras: frames within SEC seconds form one frame set (default 0.05)")
    io.add_argument("--start", type=float, default=0.0, metavar="SEC",
                    help="skip the first SEC seconds (bags: from the first message; others: frame index / fps)")
    io.add_argument("--duration", type=float, metavar="SEC", help="process at most SEC seconds (default: to the end)")
    io.add_argument("--fps", type=float,
                    help="frame rate giving frame times of non-bag inputs (default: the video's, else 30)")
    io.add_argument("--no-progress", action="store_true", help="no progress bar")

    model = p.add_argument_group("model")
    model.add_argument("--checkpoint", required=True, metavar="PATH|NAME",
                       help="Human3R checkpoint (.pth or .safetensors), or released weights by name: human3r_672S, "
                            "human3r_672B, human3r_672L, human3r_896L (downloaded from Hugging Face on first use, "
                            "verified and cached; CC BY-NC-SA 4.0, non-commercial)")
    model.add_argument("--checkpoint-revision", metavar="COMMIT",
                       help="with a name: revision of huggingface.co/faneggg/human3r to use instead of the pinned one")
    model.add_argument("--body-model", type=Path, metavar="DIR",
                       help="folder with smplx/SMPLX_NEUTRAL.npz (without it: no meshes or joints)")
    model.add_argument("--size", type=int, default=512, metavar="PX",
                       help="long side of the model input in pixels (default 512)")
    model.add_argument("--ttt3r", action=argparse.BooleanOptionalAction, default=True,
                       help="TTT3R confidence-gated state update (default on)")
    model.add_argument("--reset-interval", type=int, default=100, metavar="N",
                       help="reset the recurrent state every N frames, world frame kept (default 100; 0 = never)")
    model.add_argument("--device", default="cpu", metavar="DEV", help="torch device: cpu, cuda, cuda:N (default cpu)")
    model.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                       help="network precision (default fp32; fp16/bf16 pay off on GPUs)")
    model.add_argument("--compile", choices=COMPILE_MODES, default="off",
                       help="torch.compile the network's blocks (default off; the first frames compile), or "
                            "cuda-graphs: replay its encoders as CUDA graphs (CUDA only)")
    model.add_argument("--detection-threshold", type=float, default=0.3, metavar="P",
                       help="minimum person detection score (default 0.3)")
    model.add_argument("--max-people", type=int, default=0, metavar="N",
                       help="keep the N best-scoring people per frame (default 0 = all)")

    smooth = p.add_argument_group("smoothing (per track, One-Euro filter; positions in m, rotations in rad)")
    smooth.add_argument("--smoothing", choices=("off", "one_euro"), default="off",
                        help="smooth each person's position, orientation and joint rotations over time "
                             "(default off)")
    smooth.add_argument("--smoothing-min-cutoff", type=float, default=OneEuroSettings.min_cutoff, metavar="HZ",
                        help=f"cutoff at rest, Hz (default {OneEuroSettings.min_cutoff}; lower: smoother, more lag)")
    smooth.add_argument("--smoothing-beta", type=float, default=OneEuroSettings.beta, metavar="B",
                        help=f"cutoff increase per m/s or rad/s of speed (default {OneEuroSettings.beta}; "
                             "higher: less lag in fast motion)")
    smooth.add_argument("--smoothing-d-cutoff", type=float, default=OneEuroSettings.d_cutoff, metavar="HZ",
                        help=f"cutoff of the speed estimate, Hz (default {OneEuroSettings.d_cutoff})")

    bag = p.add_argument_group("bag output")
    bag.add_argument("--world-frame", default="human3r_world", metavar="FRAME",
                     help="TF frame of the reconstruction (default human3r_world)")
    bag.add_argument("--camera-frame", default="human3r_camera", metavar="FRAME",
                     help="TF frame of the estimated camera (default human3r_camera)")
    bag.add_argument("--body-frame-prefix", default="body_", metavar="PREFIX",
                     help="people's TF frames: PREFIX<id> (default body_)")
    bag.add_argument("--cloud-decimation", type=int, default=2, metavar="N",
                     help="scene cloud: every N-th pixel in both directions (default 2)")
    bag.add_argument("--cloud-confidence", type=float, default=1.5, metavar="C",
                     help="scene cloud: minimum pointmap confidence (default 1.5)")
    bag.add_argument("--cloud-humans", action="store_true", help="keep human pixels in the scene cloud")
    bag.add_argument("--no-cloud", action="store_true", help="no /human3r/scene/points")
    bag.add_argument("--vertices", action="store_true", help="fill Human.vertices (10475 x 3 floats per person)")
    bag.add_argument("--path-length", type=int, default=1000, metavar="N",
                     help="camera poses kept in /human3r/camera_path (default 1000; 0 = all)")
    bag.add_argument("--copy-input", action="store_true", help="copy the processed image messages to the output")
    return p


def _check_arguments(args) -> None:
    if args.start < 0 or (args.duration is not None and args.duration <= 0):
        raise CliError("--start must be >= 0 and --duration > 0")
    if args.fps is not None and args.fps <= 0:
        raise CliError("--fps must be > 0")
    if args.reset_interval < 0:
        raise CliError("--reset-interval must be >= 0 (0 = never)")
    if args.cloud_decimation < 1 or args.path_length < 0 or args.max_people < 0:
        raise CliError("--cloud-decimation must be >= 1, --path-length and --max-people >= 0")
    if args.world_frame == args.camera_frame:
        raise CliError("--world-frame and --camera-frame must differ")
    if args.sync_slop < 0:
        raise CliError("--sync-slop must be >= 0")
    if args.extrinsics is not None and len(args.input) < 2 and len(args.image_topic) < 2:
        raise CliError("--extrinsics places several cameras: give several --input files or --image-topic")
    _smoothing_settings(args)


def _smoothing_settings(args) -> OneEuroSettings | None:
    if args.smoothing == "off":
        return None
    try:
        return OneEuroSettings(args.smoothing_min_cutoff, args.smoothing_beta, args.smoothing_d_cutoff)
    except ValueError as exc:
        raise CliError(f"--smoothing {args.smoothing}: {exc}") from None


def _check_model_files(args) -> None:
    from human3r_ros.engine.body_model import smplx_model_file

    from human3r_ros.model.hub import is_weights_name

    if not is_weights_name(args.checkpoint):
        if args.checkpoint_revision:
            raise CliError("--checkpoint-revision applies to weights given by name (e.g. --checkpoint human3r_672S)")
        if not Path(args.checkpoint).is_file():
            raise CliError(f"checkpoint not found: {args.checkpoint} (a file, or a name such as human3r_672S)")
    if args.body_model is not None and not smplx_model_file(args.body_model).is_file():
        raise CliError(f"SMPL-X model not found: expected {smplx_model_file(args.body_model)} "
                       "(--body-model is the folder containing smplx/SMPLX_NEUTRAL.npz)")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CliError(f"--device {args.device}: no CUDA device available to this torch build")


def _check_output(output: Path, source: Path, bag_input: bool, overwrite: bool) -> None:
    suffix = output.suffix.lower()
    if not bag_input and suffix != ".npz":
        raise CliError(f"--output {output}: video, image-folder and .npz inputs give an .npz output")
    if suffix == ".db3":
        raise CliError(f"--output {output}: sqlite3 bags are folders; name the folder (or use .mcap)")
    if not output.parent.is_dir():
        raise CliError(f"--output {output}: folder {output.parent} does not exist")
    if output.resolve() == source.resolve():
        raise CliError("--output must differ from --input")
    if output.exists() or output.is_symlink():
        if not overwrite:
            raise CliError(f"--output {output} exists; add --overwrite to replace it")
        if output.is_dir() and not (output / "metadata.yaml").is_file():
            raise CliError(f"--output {output} is a folder but not a bag; not replacing it")
        if output.is_dir() and suffix in (".npz", ".mcap"):
            raise CliError(f"--output {output} is a folder; not replacing it with a file")


# --------------------------------------------------------------------------- outputs

def _output_options(args):
    from human3r_ros.cli.bag_messages import OutputOptions

    return OutputOptions(
        world_frame=args.world_frame, camera_frame=args.camera_frame, body_frame_prefix=args.body_frame_prefix,
        include_vertices=args.vertices, cloud=not args.no_cloud, cloud_decimation=args.cloud_decimation,
        cloud_confidence=args.cloud_confidence, cloud_remove_humans=not args.cloud_humans,
        path_max_length=args.path_length)


def _make_sink(args, source):
    if args.output.suffix.lower() == ".npz":
        return NpzSink(args.output)
    from human3r_ros.cli.bags import BagWriter

    return BagSink(BagWriter(args.output), _output_options(args), source.connections[0] if args.copy_input else None)


# --------------------------------------------------------------------------- processing

def _bag_cloud_selection(args):
    """A bag holds the clouds, not the dense maps: the engine selects them where the network runs,
    as the node's does (None for an .npz, which keeps the dense maps)."""
    options = _output_options(args)
    return options.cloud_selection() if args.output.suffix.lower() != ".npz" and options.cloud else None


def _load_engine(args):
    from human3r_ros.engine import Human3REngine

    try:
        return Human3REngine.from_checkpoint(
            args.checkpoint, body_model_dir=args.body_model, device=args.device, precision=args.precision,
            checkpoint_revision=args.checkpoint_revision,
            download_progress=(lambda done, total: None) if args.no_progress else None,  # None: huggingface_hub's bar
            ttt3r=args.ttt3r, reset_interval=args.reset_interval, size=args.size,
            det_threshold=args.detection_threshold, max_people=args.max_people, compile_mode=args.compile,
            smoothing=_smoothing_settings(args), cloud_only=_bag_cloud_selection(args))
    except (ValueError, RuntimeError, OSError) as exc:  # CheckpointError, BodyModelError, device errors
        raise CliError(f"cannot load the model: {exc}") from None


class StreamDriver:
    """Feeds frames to the engine, with the node's time rules (engine.stream), and results to
    the sink; a new sequence after time went backwards starts a new path in the sink."""

    def __init__(self, engine, sink):
        self.stream = StampedStream(engine)
        self.sink = sink

    def feed(self, frame: Frame) -> None:
        outcome = self.stream.step(model_input(self.stream.engine, frame), frame.stamp_ns)
        if outcome.note:
            log.warning("%s: %s", frame.where, outcome.note)
        if outcome.new_sequence:  # time went backwards or the state was reset: a new path
            self.sink.new_sequence()
        if outcome.result is not None:
            self.sink.add(frame, outcome.result)


def run_stream(engine, frames: Iterable[Frame], sink, progress=None) -> None:
    driver = StreamDriver(engine, sink)
    for frame in frames:
        driver.feed(frame)
        if progress is not None:
            progress.update(1)  # after the sink: a frame counted is a frame written


def _open_source(args, bag_input: bool, window: Window):
    if bag_input:
        from human3r_ros.cli.bags import BagSource

        return BagSource(args.input, window, args.image_topic)
    return open_file_source(args.input, window, args.fps)


def _first_frame(frames, source, args) -> Frame:
    """The first frame, checked before the model loads so bad inputs fail in a second."""
    from human3r_ros.engine.preprocess import validate_image

    first = next(frames, None)
    if first is None:
        raise CliError(f"{args.input}: no frames {source.window.describe()}")
    try:
        validate_image(first.rgb, args.size)
    except (ValueError, TypeError) as exc:
        raise CliError(f"{first.where}: {exc}") from None
    return first


def _meta_base(args) -> dict:
    """What a run's metadata says of the tool and the model, for one camera or several."""
    return {
        "tool": PROG, "version": __version__, "checkpoint": str(args.checkpoint),
        "body_model": None if args.body_model is None else str(args.body_model), "size": args.size,
        "ttt3r": args.ttt3r, "reset_interval": args.reset_interval, "precision": args.precision,
        "compile": args.compile, "detection_threshold": args.detection_threshold, "max_people": args.max_people,
        "smoothing": args.smoothing,
        "smoothing_settings": None if args.smoothing == "off" else dataclasses.asdict(_smoothing_settings(args)),
        "start": args.start, "duration": args.duration,
    }


def _meta(args, source, count: int, interrupted: bool) -> dict:
    """One camera's run: the shared metadata and its input."""
    return {**_meta_base(args), "input": str(args.input), "fps": getattr(source, "fps", None),
            "image_topic": getattr(source, "topic", None), "frames": count, "interrupted": interrupted}


def run(args) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    _check_arguments(args)
    for path in args.input:
        if not path.exists():
            raise CliError(f"--input {path} does not exist")
    bag_input = is_bag(args.input[0])
    for path in args.input:
        _check_output(args.output, path, bag_input, args.overwrite)
    _check_model_files(args)
    if len(args.input) > 1 or len(args.image_topic) > 1:
        from human3r_ros.cli.multicam import run_multicam

        return run_multicam(args, bag_input, _load_engine, _meta_base(args), _output_options(args))
    args.input = args.input[0]
    args.image_topic = args.image_topic[0] if args.image_topic else None
    with _open_source(args, bag_input, Window(args.start, args.duration)) as source:
        frames = iter(source)
        first = _first_frame(frames, source, args)
        engine = _load_engine(args)
        sink = _make_sink(args, source)
        interrupted = False
        try:
            with logging_redirect_tqdm(), tqdm(total=source.total, unit="frame", file=sys.stderr,
                                               disable=args.no_progress, mininterval=0.5) as bar:
                try:
                    run_stream(engine, itertools.chain([first], frames), sink, bar)
                except KeyboardInterrupt:
                    interrupted = True
                bar.total = bar.n  # the frame count of videos and bag windows is an estimate
            sink.commit(_meta(args, source, sink.count, interrupted))
        except BaseException:
            sink.abort()
            raise
    if interrupted:
        log.warning("interrupted: wrote the %d frames done to %s", sink.count, args.output)
        return 130
    log.info("wrote %d frames to %s", sink.count, args.output)
    return 0


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"{PROG}: {level}{record.getMessage()}"


def _interrupt_on_sigterm():
    """SIGTERM (a service manager, `timeout`, `kill`) stops the run like Ctrl-C: the frames done are
    written whole, never a half-written file. Returns the handler to restore (None: unchanged)."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, interrupt)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    previous_sigterm = _interrupt_on_sigterm()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        return run(args)
    except CliError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:  # before any frame was done (afterwards run() keeps the output)
        log.warning("interrupted")
        return 130
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)


if __name__ == "__main__":
    sys.exit(main())
