"""The streaming safetensors writer: jobs on threads, file-to-file copies, positioned writes
(adapters/weightmap_safetensors/writer.py and fastio.py)."""
from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from weightmap.errors import FormatError, UsageError
from weightmap.io.spans import FileSpan
from weightmap.transform.execute import Job
from weightmap.reading.read import read
from weightmap_safetensors.writer import layout, page_residue, write, write_jobs


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a.weight": rng.standard_normal((64, 300)).astype(np.float32),
            "a.bias": rng.standard_normal(64).astype(np.float32),
            "b.weight": rng.standard_normal((300, 64)).astype(np.float16),
            "b.scale": np.array(2.5, dtype=np.float32),
            "b.empty": np.zeros((0, 4), np.float32),
            "c.bf16": rng.standard_normal((5, 7)).astype(ml_dtypes.bfloat16)}


def specs_of(values: dict) -> list:
    from weightmap.dtypes import from_numpy
    return [(k, tuple(v.shape), from_numpy(v.dtype)) for k, v in values.items()]


class Done:
    """The part of a TensorPlan the writer and the read-back use."""

    def __init__(self, name, dtype="float32"):
        self.target, self.dtype = name, dtype


def jobs_of(values: dict) -> list[Job]:
    return [Job(Done(k), lambda v=v: v) for k, v in values.items()]


@pytest.mark.parametrize("workers", [1, 3])
def test_jobs_write_what_the_iterator_writes(tmp_path, workers):
    values = arrays()
    write(tmp_path / "seq.safetensors", specs_of(values), iter(values.items()), {"k": "v"})
    seen = []
    write_jobs(tmp_path / "par.safetensors", specs_of(values), jobs_of(values), {"k": "v"},
               workers=workers, written=lambda t: seen.append(t.target))
    seq, par = tmp_path / "seq.safetensors", tmp_path / "par.safetensors"
    assert seq.read_bytes() == par.read_bytes()
    assert sorted(seen) == sorted(values)
    back = load_file(tmp_path / "par.safetensors")
    for k, v in values.items():
        assert back[k].tobytes() == np.ascontiguousarray(v).tobytes() and back[k].shape == v.shape


def test_writing_over_a_longer_file_leaves_no_stale_bytes(tmp_path):
    """The writers open without O_TRUNC (see weightmap.io.atomic.open_output): what was there before is
    overwritten or cut."""
    values = arrays()
    fresh, reused = tmp_path / "fresh.safetensors", tmp_path / "reused.safetensors"
    write(fresh, specs_of(values), iter(values.items()))
    for writer in ("iterator", "jobs"):
        reused.write_bytes(b"\xff" * (fresh.stat().st_size * 3))
        if writer == "iterator":
            write(reused, specs_of(values), iter(values.items()))
        else:
            write_jobs(reused, specs_of(values), jobs_of(values), workers=2)
        assert reused.read_bytes() == fresh.read_bytes()


def test_strided_and_big_endian_arrays_are_written_in_c_order_little_endian(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 200)).astype(np.float32)
    values = {"t": base.T, "be": base[:3, :4].astype(">f4"), "step": base[:, ::2]}
    write_jobs(tmp_path / "o.safetensors", specs_of(values), jobs_of(values), workers=2)
    back = load_file(tmp_path / "o.safetensors")
    for k, v in values.items():
        np.testing.assert_array_equal(back[k], v)


def test_file_spans_are_copied_byte_for_byte(tmp_path):
    values = {k: v for k, v in arrays(2).items() if k != "c.bf16"}   # numpy writer: no bf16
    save_file(values, tmp_path / "src.safetensors")
    graph = read(tmp_path / "src.safetensors")
    spans = {p.name: FileSpan(p.data.path, p.data.offset, p.data.nbytes()) for p in
             graph.params() if p.nbytes}
    jobs = [Job(Done(k), (lambda s=spans[k]: s) if k in spans else (lambda v=v: v))
            for k, v in values.items()]
    write_jobs(tmp_path / "out.safetensors", specs_of(values), jobs, workers=2)
    back = load_file(tmp_path / "out.safetensors")
    for k, v in values.items():
        assert back[k].tobytes() == v.tobytes()


