"""Released Human3R weights by name: resolve ``human3r_672S`` (etc.) to a verified local file.

A checkpoint spec is either a path (returned as given; reading it stays the job of
:mod:`human3r_ros.model.checkpoint`) or a released variant name, which is fetched with
``huggingface_hub`` from ``faneggg/human3r`` at a pinned commit into the standard Hugging Face
cache (``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_ENDPOINT`` / ``HF_HUB_OFFLINE`` respected) and
checked against the expected size and SHA-256 before anyone loads it.

- A cached file at a commit revision is used without any network access.
- Offline (``HF_HUB_OFFLINE=1``) or hub unreachable, nothing cached: :class:`WeightsError` with
  the exact URL and a command that fetches the file by hand. The first request has a timeout,
  so an unreachable hub is reported within ``timeout`` seconds, never a hang.
- A dropped connection during the download is resumed (HTTP Range) by huggingface_hub.
- A file whose size or SHA-256 differs is refused; nothing is ever deleted. A verified file is
  recorded ($HF_HOME/human3r_ros/verified/<sha256>: size, mtime, inode), so later uses hash it
  again only when it has changed (hashing 3-5 GB takes seconds).

huggingface_hub is imported only when a name is resolved: paths work without it.

Public API:
    HubFile, RELEASED_WEIGHTS, HUB_REPO_ID, PINNED_REVISION, LICENCE_NOTICE, WeightsError
    resolve_checkpoint(spec, revision=None, *, progress=None, log=None, timeout=10.0) -> Path
    is_weights_name(spec) -> bool
    progress_logger(log, every_s=10.0) -> callback(done_bytes, total_bytes)
    sha256_of(path) -> str
    verify_file(path, size, sha256, origin) -> None
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, Optional

HUB_REPO_ID = "faneggg/human3r"
# Commit of faneggg/human3r the released names resolve to. Source: a third-party record of the
# published checkpoint revision (not checked against huggingface.co from this machine); override
# with the `revision` argument (node parameter `checkpoint_revision`, CLI --checkpoint-revision).
PINNED_REVISION = "1902f6b702547870994f15413ed4c61b19dca6b6"
LICENCE_NOTICE = (
    "the Human3R weights are licensed CC BY-NC-SA 4.0: non-commercial use only, attribution, share-alike "
    "(https://github.com/fanegg/Human3R)"
)

ProgressCallback = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)
LogFunction = Callable[[str], None]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_HASH_CHUNK = 8 << 20
_log = logging.getLogger("human3r_ros.hub")


class WeightsError(RuntimeError):
    """Weights given by name could not be provided (network, cache, verification); says what to do."""


@dataclass(frozen=True)
class HubFile:
    """One file on the Hugging Face hub, with what it must be once downloaded.

    ``size`` (bytes) and ``sha256`` (lower-case hex) are the expected values at ``revision``;
    None means: the values the hub reports for the file (its LFS metadata).
    """

    filename: str
    repo_id: str = HUB_REPO_ID
    revision: str = PINNED_REVISION
    size: Optional[int] = None
    sha256: Optional[str] = None

    def __post_init__(self):
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"HubFile {self.filename}: sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"HubFile {self.filename}: size must be > 0, got {self.size}")


# Expected values known so far; None fields are taken from the hub's metadata at download time.
# human3r_672S's SHA-256 comes from a third-party record of the downloaded file (about 3.39 GB).
RELEASED_WEIGHTS: Mapping[str, HubFile] = {
    "human3r_672S": HubFile(
        "human3r_672S.pth", sha256="84d2a70386473b58b90eef8f78521065ad10908bab647ee58d1196f5018fb778"),
    "human3r_672B": HubFile("human3r_672B.pth"),
    "human3r_672L": HubFile("human3r_672L.pth"),
    "human3r_896L": HubFile("human3r_896L.pth"),
}


def is_weights_name(spec) -> bool:
    """True when ``spec`` names released weights (``human3r_672S`` ...) rather than a path."""
    return isinstance(spec, HubFile) or (isinstance(spec, str) and spec in RELEASED_WEIGHTS)


# --------------------------------------------------------------------------- verification

def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def verify_file(path: str | Path, size: Optional[int], sha256: Optional[str], origin: str) -> None:
    """Raise WeightsError unless the file has this size and SHA-256 (None: not checked).

    Nothing is deleted on a mismatch: the message names the file so the user can decide.
    """
    path = Path(path)
    blob = path.resolve()
    where = str(path) if blob == path else f"{path} (-> {blob})"
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise WeightsError(
            f"{where}: {actual_size} bytes, but {origin} is {size} bytes: refusing to load it. Nothing was "
            f"deleted; remove the file and try again to download it anew.")
    if sha256 is not None:
        actual = sha256_of(path)
        if actual != sha256:
            raise WeightsError(
                f"{where}: SHA-256 {actual} does not match {origin} ({sha256}): refusing to load it (corrupt "
                f"or not the expected file). Nothing was deleted; remove the file and try again to download it anew.")


# --------------------------------------------------------------------------- progress

class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


def _callback_bar(callback: ProgressCallback):
    """A tqdm class for huggingface_hub that reports every update to ``callback`` instead of drawing."""
    from tqdm import tqdm

    class CallbackBar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            kwargs.update(disable=False, file=_Discard())
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            shown = super().update(n)
            callback(int(self.n), int(self.total) if self.total else None)
            return shown

    return CallbackBar


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def progress_logger(log: LogFunction, every_s: float = 10.0) -> ProgressCallback:
    """A progress callback writing 'downloaded 1.20 / 3.39 GB (35%, 48.0 MB/s)' to ``log`` every
    ``every_s`` seconds and when the download completes."""
    started = last = time.monotonic()

    def report(done: int, total: Optional[int]) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < every_s and not (total and done >= total):
            return
        last = now
        rate = done / max(now - started, 1e-6) / 1e6
        of = f" / {_gb(total)} ({100 * done / total:.0f}%, " if total else " ("
        log(f"downloaded {_gb(done)}{of}{rate:.1f} MB/s)")

    return report


# --------------------------------------------------------------------------- resolving

def _fetch_by_hand(entry: HubFile, url: str) -> str:
    return (f"fetch it by hand where there is a network: `hf download {entry.repo_id} {entry.filename} "
            f"--revision {entry.revision}` (same cache; copy $HF_HOME/hub to this machine), or download {url} "
            f"and pass the file's path as the checkpoint")


def _cached_path(entry: HubFile) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(entry.repo_id, entry.filename, revision=entry.revision)
    return Path(found) if isinstance(found, str) else None


def _verified_record(path: Path, sha256: str) -> tuple[Path, dict]:
    """Where the record of a verified file lives, and what it must say for the file as it is now."""
    from huggingface_hub import constants

    st = path.stat()
    return (Path(constants.HF_HOME) / "human3r_ros" / "verified" / sha256,
            {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino})


def _remember_verified(path: Path, sha256: str) -> None:
    record, content = _verified_record(path, sha256)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(content))
    except OSError:  # a read-only home: verify again next time
        pass


def _verify_cached(path: Path, entry: HubFile, log: LogFunction) -> Path:
    # huggingface_hub names an LFS blob after its SHA-256 (the ETag the hub reported)
    blob_name = path.resolve().name
    expected = entry.sha256 or (blob_name if _SHA256.fullmatch(blob_name) else None)
    if expected is None:
        log(f"{path}: no expected SHA-256 known for this cached file; using it unverified")
        verify_file(path, entry.size, None, f"{entry.filename}'s expected size")
        return path
    record, now = _verified_record(path, expected)
    try:
        if json.loads(record.read_text()) == now and (entry.size is None or now["size"] == entry.size):
            return path  # verified before and unchanged since
    except (OSError, ValueError):
        pass
    origin = "the pinned value" if entry.sha256 else "the SHA-256 the hub reported when it was downloaded"
    verify_file(path, entry.size, expected, f"{entry.filename}'s expected content ({origin})")
    _remember_verified(path, expected)
    return path


def _hub_metadata(entry: HubFile, url: str, timeout: float):
    """(size, sha256) the hub reports for the file; raises what huggingface_hub raises."""
    from huggingface_hub import get_hf_file_metadata

    meta = get_hf_file_metadata(url, timeout=timeout)
    etag = (meta.etag or "").lower()
    return meta.size, (etag if _SHA256.fullmatch(etag) else None)


def resolve_checkpoint(
    spec: str | Path | HubFile,
    revision: Optional[str] = None,
    *,
    progress: Optional[ProgressCallback] = None,
    log: Optional[LogFunction] = None,
    timeout: float = 10.0,
) -> Path:
    """Local path of the checkpoint ``spec``: a path as given, or released weights downloaded and verified.

    ``spec``: a path; a name from :data:`RELEASED_WEIGHTS`; or a :class:`HubFile`.
    ``revision`` overrides the pinned commit (then the hub's own size/SHA-256 are the expected values).
    ``progress(done, total)`` is called as a download advances (see :func:`progress_logger`); None
    shows huggingface_hub's progress bar on stderr. ``log`` receives one-line notes (licence,
    what is downloaded from where); default: the ``human3r_ros.hub`` logger. ``timeout`` bounds the
    first request to the hub (seconds).
    """
    if isinstance(spec, HubFile):
        entry = spec
    elif isinstance(spec, str) and spec in RELEASED_WEIGHTS:
        entry = RELEASED_WEIGHTS[spec]
    else:
        return Path(spec).expanduser()
    if revision and revision != entry.revision:
        entry = replace(entry, revision=revision, size=None, sha256=None)  # pinned values are the pinned commit's
    say = log or _log.info
    try:
        import huggingface_hub
    except ImportError:
        raise WeightsError(f"{entry.filename}: weights given by name need huggingface_hub "
                           "(pip install 'huggingface_hub>=1.0,<3'), or pass a checkpoint file's path") from None
    url = huggingface_hub.hf_hub_url(entry.repo_id, entry.filename, revision=entry.revision)
    offline = huggingface_hub.constants.HF_HUB_OFFLINE

    cached = _cached_path(entry)
    if cached is not None and (offline or _COMMIT.fullmatch(entry.revision)):
        return _verify_cached(cached, entry, say)
    if offline:
        raise WeightsError(f"{entry.filename} at revision {entry.revision} is not in the Hugging Face cache and "
                           f"HF_HUB_OFFLINE is set: {_fetch_by_hand(entry, url)}")
    try:
        hub_size, hub_sha256 = _hub_metadata(entry, url, timeout)
    except Exception as exc:  # connection refused, timeout, HTTP errors: the hub cannot serve the file now
        if cached is not None:  # a branch revision downloaded before: its cached commit
            return _verify_cached(cached, entry, say)
        not_found = getattr(getattr(exc, "response", None), "status_code", None) == 404
        hint = (" (if the revision is wrong, choose another: node parameter checkpoint_revision, "
                "human3r-process --checkpoint-revision)" if not_found else "")
        raise WeightsError(f"{entry.filename}: cannot get {url} ({_reason(exc)}){hint} and it is not in the "
                           f"Hugging Face cache; {_fetch_by_hand(entry, url)}") from None
    for what, pinned, reported in (("size", entry.size, hub_size), ("SHA-256", entry.sha256, hub_sha256)):
        if pinned is not None and reported is not None and pinned != reported:
            raise WeightsError(f"{url}: the hub reports {what} {reported}, the pinned value is {pinned}: refusing "
                               f"to download a file that is not the pinned one")
    size, sha256 = entry.size or hub_size, entry.sha256 or hub_sha256
    if sha256 is None:
        raise WeightsError(f"{url}: the hub reports no SHA-256 (LFS ETag) for the file and none is pinned: "
                           "cannot verify it, refusing")

    say(f"{entry.filename}: {LICENCE_NOTICE}")
    say(f"downloading {entry.filename} ({_gb(size) if size else 'size unknown'}) from {url} into the Hugging "
        f"Face cache ({huggingface_hub.constants.HF_HUB_CACHE}); this can take minutes, once")
    bar = _callback_bar(progress) if progress is not None else None
    try:
        path = Path(huggingface_hub.hf_hub_download(
            entry.repo_id, entry.filename, revision=entry.revision, etag_timeout=timeout, tqdm_class=bar))
    except Exception as exc:
        raise WeightsError(f"{entry.filename}: download of {url} failed ({_reason(exc)}); try again (an "
                           f"interrupted download starts over), or {_fetch_by_hand(entry, url)}") from None
    verify_file(path, size, sha256, f"{url} ({'pinned' if entry.sha256 else 'as reported by the hub'})")
    _remember_verified(path, sha256)
    say(f"{entry.filename}: verified (SHA-256 {sha256[:12]}...), at {path}")
    return path


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
