"""Executing a plan for writers: raw spans, jobs, progress, skipping new tensors
(weightmap/transform/execute.py)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import save_file

from weightmap.errors import FormatError
from weightmap.io.spans import FileSpan
from weightmap.transform.execute import TensorStream, produce, raw_span
from weightmap.graph import CallableData, Layer, Param, ParamGraph
from weightmap.planning.plan import Plan, TensorPlan
from weightmap.reading.read import read
from weightmap.transform import Step


def test_raw_span_only_for_untransformed_mapped_tensors(tmp_path):
    values = {"w": np.arange(12, dtype=np.float32).reshape(3, 4)}
    save_file(values, tmp_path / "src.safetensors")
    src = {p.name: p for p in read(tmp_path / "src.safetensors").params()}

    def plan(**kw):
        base = dict(target="w", layer="", shape=(3, 4), dtype="float32", status="transferred",
                    sources=("w",))
        return TensorPlan(**{**base, **kw})

    span = raw_span(plan(), src)
    assert span == FileSpan(src["w"].data.path, src["w"].data.offset, 48)
    assert raw_span(plan(status="transformed", shape=(4, 3),
                         steps=(Step("transpose", {"perm": [1, 0]}),)), src) is None
    assert raw_span(plan(steps=(Step("cast", {"dtype": "float16"}),), dtype="float16"),
                    src) is None
    assert raw_span(plan(status="new", sources=()), src) is None


def test_a_truncated_source_is_read_not_copied_and_says_so(tmp_path):
    values = {"w": np.ones((64, 64), np.float32)}
    save_file(values, tmp_path / "src.safetensors")
    graph = read(tmp_path / "src.safetensors")
    with open(tmp_path / "src.safetensors", "r+b") as fh:
        fh.truncate(os.path.getsize(tmp_path / "src.safetensors") - 100)
    t = TensorPlan(target="w", layer="w", shape=(64, 64), dtype="float32",
                   status="transferred", sources=("w",))
    plan = Plan(source={}, target={}, tensors=(t,))
    stream = TensorStream(plan, graph, graph)
    (job,) = stream.jobs()
    with pytest.raises(FormatError, match="truncated"):
        job.compute()


def _boom():
    raise AssertionError("a new tensor was read")


def _graphs(tmp_path):
    values = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
              "fc.bias": np.ones(2, np.float32)}
    save_file(values, tmp_path / "src.safetensors")
    src = read(tmp_path / "src.safetensors")
    params = (Param("fc.weight", "kernel", (3, 2), "float32", ("out", "in")),
              Param("fc.bias", "bias", (2,), "float32", ("out",)),
              Param("head.weight", "kernel", (1, 2), "float32", ("out", "in"),
                    data=CallableData(_boom)))
    tgt = ParamGraph(format="arrays", framework="torch", source="t",
                     layers=(Layer("fc", "dense", params[:2]), Layer("head", "dense", params[2:])))
    plan = Plan(source={}, target={}, tensors=(
        TensorPlan("fc.weight", "fc", (3, 2), "float32", "transformed", ("fc.weight",),
                   (Step("transpose", {"perm": [1, 0]}),)),
        TensorPlan("fc.bias", "fc", (2,), "float32", "transferred", ("fc.bias",)),
        TensorPlan("head.weight", "head", (1, 2), "float32", "new")))
    return src, tgt, plan, values


def test_produce_can_skip_new_tensors_without_reading_them(tmp_path):
    src, tgt, plan, values = _graphs(tmp_path)
    out = dict((t.target, a) for t, a in produce(plan, src, tgt, skip_new=True))
    assert sorted(out) == ["fc.bias", "fc.weight"]
    np.testing.assert_array_equal(out["fc.weight"], values["fc.weight"].T)
    with pytest.raises(AssertionError, match="new tensor was read"):
        list(produce(plan, src, tgt))


class Counter:
    def __init__(self):
        self.tensors = self.nbytes = 0

    def advance(self, nbytes, tensors=1):
        self.tensors += tensors
        self.nbytes += nbytes


def test_stream_jobs_give_spans_for_copies_and_arrays_for_the_rest(tmp_path):
    src, tgt, plan, values = _graphs(tmp_path)
    bar = Counter()
    stream = TensorStream(plan, src, tgt, bar)
    jobs = stream.jobs()
    assert [j.tensor.target for j in jobs] == ["fc.weight", "fc.bias", "head.weight"]
    first, second = jobs[0].compute(), jobs[1].compute()
    np.testing.assert_array_equal(first, values["fc.weight"].T)
    assert isinstance(second, FileSpan) and second.nbytes == 8
    with open(second.path, "rb") as fh:
        fh.seek(second.offset)
        assert fh.read(8) == values["fc.bias"].tobytes()
    for t in plan.tensors[:2]:
        stream.advance(t)
    assert (bar.tensors, bar.nbytes) == (2, 24 + 8)


def test_calling_the_stream_yields_arrays_and_counts_them(tmp_path):
    src, tgt, plan, _ = _graphs(tmp_path)
    plan = Plan(source={}, target={}, tensors=plan.tensors[:2])
    bar = Counter()
    got = [t.target for t, _ in TensorStream(plan, src, tgt, bar)()]
    assert got == ["fc.weight", "fc.bias"] and bar.tensors == 2


def _fused(tmp_path, dtype=np.float32):
    """q, k, v stored one after another in a file, and a plan fusing them along axis 0."""
    rng = np.random.default_rng(2)
    values = {n: rng.standard_normal((3 + i, 4)).astype(dtype) for i, n in enumerate("qkv")}
    values["x"] = rng.standard_normal((5, 4)).astype(dtype)
    save_file(values, tmp_path / "src.safetensors")
    graph = read(tmp_path / "src.safetensors")
    dt = graph.param("q").dtype
    fused = TensorPlan(target="qkv", layer="qkv", shape=(12, 4), dtype=dt,
                       status="transformed", sources=("q", "k", "v"),
                       steps=(Step("concat", {"axis": 0}),))
    other = TensorPlan(target="y", layer="y", shape=(4, 5), dtype=dt, status="transformed",
                       sources=("x",), steps=(Step("transpose", {"perm": [1, 0]}),))
    return values, graph, Plan(source={}, target={}, tensors=(fused, other))


def test_a_concatenation_along_the_first_axis_is_copied_part_by_part(tmp_path):
    from weightmap.transform.execute import FileSpans, raw_spans
    values, graph, plan = _fused(tmp_path)
    src = {p.name: p for p in graph.params()}
    spans = raw_spans(plan.tensors[0], src)
    assert isinstance(spans, FileSpans) and spans.nbytes == 12 * 4 * 4
    want = np.concatenate([values[n] for n in "qkv"])
    assert spans.read((12, 4), "float32").tobytes() == want.tobytes()
    assert b"".join(open(p.path, "rb").read()[p.offset:p.offset + p.nbytes]
                    for p in spans.pieces(10, 100)) == want.tobytes()[10:110]
    assert raw_spans(plan.tensors[1], src) is None
    on_axis_1 = TensorPlan(target="w", layer="w", shape=(3, 12), dtype="float32",
                           status="transformed", sources=("q", "q", "q"),
                           steps=(Step("concat", {"axis": 1}),))
    assert raw_spans(on_axis_1, src) is None
    (job, _) = TensorStream(plan, graph, graph).jobs()
    assert job.compute() == spans


@pytest.mark.parametrize("direct_io", [False, True])
def test_concatenated_spans_write_the_bytes_the_concatenation_computes(tmp_path, direct_io,
                                                                        monkeypatch, request):
    """The fused tensor copied part by part is the tensor ``np.concatenate`` computes, through
    the page cache and past it (windows small enough that the parts cross them)."""
    from safetensors.numpy import load_file

    from weightmap.io import direct
    from weightmap_safetensors.emit import specs_of
    from weightmap_safetensors.writer import write, write_jobs
    if direct_io:
        request.getfixturevalue("direct_io_or_skip")
        monkeypatch.setattr(direct, "WINDOW", direct.BLOCK)
    values = {n: np.random.default_rng(i).standard_normal((300 + i, 40)).astype(np.float32)
              for i, n in enumerate("qkvx")}
    save_file(values, tmp_path / "src.safetensors")
    graph = read(tmp_path / "src.safetensors")
    fused = TensorPlan(target="qkv", layer="qkv", shape=(903, 40), dtype="float32",
                       status="transformed", sources=("q", "k", "v"),
                       steps=(Step("concat", {"axis": 0}),))
    plan = Plan(source={}, target={}, tensors=(fused,))
    write_jobs(tmp_path / "spans.safetensors", specs_of(plan),
               TensorStream(plan, graph, graph).jobs(), direct=direct_io)
    write(tmp_path / "arrays.safetensors", specs_of(plan), iter(
        [("qkv", np.concatenate([values[n] for n in "qkv"]))]))
    assert (tmp_path / "spans.safetensors").read_bytes() == \
        (tmp_path / "arrays.safetensors").read_bytes()
    assert load_file(tmp_path / "spans.safetensors")["qkv"].tobytes() == \
        np.concatenate([values[n] for n in "qkv"]).tobytes()


def test_the_pt_writer_reads_concatenated_spans_into_the_concatenation(tmp_path):
    from weightmap_torch.emit import prefetched
    values, graph, plan = _fused(tmp_path)
    plan = Plan(source={}, target={}, tensors=plan.tensors[:1])
    got = dict(prefetched(TensorStream(plan, graph, graph)))
    assert got["qkv"].tobytes() == np.concatenate([values[n] for n in "qkv"]).tobytes()
    assert got["qkv"].shape == (12, 4)
