"""Configuration parsing and safe, strict checkpoint loading (tiny fixtures and manifests)."""

import argparse
import json
import math
import os
import pickle
import subprocess
from collections import OrderedDict

import pytest
import torch
from safetensors.torch import save_file

from human3r_ros.model.checkpoint import (
    CheckpointError,
    architecture_signature,
    check_state_dict,
    config_signature,
    read_checkpoint,
)
from human3r_ros.model.config import (
    VARIANTS,
    Human3RConfig,
    config_for,
    describe,
    parse_construction_string,
    with_sizes_from_state_dict,
)

RELEASED = ("672S", "672B", "672L", "896L")
DINOV2 = {"dinov2_vits14": (384, 12, 6), "dinov2_vitb14": (768, 12, 12), "dinov2_vitl14": (1024, 24, 16)}
DESCRIPTION_672S = "human3r_672S (enc 1024x24, dec 768x12, dinov2_vits14, 672 px)"


def manifest(reference_dir, variant):
    return json.loads((reference_dir / f"manifest_human3r_{variant}.json").read_text())


def manifest_shapes(reference_dir, variant):
    return {e["key"]: tuple(e["shape"]) for e in manifest(reference_dir, variant)["state_dict"]}


@pytest.fixture(scope="module")
def tiny(reference_dir):
    return read_checkpoint(reference_dir / "tiny_plain_checkpoint.pth")


@pytest.fixture(scope="module")
def tiny_string(reference_dir):
    return json.loads((reference_dir / "tiny_config.json").read_text())["ckpt_args_model"]


def shapes_of(state_dict):
    return {k: tuple(v.shape) for k, v in state_dict.items()}


# --------------------------------------------------------------------------- config parsing


def test_defaults_follow_reference_config_classes():
    cfg = Human3RConfig()
    assert (cfg.output_mode, cfg.head_type, cfg.landscape_only) == ("pts3d", "linear", True)
    assert cfg.depth_mode == ("exp", -math.inf, math.inf) and cfg.conf_mode == ("exp", 1, math.inf)
    assert (cfg.state_size, cfg.local_mem_size, cfg.state_dec_num_heads, cfg.ray_enc_depth) == (324, 256, 16, 2)
    assert (cfg.rgb_head, cfg.pose_head, cfg.msk_head, cfg.mhmr_img_res) == (False, False, False, None)
    assert (cfg.img_size, cfg.patch_size, cfg.mlp_ratio, cfg.norm_eps, cfg.pos_embed) == ((224, 224), 16, 4.0, 1e-6, "cosine")
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.enc_num_heads) == (768, 12, 12)
    assert (cfg.dec_embed_dim, cfg.dec_depth, cfg.dec_num_heads) == (512, 8, 16)
    assert (cfg.backbone, cfg.backbone_embed_dim, cfg.backbone_depth, cfg.backbone_num_heads) == ("dinov2_vitl14", 1024, 24, 16)
    assert (cfg.dpt_feature_dim, cfg.dpt_last_dim, cfg.dpt_layer_dims) == (256, 128, (96, 192, 384, 768))


@pytest.mark.parametrize("variant", RELEASED)
def test_released_strings_parse_like_load_model(reference_dir, variant):
    m = manifest(reference_dir, variant)
    assert VARIANTS[f"human3r_{variant}"] == m["ckpt_args_model"]
    cfg = parse_construction_string(m["ckpt_args_model"])
    assert cfg == parse_construction_string(m["instantiated_as_by_load_model"])
    assert cfg == config_for(f"human3r_{variant}") == config_for(variant)
    assert (cfg.backbone, cfg.mhmr_img_res) == (m["backbone"], m["mhmr_img_res"])
    assert (cfg.backbone_embed_dim, cfg.backbone_depth, cfg.backbone_num_heads) == DINOV2[cfg.backbone]
    assert cfg.backbone_embed_dim == m["backbone_embed_dim"]
    assert (cfg.state_size, cfg.enc_embed_dim, cfg.enc_depth, cfg.dec_embed_dim, cfg.dec_depth) == (768, 1024, 24, 768, 12)
    assert (cfg.head_type, cfg.output_mode, cfg.rgb_head, cfg.pose_head, cfg.msk_head) == ("dpt", "pts3d+pose+smpl", True, True, True)
    assert cfg.rope_freq == 100.0 and cfg.patch_embed_cls == "PatchEmbedDust3R" and not cfg.landscape_only
    # the hint table (config side) agrees with the weights the reference builds
    assert config_signature(cfg) == architecture_signature(manifest_shapes(reference_dir, variant))
    assert describe(cfg).startswith(f"human3r_{variant} (enc 1024x24, dec 768x12, {cfg.backbone}, {cfg.mhmr_img_res} px)")


