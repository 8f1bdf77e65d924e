"""Architecture configuration of the Human3R network and the parser for its construction string.

The official checkpoints describe their architecture with a Python expression such as
``ARCroco3DStereo(ARCroco3DStereoConfig(state_size=768, ..., depth_mode=('exp', -inf, inf)))``.
The reference evaluates it; here it is parsed with :mod:`ast` and only literal values are
accepted, so a checkpoint can never run code through its configuration.

Public API:
    Human3RConfig                 frozen dataclass, defaults as in the reference config classes
    parse_construction_string(s)  -> Human3RConfig (no eval)
    VARIANTS                      released variant name -> construction string
    construction_string_for(name_or_string) -> str
    config_for(name_or_string)    -> Human3RConfig
    with_sizes_from_state_dict(config, shapes, overrides=None) -> Human3RConfig
    describe(config, name=None)   -> "human3r_672S (enc 1024x24, dec 768x12, dinov2_vits14, 672 px)"
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

INF = math.inf

# DINOv2 sizes per hub name (embed_dim, depth, num_heads); the reference gets them from
# torch.hub, so they are not part of the construction string.
DINOV2_SIZES: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14": (384, 12, 6),
    "dinov2_vitb14": (768, 12, 12),
    "dinov2_vitl14": (1024, 24, 16),
}
DINOV2_HEAD_DIM = 64  # every hub ViT uses 64-channel heads

# load_model() swaps the patch embedding class before instantiating: ManyAR only matters for
# training with mixed aspect ratios and has the same weights.
_PATCH_EMBED_AT_INFERENCE = {"ManyAR_PatchEmbed": "PatchEmbedDust3R", "PatchEmbedDust3R": "PatchEmbedDust3R"}


@dataclass(frozen=True)
class Human3RConfig:
    """Everything needed to build the network for inference.

    Defaults follow ``ARCroco3DStereoConfig`` and ``CrocoConfig`` of the reference. The fields
    after ``pos_embed`` are sizes the reference hard-codes (DINOv2 from the hub name, DPT heads);
    the ``backbone_*`` sizes left at ``None`` are filled in from :data:`DINOV2_SIZES`.
    """

    # ARCroco3DStereoConfig
    output_mode: str = "pts3d"
    head_type: str = "linear"
    depth_mode: tuple = ("exp", -INF, INF)
    conf_mode: tuple = ("exp", 1, INF)
    pose_mode: tuple = ("exp", -INF, INF)
    landscape_only: bool = True
    patch_embed_cls: str = "PatchEmbedDust3R"
    ray_enc_depth: int = 2
    state_size: int = 324
    local_mem_size: int = 256
    state_pe: str = "2d"
    state_dec_num_heads: int = 16
    depth_head: bool = False
    rgb_head: bool = False
    pose_conf_head: bool = False
    pose_head: bool = False
    msk_head: bool = False
    backbone: str = "dinov2_vitl14"
    mhmr_img_res: int | None = None
    # CrocoConfig
    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    enc_embed_dim: int = 768
    enc_depth: int = 12
    enc_num_heads: int = 12
    dec_embed_dim: int = 512
    dec_depth: int = 8
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6  # CrocoConfig's norm_layer = LayerNorm(eps=1e-6); not expressible in the string
    norm_im2_in_dec: bool = True
    pos_embed: str = "cosine"
    # hard-coded in the reference
    backbone_embed_dim: int | None = None
    backbone_depth: int | None = None
    backbone_num_heads: int | None = None
    backbone_patch_size: int = 14
    backbone_img_size: int = 518  # DINOv2 hub default: a 37x37 position table
    dpt_feature_dim: int = 256
    dpt_last_dim: int = 128
    dpt_layer_dims: tuple[int, int, int, int] = (96, 192, 384, 768)

    def __post_init__(self):
        # frozen dataclass: normalise through object.__setattr__
        if isinstance(self.img_size, int):
            object.__setattr__(self, "img_size", (self.img_size, self.img_size))
        object.__setattr__(self, "img_size", tuple(self.img_size))
        object.__setattr__(self, "dpt_layer_dims", tuple(int(d) for d in self.dpt_layer_dims))
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        for name in ("depth_mode", "conf_mode", "pose_mode"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        missing = [f for f in ("backbone_embed_dim", "backbone_depth", "backbone_num_heads") if getattr(self, f) is None]
        if missing:
            if self.backbone not in DINOV2_SIZES:
                raise ValueError(
                    f"unsupported backbone {self.backbone!r} (known: {', '.join(DINOV2_SIZES)}); "
                    f"give {', '.join(missing)} explicitly"
                )
            for field_name, value in zip(
                ("backbone_embed_dim", "backbone_depth", "backbone_num_heads"), DINOV2_SIZES[self.backbone]
            ):
                if getattr(self, field_name) is None:
                    object.__setattr__(self, field_name, value)

    @property
    def rope_freq(self) -> float:
        """Frequency base of the 2D RoPE ('RoPE100' -> 100.0)."""
        match = re.fullmatch(r"RoPE(\d+(?:\.\d*)?)", self.pos_embed)
        if match is None:
            raise ValueError(f"pos_embed={self.pos_embed!r}: only 'RoPE<base>' position embeddings are supported")
        return float(match.group(1))

    @property
    def has_standard_sizes(self) -> bool:
        """True when the hard-coded sizes are the reference's (not a downsized test build)."""
        defaults = Human3RConfig(backbone=self.backbone) if self.backbone in DINOV2_SIZES else None
        return defaults is not None and all(
            getattr(self, f) == getattr(defaults, f) for f in _HARD_CODED_FIELDS
        )


