"""The ONNX writer: new values into a copy of the target model, checked by running the output in
onnxruntime against a reference computed (in torch or numpy) with those values."""
import os
import shutil
import warnings
import weakref
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from weightmap.emit import dispatch as emit
from weightmap.dtypes import to_numpy
from weightmap.errors import FormatError, PlanError, UsageError
from weightmap.planning.plan import Plan, TensorPlan
from weightmap_onnx import ADAPTER
from weightmap_onnx import emit as onnx_emit

ort = pytest.importorskip("onnxruntime")
FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "onnx"
X = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)


def _plan(graph) -> Plan:
    """Every target tensor with status 'new' (the values come from the test's own stream)."""
    return Plan(source={"path": "test"}, target={"path": graph.source},
                tensors=tuple(TensorPlan(p.name, layer.name, p.shape, p.dtype, "new")
                              for layer in graph.layers for p in layer.params))


def _write(graph, values, out: Path, **kw) -> None:
    plan = _plan(graph)
    emit.write("onnx", out, plan, graph, lambda: ((t, values[t.target]) for t in plan.tensors),
               **kw)


def _random(graph, seed: int) -> dict[str, np.ndarray]:
    """New float values for every parameter (integer ones, i.e. shapes, kept)."""
    rng = np.random.default_rng(seed)
    return {p.name: p.read() if p.dtype.startswith("int")
            else rng.uniform(-1, 1, p.shape).astype(to_numpy(p.dtype)) for p in graph.params()}


