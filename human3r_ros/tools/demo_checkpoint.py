"""Demo weights: a small random-weight Human3R in the official checkpoint container.

`make demo` must run without the licensed, multi-GB release files, so it generates a small
network with random weights and writes it exactly like the released ``.pth`` files
(``torch.save`` of ``{args: omegaconf.DictConfig, model: state_dict, epoch, best_so_far}``).
The node then loads it through the same safe reader as a real checkpoint. Its outputs are
meaningless; the weights are only scaled so that everything stays finite and a few people
are detected on the bundled sample.

Public API:
    write_official_container(path, construction_string, state_dict, epoch=0, best_so_far=0.0, extra_args=None)
    make_demo_checkpoint(path, seed=0, calibration_frames=None) -> Path
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib.util
import math
import sys
import types
import typing
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from human3r_ros.model import build_model
from human3r_ros.model.config import Human3RConfig, parse_construction_string
from human3r_ros.model.human_head import DETECTION_THRESHOLD, NUM_ROTATIONS, nms_3x3, squeezed_sigmoid
from human3r_ros.model.network import IMAGENET_MEAN, IMAGENET_STD

DEMO_IMAGE_SIZE = 256  # long side of the model input the demo weights are calibrated for
DEMO_MHMR_RES = 224  # Multi-HMR square input (a multiple of the 14-px DINOv2 patch)
PEOPLE_PER_FRAME = 2  # the detection bias is set so that about this many cells pass the threshold
MAX_DETECTION_DRAWS = 50
PADDING_MARGIN = 0.5  # logit units: letterbox cells stay clearly below the threshold

# Same keys and style as the released checkpoints' args.model; only the sizes are small.
DEMO_CONSTRUCTION = (
    "ARCroco3DStereo(ARCroco3DStereoConfig(freeze='encoder_and_decoder_and_head', state_size=64, "
    "state_pe='2d', pos_embed='RoPE100', rgb_head=True, pose_head=True, msk_head=True, "
    "patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), head_type='dpt', "
    "output_mode='pts3d+pose+smpl', depth_mode=('exp', -inf, inf), conf_mode=('exp', 1, inf), "
    "pose_mode=('exp', -inf, inf), enc_embed_dim=96, enc_depth=2, enc_num_heads=3, dec_embed_dim=48, "
    f"dec_depth=4, dec_num_heads=4, landscape_only=False, backbone='dinov2_vits14', mhmr_img_res={DEMO_MHMR_RES}, "
    "state_dec_num_heads=4, local_mem_size=16, ray_enc_depth=1))"
)
# Sizes the construction string cannot express (the reference hard-codes them); the reader
# adopts them from `args.tiny_overrides`, as for the tiny test fixtures.
DEMO_OVERRIDES = {
    "note": "DEMO WEIGHTS: random and untrained, written by human3r_ros.tools.demo_checkpoint; "
            "hard-coded DINOv2/DPT sizes reduced",
    "dinov2_backbone": {"name": "dinov2_vits14", "img_size": 518, "patch_size": 14, "embed_dim": 32, "depth": 2,
                        "num_heads": 2},
    "dpt_heads": {"feature_dim": 32, "last_dim": 16, "layer_dims": [16, 32, 32, 64]},
}


def demo_config() -> Human3RConfig:
    backbone, dpt = DEMO_OVERRIDES["dinov2_backbone"], DEMO_OVERRIDES["dpt_heads"]
    return dataclasses.replace(
        parse_construction_string(DEMO_CONSTRUCTION),
        backbone_embed_dim=backbone["embed_dim"], backbone_depth=backbone["depth"],
        backbone_num_heads=backbone["num_heads"], backbone_patch_size=backbone["patch_size"],
        backbone_img_size=backbone["img_size"], dpt_feature_dim=dpt["feature_dim"], dpt_last_dim=dpt["last_dim"],
        dpt_layer_dims=tuple(dpt["layer_dims"]),
    )


# --------------------------------------------------------------------------- the container

class _Pickled:
    """Base of the omegaconf look-alikes: pickles as NEWOBJ + BUILD(__dict__), like omegaconf."""

    def __init__(self, **state):
        self.__dict__.update(state)


# Module name -> class names the official container's pickle refers to.
_OMEGACONF_NAMES = {
    "omegaconf.dictconfig": ("DictConfig",),
    "omegaconf.listconfig": ("ListConfig",),
    "omegaconf.nodes": ("AnyNode",),
    "omegaconf.base": ("ContainerMetadata", "Metadata"),
}


@contextlib.contextmanager
def _omegaconf_look_alikes() -> Iterator[dict[str, type]]:
    """Register stand-in classes under omegaconf's module names for the time of one pickling.

    pickle stores a class as "module name" and checks that importing it gives the same object,
    so the stand-ins must be reachable through sys.modules; they are removed afterwards so
    nothing else mistakes them for the real package (a real omegaconf already imported is put
    back).
    """
    added: dict[str, types.ModuleType] = {"omegaconf": types.ModuleType("omegaconf")}
    classes: dict[str, type] = {}
    for module_name, class_names in _OMEGACONF_NAMES.items():
        module = types.ModuleType(module_name)
        for name in class_names:
            cls = type(name, (_Pickled,), {"__module__": module_name, "__qualname__": name})
            setattr(module, name, cls)
            classes[name] = cls
        added[module_name] = module
    hidden = {name: sys.modules[name] for name in added if name in sys.modules}  # a real omegaconf, if imported
    sys.modules.update(added)
    try:
        yield classes
    finally:
        for name in added:
            sys.modules.pop(name, None)
        sys.modules.update(hidden)


def _look_alike_config(args: Mapping[str, Any], classes: Mapping[str, type]):
    """A DictConfig look-alike holding `args`, with omegaconf 2.3's pickled state layout."""

    def metadata(key):
        return classes["Metadata"](
            ref_type=typing.Any, object_type=None, optional=True, key=key, flags={}, flags_root=False,
            resolver_cache=collections.defaultdict(dict),
        )

    def container(value, key, parent, flags=None):
        is_dict = isinstance(value, Mapping)
        meta = classes["ContainerMetadata"](
            ref_type=typing.Any, object_type=dict if is_dict else list, optional=True, key=key, flags=flags or {},
            flags_root=False, resolver_cache=collections.defaultdict(dict),
            key_type=typing.Any if is_dict else int, element_type=typing.Any,
        )
        node = classes["DictConfig" if is_dict else "ListConfig"](_metadata=meta, _parent=parent)
        items = value.items() if is_dict else enumerate(value)
        content = {k: child(v, k, node) for k, v in items}
        node._content = content if is_dict else list(content.values())
        return node

    def child(value, key, parent):
        if isinstance(value, (Mapping, list, tuple)):
            return container(value, key, parent)
        return classes["AnyNode"](_metadata=metadata(key), _parent=parent, _val=value)

    return container(args, None, None, flags={"struct": True})


