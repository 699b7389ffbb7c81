"""What a port does to the user's files: a failed, interrupted or racing port changes nothing.

Each test is one promise of docs/security.md ("Outputs"): signals (SIGINT, SIGTERM, SIGHUP)
and ``kill -9`` mid-write; sharded and ONNX (model + external data) outputs that appear only
once verified; ``--force`` that keeps the old output whole until the new one is published; the
output and its manifest as one pair; no clobbering in a race; every written path checked
against every read path by file identity; devices and FIFOs refused; ``--save-plan`` checked
before anything is written; the ``before_publish`` hook (the port's last word before
publishing).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.errors import OutputError, PlanError, UsageError, WeightmapError

REPO = Path(__file__).resolve().parents[2]
ONNX_EXTERNAL = REPO / "fixtures" / "onnx" / "external"
SHARDED = REPO / "fixtures" / "safetensors" / "sharded"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "adapters"),
                                                    os.environ.get("PYTHONPATH", "")])}


def wm(*args, cwd=None, **kw):
    return subprocess.run([sys.executable, "-m", "weightmap", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=ENV, **kw)


def one_line(r, code):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("weightmap: "), r.stderr
    assert "Traceback" not in r.stderr


def arrays(nan=False):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)
    if nan:
        w[0, 0] = np.nan
    return {"a.weight": w, "a.bias": np.ones(4, np.float32),
            "b.weight": np.full((2, 4), 3, np.float32), "b.bias": np.zeros(2, np.float32)}


def template(folder: Path) -> Path:
    path = folder / "template.safetensors"
    save_file({k: np.zeros_like(v) for k, v in arrays().items()}, str(path))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (hidden ones included) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def accepted(path: Path) -> bool:
    """Whether weightmap's reader takes ``path`` for a checkpoint."""
    try:
        weightmap.read(str(path))
    except WeightmapError:
        return False
    return True


# ------------------------------------------------------------------ signals and kill -9
@pytest.fixture(scope="module")
def big_source(tmp_path_factory):
    """A ~192 MB safetensors file: a port of it to itself writes long enough to be signalled."""
    folder = tmp_path_factory.mktemp("big")
    path = folder / "big.safetensors"
    rng = np.random.default_rng(0)
    save_file({f"layer{i}.weight": rng.standard_normal((2048, 2048), dtype=np.float32)
               for i in range(12)}, str(path))
    return path


def _start_port(big_source, out_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "weightmap", "port", str(big_source),
                             "--to", str(big_source), "--out", str(out_dir / "o.safetensors"),
                             "--quiet", *extra], cwd=out_dir, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_writing(proc, folder, timeout=120.0):
    """Wait until the port has begun writing into ``folder`` (anything there)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"the port ended before it could be signalled: {proc.communicate()}")
        if any(folder.iterdir()):
            time.sleep(0.05)
            return
        time.sleep(0.002)
    pytest.fail("the port never began writing")


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
                         ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_mid_write_leaves_nothing(big_source, tmp_path, signo):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_port(big_source, out_dir)
    _wait_for_writing(proc, out_dir)
    proc.send_signal(signo)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signo, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("weightmap: interrupted"), stderr
    assert stdout == "" and "Traceback" not in stderr
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("shard", [False, True], ids=["one-file", "sharded"])
def test_kill_9_mid_write_leaves_nothing_a_reader_accepts(big_source, tmp_path, shard):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start_port(big_source, out_dir, *(["--shard-size", "40MB"] if shard else []))
    _wait_for_writing(proc, out_dir)
    proc.kill()
    proc.communicate(timeout=60)
    assert not (out_dir / "o.safetensors").exists()
    assert not (out_dir / "o.safetensors.index.json").exists()
    assert not accepted(out_dir)                        # no file of the folder is a checkpoint
    for left in out_dir.rglob("*"):                     # nor any leftover, read on its own
        assert not accepted(left), left
    # the next port into the folder clears what the killed one left: no process holds it, and
    # it is older than a minute (a folder just being created is left alone)
    old = time.time() - 120
    for left in out_dir.iterdir():
        os.utime(left, (old, old))
    weightmap.port(arrays(), template(tmp_path), out_dir / "next.safetensors")
    assert sorted(p.name for p in out_dir.iterdir()) == ["next.manifest.json",
                                                         "next.safetensors"]


def test_killed_before_the_check_a_sharded_output_shows_no_shard(tmp_path):
    """A sharded output is invisible until verified: killed between writing the shards and
    reading them back, nothing in the folder is a checkpoint."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = ("import os, sys, numpy as np, weightmap, weightmap.emit.dispatch as e\n"
            "e.check_written = lambda *a, **k: os._exit(9)\n"
            "from safetensors.numpy import load_file\n"
            f"src = load_file({str(template(tmp_path))!r})\n"
            f"weightmap.port({{k: v + 1 for k, v in src.items()}}, {str(template(tmp_path))!r},"
            f" {str(out_dir / 'o.safetensors')!r}, shard_size='20B', progress=False)\n")
    r = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True)
    assert r.returncode == 9, r.stderr
    assert not accepted(out_dir)
    assert not any(accepted(p) for p in out_dir.rglob("*"))


