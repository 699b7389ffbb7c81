import errno
import os
import time

import pytest

from weightmap.atomic import (STAGE_PREFIX, abandoned, background_fsync, check_distinct,
                              check_output, clear_abandoned, staged, write_texts)
from weightmap.errors import OutputError, UsageError
from weightmap.spelling import CLI, spelled


def test_a_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "o.bin"
    with pytest.raises(RuntimeError):
        with staged(tmp_path / "o.bin") as stage:
            stage.path(out).write_bytes(b"partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_files_are_staged_under_their_names_in_a_hidden_folder_then_published(tmp_path):
    out, side = tmp_path / "o.bin", tmp_path / "o.bin.data"
    with staged(tmp_path / "o.bin") as stage:
        tmp = stage.path(out)
        assert tmp.parent.name.startswith(STAGE_PREFIX) and tmp.name == "o.bin"
        tmp.write_bytes(b"ok")
        tmp.with_name("o.bin.data").write_bytes(b"data")      # a side file the writer adds
        assert stage.files() == {out: tmp, side: tmp.with_name("o.bin.data")}
        assert stage.publish([out]) == [side, out]             # side files first
    assert out.read_bytes() == b"ok" and side.read_bytes() == b"data"
    assert sorted(os.listdir(tmp_path)) == ["o.bin", "o.bin.data"]


def test_publishing_never_replaces_a_file_that_appeared_without_force(tmp_path):
    out = tmp_path / "o.bin"
    with staged(tmp_path / "o.bin") as stage:
        stage.path(out).write_bytes(b"mine")
        out.write_bytes(b"theirs")
        with pytest.raises(UsageError, match="appeared while the port ran"):
            stage.publish([out])
    assert out.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["o.bin"]


def test_a_failure_mid_publish_restores_every_old_file(tmp_path, monkeypatch):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"old a")
    b.write_bytes(b"old b")
    real = os.replace

    def fail_on_b(src, dst):
        if os.path.basename(dst) == "b.bin" and STAGE_PREFIX not in str(dst):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)
    monkeypatch.setattr(os, "replace", fail_on_b)
    with pytest.raises(OutputError, match="Input/output error"):
        with staged(tmp_path / "o.bin") as stage:
            stage.path(a).write_bytes(b"new a")
            stage.path(b).write_bytes(b"new b")
            stage.publish([a, b], force=True)
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_obsolete_parts_go_once_the_new_output_is_published(tmp_path):
    out, old_part, kept_part = tmp_path / "o", tmp_path / "o-1", tmp_path / "o-2"
    for p in (out, old_part, kept_part):
        p.write_bytes(b"old")
    with staged(tmp_path / "o.bin") as stage:
        stage.path(out).write_bytes(b"new")
        stage.path(kept_part).write_bytes(b"new part")
        stage.publish([out], force=True, obsolete=[old_part, kept_part])
    assert sorted(os.listdir(tmp_path)) == ["o", "o-2"]
    assert kept_part.read_bytes() == b"new part"


def test_outputs_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "o.bin"
    out.write_bytes(b"x")
    with pytest.raises(UsageError, match=r"exists \(pass force=True to replace it, or "
                                         r"choose another out\)"):
        check_output(out)
    with spelled(CLI), pytest.raises(UsageError, match=r"exists \(pass --force to replace "
                                                       r"it, or choose another --html\)"):
        check_output(out, named_by="html")
    check_output(out, force=True)
    with pytest.raises(UsageError, match="overwrite an input"):
        check_output(out, force=True, inputs=[out])
    os.link(out, tmp_path / "hard.bin")                    # the same file by another name
    with pytest.raises(UsageError, match="overwrite an input"):
        check_output(tmp_path / "hard.bin", force=True, inputs=[out])
    link = tmp_path / "l.bin"
    link.symlink_to(out)
    with pytest.raises(UsageError, match="symbolic link"):
        check_output(link, force=True)
    with pytest.raises(UsageError, match="folder does not exist"):
        check_output(tmp_path / "no" / "o.bin")
    with pytest.raises(UsageError, match="is a folder"):
        check_output(tmp_path, force=True)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match="FIFO"):
        check_output(fifo, force=True)


def test_two_written_paths_may_not_be_one_file(tmp_path):
    check_distinct([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(UsageError, match="same file"):
        check_distinct([tmp_path / "a", tmp_path / "sub" / ".." / "a"])
    (tmp_path / "a").write_bytes(b"")
    os.link(tmp_path / "a", tmp_path / "b")
    with pytest.raises(UsageError, match="same file"):
        check_distinct([tmp_path / "a", tmp_path / "b"])


def test_an_os_error_while_writing_is_an_output_error_and_leaves_nothing(tmp_path):
    out = tmp_path / "o.bin"
    with pytest.raises(OutputError, match="No space left on device") as caught:
        with staged(tmp_path / "o.bin") as stage:
            stage.path(out).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
    assert caught.value.path == str(out) and caught.value.exit_code == 9
    assert os.listdir(tmp_path) == []


def test_a_folder_that_refuses_the_staging_folder_is_an_output_error(tmp_path, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        with staged(tmp_path / "o.bin") as stage:
            stage.path(tmp_path / "o.bin")


def test_a_staging_folder_is_readable_while_held_and_refused_once_abandoned(tmp_path):
    with staged(tmp_path / "o.bin") as stage:
        tmp = stage.path(tmp_path / "o.bin")
        tmp.write_bytes(b"x")
        assert abandoned(tmp) is None                     # its port is running
        clear_abandoned(tmp_path)
        assert tmp.exists()
    left = tmp_path / (STAGE_PREFIX + "killed")           # what a kill -9 leaves
    left.mkdir()
    (left / "o.bin").write_bytes(b"x")
    assert abandoned(left / "o.bin") == left and abandoned(tmp_path / "o.bin") is None
    clear_abandoned(tmp_path)                              # too young: may be being created
    assert left.exists()
    old = time.time() - 3600
    os.utime(left, (old, old))
    clear_abandoned(tmp_path)
    assert not left.exists()


def test_small_texts_go_through_the_same_checks(tmp_path):
    plan = tmp_path / "plan.json"
    write_texts({plan: "{}"})
    assert plan.read_text() == "{}"
    with pytest.raises(UsageError, match="exists"):
        write_texts({plan: "[]"})
    write_texts({plan: "[]"}, force=True)
    assert plan.read_text() == "[]" and os.listdir(tmp_path) == ["plan.json"]


def test_a_failing_background_fsync_fails_the_block(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        with background_fsync([path]):
            pass


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_permissions_of_the_umask_not_those_of_a_temporary_file(tmp_path, umask):
    import numpy as np
    from safetensors.numpy import save_file

    import weightmap
    src = tmp_path / "src.safetensors"
    save_file({f"l{i}.weight": np.full((64, 64), i, np.float32) for i in range(4)}, str(src))
    old = os.umask(umask)
    try:
        weightmap.port(src, src, tmp_path / "one.safetensors")
        weightmap.port(src, src, tmp_path / "many.safetensors", shard_size="20KB")
        weightmap.port(src, src, tmp_path / "o.pt")
    finally:
        os.umask(old)
    written = sorted(p.name for p in tmp_path.iterdir() if p.name != "src.safetensors")
    assert "many-00001-of-00004.safetensors" in written and "o.manifest.json" in written
    for name in written:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
