"""atheris harness for the Keras reader (HDF5 through h5py, .keras zips, configs).

Inputs starting with a zip signature are written as ``.keras``, others as ``.h5`` (a damaged
``.h5`` is claimed by the Keras adapter, so its reader runs on every input).

    python fuzz/fuzz_keras.py CORPUS_DIR -max_total_time=60      (libFuzzer flags)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, make_target, seeds  # noqa: E402


def suffix(data: bytes) -> str:
    return ".keras" if data.startswith(b"PK") else ".h5"


TARGET = make_target("weightmap_keras", suffix, "keras2-h5")

if __name__ == "__main__":
    main(TARGET, seeds("keras/*", "examples/*.h5", "hostile/keras/*"))
