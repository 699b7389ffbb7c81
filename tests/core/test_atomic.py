import os

import pytest

from weightmap.atomic import atomic_path, check_output
from weightmap.errors import UsageError


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "o.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_success_renames_into_place(tmp_path):
    out = tmp_path / "o.bin"
    with atomic_path(out) as tmp:
        tmp.write_bytes(b"ok")
    assert out.read_bytes() == b"ok" and os.listdir(tmp_path) == ["o.bin"]


def test_existing_symlink_and_input_outputs_are_refused(tmp_path):
    out = tmp_path / "o.bin"
    out.write_bytes(b"x")
    with pytest.raises(UsageError, match="exists.*--force"):
        check_output(out)
    check_output(out, force=True)
    with pytest.raises(UsageError, match="overwrite an input"):
        check_output(out, force=True, inputs=[out])
    link = tmp_path / "l.bin"
    link.symlink_to(out)
    with pytest.raises(UsageError, match="symbolic link"):
        check_output(link, force=True)
    with pytest.raises(UsageError, match="folder does not exist"):
        check_output(tmp_path / "no" / "o.bin")


def test_an_os_error_while_writing_is_an_output_error_and_leaves_nothing(tmp_path):
    import errno

    from weightmap.errors import OutputError
    out = tmp_path / "o.bin"
    with pytest.raises(OutputError, match="No space left on device") as caught:
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.path == str(out) and caught.value.exit_code == 9
    assert os.listdir(tmp_path) == []


def test_a_folder_that_refuses_the_temporary_file_is_an_output_error(tmp_path, monkeypatch):
    import tempfile

    from weightmap.errors import OutputError

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        with atomic_path(tmp_path / "o.bin"):
            pass


def test_a_failing_background_fsync_fails_the_block(tmp_path, monkeypatch):
    import errno

    from weightmap.atomic import background_fsync
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")

    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        with background_fsync(path):
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
