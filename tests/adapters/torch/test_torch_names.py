"""The storage / dtype name tables agree with the installed torch."""
from __future__ import annotations

import pytest

from weightmap import dtypes
from weightmap_torch.torch_names import STORAGE_DTYPES, TORCH_DTYPES, UNSUPPORTED_GLOBALS


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_storage_classes_match_torch():
    torch = pytest.importorskip("torch")
    for name, dtype in STORAGE_DTYPES.items():
        cls = getattr(torch, name)
        assert str(cls.dtype) == f"torch.{dtype}", name
    # every typed storage torch pickles is either read or named as unsupported
    for name in torch.storage._dtype_to_storage_type_map().values():
        assert name in STORAGE_DTYPES or f"torch.{name}" in UNSUPPORTED_GLOBALS, name


def test_dtypes_match_torch_item_sizes():
    torch = pytest.importorskip("torch")
    for name, dtype in TORCH_DTYPES.items():
        tdt = getattr(torch, name, None)
        if tdt is None:
            continue                           # a dtype newer or older than this torch
        assert isinstance(tdt, torch.dtype)
        if dtype is not None:
            assert dtypes.itemsize(dtype) == tdt.itemsize, name
            assert str(tdt) in (f"torch.{dtype}", f"torch.{name}")


def test_every_torch_dtype_is_classified():
    torch = pytest.importorskip("torch")
    known = set(TORCH_DTYPES) | {g.removeprefix("torch.") for g in UNSUPPORTED_GLOBALS}
    for value in vars(torch).values():
        if isinstance(value, torch.dtype):
            assert str(value).removeprefix("torch.") in known, value