def test_copied_tensors_keep_their_page_offset(tmp_path):
    """The header is padded so that file-to-file copies move whole pages."""
    values = {"a": np.ones(1000, np.float32), "b": np.arange(4096, dtype=np.float32)}
    save_file(values, tmp_path / "src.safetensors", metadata={"pad": "x" * 333})
    graph = read(tmp_path / "src.safetensors")
    src = {p.name: p.data for p in graph.params()}
    spans = {k: FileSpan(d.path, d.offset, d.nbytes()) for k, d in src.items()}
    jobs = [Job(Done(k), lambda s=spans[k]: s, spans[k]) for k in ("b", "a")]
    specs = [("b", (4096,), "float32"), ("a", (1000,), "float32")]
    write_jobs(tmp_path / "out.safetensors", specs, jobs)
    out = {p.name: p.data for p in read(tmp_path / "out.safetensors").params()}
    assert out["b"].offset % 4096 == src["b"].offset % 4096      # the bigger copy wins
    back = load_file(tmp_path / "out.safetensors")
    for k, v in values.items():
        assert back[k].tobytes() == v.tobytes()
    assert page_residue(specs, [Job(Done(k), lambda: None) for k in ("b", "a")]) is None


def test_a_span_of_the_wrong_size_is_refused(tmp_path):
    values = {"x": np.ones(4, np.float32)}
    save_file(values, tmp_path / "src.safetensors")
    p = next(read(tmp_path / "src.safetensors").params())
    jobs = [Job(Done("x"), lambda: FileSpan(p.data.path, p.data.offset, 8))]
    with pytest.raises(UsageError, match="span holds 8 bytes"):
        write_jobs(tmp_path / "out.safetensors", specs_of(values), jobs)


def test_the_first_failing_job_stops_the_write(tmp_path):
    values = arrays()

    def boom():
        raise FormatError("bad tensor", tensor="b.weight")

    jobs = [Job(Done(k), boom if k == "b.weight" else (lambda v=v: v))
            for k, v in values.items()]
    with pytest.raises(FormatError, match="bad tensor"):
        write_jobs(tmp_path / "o.safetensors", specs_of(values), jobs, workers=2)


def test_header_offsets_follow_the_specs():
    values = arrays()
    prefix, offsets = layout(specs_of(values))
    assert offsets[0] == len(prefix) and len(prefix) % 8 == 0
    sizes = [np.asarray(v).nbytes for v in values.values()]
    assert [b - a for a, b in zip(offsets, offsets[1:])] == sizes[:-1]


# ---- past the page cache (weightmap.io.direct): the same file, read back as it lands -----------

@pytest.fixture
def small_windows(monkeypatch, request):
    """Windows of two blocks, so that every tensor here crosses one; skips where the file
    system does not do direct I/O."""
    from weightmap.io import direct
    request.getfixturevalue("direct_io_or_skip")
    monkeypatch.setattr(direct, "WINDOW", 2 * direct.BLOCK)


def mixed_jobs(tmp_path):
    """Arrays (transposed, strided, big-endian, bf16, empty, 0-d) and file spans."""
    values = arrays(5)
    rng = np.random.default_rng(5)
    base = rng.standard_normal((300, 70)).astype(np.float32)
    values.update({"t": base.T, "be": base[:30, :4].astype(">f4"), "step": base[:, ::2]})
    plain = {k: v for k, v in arrays(6).items() if k != "c.bf16"}
    save_file(plain, tmp_path / "src.safetensors")
    spans = {f"span.{p.name}": FileSpan(p.data.path, p.data.offset, p.data.nbytes())
             for p in read(tmp_path / "src.safetensors").params() if p.nbytes}
    specs = specs_of(values) + [(k, plain[k[5:]].shape, specs_of({"x": plain[k[5:]]})[0][2])
                                for k in spans]
    jobs = jobs_of(values) + [Job(Done(k), lambda s=s: s, s) for k, s in spans.items()]
    for job, (_, _, dtype) in zip(jobs, specs):
        job.tensor.dtype = dtype
    return specs, jobs


