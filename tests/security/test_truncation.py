"""Truncations of every committed valid fixture (fixtures/{torch,safetensors,keras,onnx,
examples}) at several cut points: reading the graph and then every tensor's data either works
(the cut left a valid file) or raises weightmap's own one-line error — never another exception,
a crash or a hang. Folder checkpoints (ONNX external data, shards) are cut file by file.

Reads run in a worker process (conftest ``reader``), so a crash in a C library would show up as
a failed case instead of taking the test run down.
"""
from __future__ import annotations

import pytest

CUTS = {"1": lambda n: 1, "8": lambda n: 8, "64": lambda n: 64, "half": lambda n: n // 2,
        "minus1": lambda n: n - 1}


def test_every_format_is_covered(valid_fixtures):
    damaged = {d.split("/")[0] for _, d in valid_fixtures}
    assert damaged == {"torch", "safetensors", "keras", "onnx", "examples"}
    assert len(valid_fixtures) >= 30


def test_truncations(valid_input, reader, copy_fixture, check_clean, tmp_path):
    target, damaged = valid_input
    intact, _ = copy_fixture(target, damaged, tmp_path / "intact")
    assert reader(intact)["outcome"] in ("ok", "weightmap")   # some fixtures are hostile
    for cut, where in CUTS.items():
        read_path, victim = copy_fixture(target, damaged, tmp_path / cut)
        data = victim.read_bytes()
        size = min(where(len(data)), len(data))
        victim.write_bytes(data[:size])
        check_clean(reader(read_path), f"{damaged} cut to {size} bytes ({cut})")


@pytest.mark.parametrize("name", ["safetensors/tiny_hf.safetensors", "torch/cnn.pt",
                                  "keras/k3_convs.weights.h5", "onnx/ops.onnx"])
def test_a_cut_file_is_refused_not_misread(name, reader, copy_fixture, tmp_path):
    """Losing the last byte is always noticed: weightmap refuses rather than reading garbage."""
    read_path, victim = copy_fixture(name, name, tmp_path)
    victim.write_bytes(victim.read_bytes()[:-1])
    answer = reader(read_path)
    assert answer["outcome"] == "weightmap", answer
