"""Moving bytes into the output (adapters/weightmap_safetensors/fastio.py)."""
from __future__ import annotations

import errno
import os

import pytest

from weightmap_safetensors import fastio


def test_copy_span_falls_back_when_the_kernel_cannot_copy(tmp_path, monkeypatch):
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "src.bin").write_bytes(data)

    def refuse(*_args, **_kwargs):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    monkeypatch.setattr(fastio, "CHUNK", 1 << 20)            # several mapped windows
    fd = os.open(tmp_path / "dst.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fastio.copy_span(str(tmp_path / "src.bin"), 4097, len(data) - 4097 - 5, fd, 3)
    finally:
        os.close(fd)
    out = (tmp_path / "dst.bin").read_bytes()
    assert out[3:] == data[4097:len(data) - 5] and out[:3] == b"\0\0\0"


def test_copy_span_of_a_short_source_is_an_error(tmp_path):
    (tmp_path / "src.bin").write_bytes(b"x" * 100)
    fd = os.open(tmp_path / "dst.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError):
            fastio.copy_span(str(tmp_path / "src.bin"), 50, 200, fd, 0)
    finally:
        os.close(fd)


def test_pwrite_all_writes_at_the_offset_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(fastio, "CHUNK", 1000)
    data = os.urandom(4321)
    fd = os.open(tmp_path / "o.bin", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fastio.pwrite_all(fd, memoryview(data), 10)
    finally:
        os.close(fd)
    assert (tmp_path / "o.bin").read_bytes() == b"\0" * 10 + data
