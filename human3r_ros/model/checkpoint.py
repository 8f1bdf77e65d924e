"""Safe reading and strict checking of Human3R checkpoints.

Formats read by :func:`read_checkpoint`:

1. the official container (``torch.save`` of ``{args: omegaconf.DictConfig, model: state_dict,
   epoch, best_so_far}``), loaded with ``weights_only=True``. The omegaconf classes are replaced
   by inert stand-ins of our own, so omegaconf is not needed and nothing in the file can run;
2. ``.safetensors`` whose metadata holds the construction string (``human3r_tiny`` JSON entry,
   or a plain ``model`` / ``construction`` entry);
3. a bare state dict saved with ``torch.save`` (the variant must then be given).

Never ``eval`` and never ``weights_only=False``. Every failure raises :class:`CheckpointError`
whose message starts with the file path.

Public API:
    CheckpointError
    CheckpointContents
    read_checkpoint(path, variant=None) -> CheckpointContents
    check_state_dict(expected, state_dict, path, variant_description) -> None
"""

from __future__ import annotations

import collections
import json
import pickle
import re
import typing
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from .config import (
    VARIANTS,
    Human3RConfig,
    construction_string_for,
    describe,
    parse_construction_string,
    with_sizes_from_state_dict,
)

_FIRST_FEW = 5


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint could not be read or does not fit the model; the message names the file."""


@dataclass
class CheckpointContents:
    path: Path
    construction: str  # the construction string the config was parsed from
    config: Human3RConfig  # parsed, with the file's declared size overrides applied
    state_dict: "OrderedDict[str, torch.Tensor]"  # DPT aliases tied (same tensor under both names)
    format: str  # "torch" (official container), "safetensors" or "state_dict" (bare torch.save)
    overrides: dict | None = None  # the file's tiny_overrides, if any
    metadata: dict = field(default_factory=dict)  # epoch, best_so_far when present


# --------------------------------------------------------------------------- omegaconf stand-ins


class _PickledState:
    """Inert holder for a pickled object's state: no behaviour, no attribute magic."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __setstate__(self, state):
        self.__dict__["pickled_state"] = state

    def state(self) -> dict:
        state = self.__dict__.get("pickled_state")
        return state if isinstance(state, dict) else {}


class _DictConfig(_PickledState):
    pass


class _ListConfig(_PickledState):
    pass


class _ValueNode(_PickledState):
    pass


class _Metadata(_PickledState):
    pass


class _Namespace(_PickledState):
    """argparse.Namespace, as older DUSt3R/CUT3R checkpoints store their args."""


_NODE_CLASSES = (
    "ValueNode", "AnyNode", "StringNode", "PathNode", "IntegerNode", "FloatNode", "BooleanNode",
    "BytesNode", "EnumNode", "InterpolationResultNode",
)
# (stand-in, pickled name) pairs plus harmless builtins the containers reference.
_SAFE_GLOBALS: list = [
    (_DictConfig, "omegaconf.dictconfig.DictConfig"),
    (_ListConfig, "omegaconf.listconfig.ListConfig"),
    (_Metadata, "omegaconf.base.ContainerMetadata"),
    (_Metadata, "omegaconf.base.Metadata"),
    (_Namespace, "argparse.Namespace"),
    *[(_ValueNode, f"omegaconf.nodes.{name}") for name in _NODE_CLASSES],
    typing.Any, dict, list, int, float, str, bool, collections.defaultdict,
]

_MAX_DEPTH = 64  # guards against self-referencing containers in a hostile file


def _plain(obj: Any, depth: int = 0) -> Any:
    """Turn stand-ins into plain dict/list/values (never follows ``_parent`` links)."""
    if depth > _MAX_DEPTH:
        raise ValueError("configuration nested too deeply")
    if isinstance(obj, _DictConfig):
        content = obj.state().get("_content")
        return _plain(content, depth + 1) if isinstance(content, dict) else content
    if isinstance(obj, _ListConfig):
        content = obj.state().get("_content")
        return _plain(content, depth + 1) if isinstance(content, list) else content
    if isinstance(obj, _ValueNode):
        return _plain(obj.state().get("_val"), depth + 1)
    if isinstance(obj, _Namespace):
        return {k: _plain(v, depth + 1) for k, v in obj.state().items()}
    if isinstance(obj, dict):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise ValueError(f"unexpected {type(obj).__name__} in the configuration")