def test_tiny_string_and_load_model_form(reference_dir, tiny_string):
    instantiated = json.loads((reference_dir / "tiny_config.json").read_text())["instantiated_as_by_load_model"]
    cfg = parse_construction_string(tiny_string)
    assert cfg == parse_construction_string(instantiated) == config_for(tiny_string)
    assert (cfg.state_size, cfg.local_mem_size, cfg.ray_enc_depth, cfg.state_dec_num_heads, cfg.mhmr_img_res) == (50, 16, 1, 6, 112)
    assert (cfg.enc_embed_dim, cfg.enc_depth, cfg.enc_num_heads, cfg.dec_embed_dim, cfg.dec_depth, cfg.dec_num_heads) == (48, 2, 3, 24, 4, 2)


def test_load_model_surgery_is_applied():
    landscape = VARIANTS["human3r_672S"].replace("landscape_only=False", "landscape_only=True")
    assert parse_construction_string(landscape) == config_for("human3r_672S")


@pytest.mark.parametrize(
    "value, expected_message",
    [
        ("__import__('os').system('touch MARKER')", "state_size= must be a literal"),
        ("eval('768')", "state_size= must be a literal"),
        ("(lambda: 768)()", "state_size= must be a literal"),
        ("open('MARKER', 'w').write('x')", "state_size= must be a literal"),
        ("().__class__", "state_size= must be a literal"),
        ("'768'", "state_size= must be a positive integer"),
        ("True", "state_size= must be a positive integer"),
        ("-1", "state_size= must be a positive integer"),
    ],
)
def test_parse_refuses_non_literals(tmp_path, monkeypatch, value, expected_message):
    monkeypatch.chdir(tmp_path)
    bad = VARIANTS["human3r_672S"].replace("state_size=768", f"state_size={value}")
    with pytest.raises(ValueError, match=expected_message):
        parse_construction_string(bad)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize(
    "text, expected_message",
    [
        ("__import__('os').system('touch MARKER')", "expected a call ARCroco3DStereo"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(state_size=1), x=1)", "exactly one argument"),
        ("ARCroco3DStereo(OtherConfig(state_size=1))", "expected a call ARCroco3DStereoConfig"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(1))", "keyword arguments only"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(**{'state_size': 1}))", "'\\*\\*' arguments"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(state_size=1, state_size=2))", "given twice"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(warp_drive=True))", "unknown key warp_drive="),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(depth_mode=('exp', 1)))", "depth_mode= must be a tuple"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(backbone='dinov2_vitg14'))", "unsupported backbone 'dinov2_vitg14'"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(state_size=", "not a valid expression"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(freeze=print('x')))", "freeze= must be a literal"),
        ("ARCroco3DStereo(ARCroco3DStereoConfig(state_size=" + "-" * 9000 + "1))", "nested too deeply"),
        ("x" * 10_001, "characters long"),
    ],
)
def test_parse_refuses_unknown_structure(tmp_path, monkeypatch, text, expected_message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=expected_message):
        parse_construction_string(text)
    assert not (tmp_path / "MARKER").exists()


def test_config_for_unknown_name():
    with pytest.raises(ValueError, match="unknown Human3R variant 'human3r_999X'.*human3r_672S"):
        config_for("human3r_999X")


def test_rope_freq_requires_rope():
    with pytest.raises(ValueError, match="only 'RoPE<base>'"):
        Human3RConfig().rope_freq


# --------------------------------------------------------------------------- sizes from weights


def test_sizes_adopted_only_when_declared(reference_dir, tiny_string):
    shapes = manifest_shapes(reference_dir, "672L")
    cfg = config_for("human3r_672S")
    # released checkpoints declare nothing: the config keeps the reference's sizes
    assert with_sizes_from_state_dict(cfg, shapes) == cfg
    # declared overrides: sizes come from the shapes, heads from the overrides or width // 64
    resized = with_sizes_from_state_dict(cfg, shapes, {"dinov2_backbone": {"embed_dim": 1024}})
    assert (resized.backbone_embed_dim, resized.backbone_depth, resized.backbone_num_heads) == (1024, 24, 16)
    with pytest.raises(ValueError, match="embed_dim=384 contradicts the tensor shapes \\(1024\\)"):
        with_sizes_from_state_dict(cfg, shapes, {"dinov2_backbone": {"embed_dim": 384}})
    with pytest.raises(ValueError, match="malformed size overrides"):
        with_sizes_from_state_dict(cfg, shapes, {"dinov2_backbone": {"embed_dim": [1]}})
    with pytest.raises(ValueError, match="malformed size overrides"):
        with_sizes_from_state_dict(cfg, shapes, {"dpt_heads": 5})
    with pytest.raises(ValueError, match="not a multiple of 64; declare num_heads"):
        with_sizes_from_state_dict(cfg, {"backbone.encoder.cls_token": (1, 1, 32)}, {})


