"""Checks of the HDF5 structures behind variable-length strings, made on the raw bytes before
libhdf5 decodes them.

Keras' ``name``, ``layer_names`` and ``weight_names`` attributes are variable-length strings.
Each value in an attribute is a reference — sequence length (4 bytes), address of a *global
heap collection* ("GCOL"), object index (4 bytes) — and the characters live in the collection.
libhdf5 (1.14) trusts both sides:

- it decodes a collection's objects in a loop that advances by each object's declared size; an
  object 0 declaring size 0 never advances (an endless loop), a size near 2**64 wraps;
- it allocates the sequence length a reference declares (up to 4 GiB) before it looks the object
  up, and only then finds that the sizes differ.

So every variable-length reference in the attributes of every object is checked here first
against the collection it names, which is decoded the way libhdf5 does (``check_references``,
``collection``). Only
the structures involved are parsed — superblock, object headers (versions 1 and 2, with their
continuation blocks), attribute, datatype and dataspace messages — each offset and length
checked. An attribute stored outside its object header (dense attribute storage, which Keras
files do not use) or behind a shared datatype is not checked.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from weightmap.errors import FormatError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GCOL = b"GCOL\x01\x00\x00\x00"                   # signature, version 1, reserved
_GCOL_MIN = 4096                                  # libhdf5's H5HG_MINSIZE
_VLEN_CLASS = 9
_MSG_ATTRIBUTE, _MSG_CONTINUATION, _MSG_ATTRIBUTE_INFO = 0x0C, 0x10, 0x15
_MAX_BLOCK = 64 << 20


@dataclass(frozen=True)
class Layout:
    """Where the HDF5 file starts in the image and the sizes its addresses use."""

    base: int                                     # absolute position of address 0
    offsets: int                                  # size of offsets (addresses)
    lengths: int                                  # size of lengths


def layout(image: Any) -> Layout | None:
    """The superblock (at 0, 512, 1024 ...), as libhdf5 searches for it."""
    at = 0
    while at + 64 <= len(image):
        if image[at: at + 8] == HDF5_MAGIC:
            version = image[at + 8]
            if version in (0, 1):
                so, sl = image[at + 13], image[at + 14]
                base_at = at + 24 + (4 if version == 1 else 0)
            else:
                so, sl = image[at + 9], image[at + 10]
                base_at = at + 12
            if so not in (2, 4, 8) or sl not in (2, 4, 8):
                return None
            base = int.from_bytes(image[base_at: base_at + so], "little")
            return Layout(base=base if base else at, offsets=so, lengths=sl)
        at = 512 if at == 0 else at * 2
    return None


def collection(image: Any, lay: Layout, addr: int, where: str) -> dict[int, int]:
    """The global heap collection at address ``addr``: {object index: size}; refuses one that
    is not there or that libhdf5 would decode forever or past its end."""
    at = lay.base + addr
    head = obj_head = 8 + lay.lengths
    if addr <= 0 or image[at: at + 8] != _GCOL:
        raise FormatError(f"a string refers to a global heap collection at address {addr}, "
                          "where there is none", path=where, hint="the file is damaged")
    total = int.from_bytes(image[at + 8: at + 8 + lay.lengths], "little")
    if not _GCOL_MIN <= total <= len(image) - at:
        raise FormatError(f"the global heap collection at address {addr} declares {total} "
                          "bytes", path=where, hint="the file is damaged or truncated")
    objects: dict[int, int] = {}
    p = head
    while p < total:
        if p + obj_head > total:
            break                                  # trailing free space: fine
        idx = int.from_bytes(image[at + p: at + p + 2], "little")
        size = int.from_bytes(image[at + p + 8: at + p + 8 + lay.lengths], "little")
        need = obj_head + -(-size // 8) * 8 if idx else size
        if need == 0 or p + need > total:
            raise FormatError(f"the global heap collection at address {addr} is corrupt "
                              f"(object {idx} declares {size} bytes)", path=where,
                              hint="libhdf5 would loop forever or overrun on it; the file is "
                                   "damaged")
        if idx:
            objects[idx] = size
        p += need
    return objects


def check_references(image: Any, lay: Layout, headers: Iterable[int], where: str) -> None:
    """Each variable-length value in the attributes of the objects whose headers are at
    ``headers`` names an existing object of a sound global heap collection, of exactly the size
    it declares. Only the collections referred to are decoded (libhdf5 loads no other)."""
    heaps: dict[int, dict[int, int]] = {}
    for addr in headers:
        for name, base_size, refs in _vlen_attributes(image, lay, addr, where):
            for seq_len, heap, idx in refs:
                if seq_len == 0 and heap == 0:
                    continue                       # an empty (null) value
                if heap not in heaps:
                    heaps[heap] = collection(image, lay, heap, where)
                size = heaps[heap].get(idx)
                if size is None or seq_len * base_size != size:
                    raise FormatError(
                        f"attribute {name!r} declares a {seq_len * base_size}-byte value in "
                        f"global heap object {heap}:{idx}, which "
                        + ("does not exist" if size is None else f"holds {size} bytes"),
                        path=where, hint="libhdf5 would allocate the declared size first; "
                                         "the file is damaged or forged")


# ----------------------------------------------------------------------------- object headers
def _messages(image: Any, lay: Layout, addr: int) -> Iterator[tuple[int, bytes]]:
    """(type, body) of the messages of the object header at ``addr`` (versions 1 and 2)."""
    start = lay.base + addr
    if image[start: start + 4] == b"OHDR":
        yield from _messages_v2(image, lay, start)
        return
    prefix = image[start: start + 16]
    if len(prefix) < 16 or prefix[0] != 1:
        return
    count = struct.unpack_from("<H", prefix, 2)[0]
    blocks, seen, visited = [(start + 16, struct.unpack_from("<I", prefix, 8)[0])], 0, set()
    while blocks and seen < count:
        at, length = blocks.pop(0)
        if length > _MAX_BLOCK or at in visited:
            return
        visited.add(at)
        data, pos = image[at: at + length], 0
        while pos + 8 <= len(data) and seen < count:
            mtype, msize = struct.unpack_from("<HH", data, pos)
            body = data[pos + 8: pos + 8 + msize]
            pos += 8 + msize
            seen += 1
            if mtype == _MSG_CONTINUATION:
                blocks.append(_continuation(body, lay))
            else:
                yield mtype, body


def _messages_v2(image: Any, lay: Layout, start: int) -> Iterator[tuple[int, bytes]]:
    flags = image[start + 5]
    pos = start + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    width = 1 << (flags & 0x03)
    size = int.from_bytes(image[pos: pos + width], "little")
    blocks, visited = [(pos + width, size)], set()
    order = 2 if flags & 0x04 else 0
    while blocks:
        at, length = blocks.pop(0)
        if length > _MAX_BLOCK or at in visited:
            return
        visited.add(at)
        data, p = image[at: at + length], 0
        while p + 4 + order <= len(data):
            mtype, msize = data[p], struct.unpack_from("<H", data, p + 1)[0]
            body = data[p + 4 + order: p + 4 + order + msize]
            p += 4 + order + msize
            if mtype == _MSG_CONTINUATION:
                cont_at, cont_len = _continuation(body, lay)
                if image[cont_at: cont_at + 4] == b"OCHK":
                    blocks.append((cont_at + 4, cont_len - 8))     # signature, checksum
            else:
                yield mtype, body


def _continuation(body: bytes, lay: Layout) -> tuple[int, int]:
    so, sl = lay.offsets, lay.lengths
    offset = int.from_bytes(body[:so], "little")
    length = int.from_bytes(body[so: so + sl], "little")
    return lay.base + offset, length


# ----------------------------------------------------------------------------- attributes
def _vlen_attributes(image: Any, lay: Layout, addr: int, where: str = ""
                     ) -> Iterator[tuple[str, int, list[tuple[int, int, int]]]]:
    """(name, base type size, references) of each variable-length attribute of an object."""
    for mtype, body in _messages(image, lay, addr):
        if mtype == _MSG_ATTRIBUTE_INFO and _dense(body, lay):
            raise FormatError(f"the object at address {addr} keeps its attributes in dense "
                              "storage, which weightmap cannot check before libhdf5 reads them",
                              path=where, hint="Keras never writes it; save the weights again "
                                               "with h5py's default file format")
        if mtype != _MSG_ATTRIBUTE or len(body) < 8:
            continue
        parsed = _attribute(body, lay)
        if parsed is not None:
            yield parsed


def _dense(body: bytes, lay: Layout) -> bool:
    """An Attribute Info message whose fractal heap address is defined: dense attributes."""
    if len(body) < 2:
        return False
    at = 2 + (2 if body[1] & 0x01 else 0)
    raw = body[at: at + lay.offsets]
    return len(raw) == lay.offsets and raw != b"\xff" * lay.offsets


def _attribute(body: bytes, lay: Layout) -> tuple[str, int, list[tuple[int, int, int]]] | None:
    version, flags = body[0], body[1]
    name_size, type_size, space_size = struct.unpack_from("<HHH", body, 2)
    if version == 1:
        pad = lambda n: -(-n // 8) * 8                                  # noqa: E731
        pos = 8
    elif version in (2, 3):
        pad = lambda n: n                                               # noqa: E731
        pos = 8 + (1 if version == 3 else 0)
    else:
        return None
    if flags & 0x03:                      # shared datatype or dataspace: not followed
        return None
    name = body[pos: pos + name_size].split(b"\0", 1)[0].decode("utf-8", "replace")
    pos += pad(name_size)
    dtype = body[pos: pos + type_size]
    pos += pad(type_size)
    space = body[pos: pos + space_size]
    pos += pad(space_size)
    if len(dtype) < 8 or dtype[0] & 0x0F != _VLEN_CLASS:
        return None
    base = dtype[8:]
    base_size = struct.unpack_from("<I", base, 4)[0] if len(base) >= 8 else 1
    count = _elements(space)
    if count is None:
        return None
    width = 4 + lay.offsets + 4
    data = body[pos: pos + count * width]
    refs = []
    for i in range(min(count, len(data) // width)):
        at = i * width
        seq_len = struct.unpack_from("<I", data, at)[0]
        heap = int.from_bytes(data[at + 4: at + 4 + lay.offsets], "little")
        idx = struct.unpack_from("<I", data, at + 4 + lay.offsets)[0]
        refs.append((seq_len, heap, idx))
    return name, max(base_size, 1), refs


def _elements(space: bytes) -> int | None:
    """Number of elements of a dataspace message (versions 1 and 2)."""
    if len(space) < 4:
        return None
    version, rank, flags = space[0], space[1], space[2]
    if version == 1:
        dims_at = 8
    elif version == 2:
        if space[3] == 2:                 # null dataspace
            return 0
        dims_at = 4
    else:
        return None
    count = 1
    for i in range(rank):
        raw = space[dims_at + 8 * i: dims_at + 8 * i + 8]
        if len(raw) < 8:
            return None
        # a message holds at most 64 KiB, so no more references than that can follow
        count = min(count * int.from_bytes(raw, "little"), 1 << 16)
    return count
