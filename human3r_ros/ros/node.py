"""Lifecycle node `human3r`: camera images in; people, camera pose, TF, scene cloud, path,
markers and diagnostics out.

Threads: each image callback only stores the newest message in its camera's slot (a frame that
is replaced before the worker takes it counts as dropped); the frame pipeline (ros.pipeline)
takes the newest frames and prepares them (decode, undistort, model input), runs the engine and
publishes, each stage on a supervised thread of its own (or all on one, as on the CPU).
The executor therefore stays free for services, lifecycle commands and diagnostics, and the
newest image is always the next one prepared. Every output carries the input image's stamp.

Reliability: one frame's failure (conversion, engine, publishing) stays inside that frame: it
is logged per reason, counted on /diagnostics, and the next frame is processed; a worker thread
that ends anyway is restarted within a second and reported. /diagnostics runs from node start
on a steady clock.

Lifecycle: configure loads the checkpoint (and body model), activate subscribes and starts the
worker, deactivate stops it, cleanup frees the model. Messages are built by the pure functions
in human3r_ros.ros.conversions.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Optional

import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions
from std_srvs.srv import Trigger

from human3r_ros.engine.cpu_memory import keep_freed_memory
from human3r_ros.engine.stream import StampedStream, step_streams
from human3r_ros.ros import conversions as conv
from human3r_ros.ros import parameters as params
from human3r_ros.ros import rclpy_compat
from human3r_ros.ros.camera import Camera, FrameSlots
from human3r_ros.ros.diagnostics import (PROBLEM_HOLD_S, DiagnosticsReporter, camera_figures, memory_figures,
                                         overall_status)
from human3r_ros.ros.engine_loading import checkpoint_file, load_engine
from human3r_ros.ros.fused_outputs import FusedOutputs, fused_outputs_for
from human3r_ros.ros.hri import HriBodyPublishers
from human3r_ros.ros.msg_arrays import camera_frame_names
from human3r_ros.ros.outputs import OutputFrames, StreamOutputs, TfSender, cloud_selection
from human3r_ros.ros.pipeline import FramePipeline, Stage
from human3r_ros.ros.problems import (ERROR, WARN, FrameProblem, ProblemLog, RosLogHandler, conversion_problem,
                                      engine_problem, log_at)
from human3r_ros.ros.rig_tf import open_tf_extrinsics

NODE_NAME = "human3r"
WATCHDOG_PERIOD_S = 0.5  # a dead worker is noticed and restarted within this
SHUTDOWN_WAIT_S = 0.5  # a frame still in flight at shutdown is not waited for longer than this
LIVE_INPUT_PARAMETERS = ("compressed", "reliability")  # applied while active by subscribing anew


@dataclass
class FrameJob:
    """One image on its way: its camera, message, stamp, the decoded image and what the model sees."""

    camera: Camera
    msg: object
    stamp_ns: int
    decoded: object  # image_decoding.DecodedImage
    rgb: object  # H x W x 3 uint8: decoded.rgb, undistorted when rectify is on
    view: object  # engine.preprocess.PreparedView: the model's input built from rgb


@dataclass
class FrameBatch:
    """The frames taken together (the newest of each waiting camera) on their way through the
    pipeline; `outcomes` (one StepOutcome or FrameProblem per job) once the engine ran."""

    taken_at: float  # time.monotonic() when taken from the slots: processing time counts from here
    jobs: list
    outcomes: Optional[list] = None


class Human3RNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            self._setup()
        except BaseException:
            # a node refused at construction must not keep its name's /rosout registration
            self.destroy_node()
            raise

    def _setup(self) -> None:
        self._settings = params.declare(self)
        problem = params.check_all(self._settings)
        if problem:
            raise ValueError(f"invalid parameter: {problem}")
        # Humble has no post-set callback: rclpy_compat refreshes from the node's parameter events there
        rclpy_compat.add_parameter_callbacks(self, self._validate_parameters, self._refresh_settings)

        # the core's Python logging (engine, model) goes to /rosout too
        self._log_handler = RosLogHandler(self.get_logger())
        logging.getLogger("human3r_ros").addHandler(self._log_handler)
        self._problems = ProblemLog(self.get_logger())

        self._engine = None
        self._engine_lock = threading.Lock()  # the engine and the cameras' streams
        self._threads_before: int | None = None  # torch CPU threads before cpu_threads applied
        self._configure_error = ""  # why the last configure failed, until one succeeds
        self._active = False
        self._warned: set[str] = set()
        self._events_lock = threading.Lock()
        self._recent_problem: tuple[float, bytes, str] | None = None  # (monotonic, level, text)
        self._worker_fault: tuple[float, str] | None = None
        self._download_note = ""  # checkpoint download progress while configuring

        # One camera on 'image', or several (parameter cameras): each with its own input and outputs.
        names = list(self._settings.cameras) or [""]
        if self._settings.cameras:
            params.declare_camera_parameters(self, names, self._settings)
        self._slots = FrameSlots()
        self._cameras = {name: Camera(name, f"{name}/image" if name else "image", self._slots, self._on_camera_event)
                         for name in names}
        self._outputs: dict[str, StreamOutputs] = {}
        self._fused: Optional[FusedOutputs] = None  # several cameras with extrinsics
        self._rig_tf = None  # rig_tf.TfExtrinsics while fusion waits for extrinsics from TF
        self._hri: Optional[HriBodyPublishers] = None
        self._tf: Optional[TfSender] = None
        self._pipeline: Optional[FramePipeline] = None  # made on activate (pipeline is read there)
        self._worker_restarts = 0  # over every pipeline this node ran

        # Separate groups: a reset request never waits behind an image callback and vice versa.
        self._image_group = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/reset", self._on_reset, callback_group=MutuallyExclusiveCallbackGroup())
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # independent of use_sim_time
        monitor_group = MutuallyExclusiveCallbackGroup()
        self._destroyed = False
        self._status_name = self.get_fully_qualified_name()  # read once: no node handle needed while reporting
        self._diagnostics = DiagnosticsReporter(self, self._statuses, callback_group=monitor_group)
        self.create_timer(WATCHDOG_PERIOD_S, self._watch_worker, callback_group=monitor_group, clock=steady)
        self._autostart_timer = self.create_timer(0.0, self._autostart) if self._settings.autostart else None

    def destroy_node(self) -> None:
        self._destroyed = True  # monitor callbacks already taken by an executor return at once
        diagnostics = getattr(self, "_diagnostics", None)
        if diagnostics is not None:
            diagnostics.close()
        handler = getattr(self, "_log_handler", None)  # absent when __init__ refused the parameters
        if handler is not None:
            logging.getLogger("human3r_ros").removeHandler(handler)
        super().destroy_node()

    # ------------------------------------------------------------------ parameters

    def _validate_parameters(self, changes) -> SetParametersResult:
        current = asdict(self._settings)
        current.update({p.name: p.value for p in changes})
        for p in changes:
            if p.name in params.ON_CONFIGURE and self._engine is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read when the model loads; cleanup the node, set it, then configure again"))
            if p.name in params.ON_ACTIVATE and self._active:
                return SetParametersResult(successful=False, reason=(
                    f"{p.name} is read on activate; deactivate the node, set it, then activate again"))
            error = params.validation_error(p.name, p.value, current)
            if error:
                return SetParametersResult(successful=False, reason=error)
        return SetParametersResult(successful=True)

    def _refresh_settings(self, changes) -> None:
        self._settings = params.snapshot(self)
        if self._active and any(p.name.split(".")[-1] in LIVE_INPUT_PARAMETERS for p in changes):
            self._subscribe_cameras()  # applied now: a new subscription with the new type and QoS

    # ------------------------------------------------------------------ lifecycle

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        try:
            engine = self._load_engine(s)
        except Exception as exc:  # any load failure leaves the node alive and unconfigured
            self._configure_error = f"configure failed: {exc}"
            self.get_logger().error(self._configure_error)
            self._release_model()  # undoes what loading had already changed (cpu_threads)
            self._diagnostics.publish()  # the reason, at once
            return TransitionCallbackReturn.FAILURE
        with self._engine_lock:
            self._engine = engine
            for camera in self._cameras.values():
                # one network; each camera its own state (the single camera: the engine's own)
                camera.stream = StampedStream(engine, engine.new_stream() if camera.name else None)
        self._configure_error = ""
        mesh = "with SMPL-X body model" if engine.has_body_model else "without body model (no meshes)"
        self.get_logger().info(f"loaded {s.checkpoint} on {engine.device} ({s.precision}), {mesh}")
        if s.compile == "cuda-graphs" and engine.net.graphed_front is None:
            self.get_logger().warning(f"compile 'cuda-graphs' needs CUDA; the network is on {engine.device}: "
                                      "running eager")
        elif s.compile == "cuda-graphs":
            self.get_logger().info("compile 'cuda-graphs': the first frame of each image size captures the "
                                   "encoders as a CUDA graph")
        elif s.compile != "off":
            self.get_logger().info(f"compile '{s.compile}': the first frames of each image size compile "
                                   "the network (seconds on a GPU, a minute or more on a small CPU)")
        self._diagnostics.publish()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._tf = TfSender(self)
        except ImportError:
            self._tf = None
            self._warn_once("tf", "neither tf2_ros nor tf2_msgs is installed: TF output disabled")
        s = self._settings
        self._outputs = {name: StreamOutputs(self, f"~/{name}/" if name else "~/", self._tf)
                         for name in self._cameras}
        self._fused = self._fused_outputs(s)
        self._hri = HriBodyPublishers(self, timeout_s=s.hri_body_timeout) if s.hri else None
        if s.camera_info:
            for camera in self._cameras.values():
                camera.subscribe_camera_info(self, f"{camera.name}/{s.camera_info}" if camera.name else s.camera_info,
                                             self._image_group)
        elif s.rectify:
            self._warn_once("rectify", "rectify is set but camera_info is empty: images go to the model as they come")
        self._slots.clear()
        engine = self._engine
        self._pipeline = self._frame_pipeline(s.pipeline == "on" or (
            s.pipeline == "auto" and engine is not None and engine.device.type == "cuda"))
        self._pipeline.start()
        self._active = True
        self._subscribe_cameras()
        self._diagnostics.publish()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming()
        if self._settings.reset_on_deactivate:
            self._reset_streams()
        self._diagnostics.publish()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release_model()
        self._diagnostics.publish()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().info("shutting down")
        if self._stop_streaming(wait_s=SHUTDOWN_WAIT_S):
            self._release_model()
        # else a frame is still in flight and holds the model: the process exit frees it
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_streaming(wait_s=SHUTDOWN_WAIT_S)
        self._release_model()
        return TransitionCallbackReturn.SUCCESS  # back to unconfigured

    def _load_engine(self, s: params.Settings):
        try:
            checkpoint = checkpoint_file(s, self.get_logger().info, self._download_progress)
        finally:
            with self._events_lock:
                self._download_note = ""
        if s.cpu_threads:
            import torch

            # process-wide: restored when the model is released
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(s.cpu_threads)
        return load_engine(s, checkpoint)

    def _download_progress(self, text: str) -> None:
        self.get_logger().info(text)
        with self._events_lock:
            self._download_note = text
        self._diagnostics.publish()

    def _fused_outputs(self, s: params.Settings) -> Optional[FusedOutputs]:
        """Several cameras: the fuser over the cameras that have extrinsics (None without any);
        with extrinsics from TF, None until the cameras' frames are known (_fuse_from_tf)."""
        self._rig_tf = None
        if not s.cameras:
            return None
        if s.rig_frame:
            self._rig_tf = open_tf_extrinsics(self, s.rig_frame)
            if self._rig_tf is not None:
                self.get_logger().info(f"extrinsics from TF: {s.rig_frame} -> each camera's image frame_id, "
                                       "looked up once every camera has sent an image")
                return None
            self._warn_once("rig_frame", "rig_frame is set, but tf2_ros is not importable here: using the "
                            "extrinsics.<camera> parameters")
        extrinsics = {c: e for c in s.cameras if (e := params.camera_extrinsics(self, c)) is not None}
        return fused_outputs_for(self, s, extrinsics, self._tf, self._warn_once)

    def _fuse_from_tf(self, camera: Camera, frame_id: str) -> None:
        """With rig_frame and tf2_ros: start fusing once TF gives every camera's extrinsics."""
        rig_tf = self._rig_tf
        rig_tf.note_frame(camera.name, frame_id)
        extrinsics, missing = rig_tf.extrinsics(self._settings.cameras)
        if extrinsics is None:
            if not missing.startswith("waiting"):
                self._warn_once("tf_extrinsics", f"fusion waits for extrinsics from TF: {missing}")
            return
        self.get_logger().info("extrinsics from TF: " + "; ".join(
            f"{c} {[round(v, 4) for v in e]}" for c, e in extrinsics.items()))
        self._fused = fused_outputs_for(self, self._settings, extrinsics, self._tf, self._warn_once)

    def _subscribe_cameras(self) -> None:
        s = self._settings
        for camera in self._cameras.values():
            compressed, reliability = params.camera_input(self, camera.name, s)
            camera.subscribe(self, compressed, reliability, self._image_group)
            self.get_logger().info(f"listening on {camera.description()}")

    def _stop_streaming(self, wait_s: Optional[float] = None) -> bool:
        """Stop the input and the worker; False when a frame was still in flight after `wait_s`."""
        self._active = False
        for camera in self._cameras.values():
            camera.unsubscribe(self)
        pipeline, self._pipeline = self._pipeline, None
        stopped = pipeline is None or pipeline.stop(wait_s)
        if not stopped:
            self.get_logger().warning(f"a frame was still in flight after {wait_s} s: not waiting for it")
        self._slots.clear()
        for outputs in self._outputs.values():
            outputs.close()
        self._outputs = {}
        if self._fused is not None:
            self._fused.close()
            self._fused = None
        self._rig_tf = None  # its TransformListener unsubscribes when collected
        if self._hri is not None:
            self._hri.close()
            self._hri = None
        if self._tf is not None:
            self._tf.close(self)
            self._tf = None
        return stopped

    def _release_model(self) -> None:
        with self._engine_lock:
            engine, self._engine = self._engine, None
            for camera in self._cameras.values():
                camera.stream = None
        if engine is not None:
            on_cuda = engine.device.type == "cuda"
            del engine
            gc.collect()
            if on_cuda:
                import torch

                torch.cuda.empty_cache()
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    # ------------------------------------------------------------------ services

    def _on_reset(self, _request, response):
        if self._engine is None:
            response.success, response.message = False, "no model loaded: configure the node first"
            return response
        self._reset_streams()
        self.get_logger().info("reset requested: recurrent state and tracks cleared")
        response.success, response.message = True, "recurrent state and tracks cleared"
        return response

    def _reset_streams(self) -> None:
        # each camera's path, REP-155 ids and rig place follow with its next frame (new_sequence)
        with self._engine_lock:
            for camera in self._cameras.values():
                if camera.stream is not None:
                    camera.stream.reset()

    def _new_sequence(self, camera: Camera) -> None:
        """After a camera's state was reset: its path, its REP-155 ids and its place in the rig."""
        outputs = self._outputs.get(camera.name)
        if outputs is not None:
            outputs.clear_path()
        hri, fused = self._hri, self._fused
        if hri is not None:
            hri.new_sequence(camera.name)
        if fused is not None:
            fused.reset_camera(camera.name)

    # ------------------------------------------------------------------ the frame pipeline

    def _frame_pipeline(self, pipelined: bool) -> FramePipeline:
        order = list(self._cameras)

        def take(timeout_s: float) -> Optional[list]:
            return self._slots.take(order, timeout_s) or None

        return FramePipeline("human3r", take, [Stage("prepare", self._prepare_frames), Stage("engine", self._run_batch),
                                               Stage("publish", self._publish_batch)],
                             pipelined, self._stage_failed)

    def _prepare_frames(self, taken: list) -> Optional[FrameBatch]:
        taken_at = time.monotonic()
        jobs = [job for name, msg in taken if (job := self._prepare(self._cameras[name], msg)) is not None]
        return FrameBatch(taken_at, jobs) if jobs else None

    def _run_batch(self, batch: FrameBatch) -> FrameBatch:
        batch.outcomes = self._run_engine(batch.jobs)
        return batch

    def _publish_batch(self, batch: FrameBatch) -> None:
        """Each frame's outputs (whatever fails stays inside its own frame), then the fused people."""
        for job, outcome in zip(batch.jobs, batch.outcomes):
            if isinstance(outcome, FrameProblem):
                self._frame_problem(job.camera, job.stamp_ns, outcome)
            else:
                self._publish_frame(job, outcome, batch.taken_at)
        fused = self._fused
        if fused is not None:
            try:
                fused.publish(self._settings)
            except Exception as exc:
                self._note(ERROR, f"fusion failed: {type(exc).__name__}: {exc}")

    def _stage_failed(self, stage: str, exc: Exception) -> None:
        """A failure outside any one frame's handling (the stages catch those): its frames are lost."""
        self._note(ERROR, f"{stage} stage failed: {type(exc).__name__}: {exc}")

    def _prepare(self, camera: Camera, msg) -> Optional[FrameJob]:
        """Decode (and undistort) one image and build the model's input from it; None when it
        cannot go to the model."""
        s = self._settings
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        try:
            decoded = conv.decode_image(msg, s.image_size)
        except conv.ImageConversionError as exc:
            return self._frame_problem(camera, stamp_ns, conversion_problem(exc))
        except Exception as exc:  # a decoder bug must not end the stream either
            return self._frame_problem(camera, stamp_ns, FrameProblem("invalid_image", f"{type(exc).__name__}: {exc}"))
        rgb = decoded.rgb
        if s.rectify and s.camera_info:
            calibration = camera.calibration
            if calibration is None:
                self._warn_once(f"no_info:{camera.name}", f"rectify: no usable CameraInfo yet for {camera.topic_name} "
                                f"{camera.calibration_problem}; frames go to the model undistorted until one comes")
            else:
                try:
                    rgb = camera.rectifier.rectify(rgb, calibration)
                except Exception as exc:
                    return self._frame_problem(camera, stamp_ns, FrameProblem("invalid_image", f"rectify: {exc}"))
        if stamp_ns == 0:
            self._warn_once("zero_stamp", "images carry no stamp (0): outputs will too, and the "
                            "time-going-backwards check is off")
        stream = camera.stream
        if stream is None:
            return self._frame_problem(camera, stamp_ns, FrameProblem("engine_error",
                                                                      "the model was released meanwhile"))
        try:
            view = stream.engine.prepare(rgb)
        except ValueError as exc:  # the model's own input rules (size, layout)
            return self._frame_problem(camera, stamp_ns, FrameProblem("invalid_image", str(exc)))
        return FrameJob(camera, msg, stamp_ns, decoded, rgb, view)

    def _run_engine(self, jobs: list[FrameJob]) -> list:
        """One StepOutcome or FrameProblem per job. Several cameras run as one batch; if the
        batch fails, each frame runs alone so that only the failing one is lost."""
        try:
            with self._engine_lock:
                streams = [job.camera.stream for job in jobs]
                if any(stream is None for stream in streams):
                    return [FrameProblem("engine_error", "the model was released meanwhile")] * len(jobs)
                engine, s = streams[0].engine, self._settings
                engine.max_people = s.max_people  # output settings: may change live
                engine.cloud_only = cloud_selection(s)
                outcomes = step_streams([(stream, job.view, job.stamp_ns) for stream, job in zip(streams, jobs)])
            front = engine.net.graphed_front
            if front is not None and front.failure and "cuda_graphs" not in self._warned:
                self._warned.add("cuda_graphs")
                self._note(WARN, f"compile 'cuda-graphs': the capture failed, the encoders run eager: {front.failure}")
            return outcomes
        except Exception as exc:
            if len(jobs) > 1:
                return [self._run_engine([job])[0] for job in jobs]
            problem = engine_problem(exc)
            if problem.reason == "out_of_memory":
                self._free_device_cache()
            return [problem]

    def _publish_frame(self, job: FrameJob, outcome, started: float) -> None:
        camera = job.camera
        if outcome.time_reset:  # a looping bag or a restarted source
            camera.counters.on_time_reset()
            self._note(WARN, f"camera {camera.name}: {outcome.note}" if camera.name else outcome.note)
        if outcome.new_sequence:  # here, in frame order: what follows belongs to the new sequence
            self._new_sequence(camera)
        if outcome.result is None:
            return self._frame_problem(camera, job.stamp_ns, FrameProblem(outcome.skip_reason, outcome.note))
        s, result = self._settings, outcome.result
        try:
            people = conv.publishable_people(result)
            hri, body_names = self._hri, None
            if hri is not None:
                body_names = [hri.body_id(p.track_id, camera.name) for p in people]
                hri.publish(result, people, job.msg.header, job.rgb.shape[:2], image=job.rgb, camera=camera.name)
            outputs = self._outputs.get(camera.name)
            if outputs is not None:
                outputs.publish(s, self._frames(camera), result, job.msg.header, job.decoded,
                                camera.stream.engine.faces, self._warn_once, people, body_names)
        except Exception as exc:
            return self._frame_problem(camera, job.stamp_ns, FrameProblem(
                "publish_error", f"publishing failed: {type(exc).__name__}: {exc}"))
        camera.model_focal_px = result.focal
        fused = self._fused
        if fused is not None:
            fused.add(camera.name, job.stamp_ns, result)
        elif self._rig_tf is not None:
            self._fuse_from_tf(camera, job.msg.header.frame_id)
        age_s = (self.get_clock().now().nanoseconds - job.stamp_ns) * 1e-9
        camera.counters.on_processed(time.monotonic() - started, age_s)
        return None

    def _frames(self, camera: Camera) -> OutputFrames:
        """One camera's TF frames: the node's own, or per camera named so that none collide."""
        s = self._settings
        if not camera.name:
            return OutputFrames(s.world_frame, s.camera_frame, s.body_frame_prefix)
        return OutputFrames(*camera_frame_names(s.world_frame, s.camera_frame, s.body_frame_prefix, camera.name))

    def _free_device_cache(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ reporting

    def _frame_problem(self, camera: Camera, stamp_ns: int, problem: FrameProblem) -> None:
        where = f"camera {camera.name}: " if camera.name else ""
        text = f"{where}frame {stamp_ns * 1e-9:.3f} skipped: {problem.text}"
        camera.counters.on_skipped(problem.reason, text)
        self._problems.report(FrameProblem(problem.reason, text))
        self._note(problem.level, text, log=False)

    def _note(self, level: bytes, text: str, log: bool = True) -> None:
        """Something /diagnostics shows for a while (and at once when it changes the level)."""
        if log:
            log_at(self.get_logger(), level, text)
        with self._events_lock:
            recent = self._recent_problem
            if recent is None or level >= recent[1] or time.monotonic() - recent[0] > PROBLEM_HOLD_S:
                self._recent_problem = (time.monotonic(), level, text)
        self._diagnostics.level_may_have_changed()

    def _on_camera_event(self) -> None:
        for camera in self._cameras.values():
            if camera.qos_problem:
                self._warn_once(f"qos:{camera.name}", camera.qos_problem, level=ERROR)
        self._diagnostics.level_may_have_changed()

    def _watch_worker(self) -> None:
        if self._destroyed:
            return
        hri = self._hri
        if hri is not None:
            hri.expire()  # per-body topics of bodies gone also while no frames come
        pipeline = self._pipeline
        for thread, reason in (pipeline.check() if pipeline is not None and self._active else []):
            self._worker_restarts += 1
            text = f"the worker thread ended ({thread}: {reason}); restarted it"
            self.get_logger().error(text)
            with self._events_lock:
                self._worker_fault = (time.monotonic(), text)
            self._diagnostics.level_may_have_changed()

    def _warn_once(self, key: str, text: str, level: bytes = WARN) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log_at(self.get_logger(), level, text)

    def _statuses(self) -> list[DiagnosticStatus]:
        """The node's status now, and one per camera when it serves several."""
        engine = self._engine
        device = str(engine.device) if engine is not None else self._settings.device
        cameras = list(self._cameras.values())
        with self._events_lock:
            recent, fault = self._recent_problem, self._worker_fault
        level, message = overall_status(
            download=self._download_note, configure_error=self._configure_error, configured=engine is not None,
            active=self._active, fault=fault, recent=recent, cameras=cameras)
        values = {"state": "active" if self._active else "configured" if engine is not None else "unconfigured"}
        if len(cameras) == 1:
            values.update(camera_figures(cameras[0], self._settings))
        values["worker_restarts"] = self._worker_restarts
        fused = self._fused
        if fused is not None:
            values.update(fused.figures())
        values.update(memory_figures(device))
        name = self._status_name
        statuses = [conv.diagnostic_status(name, device, level, message, values)]
        if len(cameras) > 1:
            statuses += [conv.diagnostic_status(f"{name}: {c.name}", device, DiagnosticStatus.OK,
                                                c.topic_name, camera_figures(c, self._settings)) for c in cameras]
        return statuses


def main(args=None) -> int:
    # before rclpy starts its threads, so that every thread shares the one tuned heap
    keep_freed_memory()
    # SIGINT/SIGTERM end the spin loop below, while the context is still valid, so that the
    # lifecycle shutdown transition runs (and is published) before the context goes
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node = Human3RNode()
    except Exception as exc:  # bad parameter overrides: say why and exit non-zero
        print(f"[{NODE_NAME}] {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        # a frame in flight is not waited for past SHUTDOWN_WAIT_S (the worker is a daemon thread)
        node.trigger_shutdown()
        executor.shutdown(timeout_sec=0.5)
        node.destroy_node()
        rclpy.try_shutdown()
    # Every ROS resource is released above. Leave now: the interpreter's own teardown (torch's
    # thread pools) takes seconds, and aborts while a daemon thread still computes a frame.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