# --------------------------------------------------------------------------- reading the tiny fixtures


def test_tiny_pth_and_safetensors_hold_the_same_model(reference_dir, tiny, tiny_string):
    st = read_checkpoint(reference_dir / "tiny_plain_weights.safetensors")
    assert (tiny.format, st.format) == ("torch", "safetensors")
    assert tiny.construction == st.construction == tiny_string
    assert tiny.config == st.config
    cfg = tiny.config
    assert (cfg.backbone_embed_dim, cfg.backbone_depth, cfg.backbone_num_heads) == (32, 2, 2)
    assert (cfg.dpt_feature_dim, cfg.dpt_last_dim, cfg.dpt_layer_dims) == (16, 8, (8, 16, 16, 32))
    assert (cfg.backbone_patch_size, cfg.backbone_img_size) == (14, 518)
    assert tiny.metadata == {"epoch": 0, "best_so_far": 0.0}
    assert tiny.overrides["dinov2_backbone"]["num_heads"] == 2 and st.overrides["dpt_heads"]["last_dim"] == 8
    assert set(tiny.state_dict) == set(st.state_dict) and len(tiny.state_dict) == 663
    for key, value in tiny.state_dict.items():
        assert value.dtype == st.state_dict[key].dtype and torch.equal(value, st.state_dict[key]), key
    # DPT aliases: shared storage in the .pth, copies in the .safetensors; both come back tied
    for head in ("dpt_self", "dpt_cross", "dpt_rgb"):
        for i in range(4):
            alias = f"downstream_head.{head}.scratch.layer_rn.{i}.weight"
            original = f"downstream_head.{head}.scratch.layer{i + 1}_rn.weight"
            assert tiny.state_dict[alias] is tiny.state_dict[original]
            assert st.state_dict[alias] is st.state_dict[original]
    check_state_dict(shapes_of(st.state_dict), tiny.state_dict, tiny.path, describe(tiny.config))
    assert describe(tiny.config) == "Human3R (enc 48x2, dec 24x4, dinov2_vits14 resized to 32x2, 112 px)"


def test_deduplicated_safetensors_gets_its_alias_back(tmp_path, tiny):
    state = {k: v.clone() for k, v in tiny.state_dict.items() if ".scratch.layer_rn." not in k}
    meta = {"model": tiny.construction, "tiny_overrides": json.dumps(tiny.overrides)}
    save_file(state, tmp_path / "dedup.safetensors", metadata=meta)
    loaded = read_checkpoint(tmp_path / "dedup.safetensors")
    assert set(loaded.state_dict) == set(tiny.state_dict)
    assert loaded.config == tiny.config


def test_safetensors_alias_copies_must_agree(tmp_path, tiny):
    state = {k: v.clone() for k, v in tiny.state_dict.items()}
    state["downstream_head.dpt_rgb.scratch.layer_rn.2.weight"] += 1.0
    save_file(state, tmp_path / "bad_alias.safetensors", metadata={"construction": tiny.construction})
    with pytest.raises(CheckpointError, match="bad_alias.safetensors: downstream_head.dpt_rgb.scratch.layer_rn.2.weight and "
                       "downstream_head.dpt_rgb.scratch.layer3_rn.weight must hold the same tensor"):
        read_checkpoint(tmp_path / "bad_alias.safetensors")


def test_bare_state_dict_needs_the_variant(tmp_path, tiny):
    path = tmp_path / "bare.pth"
    torch.save(OrderedDict(tiny.state_dict), path)
    with pytest.raises(CheckpointError, match="bare.pth: the checkpoint holds no construction string.*human3r_672S"):
        read_checkpoint(path)
    loaded = read_checkpoint(path, variant=tiny.construction)
    assert loaded.format == "state_dict" and loaded.construction == tiny.construction
    # without declared overrides the tiny DINOv2/DPT sizes are not adopted: the strict check says so
    assert loaded.config.backbone_embed_dim == 384


