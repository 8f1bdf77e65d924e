"""Released weights by name: the real huggingface_hub client against a local hub endpoint.

The endpoint (http.server on 127.0.0.1) answers the two requests huggingface_hub makes for a
file: HEAD and GET on /<repo>/resolve/<revision>/<file>, with the hub's headers (X-Repo-Commit,
ETag / X-Linked-Etag = the LFS SHA-256, X-Linked-Size) and Range support. It serves a tiny
checkpoint written in the official container format. Every resolution runs in a fresh Python
process with its own HF_HOME and HF_ENDPOINT, as a user's would (huggingface_hub reads its
environment at import).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from human3r_ros.model.checkpoint import read_checkpoint
from human3r_ros.model.hub import (
    PINNED_REVISION,
    progress_logger,
    RELEASED_WEIGHTS,
    HubFile,
    WeightsError,
    resolve_checkpoint,
    verify_file,
)
from human3r_ros.tools.demo_checkpoint import DEMO_CONSTRUCTION, write_official_container

REPO_ROOT = Path(__file__).resolve().parents[1]
HUB_MODULE = REPO_ROOT / "human3r_ros" / "model" / "hub.py"
REPO_ID = "tester/human3r-tiny"
FILENAME = "human3r_tiny.pth"
REVISION = "0123456789abcdef0123456789abcdef01234567"
RUN_TIMEOUT_S = 120  # a hang fails the test; normal runs take seconds

# The child loads hub.py on its own (no torch import: seconds saved per run) unless it loads the network.
RESOLVE = """
import importlib.util, json, logging, sys
logging.basicConfig(level=logging.INFO, format="LOG %(message)s", stream=sys.stdout)
spec, revision, load = json.loads(sys.argv[1])
if load:
    from human3r_ros.model.hub import HubFile, WeightsError, resolve_checkpoint
else:
    module_spec = importlib.util.spec_from_file_location("hub", sys.argv[2])
    hub = sys.modules["hub"] = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(hub)
    HubFile, WeightsError, resolve_checkpoint = hub.HubFile, hub.WeightsError, hub.resolve_checkpoint
progress = lambda done, total: print(f"PROGRESS {done} {total}", flush=True)
try:
    if load:
        from human3r_ros.engine import Human3REngine
        engine = Human3REngine.from_checkpoint(HubFile(**spec), checkpoint_revision=revision,
                                               download_progress=progress)
        print("LOADED", sum(p.numel() for p in engine.net.parameters()))
    else:
        print("RESOLVED", resolve_checkpoint(HubFile(**spec), revision, progress=progress))
except WeightsError as exc:
    print("ERROR", exc)
    sys.exit(3)
