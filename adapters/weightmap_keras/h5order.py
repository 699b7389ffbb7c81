"""The order in which links were added to an HDF5 group: how a bare Keras 3 ``.weights.h5`` gives
back its model's layer order.

h5py lists a group's members by name, so ``conv2d_10`` comes before ``conv2d_2``. Keras creates
the groups of ``layers/`` in ``model.layers`` order, and the file keeps that order in one place:
groups written with h5py's default (``libver="earliest"``) are "old-style" symbol-table groups,
whose member names are appended, each in turn, to the group's *local heap*. Reading the heap's
data segment front to back gives the names in creation order, exactly.

Two cheaper signals were tried on real files and rejected: dataset offsets (HDF5 puts small
datasets in an aggregation block and large ones at the end of the file, so a layer's kernel can
lie after a later layer's bias) and object-header addresses (freed metadata space is reused, so
a later group can sit at a lower address). Both are right for most layers and wrong for some.

Only the structures needed are parsed, with every offset and length checked; anything
unexpected (new-style groups, a user block, odd sizes) returns None and the caller falls back.
"""
from __future__ import annotations

import struct
from typing import Any, Callable

from .h5io import HDF5_MAGIC

_MAX_HEAP = 64 << 20               # a local heap of names larger than this is not credible
_MSG_SYMBOL_TABLE, _MSG_CONTINUATION = 0x11, 0x10

ReadAt = Callable[[int, int], bytes]


def file_reader(fh: Any, base: int) -> ReadAt:
    """``read_at(offset, n)`` over an open binary file whose HDF5 data starts at ``base``."""
    def read_at(offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise ValueError("negative offset")
        fh.seek(base + offset)
        data = fh.read(n)
        if len(data) != n:
            raise ValueError("short read")
        return data
    return read_at


def creation_order(read_at: ReadAt, header_addr: int) -> list[str] | None:
    """Member names of the old-style group whose object header is at ``header_addr``, in the
    order they were created; None when the group is not one this parser understands."""
    try:
        so, sl = _sizes(read_at)
        if so != 8 or sl != 8:
            return None
        heap = _symbol_table_heap(read_at, header_addr)
        return None if heap is None else _heap_names(read_at, heap)
    except (ValueError, struct.error, UnicodeDecodeError, IndexError):
        return None


def _sizes(read_at: ReadAt) -> tuple[int, int]:
    sb = read_at(0, 32)
    if sb[:8] != HDF5_MAGIC:
        raise ValueError("no superblock at 0")
    version = sb[8]
    if version in (0, 1):
        so, sl = sb[13], sb[14]
        base = struct.unpack_from("<Q", sb, 24)[0] if version == 0 else None
        if base not in (0, None):
            raise ValueError("base address is not 0")
        return so, sl
    return sb[9], sb[10]


def _symbol_table_heap(read_at: ReadAt, addr: int) -> int | None:
    """Local heap address from the Symbol Table message of a version-1 object header."""
    prefix = read_at(addr, 16)
    if prefix[0] != 1:                       # version 2 ("OHDR"): a new-style group
        return None
    n_messages = struct.unpack_from("<H", prefix, 2)[0]
    size = struct.unpack_from("<I", prefix, 8)[0]
    blocks, seen = [(addr + 16, size)], 0
    while blocks and seen < n_messages:
        start, length = blocks.pop(0)
        if length > _MAX_HEAP:
            return None
        data, pos = read_at(start, length), 0
        while pos + 8 <= length and seen < n_messages:
            mtype, msize = struct.unpack_from("<HH", data, pos)
            body = data[pos + 8: pos + 8 + msize]
            pos += 8 + msize
            seen += 1
            if mtype == _MSG_SYMBOL_TABLE and len(body) >= 16:
                return struct.unpack_from("<Q", body, 8)[0]
            if mtype == _MSG_CONTINUATION and len(body) >= 16:
                blocks.append(struct.unpack_from("<QQ", body, 0))
    return None


def _heap_names(read_at: ReadAt, heap_addr: int) -> list[str] | None:
    head = read_at(heap_addr, 32)
    if head[:4] != b"HEAP" or head[4] != 0:
        return None
    size, free_head, data_addr = struct.unpack_from("<QQQ", head, 8)
    if size > _MAX_HEAP:
        return None
    data = read_at(data_addr, size)
    free = _free_blocks(data, free_head)
    names, pos = [], 0
    while pos < size:
        if pos in free:
            pos += free[pos]
            continue
        end = data.index(b"\0", pos)
        names.append(data[pos:end].decode("utf-8"))
        pos += (end - pos + 1 + 7) // 8 * 8       # names are padded to 8 bytes
    return [n for n in names if n]               # offset 0 holds the empty name


def _free_blocks(data: bytes, head: int) -> dict[int, int]:
    """offset -> length of the heap's free blocks (a chained list; 1 ends it)."""
    blocks: dict[int, int] = {}
    while head != 1 and head < len(data) and head not in blocks:
        nxt, length = struct.unpack_from("<QQ", data, head)
        if length <= 0:
            raise ValueError("bad free block")
        blocks[head] = length
        head = nxt
    return blocks
