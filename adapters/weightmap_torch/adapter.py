"""The torch adapter: checkpoint files (zip and legacy pickles) and live torch objects.

Importing this module does not import torch: files are read by weightmap's own restricted
unpickler, and torch is imported only inside ``read_live`` for objects that are torch's already.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from weightmap.emit.output import OutputKind, WriteRequest
from weightmap.graph import ParamGraph

from . import legacy_format, reader, zip_format
from .convention import CONVENTION

_ZIP_MAGIC = b"PK\x03\x04"
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _type_names(obj: Any) -> set[tuple[str, str]]:
    return {(c.__module__, c.__name__) for c in type(obj).__mro__}


def is_module(obj: Any) -> bool:
    """A ``torch.nn.Module`` instance, told by type names only."""
    return ("torch.nn.modules.module", "Module") in _type_names(obj)


def is_tensor(obj: Any) -> bool:
    return ("torch", "Tensor") in _type_names(obj) or \
        ("torch._tensor", "Tensor") in _type_names(obj)


def is_state_dict(obj: Any) -> bool:
    """A non-empty dict of torch tensors (keys as strings), e.g. ``model.state_dict()``."""
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and is_tensor(v) for k, v in obj.items())


class TorchAdapter:
    name = "torch"
    convention = CONVENTION        # how its graphs lay out, name and default what they store
    describes = "PyTorch .pt/.pth/.bin/.ckpt"    # what it reads, for a message
    live = "a torch nn.Module"                   # what it takes live, for a message
    formats = reader.FORMATS
    # read options that cap what a file may make the reader do: name -> (default, meaning)
    limits = reader.LIMITS
    read_options = {"container": "the key of the checkpoint holding the weights (e.g. "
                                 "model_ema), when several do",
                    "opaque_globals": "read the tensors of a file that also pickles other "
                                      "objects, replacing those with inert placeholders"}

    def sniff(self, path: Path, head: bytes) -> str | None:
        """A zip with ``<folder>/data.pkl``, or the legacy magic number; never the extension
        alone (``.bin`` and ``.pt`` are used for anything)."""
        path = Path(path)
        if not path.is_file():
            return None
        if head.startswith(_ZIP_MAGIC) and zip_format.is_torch_zip(path):
            return zip_format.FORMAT
        if head.startswith(_ZIP_MAGIC) and path.suffix.lower() in _TORCH_SUFFIXES \
                and not zip_format.is_readable_zip(path):
            return zip_format.FORMAT       # a damaged torch zip: let the reader say what broke
        if legacy_format.looks_legacy(head):
            return legacy_format.FORMAT
        if legacy_format.looks_tar(path):
            return legacy_format.TAR_FORMAT
        return None

    def read(self, path: Path, fmt: str | None = None, **options: Any) -> ParamGraph:
        """Options: ``container=`` (key holding the weights), ``opaque_globals=`` (read tensors of
        files that pickle other objects, replacing those with inert placeholders), and the
        caps of ``LIMITS`` (``max_pickle_bytes`` / ``_opcodes`` / ``_memo`` / ``_depth``)."""
        path = Path(path)
        if fmt is None:
            with open(path, "rb") as fh:
                fmt = self.sniff(path, fh.read(64)) or zip_format.FORMAT
        return reader.read(path, fmt, **options)

    # writes torch's zip format without torch: a state dict, read back as it is written
    outputs = (OutputKind("pt", (".pt", ".pth", ".bin", ".ckpt"), reads_back=True,
                          state_dict=zip_format.FORMAT),)

    def default_output(self, target: ParamGraph) -> str | None:
        """A checkpoint is written back in its own format; a live module as safetensors."""
        return {zip_format.FORMAT: "pt", legacy_format.FORMAT: "pt",
                "torch-live": "safetensors"}.get(target.format)

    def write(self, request: WriteRequest) -> None:
        from .emit import write_output
        write_output(request.path, kind=request.kind, plan=request.plan, target=request.target,
                     tensors=request.tensors, final_path=request.final_path,
                     read_back=request.read_back)

    def accepts(self, obj: Any) -> bool:
        return is_module(obj) or is_state_dict(obj)

    def load_into(self, graph: ParamGraph, tensors: Any) -> list[str]:
        """Copy tensors into the live module behind ``graph`` in place."""
        from .load import load_into
        return load_into(graph, tensors)

    def read_live(self, obj: Any, *, origin: str | None = None, **options: Any) -> ParamGraph:
        if "construction" in options or "construction_failed" in options:  # lazily built
            from .meta import read_meta
            return read_meta(obj, origin=origin, **options)
        from .live import read_live
        return read_live(obj, origin=origin, **options)

    def run_file(self, path: Path, fmt: str, **options: Any) -> Any:
        """A checkpoint holds no architecture: always a VerifyError saying so."""
        from .run import run_file
        return run_file(path, fmt, **options)

    def run_live(self, obj: Any, **options: Any) -> Any:
        """A runner of a live ``nn.Module`` (``weightmap.equivalence.runner``)."""
        from .run import run_live
        return run_live(obj, **options)

    def lazy_construction(self, path: Path) -> Any:
        """A context in which a torch model file builds its model on the meta device (no
        weights allocated or initialised; see ``meta.py``), or None for a file without torch."""
        from . import meta
        return meta.construction() if meta.wants_meta(path) else None


ADAPTER = TorchAdapter()
