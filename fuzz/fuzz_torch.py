"""atheris harness for the torch reader (zip and legacy pickles, the restricted unpickler).

An input that is a zip or a legacy checkpoint is read as it is. Anything else is taken as the
``data.pkl`` pickle and put into a torch zip first (with storages 0-7 of 64 bytes each): the
zip's CRC would otherwise reject nearly every mutation of a pickle before the unpickler saw it.
Seeds: the committed torch fixtures, their pickles, and the hostile ones.

    python fuzz/fuzz_torch.py CORPUS_DIR -max_total_time=60      (libFuzzer flags)
"""
import io
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, make_target, seeds  # noqa: E402

LEGACY = b"\x80\x02\x8a\x0a"


def as_checkpoint(data: bytes) -> bytes:
    if data.startswith(b"PK") or data.startswith(LEGACY):
        return data
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", data)
        zf.writestr("archive/byteorder", "little")
        for key in range(8):
            zf.writestr(f"archive/data/{key}", bytes(64))
    return buf.getvalue()


def pickles(files):
    out = []
    for path in files:
        try:
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
                out.append((f"{path.stem}.pkl", zf.read(name)))
        except (zipfile.BadZipFile, StopIteration, OSError, ValueError, RuntimeError):
            pass                            # RuntimeError: an encrypted member
    return out


TARGET = make_target("weightmap_torch", lambda data: ".pt", "torch-zip", as_checkpoint)

if __name__ == "__main__":
    files = seeds("torch/*", "hostile/torch/*", "hostile/zip/*")
    main(TARGET, files + pickles(files))