_HARD_CODED_FIELDS = (
    "backbone_embed_dim",
    "backbone_depth",
    "backbone_num_heads",
    "backbone_patch_size",
    "backbone_img_size",
    "dpt_feature_dim",
    "dpt_last_dim",
    "dpt_layer_dims",
)


# --------------------------------------------------------------------------- parsing

# keys the reference accepts but that change nothing at inference
_IGNORED_KEYS = frozenset({"freeze", "mask_ratio", "use_prompt", "is_shallow", "prompt_size"})
_MAX_STRING_LEN = 10_000


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_mode(v) -> bool:
    return isinstance(v, tuple) and len(v) == 3 and isinstance(v[0], str) and all(_is_number(x) for x in v[1:])


def _is_img_size(v) -> bool:
    return _is_int(v) or (isinstance(v, tuple) and len(v) == 2 and all(_is_int(x) for x in v))


# value check per accepted keyword, with a description for the error message
_KEY_CHECKS: dict[str, tuple[Any, str]] = {
    **{k: (lambda v: isinstance(v, str), "a string") for k in (
        "output_mode", "head_type", "patch_embed_cls", "state_pe", "backbone", "pos_embed")},
    **{k: (lambda v: isinstance(v, bool), "True or False") for k in (
        "landscape_only", "depth_head", "rgb_head", "pose_conf_head", "pose_head", "msk_head", "norm_im2_in_dec")},
    **{k: (lambda v: _is_int(v) and v > 0, "a positive integer") for k in (
        "ray_enc_depth", "state_size", "local_mem_size", "state_dec_num_heads", "patch_size", "enc_embed_dim",
        "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads")},
    **{k: (_is_mode, "a tuple (str, number, number)") for k in ("depth_mode", "conf_mode", "pose_mode")},
    "mhmr_img_res": (lambda v: v is None or (_is_int(v) and v > 0), "a positive integer or None"),
    "img_size": (_is_img_size, "an integer or a pair of integers"),
    "mlp_ratio": (lambda v: _is_number(v) and v > 0, "a positive number"),
}