@pytest.mark.parametrize("workers", [1, 2])
def test_direct_io_writes_the_same_file_as_the_page_cache(tmp_path, small_windows, workers):
    specs, jobs = mixed_jobs(tmp_path)
    seen = []
    write_jobs(tmp_path / "cached.safetensors", specs, jobs, {"k": "v"}, direct=False)
    write_jobs(tmp_path / "direct.safetensors", specs, jobs, {"k": "v"}, workers=workers,
               direct=True, written=lambda t: seen.append(t.target))
    assert (tmp_path / "direct.safetensors").read_bytes() == \
        (tmp_path / "cached.safetensors").read_bytes()
    assert sorted(seen) == sorted(s[0] for s in specs)


@pytest.mark.parametrize("mode", ["written", "device"])
def test_direct_io_reads_each_tensor_back_as_the_check_would(tmp_path, small_windows,
                                                              monkeypatch, mode):
    """Digested as the disk was given each window ("written") or re-read from it ("device"):
    the same digests, those of the file; only "device" reads the file."""
    import hashlib

    from weightmap.io import direct
    from weightmap.emit.readback import ReadBack
    reads = []
    real = direct._pread
    monkeypatch.setattr(direct, "_pread", lambda *a: (reads.append(a[2]), real(*a))[1])
    specs, jobs = mixed_jobs(tmp_path)
    out = tmp_path / "direct.safetensors"
    read_back = ReadBack(mode)
    write_jobs(out, specs, jobs, direct=True, read_back=read_back)
    assert (len(reads) > 0) == (mode == "device")
    back = {p.name: p for p in read(out).params()}
    for name, p in back.items():
        got = read_back.lookup(name, p)
        if p.nbytes == 0:
            assert got is None                     # left to the final check
            continue
        assert got["sha256"] == hashlib.sha256(np.ascontiguousarray(p.read()).tobytes()).hexdigest()


def test_direct_io_over_a_longer_file_leaves_no_stale_bytes(tmp_path, small_windows):
    values = arrays()
    fresh, reused = tmp_path / "fresh.safetensors", tmp_path / "reused.safetensors"
    write(fresh, specs_of(values), iter(values.items()))
    reused.write_bytes(b"\xff" * (fresh.stat().st_size * 3))
    write_jobs(reused, specs_of(values), jobs_of(values), direct=True)
    assert reused.read_bytes() == fresh.read_bytes()


def test_direct_io_refuses_what_the_page_cache_path_refuses(tmp_path, small_windows):
    values = {"x": np.ones(4, np.float32)}
    save_file(values, tmp_path / "src.safetensors")
    p = next(read(tmp_path / "src.safetensors").params())
    jobs = [Job(Done("x"), lambda: FileSpan(p.data.path, p.data.offset, 8))]
    with pytest.raises(UsageError, match="span holds 8 bytes"):
        write_jobs(tmp_path / "out.safetensors", specs_of(values), jobs, direct=True)
    wrong = [Job(Done("x"), lambda: np.ones(5, np.float32))]
    with pytest.raises(UsageError, match=r"tensor has \(5,\) float32, header says \(4,\)"):
        write_jobs(tmp_path / "out.safetensors", specs_of(values), wrong, direct=True)

    def boom():
        raise FormatError("bad tensor", tensor="b.weight")

    values = arrays()
    jobs = [Job(Done(k), boom if k == "b.weight" else (lambda v=v: v))
            for k, v in values.items()]
    with pytest.raises(FormatError, match="bad tensor"):
        write_jobs(tmp_path / "o.safetensors", specs_of(values), jobs, workers=2, direct=True)