def _arg(args: Any, key: str) -> Any:
    """``args.<key>`` of a DictConfig stand-in, Namespace stand-in or dict; None when absent."""
    if isinstance(args, _DictConfig):
        content = args.state().get("_content")
        value = content.get(key) if isinstance(content, dict) else None
    elif isinstance(args, _Namespace):
        value = args.state().get(key)
    elif isinstance(args, dict):
        value = args.get(key)
    else:
        return None
    return _plain(value)


# --------------------------------------------------------------------------- file formats

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 2 <= header_len <= size - 8


# torch's weights_only error wraps the reason in advice to disable the protection; keep the reason
_ADVICE_WORDS = (
    "load failed", "can still be loaded", "trust", "weights_only", "safe_globals", "documentation",
    "file an issue", "this class/function",
)


def _unpickling_reason(exc: Exception) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).replace("WeightsUnpickler error:", "\n")
    sentences = re.split(r"(?<=\.)\s+|\n+", text)
    useful = [s.strip() for s in sentences if s.strip() and not any(w in s for w in _ADVICE_WORDS)]
    return " ".join(useful) or type(exc).__name__


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            # mmap: tensors stay file-backed until copied into the network, so loading does
            # not hold the weights twice in memory (the zip format allows it; old files do not)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to unpickle (the file holds objects that are not plain weights or "
            f"config values, or it is corrupt): {_unpickling_reason(exc)}"
        ) from None
    except Exception as exc:  # zip/reader errors, EOF, bad storage records
        raise CheckpointError(
            f"{path}: cannot read as a PyTorch checkpoint (truncated or corrupt?): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def _read_torch(path: Path) -> tuple[Mapping, str | None, dict | None, dict, str]:
    obj = _torch_load(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping):
        args = obj.get("args")
        try:
            construction = _arg(args, "model")
            overrides = _arg(args, "tiny_overrides")
        except ValueError as exc:
            raise CheckpointError(f"{path}: unreadable args: {exc}") from None
        if construction is not None and not isinstance(construction, str):
            raise CheckpointError(f"{path}: args.model is a {type(construction).__name__}, not a construction string")
        if overrides is not None and not isinstance(overrides, dict):
            raise CheckpointError(f"{path}: args.tiny_overrides is a {type(overrides).__name__}, not a mapping")
        metadata = {k: obj[k] for k in ("epoch", "best_so_far") if isinstance(obj.get(k), (int, float))}
        return obj["model"], construction, overrides, metadata, "torch"
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None, None, {}, "state_dict"
    keys = list(obj)[:8] if isinstance(obj, Mapping) else None
    raise CheckpointError(
        f"{path}: not a Human3R checkpoint: expected a dict with a 'model' state dict (and 'args'), "
        f"got {type(obj).__name__}" + (f" with keys {keys}" if keys is not None else "")
    )


def _read_safetensors(path: Path) -> tuple[Mapping, str | None, dict | None, dict, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = OrderedDict((k, f.get_tensor(k)) for k in f.keys())
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read as safetensors (truncated or corrupt?): {exc}") from None

    info: dict = {}
    if "human3r_tiny" in metadata:
        try:
            info = json.loads(metadata["human3r_tiny"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata entry 'human3r_tiny' is not valid JSON ({exc})") from None
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: metadata entry 'human3r_tiny' is not a JSON object")
    construction = next(
        (src[k] for src in (info, metadata) for k in ("ckpt_args_model", "model", "construction") if k in src), None
    )
    overrides = info.get("tiny_overrides")
    if overrides is None and "tiny_overrides" in metadata:
        try:
            overrides = json.loads(metadata["tiny_overrides"])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: metadata entry 'tiny_overrides' is not valid JSON ({exc})") from None
    if construction is not None and not isinstance(construction, str):
        raise CheckpointError(f"{path}: the construction string in the metadata is not a string")
    if overrides is not None and not isinstance(overrides, dict):
        raise CheckpointError(f"{path}: tiny_overrides in the metadata is not a JSON object")
    return state, construction, overrides, {}, "safetensors"


# --------------------------------------------------------------------------- DPT aliases

_ALIAS_KEY = re.compile(r"^(?P<head>.*)\.scratch\.layer_rn\.(?P<i>[0-3])\.weight$")
_ALIASED_KEY = re.compile(r"^(?P<head>.*)\.scratch\.layer(?P<n>[1-4])_rn\.weight$")


def _tie_dpt_aliases(state: "OrderedDict[str, torch.Tensor]", path: Path) -> None:
    """Make ``scratch.layer_rn.{i}`` and ``scratch.layer{i+1}_rn`` one tensor, as in the model.

    torch.save keeps them shared; safetensors stores copies (which must agree); a
    de-duplicated file may hold only one of the two names.
    """
    pairs = set()
    for key in list(state):
        if m := _ALIAS_KEY.match(key):
            pairs.add((key, f"{m['head']}.scratch.layer{int(m['i']) + 1}_rn.weight"))
        elif m := _ALIASED_KEY.match(key):
            pairs.add((f"{m['head']}.scratch.layer_rn.{int(m['n']) - 1}.weight", key))
    for alias, original in sorted(pairs):
        a, b = state.get(alias), state.get(original)
        if a is not None and b is not None and a is not b:
            if a.shape != b.shape or not torch.equal(a, b):
                raise CheckpointError(
                    f"{path}: {alias} and {original} must hold the same tensor (the model shares it), "
                    f"but the file stores different values"
                )
        state[alias] = state[original] = b if b is not None else a


# --------------------------------------------------------------------------- reading


def read_checkpoint(path: str | Path, variant: str | None = None) -> CheckpointContents:
    """Read a checkpoint safely and parse its configuration.

    ``variant`` (released name such as 'human3r_672S', or a construction string) is required
    when the file carries no construction string; when it does, the two must describe the same
    architecture. The returned config includes the file's declared size overrides
    (``tiny_overrides``); the state dict is not yet checked against a model (use
    :func:`check_state_dict`).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open: {exc.strerror or exc}") from None
    if size == 0:
        raise CheckpointError(f"{path}: empty file")

    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTO):
        state, construction, overrides, metadata, fmt = _read_torch(path)
    elif _looks_like_safetensors(head, size) or path.suffix == ".safetensors":
        state, construction, overrides, metadata, fmt = _read_safetensors(path)
    else:
        raise CheckpointError(
            f"{path}: not a checkpoint (neither a PyTorch file nor safetensors; starts with {head[:8]!r})"
        )

    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise CheckpointError(f"{path}: the state dict holds non-tensor entries, e.g. {bad[:_FIRST_FEW]}")
    state = OrderedDict(state)
    _tie_dpt_aliases(state, path)

    construction, config = _resolve_config(path, construction, variant)
    try:
        config = with_sizes_from_state_dict(config, {k: tuple(v.shape) for k, v in state.items()}, overrides)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return CheckpointContents(path, construction, config, state, fmt, overrides, metadata)


def _resolve_config(path: Path, construction: str | None, variant: str | None) -> tuple[str, Human3RConfig]:
    """The construction string and config to use: the file's, checked against ``variant`` if given."""
    requested = None
    if variant is not None:
        try:
            requested_string = construction_string_for(variant)
            requested = parse_construction_string(requested_string)
        except ValueError as exc:
            raise CheckpointError(f"{path}: requested variant: {exc}") from None
    if construction is None:
        if requested is None:
            raise CheckpointError(
                f"{path}: the checkpoint holds no construction string (args.model / safetensors metadata); "
                f"give the variant ({', '.join(VARIANTS)}) explicitly"
            )
        return requested_string, requested
    try:
        stored = parse_construction_string(construction)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if requested is not None and requested != stored:
        differing = [f for f in Human3RConfig.__dataclass_fields__ if getattr(requested, f) != getattr(stored, f)]
        raise CheckpointError(
            f"{path}: the file is {describe(stored)}, not the requested {describe(requested)} "
            f"(differs in {', '.join(differing)})"
        )
    return construction, stored


# --------------------------------------------------------------------------- strict check


def _count_blocks(shapes: Mapping[str, tuple], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for m in map(pattern.match, shapes) if m})


def _dims(shapes: Mapping[str, tuple], width_key: str, axis: int, blocks_prefix: str) -> str:
    if width_key not in shapes:
        return "absent"
    return f"{shapes[width_key][axis]}x{_count_blocks(shapes, blocks_prefix)}"


def architecture_signature(shapes: Mapping[str, Sequence[int]]) -> dict[str, str]:
    """Distinctive sizes of a set of weights, for telling variants apart in error messages."""
    shapes = {k: tuple(v) for k, v in shapes.items()}
    return {
        "CUT3R encoder": _dims(shapes, "patch_embed.proj.weight", 0, "enc_blocks."),
        "decoder": _dims(shapes, "decoder_embed.weight", 0, "dec_blocks."),
        "DINOv2": _dims(shapes, "backbone.encoder.cls_token", -1, "backbone.encoder.blocks."),
        "human heads": "present" if any(k.startswith("downstream_head.mlp_") for k in shapes) else "absent",
        "state tokens": str(shapes["register_tokens.weight"][0]) if "register_tokens.weight" in shapes else "absent",
    }


def config_signature(config: Human3RConfig) -> dict[str, str]:
    """:func:`architecture_signature` of the weights a model built from ``config`` holds."""
    return {
        "CUT3R encoder": f"{config.enc_embed_dim}x{config.enc_depth}",
        "decoder": f"{config.dec_embed_dim}x{config.dec_depth}",
        "DINOv2": f"{config.backbone_embed_dim}x{config.backbone_depth}",
        "human heads": "present" if "smpl" in config.output_mode else "absent",
        "state tokens": str(config.state_size),
    }


def _variant_hint(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str | None:
    want, have = architecture_signature(expected), architecture_signature(found)
    if want == have:
        return None
    if have["DINOv2"] == "absent" and have["human heads"] == "absent" and want["human heads"] == "present":
        return (
            "the file has no backbone.* or downstream_head.mlp_* weights: it looks like a CUT3R checkpoint "
            "without Human3R's human branch"
        )
    differences = "; ".join(f"{part} {have[part]} in the file vs {want[part]} expected" for part in want if want[part] != have[part])
    alike = [name for name, string in VARIANTS.items() if config_signature(parse_construction_string(string)) == have]
    if alike:
        note = " (identical tensor shapes)" if len(alike) > 1 else ""
        return f"{differences}; the weights look like {' or '.join(alike)}{note}"
    return differences


def _shape(value) -> tuple:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else tuple(value)


def check_state_dict(
    expected: Mapping[str, Sequence[int]],
    state_dict: Mapping[str, Any],
    path: str | Path,
    variant_description: str,
) -> None:
    """Strict key and shape comparison; raises CheckpointError describing the first differences.

    ``expected`` maps every key of the model's state dict to its shape (build the model on
    device='meta'); ``state_dict`` maps keys to tensors (or shapes). ``variant_description``
    names the expected architecture (see :func:`human3r_ros.model.config.describe`).
    """
    expected = {k: _shape(v) for k, v in expected.items()}
    found = {k: _shape(v) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [k for k in expected if k in found and expected[k] != found[k]]
    if not (missing or unexpected or mismatched):
        return

    def first(keys: list[str], label: str, fmt=lambda k: k) -> str:
        shown = ", ".join(fmt(k) for k in keys[:_FIRST_FEW])
        return f"\n  {label} (first {min(len(keys), _FIRST_FEW)} of {len(keys)}): {shown}"

    message = (
        f"{path}: the weights do not fit {variant_description}: {len(missing)} missing, "
        f"{len(unexpected)} unexpected, {len(mismatched)} with another shape"
    )
    if missing:
        message += first(missing, "missing keys")
    if unexpected:
        message += first(unexpected, "unexpected keys")
    if mismatched:
        message += first(mismatched, "shape mismatches", lambda k: f"{k}: file {found[k]} vs model {expected[k]}")
    hint = _variant_hint(expected, found)
    if hint:
        message += f"\n  hint: {hint}"
    raise CheckpointError(message)