"""


# --------------------------------------------------------------------------- the local hub

@dataclass
class Request:
    method: str
    path: str
    range: str | None


@dataclass
class LocalHub:
    """Serves ``content`` at any revision of REPO_ID/FILENAME, announcing ``announced`` metadata."""

    content: bytes
    repo_id: str = REPO_ID
    filename: str = FILENAME
    revisions: tuple = ()  # the commits the repository has (empty: any)
    announced: bytes | None = None  # the file whose SHA-256 and size the headers announce (default: content)
    drop_first_get: bool = False  # close the connection half-way through the first GET
    requests: list = field(default_factory=list)

    def start(self) -> str:
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                hub.requests.append(Request(self.command, self.path, self.headers.get("Range")))
                m = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self.path)
                missing = ("RepoNotFound" if not m or m["repo"] != hub.repo_id
                           else "RevisionNotFound" if hub.revisions and m["rev"] not in hub.revisions
                           else "EntryNotFound" if m["file"] != hub.filename else None)
                if missing:  # as the hub answers: 404 and the reason in X-Error-Code
                    self.send_response(404)
                    self.send_header("X-Error-Code", missing)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                announced = hub.announced if hub.announced is not None else hub.content
                data, start = hub.content, 0
                ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if body and ranged:
                    start = int(ranged[1])
                self.send_response(206 if start else 200)
                sha = hashlib.sha256(announced).hexdigest()
                commit = m["rev"] if re.fullmatch(r"[0-9a-f]{40}", m["rev"]) else REVISION
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(announced)))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                if hub.drop_first_get and sum(r.method == "GET" for r in hub.requests) == 1:
                    self.wfile.write(data[: len(data) * 3 // 4])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops mid-file
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def gets(self) -> list:
        return [r for r in self.requests if r.method == "GET"]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.fixture(scope="module")
def tiny_bytes(reference_dir, tmp_path_factory) -> bytes:
    """A tiny checkpoint written here in the official container format (the plain fixture's weights)."""
    contents = read_checkpoint(reference_dir / "tiny_plain_checkpoint.pth")
    path = write_official_container(tmp_path_factory.mktemp("ckpt") / FILENAME, contents.construction,
                                    contents.state_dict, extra_args={"tiny_overrides": contents.overrides})
    return path.read_bytes()


@pytest.fixture(scope="module")
def large_bytes(tmp_path_factory) -> bytes:
    """An official-container file larger than huggingface_hub's 10 MiB read chunk, so that a
    connection dropped after the first chunk leaves bytes on disk to resume from."""
    weights = {"w": torch.arange(6_000_000, dtype=torch.float32)}
    path = write_official_container(tmp_path_factory.mktemp("large") / FILENAME, DEMO_CONSTRUCTION, weights)
    return path.read_bytes()


@pytest.fixture
def hub_server(tiny_bytes):
    servers = []

    def start(**kwargs) -> tuple[LocalHub, str]:
        server = LocalHub(kwargs.pop("content", tiny_bytes), **kwargs)
        servers.append(server)
        return server, server.start()

    yield start
    for server in servers:
        if server._thread.is_alive():
            server.stop()


def entry_for(content: bytes, **changes) -> dict:
    spec = dict(filename=FILENAME, repo_id=REPO_ID, revision=REVISION, size=len(content),
                sha256=hashlib.sha256(content).hexdigest())
    spec.update(changes)
    return spec


def hf_env(hf_home: Path, endpoint: str, offline: bool = False) -> dict:
    """The environment of a user whose Hugging Face home is ``hf_home`` and hub is ``endpoint``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(hf_home), HF_ENDPOINT=endpoint, NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(REPO_ROOT))
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_resolve(hf_home: Path, endpoint: str, spec: dict, *, revision=None, load=False, offline=False, **extra_env):
    env = hf_env(hf_home, endpoint, offline) | extra_env
    args = [sys.executable, "-c", RESOLVE, json.dumps([spec, revision, load]), str(HUB_MODULE)]
    return subprocess.run(args, env=env,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def resolved_path(run) -> Path:
    assert run.returncode == 0, f"resolve failed:\n{run.stdout}\n{run.stderr}"
    return Path(re.search(r"^RESOLVED (.+)$", run.stdout, re.M)[1])


def error_of(run) -> str:
    assert run.returncode == 3, f"expected a WeightsError, got rc {run.returncode}:\n{run.stdout}\n{run.stderr}"
    return run.stdout[run.stdout.index("ERROR ") + 6:]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- tests

def test_first_use_downloads_verifies_and_loads(tmp_path, hub_server, tiny_bytes):
    server, url = hub_server()
    run = run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes), load=True)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    assert int(re.search(r"^LOADED (\d+)$", run.stdout, re.M)[1]) > 0  # the engine holds the downloaded network
    # stored where huggingface_hub keeps it: HF_HOME/hub, blob named by its SHA-256
    blob = tmp_path / "hf" / "hub" / "models--tester--human3r-tiny" / "blobs" / hashlib.sha256(tiny_bytes).hexdigest()
    assert blob.read_bytes() == tiny_bytes
    assert [r.path for r in server.gets()] == [f"/{REPO_ID}/resolve/{REVISION}/{FILENAME}"]
    assert "CC BY-NC-SA 4.0" in run.stdout and "non-commercial" in run.stdout  # the licence, where it downloads
    assert f"PROGRESS {len(tiny_bytes)} {len(tiny_bytes)}" in run.stdout  # progress reached the callback


def test_second_use_needs_no_endpoint(tmp_path, hub_server, tiny_bytes):
    server, url = hub_server()
    first = resolved_path(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes)))
    server.stop()
    for offline in (False, True):
        run = run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes), offline=offline)
        assert resolved_path(run) == first
        assert "downloading" not in run.stdout and "PROGRESS" not in run.stdout  # silent: nothing fetched
    assert Path(first).read_bytes() == tiny_bytes
    sha = hashlib.sha256(tiny_bytes).hexdigest()
    assert json.loads((tmp_path / "hf" / "human3r_ros" / "verified" / sha).read_text())["size"] == len(tiny_bytes)

    with open(Path(first).resolve(), "r+b") as f:  # the cached file changes after it was verified
        f.seek(100)
        f.write(bytes([tiny_bytes[100] ^ 1]))
    message = error_of(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes)))
    assert "does not match" in message and "Nothing was deleted" in message


def test_interrupted_download_resumes_with_a_range_request(tmp_path, hub_server, large_bytes):
    server, url = hub_server(content=large_bytes, drop_first_get=True)
    run = run_resolve(tmp_path / "hf", url, entry_for(large_bytes))
    path = resolved_path(run)
    assert path.read_bytes() == large_bytes and "verified" in run.stdout
    gets = server.gets()
    assert len(gets) == 2 and gets[0].range is None
    resumed_at = int(re.fullmatch(r"bytes=(\d+)-", gets[1].range)[1])
    assert 0 < resumed_at < len(large_bytes)  # the second request asked only for the rest


def test_corrupt_file_is_refused_and_nothing_is_deleted(tmp_path, hub_server, tiny_bytes):
    corrupt = bytearray(tiny_bytes)
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, other content, announced with the true hash
    server, url = hub_server(content=bytes(corrupt), announced=tiny_bytes)
    hf_home = tmp_path / "hf"
    users_file = hf_home / "hub" / "models--someone--else" / "blobs" / "kept"
    users_file.parent.mkdir(parents=True)
    users_file.write_bytes(b"the user's own")

    message = error_of(run_resolve(hf_home, url, entry_for(tiny_bytes)))
    assert "SHA-256" in message and "refusing to load" in message and "Nothing was deleted" in message
    assert hashlib.sha256(tiny_bytes).hexdigest() in message
    before = files_under(hf_home)
    assert users_file.read_bytes() == b"the user's own"
    assert bytes(corrupt) in before.values()  # the downloaded file is left for the user to inspect

    server.stop()  # next use: the cached copy is checked again and still refused
    assert "refusing to load" in error_of(run_resolve(hf_home, url, entry_for(tiny_bytes)))
    assert files_under(hf_home) == before


def test_hub_metadata_differing_from_the_pin_is_refused_before_downloading(tmp_path, hub_server, tiny_bytes):
    server, url = hub_server()
    message = error_of(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes, sha256="0" * 64)))
    assert "the pinned value is " + "0" * 64 in message and hashlib.sha256(tiny_bytes).hexdigest() in message
    assert server.gets() == []


def test_revision_override_uses_the_hubs_metadata(tmp_path, hub_server, tiny_bytes):
    other = "fedcba9876543210fedcba9876543210fedcba98"
    server, url = hub_server()
    # the pinned hash belongs to the pinned revision: with another revision the hub's values are expected
    path = resolved_path(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes, sha256="0" * 64), revision=other))
    assert path.read_bytes() == tiny_bytes and other in str(path)
    assert [r.path for r in server.gets()] == [f"/{REPO_ID}/resolve/{other}/{FILENAME}"]


def test_no_endpoint_and_no_cache_is_a_clear_error(tmp_path):
    url = closed_port_url()
    message = error_of(run_resolve(tmp_path / "hf", url, entry_for(b"x")))
    exact = f"{url}/{REPO_ID}/resolve/{REVISION}/{FILENAME}"
    assert f"cannot get {exact}" in message and "not in the Hugging Face cache" in message
    assert f"hf download {REPO_ID} {FILENAME} --revision {REVISION}" in message

    offline = error_of(run_resolve(tmp_path / "hf", url, entry_for(b"x"), offline=True))
    assert "HF_HUB_OFFLINE" in offline and exact in offline


def test_paths_are_returned_as_given(tmp_path):
    assert resolve_checkpoint(tmp_path / "mine.pth") == tmp_path / "mine.pth"
    assert resolve_checkpoint("human3r_672s") == Path("human3r_672s")  # not a released name (case): a path
    assert set(RELEASED_WEIGHTS) == {"human3r_672S", "human3r_672B", "human3r_672L", "human3r_896L"}
    assert all(e.filename == f"{name}.pth" and e.repo_id == "faneggg/human3r" for name, e in RELEASED_WEIGHTS.items())


def test_verify_file_names_the_file_and_the_expected_values(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    verify_file(f, 3, hashlib.sha256(b"abc").hexdigest(), "test")
    with pytest.raises(WeightsError, match=r"w\.pth: 3 bytes, but test is 4 bytes"):
        verify_file(f, 4, None, "test")
    with pytest.raises(WeightsError, match="does not match test"):
        verify_file(f, 3, "1" * 64, "test")
    assert f.read_bytes() == b"abc"
    with pytest.raises(ValueError, match="64 lower-case hex"):
        HubFile("x.pth", sha256="ABC")


def test_cli_takes_a_released_name_and_a_revision(reference_dir, tmp_path, hub_server, tiny_bytes):
    other = "fedcba9876543210fedcba9876543210fedcba98"  # not the pinned commit: the hub's hash is expected
    server, url = hub_server(repo_id="faneggg/human3r", filename="human3r_672S.pth")
    frames = tmp_path / "frames.npz"
    np.savez(frames, frames_uint8=np.load(reference_dir / "tiny_plain_io.npz")["frames_uint8"])
    run = subprocess.run(
        [sys.executable, "-m", "human3r_ros.cli.process", "--checkpoint", "human3r_672S", "--checkpoint-revision",
         other, "--input", str(frames), "--output", str(tmp_path / "out.npz"), "--size", "64", "--no-progress",
         "--duration", "0.05"],
        env=hf_env(tmp_path / "hf", url), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    assert "wrote 2 frames" in run.stderr and "CC BY-NC-SA 4.0" in run.stderr
    assert [r.path for r in server.gets()] == [f"/faneggg/human3r/resolve/{other}/human3r_672S.pth"]
    assert json.loads(str(np.load(tmp_path / "out.npz")["meta_json"]))["checkpoint"] == "human3r_672S"


def test_cli_refuses_a_revision_with_a_path(reference_dir, tmp_path, capsys):
    from human3r_ros.cli.process import main

    rc = main(["--checkpoint", str(reference_dir / "tiny_plain_checkpoint.pth"), "--checkpoint-revision", "main",
               "--input", str(reference_dir / "tiny_plain_io.npz"), "--output", str(tmp_path / "out.npz")])
    assert rc != 0 and "--checkpoint-revision applies to weights given by name" in capsys.readouterr().err


def test_demo_by_name_without_network_says_how_to_fetch(tmp_path):
    url = closed_port_url()
    run = subprocess.run([sys.executable, "-m", "human3r_ros.tools.demo", "--checkpoint", "human3r_672S",
                          "--out", str(tmp_path / "demo")],
                         env=hf_env(tmp_path / "hf", url), capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 1
    exact = f"{url}/faneggg/human3r/resolve/{PINNED_REVISION}/human3r_672S.pth"
    assert f"demo: error: CHECKPOINT=human3r_672S: human3r_672S.pth: cannot get {exact}" in run.stderr
    assert f"hf download faneggg/human3r human3r_672S.pth --revision {PINNED_REVISION}" in run.stderr


def test_unknown_revision_names_the_way_to_choose_another(tmp_path, hub_server, tiny_bytes):
    server, url = hub_server(revisions=("fedcba9876543210fedcba9876543210fedcba98",))
    message = error_of(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes)))
    assert "RevisionNotFoundError" in message and f"resolve/{REVISION}/" in message
    assert "checkpoint_revision" in message and "--checkpoint-revision" in message


def test_hf_hub_cache_is_respected(tmp_path, hub_server, tiny_bytes):
    server, url = hub_server()
    cache = tmp_path / "elsewhere"
    path = resolved_path(run_resolve(tmp_path / "hf", url, entry_for(tiny_bytes), HF_HUB_CACHE=str(cache)))
    assert path == cache / "models--tester--human3r-tiny" / "snapshots" / REVISION / FILENAME
    assert not (tmp_path / "hf" / "hub").exists()


def test_progress_logger_lines():
    lines = []
    every_call = progress_logger(lines.append, every_s=0.0)
    every_call(1_200_000_000, 3_400_000_000)
    every_call(5_000_000, None)
    assert lines[0].startswith("downloaded 1.20 GB / 3.40 GB (35%, ") and lines[0].endswith(" MB/s)")
    assert lines[1].startswith("downloaded 5.0 MB (") and lines[1].endswith(" MB/s)")
    lines.clear()
    rare = progress_logger(lines.append, every_s=3600.0)
    rare(10, 100)
    rare(100, 100)  # the end is always reported
    assert len(lines) == 1 and lines[0].startswith("downloaded 0.0 MB / 0.0 MB (100%, ")