def _run(path: Path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _cnn_reference(conv_w, conv_b, fcs) -> np.ndarray:
    """conv(pad 1) -> relu -> maxpool 2 -> flatten -> [linear -> relu]... -> linear, float64."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a, np.float64))  # noqa: E731
    h = F.max_pool2d(F.relu(F.conv2d(t(X), t(conv_w), t(conv_b), padding=1)), 2).flatten(1)
    for i, (w, b) in enumerate(fcs):
        h = F.linear(h, t(w), t(b))
        h = F.relu(h) if i < len(fcs) - 1 else h
    return h.numpy()


def _legacy_reference(v):
    return _cnn_reference(v["onnx::Conv_25"], v["onnx::Conv_26"],
                          [(v[f"fc{i}.weight"], v[f"fc{i}.bias"]) for i in (1, 2, 3)])


def _net(seed: int, *, zero_biases: bool):
    torch = pytest.importorskip("torch")
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc1, self.fc2, self.fc3 = nn.Linear(64, 8), nn.Linear(8, 8), nn.Linear(8, 5)

        def forward(self, x):
            h = torch.flatten(torch.max_pool2d(torch.relu(self.conv(x)), 2), 1)
            return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(h)))))

    torch.manual_seed(seed)
    net = Net().eval()
    if zero_biases:   # identical initializers: the older exporter dedups them into an alias
        nn.init.zeros_(net.fc1.bias)
        nn.init.zeros_(net.fc2.bias)
    return net


def _export_legacy(net, path: Path) -> None:
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(X),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=17)


def _torch_values(net) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def _same_structure(out: onnx.ModelProto, target: onnx.ModelProto, dropped=()) -> None:
    assert out.ir_version == target.ir_version
    assert [(o.domain, o.version) for o in out.opset_import] == \
        [(o.domain, o.version) for o in target.opset_import]
    assert out.graph.input == target.graph.input and out.graph.output == target.graph.output
    assert [n.name for n in out.graph.node] == \
        [n.name for n in target.graph.node if n.name not in dropped]


def test_torch_weights_into_legacy_export_split_the_alias(tmp_path):
    torch = pytest.importorskip("torch")
    _export_legacy(_net(0, zero_biases=True), tmp_path / "t.onnx")
    target = ADAPTER.read(tmp_path / "t.onnx")
    assert dict(target.meta["aliases"]) == {"fc2.bias": "fc1.bias"}
    other = _net(1, zero_biases=False)   # another seed: fc1.bias and fc2.bias now differ
    values = _torch_values(other)
    assert set(values) == {p.name for p in target.params()}
    _write(target, values, tmp_path / "o.onnx")
    y = _run(tmp_path / "o.onnx", {"x": X})[0]
    with torch.no_grad():
        ref = other(torch.from_numpy(X)).numpy()
    assert _rel_err(y, ref) <= 1e-5
    out, orig = onnx.load(str(tmp_path / "o.onnx")), onnx.load(str(tmp_path / "t.onnx"))
    identity = [n.name for n in orig.graph.node if n.op_type == "Identity"]
    _same_structure(out, orig, dropped=identity)
    assert "Identity" not in [n.op_type for n in out.graph.node]
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    assert list(inits) == [t.name for t in orig.graph.initializer] + ["fc2.bias"]
    for name, value in values.items():
        np.testing.assert_array_equal(inits[name], value)
    again = ADAPTER.read(tmp_path / "o.onnx")
    assert "aliases" not in again.meta and again.param("fc2.bias").tied_to is None


def test_equal_values_keep_the_alias(tmp_path):
    torch = pytest.importorskip("torch")
    _export_legacy(_net(0, zero_biases=True), tmp_path / "t.onnx")
    target = ADAPTER.read(tmp_path / "t.onnx")
    other = _net(2, zero_biases=False)
    with torch.no_grad():
        other.fc2.bias.copy_(other.fc1.bias)
    _write(target, _torch_values(other), tmp_path / "o.onnx")
    with torch.no_grad():
        ref = other(torch.from_numpy(X)).numpy()
    assert _rel_err(_run(tmp_path / "o.onnx", {"x": X})[0], ref) <= 1e-5
    out, orig = onnx.load(str(tmp_path / "o.onnx")), onnx.load(str(tmp_path / "t.onnx"))
    _same_structure(out, orig)
    assert [t.name for t in out.graph.initializer] == [t.name for t in orig.graph.initializer]
    assert dict(ADAPTER.read(tmp_path / "o.onnx").meta["aliases"]) == {"fc2.bias": "fc1.bias"}


def test_fixture_cnn_legacy_runs_with_new_values(tmp_path):
    target = ADAPTER.read(FIXTURES / "cnn_legacy.onnx")
    values = _random(target, 3)
    _write(target, values, tmp_path / "o.onnx")
    assert os.listdir(tmp_path) == ["o.onnx"]
    assert _rel_err(_run(tmp_path / "o.onnx", {"x": X})[0], _legacy_reference(values)) <= 1e-5


def test_external_target_keeps_external_data_beside_the_output(tmp_path):
    target = ADAPTER.read(FIXTURES / "external" / "model.onnx")
    values = _random(target, 4)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "o.onnx"
    _write(target, values, out, manifest={"m": 1}, manifest_path=tmp_path / "out" / "o.json")
    assert sorted(os.listdir(out.parent)) == ["o.json", "o.onnx", "o.onnx.data"]
    model = onnx.load(str(out), load_external_data=False)
    for t in model.graph.initializer:   # the split alias fc2.bias is external too
        info = {e.key: e.value for e in t.external_data}
        assert t.data_location == TensorProto.EXTERNAL and not t.raw_data
        assert info["location"] == "o.onnx.data" and int(info["offset"]) % 64 == 0
    assert "fc2.bias" in [t.name for t in model.graph.initializer]
    assert _rel_err(_run(out, {"x": X})[0], _legacy_reference(values)) <= 1e-5
    again = ADAPTER.read(out)
    assert list(again.meta["external_data"]) == ["o.onnx.data"]
    for p in again.params():
        np.testing.assert_array_equal(p.read(), values[p.name])


def test_dynamo_target_keeps_each_initializer_where_it_was(tmp_path):
    target = ADAPTER.read(FIXTURES / "cnn_dynamo" / "cnn.onnx")
    values = _random(target, 5)
    _write(target, values, tmp_path / "o.onnx")
    model = onnx.load(str(tmp_path / "o.onnx"), load_external_data=False)
    orig = onnx.load(str(FIXTURES / "cnn_dynamo" / "cnn.onnx"), load_external_data=False)
    assert [(t.name, t.data_location) for t in model.graph.initializer] == \
        [(t.name, t.data_location) for t in orig.graph.initializer]
    _same_structure(model, orig)
    ref = _cnn_reference(values["features.0.weight"], values["features.0.bias"],
                         [(values["fc1.weight"], None), (values["fc2.weight"], None),
                          (values["fc3.weight"], values["fc3.bias"])])
    assert _rel_err(_run(tmp_path / "o.onnx", {"x": X})[0], ref) <= 1e-5


def _ops_tail_reference(v, h: np.ndarray) -> np.ndarray:
    """ops.onnx after its Reshape: Gemm(alpha .5, beta 2) + alias2, MatMul + bias, MatMul, LN."""
    f = lambda n: np.asarray(v[n], np.float64)  # noqa: E731
    i = 0.5 * h @ f("gemm_b") + 2.0 * f("gemm_c")
    m = ((i + f("alias2")) @ f("shared_w") + f("mm_bias")) @ f("shared_w@mm2")
    norm = (m - m.mean(-1, keepdims=True)) / np.sqrt(m.var(-1, keepdims=True) + 1e-6)
    return norm * f("ln_s") + f("ln_b")


def _ops_inputs():
    x = np.random.default_rng(8).standard_normal((1, 4, 8, 8)).astype(np.float32)
    probe = onnx.load(str(FIXTURES / "ops.onnx"))   # the original, with "h" as an extra output
    probe.graph.output.append(helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 512]))
    y, z, h = ort.InferenceSession(probe.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, {"x": x})
    return x, z, h.astype(np.float64)


def test_ops_fixture_split_alias_chain_and_shared_weight(tmp_path):
    target = ADAPTER.read(FIXTURES / "ops.onnx")
    values = {p.name: p.read() for p in target.params()}   # the front keeps its values
    rng = np.random.default_rng(9)
    for name in ("gemm_b", "gemm_c", "alias2", "shared_w", "shared_w@mm2", "mm_bias", "ln_s",
                 "ln_b"):
        values[name] = rng.uniform(-1, 1, values[name].shape).astype(np.float32)
    _write(target, values, tmp_path / "o.onnx")
    x, z, h = _ops_inputs()
    y2, z2 = _run(tmp_path / "o.onnx", {"x": x})
    assert _rel_err(y2, _ops_tail_reference(values, h)) <= 1e-5
    np.testing.assert_allclose(z2, z, rtol=1e-6)
    out = onnx.load(str(tmp_path / "o.onnx"))
    orig = onnx.load(str(FIXTURES / "ops.onnx"))
    # alias2 = Identity(alias1 = Identity(gemm_c)): alias2 is real now, alias1 is read by nothing
    _same_structure(out, orig, dropped=("id1", "id2"))
    assert [t.name for t in out.graph.initializer] == \
        [t.name for t in orig.graph.initializer] + ["alias2", "shared_w@mm2"]
    mm2 = next(n for n in out.graph.node if n.name == "mm2")
    assert list(mm2.input) == ["l", "shared_w@mm2"]
    again = ADAPTER.read(tmp_path / "o.onnx")
    assert "aliases" not in again.meta and "shared" not in again.meta
    for p in again.params():
        np.testing.assert_array_equal(p.read(), values[p.name])


def test_ops_fixture_equal_values_stay_shared(tmp_path):
    target = ADAPTER.read(FIXTURES / "ops.onnx")
    values = _random(target, 10)
    values["alias2"] = values["gemm_c"].copy()
    values["shared_w@mm2"] = values["shared_w"].copy()
    _write(target, values, tmp_path / "o.onnx")
    out = onnx.load(str(tmp_path / "o.onnx"))
    orig = onnx.load(str(FIXTURES / "ops.onnx"))
    _same_structure(out, orig)
    assert [n.input for n in out.graph.node] == [n.input for n in orig.graph.node]
    assert [t.name for t in out.graph.initializer] == [t.name for t in orig.graph.initializer]
    _run(tmp_path / "o.onnx", {"x": np.ones((1, 4, 8, 8), np.float32)})


def test_tensors_are_streamed_not_held(tmp_path):
    for source in (FIXTURES / "external" / "model.onnx", FIXTURES / "ops.onnx"):
        target = ADAPTER.read(source)
        plan, alive = _plan(target), []

        def stream():
            for t in plan.tensors:
                assert all(r() is None for r in alive), "an earlier array is still held"
                arr = np.full(t.shape, 0.5, dtype=to_numpy(t.dtype))
                alive.append(weakref.ref(arr))
                yield t, arr
                del arr   # the stream itself lets go; the writer must not keep it either

        out = tmp_path / f"{source.stem}.onnx"
        emit.write("onnx", out, plan, target, stream)
        assert len(alive) == len(plan.tensors) and out.is_file()


def test_failure_mid_write_leaves_nothing(tmp_path):
    target = ADAPTER.read(FIXTURES / "external" / "model.onnx")
    plan, values = _plan(target), _random(target, 11)

    def broken():
        for i, t in enumerate(plan.tensors):
            if i == 4:
                raise RuntimeError("source went away")
            yield t, values[t.target]

    with pytest.raises(RuntimeError, match="went away"):
        emit.write("onnx", tmp_path / "o.onnx", plan, target, broken)
    assert os.listdir(tmp_path) == []
    # a failure after the writer (here: the manifest) removes the committed data file too
    with pytest.raises(TypeError):
        _write(target, values, tmp_path / "o.onnx", manifest={"bad": object()},
               manifest_path=tmp_path / "o.json")
    assert os.listdir(tmp_path) == []


def test_existing_data_file_needs_force_and_never_the_targets_own(tmp_path):
    shutil.copytree(FIXTURES / "external", tmp_path / "t")
    target = ADAPTER.read(tmp_path / "t" / "model.onnx")
    values = _random(target, 12)
    (tmp_path / "o.onnx.data").write_bytes(b"old")
    with pytest.raises(UsageError, match="exists"):
        _write(target, values, tmp_path / "o.onnx")
    assert sorted(os.listdir(tmp_path)) == ["o.onnx.data", "t"]
    _write(target, values, tmp_path / "o.onnx", force=True)
    assert (tmp_path / "o.onnx.data").read_bytes() != b"old"
    # an output named so that its data file is the target's own external data file
    os.rename(tmp_path / "t" / "weights.bin", tmp_path / "t" / "model2.onnx.data")
    model = onnx.load(str(tmp_path / "t" / "model.onnx"), load_external_data=False)
    for t in model.graph.initializer:
        next(e for e in t.external_data if e.key == "location").value = "model2.onnx.data"
    onnx.save_model(model, str(tmp_path / "t" / "m.onnx"))
    target = ADAPTER.read(tmp_path / "t" / "m.onnx")
    with pytest.raises(UsageError, match="target's own external data"):
        _write(target, values, tmp_path / "t" / "model2.onnx", force=True)
    assert sorted(os.listdir(tmp_path / "t")) == ["m.onnx", "model.onnx", "model2.onnx.data"]


def test_refusals_leave_nothing(tmp_path, monkeypatch):
    target = ADAPTER.read(FIXTURES / "cnn_legacy.onnx")
    values = _random(target, 13)
    wrong = dict(values, **{"fc3.bias": values["fc3.bias"].astype(np.float64)})
    with pytest.raises(PlanError, match="float64.*float32.*cast") as err:
        _write(target, wrong, tmp_path / "o.onnx")
    assert err.value.tensor == "fc3.bias"
    plan = _plan(target)
    with pytest.raises(PlanError, match="no value was given for 1 target tensor"):
        emit.write("onnx", tmp_path / "o.onnx", plan, target,
                   lambda: ((t, values[t.target]) for t in plan.tensors[:-1]))
    monkeypatch.setattr(onnx_emit, "PROTO_LIMIT", 1000)
    with pytest.raises(UsageError, match="2 GiB.*external data"):
        _write(target, values, tmp_path / "o.onnx")
    assert os.listdir(tmp_path) == []


def test_target_changed_since_it_was_read_is_refused(tmp_path):
    shutil.copy(FIXTURES / "cnn_legacy.onnx", tmp_path / "t.onnx")
    target = ADAPTER.read(tmp_path / "t.onnx")
    shutil.copy(FIXTURES / "rnn_legacy.onnx", tmp_path / "t.onnx")
    with pytest.raises(FormatError, match="not the one its graph was read from"):
        _write(target, _random(target, 14), tmp_path / "o.onnx")
    assert os.listdir(tmp_path) == ["t.onnx"]


def test_live_model_target_is_copied_not_changed(tmp_path):
    from weightmap.reading.read import read

    live = onnx.load(str(FIXTURES / "ops.onnx"))
    before = live.SerializeToString()
    target = read(live)
    values = _random(target, 15)
    _write(target, values, tmp_path / "o.onnx")
    assert live.SerializeToString() == before
    for p in ADAPTER.read(tmp_path / "o.onnx").params():
        np.testing.assert_array_equal(p.read(), values[p.name])


def test_external_constants_are_copied_into_the_output_data(tmp_path):
    rng = np.random.default_rng(16)
    c, w = rng.standard_normal((4, 64)).astype(np.float32), np.zeros((64,), np.float32)
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "cv"))
    graph = helper.make_graph(
        [const, helper.make_node("Mul", ["x", "c"], ["xc"]),
         helper.make_node("Add", ["xc", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    (tmp_path / "t").mkdir()
    onnx.save_model(model, str(tmp_path / "t" / "t.onnx"), save_as_external_data=True,
                    location="t.bin", size_threshold=512, convert_attribute=True)
    saved = onnx.load(str(tmp_path / "t" / "t.onnx"), load_external_data=False)
    # only the 1 KiB constant is external; the 256-byte initializer is inline
    assert saved.graph.node[0].attribute[0].t.data_location == TensorProto.EXTERNAL
    assert saved.graph.initializer[0].data_location == TensorProto.DEFAULT
    target = ADAPTER.read(tmp_path / "t" / "t.onnx")
    new_w = rng.standard_normal((64,)).astype(np.float32)
    _write(target, {"w": new_w}, tmp_path / "o.onnx")
    out = onnx.load(str(tmp_path / "o.onnx"), load_external_data=False)
    const_t = out.graph.node[0].attribute[0].t
    assert [(e.key, e.value) for e in const_t.external_data][0] == ("location", "o.onnx.data")
    assert out.graph.initializer[0].data_location == TensorProto.DEFAULT
    assert sorted(os.listdir(tmp_path)) == ["o.onnx", "o.onnx.data", "t"]
    x = rng.standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "o.onnx", {"x": x})[0], x * c + new_w, rtol=1e-6)
    # the initializers are inline, so only the written model tells of its data file: it is
    # checked as it is staged, before anything is published (replaced only with force)
    (tmp_path / "p.onnx.data").write_bytes(b"keep")
    with pytest.raises(UsageError, match="p.onnx.data: the output file exists"):
        _write(target, {"w": new_w}, tmp_path / "p.onnx")
    assert (tmp_path / "p.onnx.data").read_bytes() == b"keep"
    assert not (tmp_path / "p.onnx").exists()
    _write(target, {"w": new_w}, tmp_path / "p.onnx", force=True)
    np.testing.assert_allclose(_run(tmp_path / "p.onnx", {"x": x})[0], x * c + new_w, rtol=1e-6)


def test_port_from_safetensors_into_an_onnx_target(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file

    from weightmap import api

    _export_legacy(_net(0, zero_biases=True), tmp_path / "t.onnx")
    other = _net(3, zero_biases=False)
    save_file(_torch_values(other), str(tmp_path / "s.safetensors"))
    report = api.port(tmp_path / "s.safetensors", tmp_path / "t.onnx", tmp_path / "o.onnx")
    assert len(report.transferred) == 8 and not report.new
    with torch.no_grad():
        ref = other(torch.from_numpy(X)).numpy()
    assert _rel_err(_run(tmp_path / "o.onnx", {"x": X})[0], ref) <= 1e-5
    assert sorted(os.listdir(tmp_path)) == ["o.manifest.json", "o.onnx", "s.safetensors",
                                            "t.onnx"]


def test_ir3_model_gets_graph_inputs_for_split_initializers(tmp_path):
    rng = np.random.default_rng(17)
    w = rng.standard_normal((5, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], "mm1"),
         helper.make_node("MatMul", ["h", "w"], ["y"], "mm2")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.save_model(model, str(tmp_path / "t.onnx"))
    target = ADAPTER.read(tmp_path / "t.onnx")
    assert [p.name for p in target.params()] == ["w", "w@mm2"]
    w1, w2 = (rng.standard_normal((5, 5)).astype(np.float32) for _ in range(2))
    _write(target, {"w": w1, "w@mm2": w2}, tmp_path / "o.onnx")
    out = onnx.load(str(tmp_path / "o.onnx"))
    assert [i.name for i in out.graph.input] == ["x", "w", "w@mm2"]
    assert [list(n.input) for n in out.graph.node] == [["x", "w"], ["h", "w@mm2"]]
    x = rng.standard_normal((2, 5)).astype(np.float32)
    ref = x.astype(np.float64) @ w1 @ w2
    assert _rel_err(_run(tmp_path / "o.onnx", {"x": x})[0], ref) <= 1e-5


def _model_with_function_constant(folder: Path, location: str, c: np.ndarray) -> Path:
    """y = ScaleBy(x) + w, where the model-local function ScaleBy multiplies by a Constant
    kept in external data at ``location``."""
    value = numpy_helper.from_array(c, "cv")
    value.ClearField("raw_data")
    value.data_location = TensorProto.EXTERNAL
    for key, v in (("location", location), ("offset", "0"), ("length", str(c.nbytes))):
        entry = value.external_data.add()
        entry.key, entry.value = key, v
    body = [helper.make_node("Constant", [], ["c"], value=value),
            helper.make_node("Mul", ["xin", "c"], ["xout"])]
    function = helper.make_function("local", "ScaleBy", ["xin"], ["xout"], body,
                                    [helper.make_opsetid("", 17)])
    w = np.zeros((c.shape[0],), np.float32)
    graph = helper.make_graph(
        [helper.make_node("ScaleBy", ["x"], ["xs"], domain="local"),
         helper.make_node("Add", ["xs", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, c.shape[0]])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, functions=[function], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("local", 1)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "t.onnx"))
    return folder / "t.onnx"


def test_constants_of_model_local_functions_are_copied_into_the_output_data(tmp_path):
    rng = np.random.default_rng(21)
    c = rng.standard_normal((8,)).astype(np.float32)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "c.bin").write_bytes(c.tobytes())
    path = _model_with_function_constant(tmp_path / "t", "c.bin", c)
    target = ADAPTER.read(path)
    new_w = rng.standard_normal((8,)).astype(np.float32)
    _write(target, {"w": new_w}, tmp_path / "o.onnx")
    out = onnx.load(str(tmp_path / "o.onnx"), load_external_data=False)
    const = out.functions[0].node[0].attribute[0].t
    assert [(e.key, e.value) for e in const.external_data][0] == ("location", "o.onnx.data")
    x = rng.standard_normal((2, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "o.onnx", {"x": x})[0], x * c + new_w, rtol=1e-6)


def test_a_function_constant_naming_a_file_outside_is_refused(tmp_path):
    """Graph Constants and subgraphs were checked; a model-local function's Constant kept
    pointing at ``../outside/secret.bin``, and the output carried that reference on."""
    from weightmap.errors import UnsafeInputError
    (tmp_path / "outside").mkdir()
    c = np.arange(8, dtype=np.float32)
    (tmp_path / "outside" / "secret.bin").write_bytes(c.tobytes())
    path = _model_with_function_constant(tmp_path / "t", "../outside/secret.bin", c)
    target = ADAPTER.read(path)
    with pytest.raises(UnsafeInputError, match="climbs out"):
        _write(target, {"w": np.zeros(8, np.float32)}, tmp_path / "o.onnx")
    assert sorted(os.listdir(tmp_path)) == ["outside", "t"]