def _literal(node: ast.AST, source: str, key: str):
    """Value of a literal expression node; anything else is refused (never evaluated)."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, (str, int, float, bool))):
        return node.value
    if isinstance(node, ast.Name) and node.id == "inf":
        return INF
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, source, key)
        if _is_number(value):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(elt, source, key) for elt in node.elts)
    snippet = ast.get_source_segment(source, node) or ast.dump(node)
    raise ValueError(f"construction string: {key}= must be a literal (string, number, bool, tuple, inf), got {snippet!r}")


def _expect_call(node: ast.AST, name: str, source: str) -> ast.Call:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name):
        snippet = ast.get_source_segment(source, node) or ast.dump(node)
        raise ValueError(f"construction string: expected a call {name}(...), got {snippet[:120]!r}")
    return node


def parse_construction_string(s: str) -> Human3RConfig:
    """Parse ``ARCroco3DStereo(ARCroco3DStereoConfig(key=literal, ...))`` without evaluating it.

    Accepts the checkpoint's ``args.model`` and the form ``load_model`` instantiates (spaces
    removed, ManyAR patch embedding replaced). Applies load_model's changes: the patch embedding
    becomes ``PatchEmbedDust3R`` and ``landscape_only`` is False. Training-only keys (freeze,
    mask_ratio, ...) are ignored; unknown keys or non-literal values raise ValueError.
    """
    if not isinstance(s, str):
        raise ValueError(f"construction string must be a str, got {type(s).__name__}")
    if len(s) > _MAX_STRING_LEN:
        raise ValueError(f"construction string is {len(s)} characters long (limit {_MAX_STRING_LEN})")
    source = s.strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"construction string is not a valid expression ({exc.msg}): {source[:120]!r}") from None
    except (MemoryError, RecursionError):  # the parser's own limit on pathological nesting
        raise ValueError(f"construction string is nested too deeply: {source[:120]!r}") from None

    outer = _expect_call(tree.body, "ARCroco3DStereo", source)
    if len(outer.args) != 1 or outer.keywords:
        raise ValueError("construction string: ARCroco3DStereo(...) must have exactly one argument, ARCroco3DStereoConfig(...)")
    inner = _expect_call(outer.args[0], "ARCroco3DStereoConfig", source)
    if inner.args:
        raise ValueError("construction string: ARCroco3DStereoConfig(...) takes keyword arguments only")

    values: dict[str, Any] = {}
    seen: set[str] = set()
    for kw in inner.keywords:
        if kw.arg is None:
            raise ValueError("construction string: '**' arguments are not allowed")
        if kw.arg in seen:
            raise ValueError(f"construction string: {kw.arg}= given twice")
        seen.add(kw.arg)
        value = _literal(kw.value, source, kw.arg)
        if kw.arg in _IGNORED_KEYS:
            continue
        if kw.arg not in _KEY_CHECKS:
            raise ValueError(
                f"construction string: unknown key {kw.arg}= (known: {', '.join(sorted(_KEY_CHECKS))}; "
                f"ignored: {', '.join(sorted(_IGNORED_KEYS))})"
            )
        check, wanted = _KEY_CHECKS[kw.arg]
        if not check(value):
            raise ValueError(f"construction string: {kw.arg}= must be {wanted}, got {value!r}")
        values[kw.arg] = value

    patch_embed = values.get("patch_embed_cls", "PatchEmbedDust3R")
    if patch_embed not in _PATCH_EMBED_AT_INFERENCE:
        raise ValueError(f"construction string: unknown patch_embed_cls={patch_embed!r}")
    values["patch_embed_cls"] = _PATCH_EMBED_AT_INFERENCE[patch_embed]
    values["landscape_only"] = False  # load_model forces it
    try:
        return Human3RConfig(**values)
    except ValueError as exc:
        raise ValueError(f"construction string: {exc}") from None


# --------------------------------------------------------------------------- released variants

# `args.model` of the released checkpoints (config/trian_human3r.yaml with the backbone and Multi-HMR
# resolution of docs/inference.md); they differ only in backbone and mhmr_img_res.
def _released(backbone: str, mhmr_img_res: int) -> str:
    return (
        "ARCroco3DStereo(ARCroco3DStereoConfig(freeze='encoder_and_decoder_and_head', "
        "state_size=768, state_pe='2d', pos_embed='RoPE100', rgb_head=True, pose_head=True, "
        "msk_head=True, patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
        "head_type='dpt', output_mode='pts3d+pose+smpl', depth_mode=('exp', -inf, inf), "
        "conf_mode=('exp', 1, inf), pose_mode=('exp', -inf, inf), enc_embed_dim=1024, "
        "enc_depth=24, enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, "
        f"landscape_only=False, backbone='{backbone}', mhmr_img_res={mhmr_img_res}))"
    )


VARIANTS: dict[str, str] = {
    "human3r_672S": _released("dinov2_vits14", 672),
    "human3r_672B": _released("dinov2_vitb14", 672),
    "human3r_672L": _released("dinov2_vitl14", 672),
    "human3r_896L": _released("dinov2_vitl14", 896),
}


def construction_string_for(name_or_string: str) -> str:
    """Construction string of a released variant ('human3r_672S' or '672S'), or the string itself."""
    key = name_or_string.strip()
    for name, string in VARIANTS.items():
        if key in (name, name.removeprefix("human3r_")):
            return string
    if "(" in key:
        return key
    raise ValueError(f"unknown Human3R variant {name_or_string!r} (known: {', '.join(VARIANTS)})")


def config_for(name_or_string: str) -> Human3RConfig:
    """Config of a released variant ('human3r_672S' or '672S') or of a construction string."""
    return parse_construction_string(construction_string_for(name_or_string))


def variant_name(config: Human3RConfig) -> str | None:
    """Name of the released variant with exactly this config, else None."""
    for name, string in VARIANTS.items():
        if parse_construction_string(string) == config:
            return name
    return None


def describe(config: Human3RConfig, name: str | None = None) -> str:
    """Short human-readable identity used in error messages."""
    name = name or variant_name(config) or "Human3R"
    backbone = config.backbone
    if not config.has_standard_sizes:
        backbone += f" resized to {config.backbone_embed_dim}x{config.backbone_depth}"
    res = f"{config.mhmr_img_res} px" if config.mhmr_img_res else "no mhmr_img_res"
    return (
        f"{name} (enc {config.enc_embed_dim}x{config.enc_depth}, dec {config.dec_embed_dim}x{config.dec_depth}, "
        f"{backbone}, {res})"
    )


# --------------------------------------------------------------------------- sizes from weights

_BACKBONE_BLOCK = re.compile(r"^backbone\.encoder\.blocks\.(\d+)\.")
_DPT_PREFIX = "downstream_head.dpt_self."


def _block_count(shapes: Mapping[str, Sequence[int]], pattern: re.Pattern) -> int:
    return len({int(m.group(1)) for m in map(pattern.match, shapes) if m})


def sizes_in_state_dict(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """The hard-coded sizes as far as the tensor shapes tell (keys of Human3RConfig; heads excluded)."""
    found: dict[str, Any] = {}
    if "backbone.encoder.cls_token" in shapes:
        found["backbone_embed_dim"] = int(shapes["backbone.encoder.cls_token"][-1])
        found["backbone_depth"] = _block_count(shapes, _BACKBONE_BLOCK)
    if "backbone.encoder.patch_embed.proj.weight" in shapes:
        patch = int(shapes["backbone.encoder.patch_embed.proj.weight"][-1])
        found["backbone_patch_size"] = patch
        if "backbone.encoder.pos_embed" in shapes:
            # the position table covers (img_size / patch)^2 patches plus the CLS token
            side = math.isqrt(int(shapes["backbone.encoder.pos_embed"][1]) - 1)
            found["backbone_img_size"] = side * patch
    dpt_keys = ["scratch.layer1_rn.weight", "head.2.weight"] + [f"act_postprocess.{i}.0.weight" for i in range(4)]
    if all(_DPT_PREFIX + k in shapes for k in dpt_keys):
        found["dpt_feature_dim"] = int(shapes[_DPT_PREFIX + "scratch.layer1_rn.weight"][0])
        found["dpt_last_dim"] = int(shapes[_DPT_PREFIX + "head.2.weight"][0])
        found["dpt_layer_dims"] = tuple(int(shapes[_DPT_PREFIX + f"act_postprocess.{i}.0.weight"][0]) for i in range(4))
    return found


def _declared_sizes(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Map the checkpoint's ``tiny_overrides`` layout onto config fields."""
    try:
        return _declared_sizes_unchecked(overrides)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"malformed size overrides {overrides!r:.200}: {exc}") from None