def write_official_container(
    path: str | Path,
    construction_string: str,
    state_dict: Mapping[str, torch.Tensor],
    epoch: int = 0,
    best_so_far: float = 0.0,
    extra_args: Mapping[str, Any] | None = None,
    use_omegaconf: bool | None = None,
) -> Path:
    """Write ``{args, model, epoch, best_so_far}`` exactly as the released checkpoints are saved.

    ``args`` is an omegaconf DictConfig (struct mode) whose ``model`` entry is the construction
    string, plus ``extra_args`` (e.g. ``tiny_overrides``). The real omegaconf is used when it is
    installed (``use_omegaconf=None``); otherwise look-alike classes pickle under the same
    global names with the same state layout. ``state_dict`` is stored as given: tensors that
    share storage (the DPT ``layer_rn`` aliases of a module's state dict) stay shared, as
    torch.save keeps them.
    """
    path = Path(path)
    args = {"model": construction_string, **(extra_args or {})}
    model = OrderedDict(state_dict)
    if use_omegaconf is None:
        use_omegaconf = importlib.util.find_spec("omegaconf") is not None
    if use_omegaconf:
        from omegaconf import OmegaConf

        config = OmegaConf.create(args)
        OmegaConf.set_struct(config, True)
        torch.save({"args": config, "model": model, "epoch": int(epoch), "best_so_far": float(best_so_far)}, path)
        return path
    with _omegaconf_look_alikes() as classes:
        config = _look_alike_config(args, classes)
        torch.save({"args": config, "model": model, "epoch": int(epoch), "best_so_far": float(best_so_far)}, path)
    return path