# ------------------------------------------------------------------ --force keeps the old output
def test_a_failed_force_port_keeps_the_old_sharded_output(tmp_path):
    out = tmp_path / "out" / "o.safetensors"
    out.parent.mkdir()
    weightmap.port(arrays(), template(tmp_path), out, shard_size="20B")
    before = snapshot(out.parent)
    assert "o.safetensors.index.json" in before and len(before) == 6   # 4 shards, index, manifest
    with pytest.raises(PlanError, match="non-finite"):
        weightmap.port(arrays(nan=True), template(tmp_path), out, shard_size="20B", force=True,
                       fail_on_nonfinite=True)
    assert snapshot(out.parent) == before
    assert accepted(out.with_name("o.safetensors.index.json"))


def _onnx_copy(tmp_path) -> Path:
    folder = tmp_path / "target"
    shutil.copytree(ONNX_EXTERNAL, folder)
    return folder / "model.onnx"


def test_a_failed_force_port_keeps_the_old_onnx_model_and_its_data(tmp_path, monkeypatch):
    target = _onnx_copy(tmp_path)
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    weightmap.port(str(target), str(target), out)
    before = snapshot(out.parent)
    assert sorted(before) == ["o.manifest.json", "o.onnx", "o.onnx.data"]
    import weightmap.emit.dispatch as emit_mod

    def fails(*args, **kwargs):
        raise PlanError("the check failed")
    monkeypatch.setattr(emit_mod, "check_written", fails)
    with pytest.raises(PlanError):
        weightmap.port(str(target), str(target), out, force=True)
    assert snapshot(out.parent) == before
    graph = weightmap.read(str(out))
    for p in graph.params():
        p.read()


def test_force_replaces_an_old_sharded_output_and_removes_its_shards(tmp_path):
    out = tmp_path / "out" / "o.safetensors"
    out.parent.mkdir()
    weightmap.port(arrays(), template(tmp_path), out, shard_size="20B")          # 4 shards
    weightmap.port(arrays(), template(tmp_path), out, shard_size="100B", force=True)  # 2 shards
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["o-00001-of-00002.safetensors", "o-00002-of-00002.safetensors",
                     "o.manifest.json", "o.safetensors.index.json"]
    got = {p.name: p.read() for p in weightmap.read(str(out.parent)).params()}
    for name, value in arrays().items():
        np.testing.assert_array_equal(got[name], value)


# ------------------------------------------------------------------ output and manifest: a pair
def test_when_the_output_cannot_be_published_the_old_pair_stays(tmp_path, monkeypatch):
    out = tmp_path / "o.safetensors"
    manifest = tmp_path / "o.manifest.json"
    weightmap.port(arrays(), template(tmp_path), out)
    before = snapshot(tmp_path)
    real_replace, real_rename = os.replace, os.rename

    def refuse_out(src, dst, *a, **k):
        if Path(dst) == out:
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst, *a, **k)
    monkeypatch.setattr(os, "replace", refuse_out)
    monkeypatch.setattr(os, "rename", lambda s, d, *a, **k: refuse_out(s, d) if Path(d) == out
                        else real_rename(s, d, *a, **k))
    with pytest.raises(OutputError, match="Input/output error"):
        weightmap.port({k: v + 1 for k, v in arrays().items()}, template(tmp_path), out,
                       force=True)
    assert snapshot(tmp_path) == before
    assert json.loads(manifest.read_text())["output"] == str(out)