def _declared_sizes_unchecked(overrides: Mapping[str, Any]) -> dict[str, Any]:
    declared: dict[str, Any] = {}
    backbone = overrides.get("dinov2_backbone") or {}
    dpt = overrides.get("dpt_heads") or {}
    for src, dst in (
        ("embed_dim", "backbone_embed_dim"), ("depth", "backbone_depth"), ("num_heads", "backbone_num_heads"),
        ("patch_size", "backbone_patch_size"), ("img_size", "backbone_img_size"),
    ):
        if src in backbone:
            declared[dst] = int(backbone[src])
    for src, dst in (("feature_dim", "dpt_feature_dim"), ("last_dim", "dpt_last_dim")):
        if src in dpt:
            declared[dst] = int(dpt[src])
    if "layer_dims" in dpt:
        declared["dpt_layer_dims"] = tuple(int(d) for d in dpt["layer_dims"])
    return declared


def with_sizes_from_state_dict(
    config: Human3RConfig,
    shapes: Mapping[str, Sequence[int]],
    overrides: Mapping[str, Any] | None = None,
) -> Human3RConfig:
    """Adopt the DINOv2 / DPT sizes of a checkpoint that declares non-standard sizes.

    ``overrides`` is the checkpoint's ``tiny_overrides`` ({"dinov2_backbone": {embed_dim, depth,
    num_heads}, "dpt_heads": {feature_dim, last_dim, layer_dims}}). With overrides, the sizes are
    read from the tensor shapes (DINOv2 width from ``backbone.encoder.cls_token``, depth from the
    ``backbone.encoder.blocks.N`` count, DPT sizes from ``downstream_head.dpt_self.*``); heads
    come from the overrides, else width // 64. A declared size that contradicts the shapes
    raises ValueError.

    Without overrides the config is returned unchanged: a released checkpoint must have the
    reference's hard-coded sizes, and a mismatch is reported by the strict state-dict check
    (which can then name the variant the weights belong to) rather than silently adopted.
    """
    if overrides is None:
        return config
    declared = _declared_sizes(overrides)
    found = sizes_in_state_dict(shapes)
    for key, value in found.items():
        if key in declared and declared[key] != value:
            raise ValueError(f"size override {key}={declared[key]} contradicts the tensor shapes ({value})")
    sizes = {**declared, **found}
    if "backbone_embed_dim" in sizes and "backbone_num_heads" not in sizes:
        width = sizes["backbone_embed_dim"]
        if width % DINOV2_HEAD_DIM:
            raise ValueError(f"DINOv2 width {width} is not a multiple of {DINOV2_HEAD_DIM}; declare num_heads")
        sizes["backbone_num_heads"] = width // DINOV2_HEAD_DIM
    return dataclasses.replace(config, **sizes)