# --------------------------------------------------------------------------- random weights

def _randomise(net: nn.Module, gen: torch.Generator) -> None:
    """Fan-in-scaled normal draws, in module order, so activations keep a unit-ish scale."""
    seen: set[int] = set()
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            noise = torch.randn(p.shape, generator=gen)
            if isinstance(module, nn.LayerNorm):
                value = 1.0 + 0.05 * noise if name == "weight" else 0.02 * noise
            elif type(module).__name__ == "LayerScale":
                value = 0.5 + 0.1 * noise
            elif name == "bias":
                value = 0.02 * noise
            elif isinstance(module, nn.ConvTranspose2d):  # non-overlapping upsampling: in_channels inputs
                value = noise / math.sqrt(p.shape[0])
            elif isinstance(module, (nn.Linear, nn.Conv2d)):
                value = noise / math.sqrt(p[0].numel())
            else:  # tokens, position tables, memory, embeddings
                value = 0.1 * noise
            p.copy_(value)


def _last_linear(mlp: nn.Module) -> nn.Linear:
    return [m for m in mlp.modules() if isinstance(m, nn.Linear)][-1]


def _shape_outputs(net: nn.Module) -> None:
    """Rescale the output layers so the heads give plausible magnitudes (metres, small rotations)."""
    head = net.downstream_head
    for dpt in (head.dpt_self, head.dpt_cross):
        last = dpt.head[4]
        last.weight.mul_(0.3)
        last.bias.copy_(torch.tensor([0.0, 0.0, 1.5, 0.5]))  # ~3.5 m ahead; confidence 1 + e^0.5
    head.dpt_rgb.head[4].weight.mul_(0.3)
    camera = head.pose_head.mlp.fc2
    camera.weight.mul_(0.1)  # small random camera motion from frame to frame
    camera.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]))  # quaternion near identity
    translation = _last_linear(head.deccam)
    translation.weight.mul_(0.3)
    translation.bias.copy_(torch.tensor([0.0, 0.0, 1.6]))  # heads ~4 m in front of the camera
    _last_linear(head.decpose).weight.mul_(0.1)  # poses near the mean pose
    _last_linear(head.decshape).weight.mul_(0.3)
    _last_linear(head.decexpression).weight.mul_(0.3)
    _last_linear(head.mlp_offset).weight.mul_(0.3)
    mask = _last_linear(head.mlp_msk)
    mask.weight.mul_(0.3)
    mask.bias.fill_(-2.0)  # mostly "not a person", so the scene cloud keeps most pixels


def _mean_params(head: nn.Module) -> None:
    """Built-in SMPL-X mean parameters: upright body facing the camera, neutral shape.

    The root rotation diag(1, -1, -1) turns the body model's y-up frame into the camera's
    y-down optical frame; every other joint starts at identity. 6D = first two rotation
    columns, row-major.
    """
    root = torch.tensor([1.0, 0.0, 0.0, -1.0, 0.0, 0.0])
    identity = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    head.init_body_pose.copy_(torch.cat([root, identity.repeat(NUM_ROTATIONS - 1)])[None])
    head.init_betas.zero_()
    head.init_betas_kid.zero_()
    head.init_cam.copy_(torch.tensor([[0.9, 0.0, 0.0]]))
    head.init_expression.zero_()


