"""atheris harness for the safetensors reader (header parser and validation).

    python fuzz/fuzz_safetensors.py CORPUS_DIR -max_total_time=60      (libFuzzer flags)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, make_target, seeds  # noqa: E402

TARGET = make_target("weightmap_safetensors", lambda data: ".safetensors", "safetensors")

if __name__ == "__main__":
    main(TARGET, seeds("safetensors/*.safetensors", "safetensors/sharded/*.safetensors",
                       "hostile/safetensors/*"))
