"""torch.compile of the network's blocks (``compile_mode``): one graph per part, reference outputs kept.

The ``aot_eager`` backend traces exactly the graphs inductor would compile, without code
generation (inductor itself takes a minute here; ``benchmarks/bench_engine.py`` runs it).
"""

import json
import logging

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from human3r_ros.cli.process import build_parser
from human3r_ros.engine import Human3REngine
from human3r_ros.engine.npz_schema import to_npz_dict
from human3r_ros.model.compiled import COMPILE_MODES, compile_network
from human3r_ros.ros import parameters
from test_engine import assert_matches_reference, make_engine


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()  # compiled code is cached per code object, across networks
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("case", ["ttt3r", "reset"])  # gated state updates; resets
def test_compiled_blocks_keep_reference_outputs(reference_dir, fresh_dynamo, case):
    z = np.load(reference_dir / f"tiny_{case}_io.npz")
    engine = make_engine(reference_dir, case)
    compile_network(engine.net, "default", backend="aot_eager")  # fullgraph: a graph break raises
    frames = z["frames_uint8"]
    results = [engine.step(frames[0], stamp=0.0), engine.step(frames[1], stamp=0.1)]
    graphs_after_two = counters["stats"]["unique_graphs"]
    results += [engine.step(f, stamp=0.1 * i) for i, f in enumerate(frames[2:], start=2)]

    assert graphs_after_two > 0, "nothing was compiled"
    people = [len(r.people) for r in results]
    assert len(set(people)) > 1, f"the case should vary the number of people, got {people}"
    # new people counts, gated updates and resets reuse the graphs built on the first two frames
    assert counters["stats"]["unique_graphs"] == graphs_after_two
    assert_matches_reference(to_npz_dict(results), z)


def test_state_dict_keys_unchanged(reference_dir):
    engine = make_engine(reference_dir, "plain", with_body=False)
    before = list(engine.net.state_dict())
    compile_network(engine.net, "default", backend="aot_eager")
    assert list(engine.net.state_dict()) == before
    head = engine.net.downstream_head
    assert engine.net.dec_blocks[-1]._compiled_call_impl is not None
    assert head.dpt_self._compiled_call_impl is not None
    assert head.dpt_rgb._compiled_call_impl is None  # released by the engine: never runs


def test_unknown_compile_mode_is_refused(reference_dir):
    with pytest.raises(ValueError, match="compile mode must be one of off, default"):
        Human3REngine.from_checkpoint(reference_dir / "tiny_plain_checkpoint.pth", size=64, compile_mode="fast")


def test_node_and_cli_offer_the_engine_modes():
    assert parameters.COMPILE_MODES == COMPILE_MODES
    cli_option = next(a for a in build_parser()._actions if a.dest == "compile")
    assert tuple(cli_option.choices) == COMPILE_MODES


def test_cuda_graphs_on_a_cpu_warn_and_run_eager(reference_dir, caplog):
    z = np.load(reference_dir / "tiny_reset_io.npz")
    meta = json.loads(str(z["meta_json"]))
    with caplog.at_level(logging.WARNING, logger="human3r_ros.model.compiled"):
        engine = Human3REngine.from_checkpoint(
            reference_dir / "tiny_reset_checkpoint.pth", body_model_dir=reference_dir / "synthetic_smplx",
            ttt3r=meta["use_ttt3r"], reset_interval=meta["reset_interval"] or 0, size=64, compile_mode="cuda-graphs")
    assert "'cuda-graphs' needs a CUDA device; the network is on cpu: running eager" in caplog.text
    assert engine.net.graphed_front is None
    results = [engine.step(f, stamp=0.1 * i) for i, f in enumerate(z["frames_uint8"])]
    assert_matches_reference(to_npz_dict(results), z)


def test_the_graphed_front_is_one_graph_without_host_round_trips(reference_dir, fresh_dynamo):
    """What a CUDA graph replays must never wait for the host (``.item()``, data-dependent
    shapes, copies from host memory): traced with fullgraph, any of them would break the
    graph and raise. The traced front equals the eager one (aot_eager's decompositions round
    differently: ~1e-6)."""
    net = make_engine(reference_dir, "plain", with_body=False).net
    gen = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 64, 48, generator=gen) * 2 - 1
    res = net.config.mhmr_img_res
    mhmr_input = torch.randn(2, 3, res, res, generator=gen)
    traced = torch.compile(net.encode_views, fullgraph=True, backend="aot_eager")
    with torch.inference_mode():
        eager, got = net.encode_views(img, mhmr_input), traced(img, mhmr_input)
    assert counters["stats"]["unique_graphs"] == 1
    for a, b in zip(got, eager):
        torch.testing.assert_close(a, b)
