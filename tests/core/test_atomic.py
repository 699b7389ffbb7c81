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