def test_a_manifest_named_like_the_output_is_refused(tmp_path):
    out = tmp_path / "o.safetensors"
    r = wm("port", template(tmp_path), "--to", template(tmp_path), "--out", out,
           "--manifest", out)
    one_line(r, 2)
    assert "same file" in r.stderr and not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["template.safetensors"]


# ------------------------------------------------------------------ races
def test_a_port_racing_another_to_a_new_output_fails_instead_of_replacing_it(tmp_path,
                                                                             monkeypatch):
    """The other port publishes first (simulated at the read-back check, deterministic): this
    one fails with one line and leaves the winner's file as it was."""
    out = tmp_path / "o.safetensors"
    import weightmap.emit.dispatch as emit_mod
    real = emit_mod.check_written

    def the_other_port_wins(*args, **kwargs):
        out.write_bytes(b"the other port's output")
        return real(*args, **kwargs)
    monkeypatch.setattr(emit_mod, "check_written", the_other_port_wins)
    with pytest.raises(UsageError, match="appeared while") as caught:
        weightmap.port(arrays(), template(tmp_path), out)
    assert caught.value.exit_code == 2
    assert out.read_bytes() == b"the other port's output"
    assert sorted(os.listdir(tmp_path)) == ["o.safetensors", "template.safetensors"]


