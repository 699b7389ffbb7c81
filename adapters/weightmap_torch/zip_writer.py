"""torch's zip checkpoint (what ``torch.save(state_dict)`` writes), written without torch and
one tensor at a time.

The layout is torch's own: ``<top>/data.pkl`` (a protocol-2 pickle of a dict of
``torch._utils._rebuild_tensor_v2`` calls, each naming its storage by persistent id),
``<top>/.format_version``, ``<top>/.storage_alignment``, ``<top>/byteorder``, one stored
(uncompressed) member ``<top>/data/<key>`` per tensor with its bytes 64-byte aligned (so
``torch.load(mmap=True)`` can map them), and ``<top>/version``. Dtypes without a legacy typed
storage (float8, uint16/32/64) use ``_rebuild_tensor_v3`` with an untyped storage and the dtype,
as torch does.

Since the names, shapes and dtypes are known from the plan, the pickle is written first; then
each tensor's bytes stream into its member (CRC-32 computed on the way, chunk by chunk), so
memory holds one tensor at a time, not the whole state dict. The pickle is emitted opcode by
opcode from data (nothing is imported to name torch's globals) and only uses what torch's
``weights_only`` loader and weightmap's own restricted reader accept.
"""
from __future__ import annotations

import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from weightmap.io.atomic import open_output
from weightmap.dtypes import from_numpy, itemsize
from weightmap.errors import UsageError, WeightmapError
from weightmap.io.bytes import byte_view, contiguous_le

from .torch_names import STORAGE_DTYPES

ALIGN = 64
CHUNK = 16 << 20                          # bytes per write (and per CRC-32 update)
_TYPED = {dtype: name for name, dtype in STORAGE_DTYPES.items()}
_EPOCH = (1980, 1, 1, 0, 0, 0)            # fixed member dates: the same port, the same bytes

Spec = tuple[str, tuple[int, ...], str]   # (name, shape, dtype)


def write(path: Path, specs: Sequence[Spec], tensors: Iterable[tuple[str, np.ndarray]],
          *, top: str = "archive", landed: Callable[[int, int, int], None] | None = None,
          shared: Mapping[int, int] | None = None) -> None:
    """Write the state dict ``specs`` (in order) to ``path``; ``tensors`` yields ``(name,
    array)`` in the same order. ``landed(index, offset, nbytes)`` is called once tensor
    ``index``'s bytes are in the file (flushed) at ``offset``. ``shared``: index -> an earlier
    index whose storage it shares (tied weights, one tensor under two names, as ``torch.save``
    writes them); ``tensors`` then skips those indices."""
    top = top if re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", top) and top not in (".", "..") \
        else "archive"
    with os.fdopen(open_output(path), "wb") as fh:     # no O_TRUNC: cut at the end instead
        _write_archive(fh, specs, tensors, top, landed, dict(shared or {}))
        fh.truncate(fh.tell())


def _write_archive(fh, specs: Sequence[Spec], tensors: Iterable[tuple[str, np.ndarray]],
                   top: str, landed: Callable[[int, int, int], None] | None,
                   shared: dict[int, int]) -> None:
    for i, j in shared.items():
        if not 0 <= j < i < len(specs) or j in shared or specs[i][1:] != specs[j][1:]:
            raise UsageError(f"tensor {specs[i][0] if i < len(specs) else i!r} cannot share "
                             "the storage it is given")
    order = [i for i in range(len(specs)) if i not in shared]
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        _member(zf, f"{top}/data.pkl", state_dict_pickle(specs, shared))
        _member(zf, f"{top}/.format_version", b"1")
        _member(zf, f"{top}/.storage_alignment", str(ALIGN).encode())
        _member(zf, f"{top}/byteorder", b"little")
        count = 0
        for n, (name, arr) in enumerate(tensors):
            i = order[n] if n < len(order) else len(specs)
            if i >= len(specs) or name != specs[i][0]:
                raise UsageError(f"tensor {name!r} arrives out of the plan's order")
            _, shape, dtype = specs[i]
            if tuple(arr.shape) != tuple(shape) or from_numpy(arr.dtype) != dtype:
                raise UsageError(f"tensor has {tuple(arr.shape)} {from_numpy(arr.dtype)}, the "
                                 f"plan says {tuple(shape)} {dtype}", tensor=name)
            data = byte_view(contiguous_le(arr))
            start = _storage(zf, f"{top}/data/{i}", data)
            if landed is not None:
                fh.flush()
                landed(i, start, len(data))
            count += 1
        if count != len(order):
            raise UsageError(f"{len(order) - count} tensor(s) of the plan never arrived")
        _member(zf, f"{top}/version", b"3\n")


