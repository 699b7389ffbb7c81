import hashlib

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.errors import PlanError


def _template(tmp_path):
    path = tmp_path / "template.safetensors"
    save_file({"fc.weight": np.zeros((3, 2), np.float32), "fc.bias": np.zeros(3, np.float32)},
              str(path))
    return path


def test_manifest_records_the_sha256_of_each_written_tensor(tmp_path):
    src = {"fc.weight": np.arange(6, dtype=np.float32).reshape(3, 2),
           "fc.bias": np.ones(3, np.float32)}
    out = tmp_path / "o.safetensors"
    report = weightmap.port(src, _template(tmp_path), out)
    written = load_file(str(out))
    for name, entry in report.manifest["params"].items():
        assert entry["sha256"] == hashlib.sha256(written[name].tobytes()).hexdigest()
    assert report.manifest["summary"]["verified"] is True


def test_nonfinite_values_are_counted_and_can_be_refused(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    weight[0, 0], weight[1, 1] = np.nan, np.inf
    src = {"fc.weight": weight, "fc.bias": np.ones(3, np.float32)}
    report = weightmap.port(src, _template(tmp_path), tmp_path / "o.safetensors")
    assert report.manifest["params"]["fc.weight"]["nonfinite"] == 2
    assert report.manifest["summary"]["nonfinite_tensors"] == 1
    out = tmp_path / "refused.safetensors"
    with pytest.raises(PlanError, match="2 non-finite"):
        weightmap.port(src, _template(tmp_path), out, fail_on_nonfinite=True)
    assert not out.exists() and not (tmp_path / "refused.manifest.json").exists()


@pytest.mark.parametrize("workers", [1, 3])
def test_digests_match_the_bytes_whatever_the_chunking(tmp_path, monkeypatch, workers):
    """Tensors larger than a read-back chunk, several dtypes, on one thread or several."""
    import ml_dtypes
    from weightmap.emit import readback
    monkeypatch.setattr(readback, "CHUNK", 64)
    rng = np.random.default_rng(1)
    arrays = {"a": rng.standard_normal((7, 13)).astype(np.float32),
              "b": rng.standard_normal(50).astype(ml_dtypes.bfloat16),
              "c": np.arange(33, dtype=np.int64), "d": np.zeros((0, 3), np.float32)}
    arrays["a"][3, 4] = np.nan
    arrays["b"][7] = np.inf
    src = tmp_path / "src.safetensors"
    save_file(arrays, str(src))
    plan = weightmap.plan(src, src)
    checked = readback.check_written(src, plan, workers=workers)
    for name, value in arrays.items():
        assert checked[name]["sha256"] == hashlib.sha256(value.tobytes()).hexdigest()
    assert checked["a"]["nonfinite"] == 1 and checked["b"]["nonfinite"] == 1
    assert "nonfinite" not in checked["c"] and "nonfinite" not in checked["d"]


def test_digests_taken_while_writing_are_the_digests_of_the_file(tmp_path, monkeypatch):
    """The safetensors writer reads each tensor back as it lands (readback.ReadBack); the manifest
    must be what a read-back of the finished file gives."""
    from weightmap.emit import readback
    rng = np.random.default_rng(3)
    src = {"fc.weight": rng.standard_normal((3, 2)).astype(np.float32),
           "fc.bias": np.array([1.0, np.nan, 3.0], np.float32)}
    taken = []
    real = readback.ReadBack.take

    def spy(self, path, t, offset, nbytes):
        taken.append(t.target)
        return real(self, path, t, offset, nbytes)

    monkeypatch.setattr(readback.ReadBack, "take", spy)
    out = tmp_path / "o.safetensors"
    report = weightmap.port(src, _template(tmp_path), out)
    assert sorted(taken) == ["fc.bias", "fc.weight"]
    plan = weightmap.plan(src, _template(tmp_path))
    again = readback.check_written(out, plan)
    for name, entry in again.items():
        assert {k: report.manifest["params"][name].get(k) for k in entry} == entry
    assert report.manifest["params"]["fc.bias"]["nonfinite"] == 1


def test_a_digest_taken_at_another_span_is_not_trusted(tmp_path):
    from weightmap.emit import readback
    arrays = {"a": np.arange(8, dtype=np.float32), "b": np.ones(8, np.float32)}
    path = tmp_path / "x.safetensors"
    save_file(arrays, str(path))
    plan = weightmap.plan(path, path)
    t_a = next(t for t in plan.tensors if t.target == "a")
    param_b = weightmap.read(path).param("b")
    read_back = readback.ReadBack()
    read_back.take(path, t_a, param_b.data.offset, 32)     # "a" digested at b's bytes
    assert read_back.lookup("a", weightmap.read(path).param("a")) is None
    checked = readback.check_written(path, plan, read_back=read_back)
    assert checked["a"]["sha256"] == hashlib.sha256(arrays["a"].tobytes()).hexdigest()


def test_a_digest_fed_in_parts_of_any_length_is_the_digest_of_the_whole():
    """The direct writer feeds read-back windows that cut elements anywhere."""
    import ml_dtypes
    from weightmap.emit.readback import Digest
    rng = np.random.default_rng(5)
    for arr, dtype in [(rng.standard_normal(301).astype(np.float32), "float32"),
                       (rng.standard_normal(97).astype(ml_dtypes.bfloat16), "bfloat16"),
                       (np.arange(50, dtype=np.int64), "int64")]:
        if dtype != "int64":
            arr[[3, 40, 90]] = [np.nan, np.inf, -np.inf]
        data = arr.tobytes()
        cuts = sorted(rng.integers(0, len(data), 25).tolist())
        digest = Digest(dtype)
        for a, b in zip([0] + cuts, cuts + [len(data)]):
            digest.update(memoryview(data)[a:b])
        entry = digest.entry()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry.get("nonfinite", 0) == (0 if dtype == "int64" else 3)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_stream_read_back_in_windows_records_what_take_records(tmp_path, workers):
    """Windows digested on several threads (each tensor's parts in order) record what a
    read-back of each tensor records."""
    from weightmap.emit import readback
    rng = np.random.default_rng(6)
    arrays = {"a": rng.standard_normal((9, 13)).astype(np.float32),
              "b": np.arange(7, dtype=np.int16), "e": np.zeros((0, 2), np.float32),
              "c": np.array([1.0, np.nan], np.float64)}
    path = tmp_path / "x.safetensors"
    save_file(arrays, str(path))
    plan = weightmap.plan(path, path)
    params = {p.name: p for p in weightmap.read(path).params()}
    spans = [(t, params[t.target].data.offset, params[t.target].data.nbytes())
             for t in plan.tensors]
    streamed, taken = readback.ReadBack(), readback.ReadBack()
    data = path.read_bytes()
    with streamed.stream(path, spans, workers=workers) as feed:
        futures = [feed(lo, memoryview(data)[lo:lo + 40]) for lo in range(0, len(data), 40)]
    assert all(f.done() and f.exception() is None for f in futures)
    for t, offset, nbytes in spans:
        if nbytes:
            taken.take(path, t, offset, nbytes)
    for name, p in params.items():
        assert streamed.lookup(name, p) == taken.lookup(name, p)
        assert (streamed.lookup(name, p) is None) == (name == "e")
    assert streamed.lookup("c", params["c"])["nonfinite"] == 1


@pytest.mark.parametrize("mode", ["written", "device"])
def test_past_the_page_cache_the_manifest_holds_the_digests_a_reader_loads(tmp_path, mode):
    """Default: each window digested as the disk was given it, no second pass over the disk;
    "device" re-reads it. Either way the manifest's digests are those of the bytes a reader
    loads from the published file, and the manifest says which check ran."""
    kwargs = {} if mode == "written" else {"read_back": mode}
    report, written, _ = _port_a_dense_layer(tmp_path, direct_io=True, **kwargs)
    for name, entry in report.manifest["params"].items():
        assert entry["sha256"] == hashlib.sha256(written[name].tobytes()).hexdigest()
    assert report.manifest["params"]["fc.bias"]["nonfinite"] == 1
    assert report.manifest["summary"]["read_back"] == mode


@pytest.mark.parametrize("option, message", [
    ({"read_back": "disk"}, "read_back='disk' is not a read-back mode"),
    ({"digest": "md5"}, "digest='md5' is not a digest weightmap takes")])
def test_an_unknown_read_back_mode_or_digest_is_refused_before_anything_is_written(
        tmp_path, option, message):
    from weightmap.errors import UsageError
    out = tmp_path / "o.safetensors"
    with pytest.raises(UsageError, match=message):
        weightmap.port({"fc.weight": np.ones((3, 2), np.float32),
                        "fc.bias": np.ones(3, np.float32)}, _template(tmp_path), out, **option)
    assert not out.exists()


@pytest.mark.parametrize("direct_io", [False, True])
def test_a_blake3_digest_is_the_blake3_of_the_bytes_a_reader_loads(tmp_path, direct_io):
    """--digest blake3: each tensor's BLAKE3 (and no SHA-256) in the manifest, on the direct
    path (windows digested as written) and the page-cache one (read back), and the manifest
    says which digest it holds; verify trusts such a manifest beside its weights."""
    blake3 = pytest.importorskip("blake3")
    from weightmap.equivalence import provenance
    report, written, out = _port_a_dense_layer(tmp_path, direct_io=direct_io, digest="blake3")
    for name, entry in report.manifest["params"].items():
        assert entry["blake3"] == blake3.blake3(written[name].tobytes()).hexdigest()
        assert "sha256" not in entry
    assert report.manifest["params"]["fc.bias"]["nonfinite"] == 1
    assert report.manifest["summary"]["digest"] == "blake3"
    assert "tensors (BLAKE3 in the manifest)" in str(report)       # what the report claims
    target = weightmap.read(tmp_path / "template.safetensors")
    assert provenance.mismatch(report.manifest, target, out) is None
    tampered = {**report.manifest, "params": {**report.manifest["params"],
                                              "fc.bias": {**report.manifest["params"]["fc.bias"],
                                                          "blake3": "0" * 64}}}
    assert "BLAKE3 of fc.bias" in provenance.mismatch(tampered, target, out)


def test_the_default_digest_is_sha256_and_recorded(tmp_path):
    out = tmp_path / "o.safetensors"
    report = weightmap.port({"fc.weight": np.ones((3, 2), np.float32),
                             "fc.bias": np.ones(3, np.float32)}, _template(tmp_path), out)
    assert report.manifest["summary"]["digest"] == "sha256"
    assert "tensors (SHA-256 in the manifest)" in str(report)
    assert all("sha256" in e and "blake3" not in e for e in report.manifest["params"].values())


def test_blake3_without_its_package_says_what_to_install(monkeypatch):
    import sys
    from weightmap.emit import readback
    from weightmap.errors import MissingDependencyError
    monkeypatch.setitem(sys.modules, "blake3", None)      # import blake3 -> ImportError
    with pytest.raises(MissingDependencyError, match="needs the blake3 package") as caught:
        readback.check_algorithm("blake3")
    assert "weightmap[fast]" in caught.value.hint
    assert not readback.digest_available("blake3") and readback.digest_available("sha256")


def _port_a_dense_layer(tmp_path, *, direct_io, **options):
    """A dense layer (one Inf in its bias) ported into a safetensors template, past the page
    cache when ``direct_io`` (skipped where the file system cannot): (report, what a reader
    loads from the output, the output's path)."""
    if direct_io:
        import os
        from weightmap.io import direct
        fd = direct.open_direct(tmp_path / "probe")
        if fd is None:
            pytest.skip("this file system does not do O_DIRECT")
        os.close(fd)
    rng = np.random.default_rng(7)
    src = {"fc.weight": rng.standard_normal((300, 200)).astype(np.float32),
           "fc.bias": np.array([1.0, np.inf, 3.0], np.float32)}
    template = tmp_path / "template.safetensors"
    save_file({k: np.zeros_like(v) for k, v in src.items()}, str(template))
    out = tmp_path / "o.safetensors"
    report = weightmap.port(src, template, out, direct_io=direct_io, **options)
    return report, load_file(str(out)), out