def _cells_inside_image(view, res: int, patch: int) -> torch.Tensor:
    """(grid*grid,) bool: Multi-HMR cells whose centre lies on the image, not on the letterbox."""
    from human3r_ros.engine.preprocess import letterbox_square

    inside = letterbox_square(torch.ones_like(view.img), res)[0] > 0
    centres = torch.arange(res // patch) * patch + patch // 2
    return inside[centres][:, centres].reshape(-1)


def _calibrate_detection(net: nn.Module, frames: Sequence[np.ndarray], gen: torch.Generator) -> None:
    """Set the detection MLP's last layer so that about PEOPLE_PER_FRAME cells per frame pass.

    Random features know nothing about people; this only makes the demo exercise the whole
    person path. The last weights are redrawn (from the seeded generator) until no letterbox
    cell would pass, so no "person" sits on the padding, i.e. glued to the image border; the
    bias puts the threshold halfway between the k-th and (k+1)-th best peak of each frame
    (median over frames).
    """
    from human3r_ros.engine.preprocess import preprocess_frame

    head, cfg = net.downstream_head, net.config
    res, patch = cfg.mhmr_img_res, cfg.backbone_patch_size
    grid = res // patch
    classifier = _last_linear(head.mlp_classif)
    hidden_layers = head.mlp_classif[:-1]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    hidden, inside = [], []
    for rgb in frames:
        view = preprocess_frame(rgb, DEMO_IMAGE_SIZE, mhmr_res=res)
        hidden.append(hidden_layers(net.backbone((view.img_mhmr[None] * 0.5 + 0.5 - mean) / std))[0])
        inside.append(_cells_inside_image(view, res, patch))
    hidden, inside = torch.stack(hidden), torch.stack(inside)  # (F, cells, C), (F, cells)
    threshold_logit = math.log(DETECTION_THRESHOLD / (1.0 - DETECTION_THRESHOLD))
    for _ in range(MAX_DETECTION_DRAWS):
        weight = 3.0 * torch.randn(classifier.weight.shape, generator=gen) / math.sqrt(classifier.in_features)
        logits = (hidden @ weight.T)[..., 0]
        peaks = nms_3x3(squeezed_sigmoid(logits).reshape(-1, grid, grid)).reshape(logits.shape) > 0
        cuts = []
        for frame_logits, frame_peaks, frame_inside in zip(logits, peaks, inside):
            best = torch.sort(frame_logits[frame_peaks & frame_inside], descending=True).values
            cuts.append(float(best[PEOPLE_PER_FRAME - 1] + best[PEOPLE_PER_FRAME]) / 2)
        bias = threshold_logit - float(np.median(cuts))
        on_padding = logits[peaks & ~inside]
        if on_padding.numel() == 0 or float(on_padding.max()) + bias < threshold_logit - PADDING_MARGIN:
            classifier.weight.copy_(weight)
            classifier.bias.fill_(bias)
            return
    raise RuntimeError(f"no detection layer without letterbox detections in {MAX_DETECTION_DRAWS} draws")


@torch.no_grad()
def make_demo_state_dict(seed: int = 0, calibration_frames: Sequence[np.ndarray] | None = None):
    """The demo network's state dict (DPT aliases shared), deterministic for a given seed."""
    if calibration_frames is None:
        from human3r_ros.tools.sample import sample_frames

        calibration_frames = sample_frames()
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # building the model draws from the global generator
        net = build_model(demo_config())
    _randomise(net, gen)
    _shape_outputs(net)
    _mean_params(net.downstream_head)
    _calibrate_detection(net, calibration_frames, gen)
    return net.state_dict()


def make_demo_checkpoint(
    path: str | Path, seed: int = 0, calibration_frames: Sequence[np.ndarray] | None = None
) -> Path:
    """Write the demo checkpoint (official container) to `path`; returns the path.

    The detection bias is calibrated on `calibration_frames` (default: the bundled sample),
    so that a couple of people per frame are "found" there. Same seed and frames, same bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = make_demo_state_dict(seed, calibration_frames)
    extra = {"tiny_overrides": DEMO_OVERRIDES, "demo_weights_seed": int(seed)}
    return write_official_container(path, DEMO_CONSTRUCTION, state, epoch=0, best_so_far=0.0, extra_args=extra)