def test_namespace_args_are_read(tmp_path, tiny):
    path = tmp_path / "namespace.pth"
    args = argparse.Namespace(model=tiny.construction, tiny_overrides=tiny.overrides)
    torch.save({"args": args, "model": tiny.state_dict, "epoch": 3}, path)
    loaded = read_checkpoint(path)
    assert loaded.config == tiny.config and loaded.metadata == {"epoch": 3}


def test_requested_variant_must_match_the_file(reference_dir):
    path = reference_dir / "tiny_plain_checkpoint.pth"
    with pytest.raises(CheckpointError, match=f"tiny_plain_checkpoint.pth: the file is Human3R .*not the requested "
                       f"{DESCRIPTION_672S.replace('(', '.').replace(')', '.')}.*state_size"):
        read_checkpoint(path, variant="human3r_672S")


# --------------------------------------------------------------------------- unreadable files


class RunsCode:
    """Pickles as a call that would create a marker file."""

    def __init__(self, func, marker):
        self.func, self.marker = func, str(marker)

    def __reduce__(self):
        if self.func == "os.system":
            return (os.system, (f"touch {self.marker}",))
        if self.func == "subprocess":
            return (subprocess.call, (["touch", self.marker],))
        return (eval, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("func", ["os.system", "subprocess", "eval"])
@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, func, writer):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pth"
    payload = {"args": {"model": "x"}, "model": {"w": RunsCode(func, marker)}}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pth: refused to unpickle.*(blocked|Unsupported global)") as info:
        read_checkpoint(path)
    assert not marker.exists()
    assert "weights_only" not in str(info.value)  # torch's advice to switch the protection off is dropped


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothere.pth: no such file"):
        read_checkpoint(tmp_path / "nothere.pth")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_checkpoint(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth: empty file"):
        read_checkpoint(tmp_path / "empty.pth")


def test_text_file(tmp_path):
    (tmp_path / "notes.pth").write_text("these are not weights\n" * 20)
    with pytest.raises(CheckpointError, match="notes.pth: not a checkpoint .neither a PyTorch file nor safetensors"):
        read_checkpoint(tmp_path / "notes.pth")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note about the garbage "protocol" byte
def test_random_bytes(tmp_path):
    data = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    (tmp_path / "noise.pth").write_bytes(bytes(data.tolist()))
    with pytest.raises(CheckpointError, match="noise.pth: not a checkpoint"):
        read_checkpoint(tmp_path / "noise.pth")
    (tmp_path / "noise2.pth").write_bytes(b"\x80" + bytes(data.tolist()))  # looks like a pickle at first
    with pytest.raises(CheckpointError, match="noise2.pth: (refused to unpickle|cannot read as a PyTorch checkpoint)"):
        read_checkpoint(tmp_path / "noise2.pth")


def test_truncated_pth(tmp_path, reference_dir):
    data = (reference_dir / "tiny_plain_checkpoint.pth").read_bytes()
    (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.pth: cannot read as a PyTorch checkpoint .truncated or corrupt"):
        read_checkpoint(tmp_path / "half.pth")


def test_truncated_safetensors(tmp_path, reference_dir):
    data = (reference_dir / "tiny_plain_weights.safetensors").read_bytes()
    (tmp_path / "half.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="half.safetensors: cannot read as safetensors .truncated or corrupt"):
        read_checkpoint(tmp_path / "half.safetensors")


def test_container_without_construction_string(tmp_path, tiny):
    torch.save({"args": {"lr": 1e-4}, "model": tiny.state_dict, "epoch": 1}, tmp_path / "noargs.pth")
    with pytest.raises(CheckpointError, match="noargs.pth: the checkpoint holds no construction string"):
        read_checkpoint(tmp_path / "noargs.pth")


def test_not_a_state_dict(tmp_path):
    torch.save({"weights": [1, 2, 3]}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: not a Human3R checkpoint.*keys \\['weights'\\]"):
        read_checkpoint(tmp_path / "other.pth")


def test_unparsable_construction_string(tmp_path, tiny):
    torch.save({"args": {"model": "ARCroco3DStereo(os.system('x'))"}, "model": tiny.state_dict}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="odd.pth: construction string: expected a call ARCroco3DStereoConfig"):
        read_checkpoint(tmp_path / "odd.pth")


# --------------------------------------------------------------------------- strict state-dict check


def test_tiny_weights_under_672S_config(reference_dir, tiny):
    with pytest.raises(CheckpointError) as info:
        check_state_dict(manifest_shapes(reference_dir, "672S"), tiny.state_dict, tiny.path, DESCRIPTION_672S)
    message = str(info.value)
    assert message.startswith(f"{tiny.path}: the weights do not fit {DESCRIPTION_672S}: 800 missing, 0 unexpected")
    assert "missing keys (first 5 of 800): enc_blocks.2.norm1.weight, enc_blocks.2.norm1.bias" in message
    assert "pose_token: file (1, 1, 24) vs model (1, 1, 768)" in message
    assert "CUT3R encoder 48x2 in the file vs 1024x24 expected" in message


def test_672L_weights_under_672S_config(reference_dir):
    with pytest.raises(CheckpointError) as info:
        check_state_dict(manifest_shapes(reference_dir, "672S"), manifest_shapes(reference_dir, "672L"),
                         "human3r_672L.pth", DESCRIPTION_672S)
    message = str(info.value)
    assert message.startswith(f"human3r_672L.pth: the weights do not fit {DESCRIPTION_672S}: 0 missing, 168 unexpected")
    assert "unexpected keys (first 5 of 168): backbone.encoder.blocks.12.norm1.weight" in message
    assert "mhmr_masked_smpl_token: file (1, 1024) vs model (1, 384)" in message
    assert "hint: DINOv2 1024x24 in the file vs 384x12 expected; the weights look like human3r_672L or human3r_896L" in message


def test_672B_weights_under_672S_config(reference_dir):
    with pytest.raises(CheckpointError, match="the weights look like human3r_672B\\b"):
        check_state_dict(manifest_shapes(reference_dir, "672S"), manifest_shapes(reference_dir, "672B"),
                         "b.pth", DESCRIPTION_672S)


def test_cut3r_only_weights(tiny):
    expected = shapes_of(tiny.state_dict)
    cut3r = {k: v for k, v in tiny.state_dict.items()
             if not k.startswith(("backbone.", "downstream_head.mlp_", "downstream_head.dec", "mhmr_"))}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, cut3r, "cut3r_512_dpt_4_64.pth", describe(tiny.config))
    message = str(info.value)
    assert message.startswith("cut3r_512_dpt_4_64.pth: the weights do not fit Human3R (enc 48x2, dec 24x4,")
    assert "0 unexpected, 0 with another shape" in message
    assert "missing keys (first 5 of" in message and "mhmr_masked_smpl_token" in message
    assert "looks like a CUT3R checkpoint without Human3R's human branch" in message


def test_single_unexpected_and_mismatched_key(tiny):
    expected = shapes_of(tiny.state_dict)
    state = dict(tiny.state_dict)
    state["extra.weight"] = torch.zeros(2)
    state["register_tokens.weight"] = torch.zeros(60, 48)
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, state, "x.pth", "tiny")
    message = str(info.value)
    assert "0 missing, 1 unexpected, 1 with another shape" in message
    assert "unexpected keys (first 1 of 1): extra.weight" in message
    assert "register_tokens.weight: file (60, 48) vs model (50, 48)" in message
    assert "state tokens 60 in the file vs 50 expected" in message


# --------------------------------------------------------------------------- through the lead's loader


def test_load_checkpoint_refuses_tiny_weights_under_672S_string(tmp_path, tiny):
    from human3r_ros.model import load_checkpoint

    path = tmp_path / "labelled_672S.pth"
    torch.save({"args": {"model": VARIANTS["human3r_672S"]}, "model": tiny.state_dict}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, device="meta")
    message = str(info.value)
    assert message.startswith(f"{path}: the weights do not fit {DESCRIPTION_672S}: 800 missing")
    assert "missing keys (first 5 of 800): enc_blocks.2.norm1.weight" in message


def test_load_checkpoint_refuses_cut3r_only_weights(tmp_path, tiny):
    from human3r_ros.model import load_checkpoint

    cut3r = {k: v for k, v in tiny.state_dict.items()
             if not k.startswith(("backbone.", "downstream_head.mlp_", "downstream_head.dec", "mhmr_"))}
    path = tmp_path / "cut3r_only.pth"
    torch.save({"args": {"model": tiny.construction, "tiny_overrides": tiny.overrides}, "model": cut3r}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, device="meta")
    message = str(info.value)
    assert message.startswith(f"{path}: the weights do not fit Human3R (enc 48x2, dec 24x4, dinov2_vits14 resized to 32x2")
    assert "0 unexpected, 0 with another shape" in message
    assert "looks like a CUT3R checkpoint without Human3R's human branch" in message
