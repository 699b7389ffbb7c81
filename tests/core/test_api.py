"""What ``port`` records beyond the plan: the source's fingerprint, a job record, and the
census of its casts."""
import hashlib
import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.api import target_graph, write_plan
from weightmap.errors import UsageError


@pytest.fixture
def pair(tmp_path):
    src, tgt = tmp_path / "src.safetensors", tmp_path / "template.safetensors"
    save_file({"fc.weight": np.array([[70000.0, 1e-9], [1.0, 2.0]], np.float32),
               "fc.bias": np.ones(2, np.float32)}, str(src))
    save_file({"fc.weight": np.zeros((2, 2), np.float16),
               "fc.bias": np.zeros(2, np.float16)}, str(tgt))
    return src, tgt


def test_the_manifest_records_the_source_and_the_job(pair, tmp_path):
    src, tgt = pair
    out = tmp_path / "out.safetensors"
    rep = weightmap.port(src, tgt, out, source_digest=True, job={"options": {"a": 1}})
    man = json.loads((tmp_path / "out.manifest.json").read_text())
    assert man["source"]["size"] == src.stat().st_size
    assert man["source"]["mtime_ns"] == src.stat().st_mtime_ns
    assert man["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert man["job"] == {"options": {"a": 1}} == rep.manifest["job"]
    plain = weightmap.port(src, tgt, tmp_path / "plain.safetensors")
    assert "sha256" not in plain.manifest["source"] and "job" not in plain.manifest


def test_a_narrowing_cast_is_counted_in_the_manifest(pair, tmp_path):
    src, tgt = pair
    rep = weightmap.port(src, tgt, tmp_path / "half.safetensors")
    cast = rep.manifest["params"]["fc.weight"]["cast"]
    assert cast == {"from": "float32", "to": "float16", "overflow": 1, "subnormal": 0,
                    "zero": 1}
    assert rep.manifest["summary"]["cast"] == {"tensors": 2, "overflow": 1, "subnormal": 0,
                                               "zero": 1}
    assert np.isinf(load_file(tmp_path / "half.safetensors")["fc.weight"][0, 0])


def test_a_target_graph_serves_several_ports(pair, tmp_path):
    src, tgt = pair
    graph = target_graph(tgt)
    plan = weightmap.plan(src, graph)
    for name in ("a", "b"):
        write_plan(plan, weightmap.read(src), graph, tmp_path / f"{name}.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with pytest.raises(UsageError, match="new_values='later'"):
        target_graph(tgt, "later")