def _member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    _storage(zf, name, memoryview(data))


def _storage(zf: zipfile.ZipFile, name: str, data: memoryview) -> int:
    """One stored member whose bytes start at a multiple of ``ALIGN`` in the file (an extra
    field of padding in the local header, as torch writes it); returns where they start."""
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = len(data)
    # zipfile adds a 20-byte ZIP64 extra field itself when it expects a large member
    zip64 = len(data) * 1.05 > zipfile.ZIP64_LIMIT
    start = zf.fp.tell() + 30 + len(name.encode("utf-8")) + (20 if zip64 else 0)
    pad = (-(start + 4)) % ALIGN
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    with zf.open(info, "w") as member:
        if zf.fp.tell() % ALIGN:       # zipfile's own ZIP64 choice differed from ours
            raise WeightmapError(f"internal: member {name!r} would start at byte "
                                 f"{zf.fp.tell()}, not a multiple of {ALIGN}")
        start = zf.fp.tell()
        for done in range(0, len(data), CHUNK):
            member.write(data[done:done + CHUNK])
    return start


# ---- the pickle ------------------------------------------------------------------------------

def state_dict_pickle(specs: Sequence[Spec], shared: Mapping[int, int] | None = None) -> bytes:
    """``{name: tensor}`` as torch pickles it; tensor ``i`` views storage ``data/<i>``, or
    ``data/<shared[i]>``."""
    shared = shared or {}
    out = [pickle.PROTO, b"\x02", pickle.EMPTY_DICT]
    for start in range(0, len(specs), 1000):          # SETITEMS in batches, as pickle does
        out.append(pickle.MARK)
        for i, (name, shape, dtype) in enumerate(specs[start:start + 1000], start):
            out += [_str(name), _tensor(str(shared.get(i, i)), tuple(shape), dtype)]
        out.append(pickle.SETITEMS)
    out.append(pickle.STOP)
    return b"".join(out)


def _tensor(key: str, shape: tuple[int, ...], dtype: str) -> bytes:
    numel = int(np.prod(shape, dtype=np.int64))
    stride = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
    typed = _TYPED.get(dtype)
    if typed is not None:
        rebuild, storage, count = "_rebuild_tensor_v2", ("torch", typed), numel
    else:
        rebuild, storage, count = "_rebuild_tensor_v3", ("torch.storage", "UntypedStorage"), \
            numel * itemsize(dtype)
    pers = pickle.MARK + _str("storage") + _global(*storage) + _str(key) + _str("cpu") \
        + _int(count) + pickle.TUPLE + pickle.BINPERSID
    hooks = _global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
    args = pers + _int(0) + _tuple(shape) + _tuple(stride) + pickle.NEWFALSE + hooks
    if typed is None:
        args += _global("torch", dtype)
    return _global("torch._utils", rebuild) + pickle.MARK + args + pickle.TUPLE + pickle.REDUCE


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    raw = text.encode("utf-8")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def _int(n: int) -> bytes:
    if 0 <= n < 1 << 8:
        return pickle.BININT1 + struct.pack("<B", n)
    if 0 <= n < 1 << 16:
        return pickle.BININT2 + struct.pack("<H", n)
    if -(1 << 31) <= n < 1 << 31:
        return pickle.BININT + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + struct.pack("<B", len(raw)) + raw


def _tuple(items: tuple[int, ...]) -> bytes:
    return pickle.MARK + b"".join(_int(int(v)) for v in items) + pickle.TUPLE
