"""atheris harness for the ONNX reader (protobuf parsing, initializers, graph walk).

    python fuzz/fuzz_onnx.py CORPUS_DIR -max_total_time=60      (libFuzzer flags)
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main, make_target, seeds  # noqa: E402

TARGET = make_target("weightmap_onnx", lambda data: ".onnx", "onnx")

if __name__ == "__main__":
    main(TARGET, seeds("onnx/*.onnx", "onnx/*/*.onnx", "hostile/onnx/*/model.onnx"))
