"""What every weightmap fuzz harness shares: write the input to a file with the reader's
suffix, read it as the adapter would (graph, then every tensor's data) and let any exception
that is not weightmap's own escape, which atheris reports as a crash.

The adapter is called directly, not through ``weightmap.reading.read.read``: that one also turns
OSError/ValueError/KeyError... from a reader into a FormatError, a safety net that would hide
the reader bugs the fuzzer is here to find.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

# Libraries underneath are imported first, so that they are not instrumented: coverage of
# weightmap's own code (and of pickletools, json, zipfile, which it drives) guides the fuzzer,
# and numpy/h5py/onnx instrumented would only make every run slower.
import h5py            # noqa: E402,F401
import ml_dtypes       # noqa: E402,F401
import numpy           # noqa: E402,F401
import onnx            # noqa: E402,F401

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "fixtures"
MAX_SEED = 64 << 10      # larger fixtures (the nesting bombs) are the catalogue's business

with atheris.instrument_imports():
    import weightmap.graph            # noqa: F401  (instrumented for coverage)
    import weightmap.io.paths  # noqa: F401
    import weightmap.io.zipcheck  # noqa: F401
    from weightmap.errors import WeightmapError


def make_target(adapter_module: str, suffix_of, default_format: str, prepare=None):
    """The TestOneInput function for one adapter; ``prepare(data)`` may wrap the input first
    (the torch harness puts a bare pickle into a zip, past the zip's CRC)."""
    with atheris.instrument_imports():
        adapter = __import__(adapter_module, fromlist=["ADAPTER"]).ADAPTER
    folder = Path(tempfile.mkdtemp(prefix="weightmap-fuzz-"))

    def test_one_input(data: bytes) -> None:
        if prepare is not None:
            data = prepare(data)
        path = folder / f"input{suffix_of(data)}"
        path.write_bytes(data)
        try:
            fmt = adapter.sniff(path, data[:64]) or default_format
            graph = adapter.read(path, fmt)
            for param in graph.params():
                param.read()
        except WeightmapError:
            pass
    return test_one_input


def seeds(*patterns: str) -> list[Path]:
    """Committed valid and hostile fixtures matching ``patterns`` (globs below fixtures/)."""
    out: list[Path] = []
    for pattern in patterns:
        out += sorted(p for p in FIXTURES.glob(pattern)
                      if p.is_file() and p.stat().st_size <= MAX_SEED)
    return out


def main(target, seed_files: list) -> None:
    """Run atheris; with ``--seed-corpus DIR`` first copy the seeds into DIR (used by run_all)."""
    argv = list(sys.argv)
    if "--seed-corpus" in argv:
        i = argv.index("--seed-corpus")
        corpus = Path(argv[i + 1])
        del argv[i: i + 2]
        corpus.mkdir(parents=True, exist_ok=True)
        for n, seed in enumerate(seed_files):
            name, data = (seed.name, seed.read_bytes()) if isinstance(seed, Path) else seed
            if len(data) <= MAX_SEED:
                (corpus / f"seed-{n:03d}-{name}").write_bytes(data)
    atheris.Setup(argv, target)
    atheris.Fuzz()


os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
