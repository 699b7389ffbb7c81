"""The safetensors adapter: format detection and reading (files, index files, shard folders)."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

from weightmap.errors import UsageError, VerifyError
from weightmap.emit.output import OutputKind, WriteRequest
from weightmap.graph import ParamGraph

from .header import MAX_HEADER_BYTES
from .reader import FORMAT_FILE, FORMAT_SHARDED, read_file, read_sharded
from .shards import find_index, is_index_name, shard_files


def looks_like_safetensors(path: Path, head: bytes) -> bool:
    """8-byte header length that fits the file, followed by the opening brace of a JSON object."""
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    return 2 <= length <= size - 8 and head[8:9] == b"{"


class SafetensorsAdapter:
    name = "safetensors"
    describes = "safetensors"                    # what it reads, for a message
    formats = (FORMAT_FILE, FORMAT_SHARDED)
    # read options that cap what a file may make the reader do: name -> (default, meaning)
    limits = {"max_header_bytes": (MAX_HEADER_BYTES, "bytes of a safetensors JSON header")}

    def sniff(self, path: Path, head: bytes) -> str | None:
        path = Path(path)
        if path.is_dir():
            try:
                has_shards = find_index(path) is not None or bool(shard_files(path))
            except (UsageError, OSError):
                has_shards = True   # several indices: let read() say which to name
            return FORMAT_SHARDED if has_shards else None
        if not path.is_file():          # a FIFO or device is never opened (it could block)
            return None
        if is_index_name(path):
            return FORMAT_SHARDED
        # A .safetensors name claims the format even with a broken header, so the reader can
        # say what is wrong instead of "unknown format".
        if path.name.endswith(".safetensors") or looks_like_safetensors(path, head):
            return FORMAT_FILE
        return None

    def read(self, path: Path, fmt: str | None = None, *,
             max_header_bytes: int = MAX_HEADER_BYTES, **_options: Any) -> ParamGraph:
        """Specs of every tensor, data memory-mapped on demand. Other options are ignored."""
        path = Path(path)
        fmt = fmt or self.sniff(path, _head(path))
        if fmt == FORMAT_SHARDED:
            return read_sharded(path, max_header_bytes=max_header_bytes)
        if fmt == FORMAT_FILE:
            return read_file(path, max_header_bytes=max_header_bytes)
        raise UsageError(f"the safetensors adapter reads {', '.join(self.formats)}, not {fmt!r}",
                         path=path)

    # one file or shards with an index, written past the page cache when big
    outputs = (OutputKind("safetensors", (".safetensors", ".safetensors.index.json"),
                          options=("shard_size", "direct_io"), reads_back=True,
                          state_dict=FORMAT_FILE),)

    def default_output(self, target: ParamGraph) -> str | None:
        """A safetensors checkpoint, and a bare dict of arrays, are written as safetensors."""
        return "safetensors" if target.format in (FORMAT_FILE, FORMAT_SHARDED, "arrays") \
            else None

    def write(self, request: WriteRequest) -> None:
        from .emit import write_output
        write_output(request.path, kind=request.kind, plan=request.plan, target=request.target,
                     tensors=request.tensors, final_path=request.final_path,
                     read_back=request.read_back, **request.options)

    def output_path(self, kind: str, out: Path, plan: Any, options: dict[str, Any]) -> Path:
        """A sharded output is known by its index file."""
        from .emit import output_path
        return output_path(out, plan, **options)

    def side_outputs(self, kind: str, out: Path, target: ParamGraph, plan: Any,
                     options: dict[str, Any]) -> list[Path]:
        """The shards beside an index."""
        from .emit import side_outputs
        return side_outputs(out, target, plan=plan, **options)

    def previous_parts(self, kind: str, out: Path) -> list[Path]:
        """The shards an existing index lists."""
        from .emit import previous_parts
        return previous_parts(out)

    def run_file(self, path: Path, fmt: str, **_options: Any) -> Any:
        """safetensors holds tensors, never a model: always a VerifyError saying so."""
        raise VerifyError(f"{Path(path).name} is a safetensors file: it holds weights, not the "
                          "code of its model", path=path)


def _head(path: Path) -> bytes:
    if not path.is_file():
        return b""
    with open(path, "rb") as fh:
        return fh.read(64)


ADAPTER = SafetensorsAdapter()
