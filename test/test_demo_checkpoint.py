"""Demo weights: official container layout, safe loading, determinism, and people on the sample."""

import collections
import pickletools
import sys
import typing
import zipfile
from collections import OrderedDict

import pytest
import torch

from human3r_ros.engine import Human3REngine
from human3r_ros.model import load_checkpoint
from human3r_ros.model.checkpoint import read_checkpoint
from human3r_ros.tools.demo_checkpoint import (
    DEMO_CONSTRUCTION,
    DEMO_IMAGE_SIZE,
    DEMO_OVERRIDES,
    make_demo_checkpoint,
    write_official_container,
)
from human3r_ros.tools.sample import sample_frames

OMEGACONF_GLOBALS = {
    "omegaconf.dictconfig DictConfig",
    "omegaconf.base ContainerMetadata",
    "omegaconf.base Metadata",
    "omegaconf.nodes AnyNode",
    "omegaconf.listconfig ListConfig",
}


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return make_demo_checkpoint(tmp_path_factory.mktemp("demo") / "demo_weights.pth", seed=0)


def records(path):
    """Zip records of a torch.save file, keyed without the archive's folder name."""
    with zipfile.ZipFile(path) as z:
        return {name.split("/", 1)[1]: z.read(name) for name in z.namelist()}


def pickle_globals(data: bytes) -> set:
    return {arg for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}


def test_loads_safely_with_the_declared_architecture(demo_file):
    contents = read_checkpoint(demo_file)  # torch.load(weights_only=True) with inert stand-ins
    assert contents.format == "torch"
    assert contents.construction == DEMO_CONSTRUCTION
    assert contents.overrides["dinov2_backbone"]["embed_dim"] == DEMO_OVERRIDES["dinov2_backbone"]["embed_dim"]
    assert contents.overrides["dpt_heads"]["layer_dims"] == DEMO_OVERRIDES["dpt_heads"]["layer_dims"]
    assert contents.metadata == {"epoch": 0, "best_so_far": 0.0}
    cfg = contents.config
    assert (cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.backbone_embed_dim, cfg.mhmr_img_res) == (96, 48, 32, 224)
    net = load_checkpoint(demo_file)  # strict: every key and shape
    assert all(torch.isfinite(t).all() for t in net.state_dict().values())


def test_container_layout_matches_the_official_files(demo_file):
    recs = records(demo_file)
    data = recs["data.pkl"]
    assert OMEGACONF_GLOBALS <= pickle_globals(data)
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(data)]
    top_keys = [arg for name, arg in ops[:8] if name == "BINUNICODE"]
    assert top_keys[0] == "args"
    strings = [arg for name, arg in ops if name in ("BINUNICODE", "SHORT_BINUNICODE")]
    # top-level keys in the official order, after the (large) args and model entries
    assert strings.index("model") < strings.index("epoch") < strings.index("best_so_far")
    # the DPT aliases share storage: one storage record per distinct tensor
    net = load_checkpoint(demo_file)
    distinct = {t.untyped_storage().data_ptr() for t in net.state_dict().values()}
    assert len([k for k in recs if k.startswith("data/")]) == len(distinct) < len(net.state_dict())
    # the temporary look-alike modules (which have no __file__) are gone again
    leftovers = [name for name, module in sys.modules.items()
                 if name.split(".")[0] == "omegaconf" and getattr(module, "__file__", None) is None]
    assert leftovers == []


def test_deterministic(demo_file, tmp_path):
    again = make_demo_checkpoint(tmp_path / "again.pth", seed=0)
    assert records(again) == records(demo_file)
    other = make_demo_checkpoint(tmp_path / "other.pth", seed=1)
    assert records(other) != records(demo_file)


def test_writer_round_trips_nested_args(tmp_path):
    state = OrderedDict(w=torch.arange(6, dtype=torch.float32).reshape(2, 3))
    path = write_official_container(tmp_path / "c.pth", DEMO_CONSTRUCTION, state, epoch=7, best_so_far=0.5,
                                    extra_args={"tiny_overrides": DEMO_OVERRIDES}, use_omegaconf=False)
    contents = read_checkpoint(path)
    assert contents.construction == DEMO_CONSTRUCTION
    assert contents.overrides == DEMO_OVERRIDES
    assert contents.metadata == {"epoch": 7, "best_so_far": 0.5}
    assert torch.equal(contents.state_dict["w"], state["w"])


def test_real_omegaconf_reads_the_look_alike_file(tmp_path):
    import omegaconf  # a test requirement (requirements.txt): never skip this check
    from omegaconf.base import ContainerMetadata, Metadata
    from omegaconf.listconfig import ListConfig
    from omegaconf.nodes import AnyNode

    path = write_official_container(tmp_path / "c.pth", DEMO_CONSTRUCTION, OrderedDict(w=torch.ones(2)),
                                    extra_args={"tiny_overrides": DEMO_OVERRIDES}, use_omegaconf=False)
    with torch.serialization.safe_globals([omegaconf.DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode,
                                           typing.Any, dict, list, int, collections.defaultdict]):
        ck = torch.load(path, map_location="cpu", weights_only=True)
    assert ck["args"].model == DEMO_CONSTRUCTION
    assert list(ck["args"].tiny_overrides.dpt_heads.layer_dims) == DEMO_OVERRIDES["dpt_heads"]["layer_dims"]


def test_engine_finds_people_on_the_sample(demo_file):
    engine = Human3REngine(load_checkpoint(demo_file), size=DEMO_IMAGE_SIZE)
    results = [engine.step(rgb, stamp=0.1 * i) for i, rgb in enumerate(sample_frames()[:2])]
    assert sum(len(r.people) for r in results) >= 1
    for r in results:
        assert torch.isfinite(torch.from_numpy(r.pts3d_world)).all()
        for p in r.people:
            assert p.head_position_world.shape == (3,) and abs(p.head_position_world).max() < 100
