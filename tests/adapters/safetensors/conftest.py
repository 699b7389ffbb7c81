"""Shared helpers for the safetensors adapter tests."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest


def _write_raw(path: Path, header: dict | None = None, data: bytes = b"", *,
              header_bytes: bytes | None = None, length: int | None = None) -> Path:
    """A safetensors file with exactly the header (or raw header bytes) and data given."""
    raw = header_bytes if header_bytes is not None else json.dumps(header).encode()
    n = len(raw) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + raw + data)
    return path


def _assert_same_tensor(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Same dtype, shape and bytes (bit-exact, also for bfloat16 and NaN)."""
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(np.frombuffer(np.ascontiguousarray(ours).tobytes(), np.uint8),
                                  np.frombuffer(np.ascontiguousarray(theirs).tobytes(), np.uint8))


@pytest.fixture
def write_raw():
    """write_raw(path, header=None, data=b"", *, header_bytes=None, length=None) -> path"""
    return _write_raw


@pytest.fixture
def same_tensor():
    """same_tensor(ours, theirs): equal dtype, shape and bytes."""
    return _assert_same_tensor
