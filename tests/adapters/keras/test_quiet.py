"""TensorFlow's start-up logs stay off stderr while weightmap runs a Keras model file; what the
file itself writes to stderr still arrives, and the environment is left as it was."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weightmap_keras.quiet import is_log_line

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"

KERAS_TWIN = """
import sys
import tf_keras

L = tf_keras.layers
print("the model file speaks on stderr", file=sys.stderr)
model = tf_keras.Sequential([
    L.InputLayer(input_shape=(16, 16, 3)),
    L.Conv2D(8, 3, padding="same", activation="relu"),
    L.Conv2D(8, 3, padding="same", activation="relu"),
    L.MaxPooling2D(2),
    L.Conv2D(16, 3, padding="same", activation="relu"),
    L.Conv2D(16, 3, padding="same", activation="relu"),
    L.MaxPooling2D(2),
    L.Flatten(),
    L.Dense(32, activation="relu"),
    L.Dense(5),
])
"""


def test_a_port_into_a_keras_model_file_prints_no_tensorflow_logs(tmp_path):
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras is not installed")
    model = tmp_path / "keras_twin.py"
    model.write_text(KERAS_TWIN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    code = ("import os, sys; from weightmap.cli import main; code = main(sys.argv[1:]); "
            "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ; sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code, "port", str(SRC), "--to", str(model),
                        "--out", str(tmp_path / "o.h5")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "the model file speaks on stderr\n"
    assert "carried over: 12 of 12 tensors" in r.stdout


@pytest.mark.parametrize("line,log", [
    (b"WARNING: All log messages before absl::InitializeLog() is called are written to "
     b"STDERR\n", True),
    (b"I0000 00:00:1796525469.860273   10390 port.cc:153] oneDNN custom operations are on.\n",
     True),
    (b"E0000 00:00:1796525472.053180   10390 cuda_platform.cc:52] failed call to cuInit\n",
     True),
    (b"2024-01-02 11:45:17.907378: I tensorflow/core/platform/cpu_feature_guard.cc:182] This "
     b"TensorFlow binary is optimized\n", True),
    (b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
     b"with the appropriate compiler flags.\n", True),
    (b"UserWarning: something the model file should see\n", False),
    (b"I think so\n", False),
])
def test_what_counts_as_a_tensorflow_log_line(line, log):
    assert is_log_line(line) is log