def test_two_concurrent_ports_never_both_succeed(tmp_path, big_source):
    """Two real processes to one new output: whichever publishes second fails (exit 2) unless
    it started after the first finished (then it finds the file and fails too)."""
    procs = [_start_port(big_source, tmp_path) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert loser[1].count("\n") == 1
    assert sorted(os.listdir(tmp_path)) == ["o.manifest.json", "o.safetensors"]
    assert load_file(str(tmp_path / "o.safetensors")).keys() == load_file(str(big_source)).keys()


# ------------------------------------------------------------------ written paths vs read paths
def _sharded_copy(tmp_path) -> Path:
    folder = tmp_path / "src"
    shutil.copytree(SHARDED, folder)
    return folder


@pytest.mark.parametrize("option", ["--out", "--manifest", "--save-plan"])
def test_no_written_path_may_be_a_source_shard(tmp_path, option):
    src = _sharded_copy(tmp_path)
    before = snapshot(src)
    shard = src / "model-00002-of-00002.safetensors"
    args = ["--out", tmp_path / "o.safetensors"] if option != "--out" else []
    r = wm("port", src, "--to", src, *args, option, shard, "--force", cwd=tmp_path)
    one_line(r, 2)
    assert "input" in r.stderr and snapshot(src) == before
    assert not (tmp_path / "o.safetensors").exists()


def test_out_may_not_be_the_index_of_a_sharded_source(tmp_path):
    src = _sharded_copy(tmp_path)
    before = snapshot(src)
    r = wm("port", src, "--to", src, "--out", src / "model.safetensors.index.json", "--force",
           "--shard-size", "1KB")
    one_line(r, 2)
    assert snapshot(src) == before


def test_out_may_not_be_the_onnx_sources_external_data(tmp_path):
    target = _onnx_copy(tmp_path)
    before = snapshot(target.parent)
    r = wm("port", target, "--to", target, "--out", target.parent / "weights.bin", "--force",
           cwd=tmp_path)
    one_line(r, 2)
    assert "input" in r.stderr and snapshot(target.parent) == before


def test_save_plan_may_not_be_the_source(tmp_path):
    src = template(tmp_path)
    before = src.read_bytes()
    r = wm("port", src, "--to", src, "--out", tmp_path / "o.safetensors", "--save-plan", src,
           "--force")
    one_line(r, 2)
    assert src.read_bytes() == before and not (tmp_path / "o.safetensors").exists()


def test_a_hard_link_to_an_input_is_the_input(tmp_path):
    src = template(tmp_path)
    os.link(src, tmp_path / "alias.safetensors")
    with pytest.raises(UsageError, match="input"):
        weightmap.port(str(src), str(src), tmp_path / "alias.safetensors", force=True)


# ------------------------------------------------------------------ --save-plan, devices, FIFOs
@pytest.mark.parametrize("where", ["exists", "no-folder", "is-a-folder"])
def test_save_plan_is_checked_before_anything_is_written(tmp_path, where):
    src = template(tmp_path)
    plan = {"exists": tmp_path / "plan.json", "no-folder": tmp_path / "no" / "plan.json",
            "is-a-folder": tmp_path / "plans"}[where]
    if where == "exists":
        plan.write_text("{}")
    if where == "is-a-folder":
        plan.mkdir()
    before = sorted(os.listdir(tmp_path))
    r = wm("port", src, "--to", src, "--out", tmp_path / "o.safetensors", "--save-plan", plan)
    one_line(r, 2)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("option", ["--out", "--manifest", "--save-plan"])
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_fifos_are_refused_as_outputs(tmp_path, option, force):
    src = template(tmp_path)
    fifo = tmp_path / ("o.safetensors" if option == "--out" else "x.json")
    os.mkfifo(fifo)
    args = ["--out", tmp_path / "o2.safetensors"] if option != "--out" else []
    r = wm("port", src, "--to", src, *args, option, fifo, *(["--force"] if force else []),
           timeout=120)
    one_line(r, 2)
    assert fifo.is_fifo() and not (tmp_path / "o2.safetensors").exists()


def test_a_device_node_is_refused_as_an_output(tmp_path):
    src = template(tmp_path)
    node = tmp_path / "null.json"
    try:
        os.mknod(node, 0o666 | 0o020000, os.makedev(1, 3))     # a character device: /dev/null
    except PermissionError:
        pytest.skip("creating a device node needs root")
    r = wm("port", src, "--to", src, "--out", tmp_path / "o.safetensors", "--manifest", node,
           "--force")
    one_line(r, 2)
    assert node.is_char_device() and not (tmp_path / "o.safetensors").exists()


# ------------------------------------------------------------------ the hook before publishing
def test_before_publish_sees_the_verified_output_under_its_temporary_names(tmp_path):
    out = tmp_path / "o.safetensors"
    seen = {}

    def hook(files):
        seen.update(files)
        assert not out.exists()                          # not published yet
        for final, staged in files.items():
            assert staged.is_file() and staged != final and staged.name == final.name
        assert load_file(str(files[out.with_name("o.safetensors.index.json")]
                             if out.with_name("o.safetensors.index.json") in files
                             else files[out]))
    weightmap.port(arrays(), template(tmp_path), out, before_publish=hook)
    assert list(seen) == [out] and out.is_file()
    # a sharded output: the staged index with its staged shards beside it, read as a user would
    seen.clear()
    index = tmp_path / "s.safetensors.index.json"

    def read_it(files):
        seen.update(files)
        got = weightmap.read(str(files[index]))
        assert sorted(p.name for p in got.params()) == sorted(arrays())
    weightmap.port(arrays(), template(tmp_path), tmp_path / "s.safetensors", shard_size="20B",
                   before_publish=read_it)
    assert list(seen)[0] == index and len(seen) == 5


def test_a_failing_before_publish_leaves_nothing_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "o.safetensors"

    def refuse(files):
        raise PlanError("the ported model does not compute what the source did")
    with pytest.raises(PlanError):
        weightmap.port(arrays(), template(tmp_path), out, before_publish=refuse)
    assert sorted(os.listdir(tmp_path)) == ["template.safetensors"]
    weightmap.port(arrays(), template(tmp_path), out)
    before = snapshot(tmp_path)
    with pytest.raises(PlanError):
        weightmap.port(arrays(nan=True), template(tmp_path), out, force=True,
                       before_publish=refuse)
    assert snapshot(tmp_path) == before
