"""SHA-256 of what weightmap writes for a representative set of ports and converts, to prove a
restructuring changes no output: run it before, keep the record, run it after and compare.

    python benchmarks/fixture_outputs.py --record before.json
    python benchmarks/fixture_outputs.py --compare before.json

Each case is one command line run (``python -m weightmap ...``, a process of its own, with this
checkout first on the path) on the committed fixtures, the end-to-end test models, or files made
here from fixed seeds (a tiny GPT-2 checkpoint in Hugging Face's layout, model files written
below). Every file a case leaves in its folder is hashed: outputs, shards, ONNX data files,
manifests and saved plans — JSON with the machine's paths replaced by placeholders and the
source's modification time left out — and so is what the command printed (paths replaced).
Sources made here are hashed too, so a difference there is told apart from one in weightmap.

Cases: Keras -> torch (.safetensors and .pt, with the plan), torch -> Keras (.weights.h5 from a
live target, and into a legacy tf_keras .h5), ONNX -> torch (a fused BatchNorm unfused, a
bidirectional LSTM + GRU), torch -> ONNX (fused), GPT-2 Conv1D layouts into a fused-qkv target,
a sharded safetensors output, recurrent torch -> Keras, and converts of torch, Lightning,
sharded safetensors, Keras and ONNX checkpoints.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIX = REPO / "fixtures"
MODELS = REPO / "tests" / "e2e" / "models"

# torch twin of fixtures/gen_onnx.py's CNN (other seed): target of cnn_legacy.onnx, source of a
# port into it
CNN_TORCH = '''
import torch
from torch import nn


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(8 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(x, 1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def model():
    torch.manual_seed(21)
    m = CNN().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        m.features[1].running_var.uniform_(0.5, 1.5)
        m.features[1].running_mean.normal_(0, 0.1)
    return m


def example_input():
    return torch.zeros(1, 3, 8, 8)
'''

# torch twin of fixtures/gen_onnx.py's RNN: target of rnn_legacy.onnx
RNN_TORCH = '''
import torch
from torch import nn


class RNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.lstm = nn.LSTM(6, 8, bidirectional=True)
        self.gru = nn.GRU(16, 8)
        self.head = nn.Linear(8, 5)

    def forward(self, tokens):
        x = self.embed(tokens)
        x = self.lstm(x)[0]
        x = self.gru(x)[0]
        return self.head(x[-1])


def model():
    torch.manual_seed(2)
    return RNN().eval()


def example_input():
    return torch.zeros(5, 2, dtype=torch.long)
'''

# Keras twin of fixtures/gen_torch.py's Recurrent (LSTM(3, 4, num_layers=2, bidirectional), GRU)
RNN_KERAS = '''
import os
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras


def model():
    keras.utils.set_random_seed(1)
    inp = keras.Input((7, 3))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi1")(inp)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True), name="bi2")(x)
    x = keras.layers.GRU(5, return_sequences=True, reset_after=True, name="gru")(x)
    return keras.Model(inp, x)
'''

# a tf_keras (Keras 2) twin of fixtures/gen_torch.py's SmallCNN, saved as a legacy .h5 template
CNN_TFK = '''
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tf_keras as keras

keras.utils.set_random_seed(4)
m = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, name="conv"),
                      keras.layers.BatchNormalization(epsilon=1e-3, name="bn"),
                      keras.layers.Flatten(name="flat"), keras.layers.Dense(5, name="fc")])
m.save(sys.argv[1])
'''


def cases(work: Path) -> list[tuple[str, list[str]]]:
    """(name, arguments of ``python -m weightmap``); each runs in ``work/<name>``."""
    vgg_k, vgg_t = FIX / "examples" / "small_vgg_keras.h5", FIX / "examples" / "small_vgg_torch.py"
    return [
        ("keras_to_torch_safetensors", ["port", str(vgg_k), "--to", str(vgg_t), "--out",
                                        "out.safetensors", "--save-plan", "plan.json"]),
        ("keras_to_torch_pt", ["port", str(vgg_k), "--to", str(vgg_t), "--out", "out.pt",
                               "--freeze", "transferred"]),
        ("torch_to_keras_live", ["port", str(MODELS / "small_cnn_torch.py"), "--to",
                                 str(MODELS / "small_cnn_keras.py"), "--out", "out.weights.h5"]),
        ("torch_to_tfkeras_h5", ["port", str(FIX / "torch" / "cnn.pt"), "--to",
                                 str(work / "_made" / "cnn_tfk.h5"), "--out", "out.h5"]),
        ("onnx_to_torch_unfused", ["port", str(FIX / "onnx" / "cnn_legacy.onnx"), "--to",
                                   str(work / "_made" / "cnn_torch.py"), "--out",
                                   "out.safetensors", "--save-plan", "plan.json"]),
        ("onnx_dynamo_to_torch", ["port", str(FIX / "onnx" / "cnn_dynamo" / "cnn.onnx"), "--to",
                                  str(work / "_made" / "cnn_torch.py"), "--out", "out.pt"]),
        ("onnx_recurrent_to_torch", ["port", str(FIX / "onnx" / "rnn_legacy.onnx"), "--to",
                                     str(work / "_made" / "rnn_torch.py"), "--out",
                                     "out.safetensors", "--save-plan", "plan.json"]),
        ("torch_to_onnx_fused", ["port", str(work / "_made" / "cnn_torch.py"), "--to",
                                 str(FIX / "onnx" / "cnn_legacy.onnx"), "--out", "out.onnx"]),
        ("torch_to_onnx_external", ["port", str(work / "_made" / "cnn_torch.py"), "--to",
                                    str(FIX / "onnx" / "cnn_dynamo" / "cnn.onnx"), "--out",
                                    "out.onnx"]),
        ("recurrent_torch_to_keras", ["port", str(FIX / "torch" / "rnn.pt"), "--to",
                                      str(work / "_made" / "rnn_keras.py"), "--out",
                                      "out.weights.h5", "--save-plan", "plan.json"]),
        ("recurrent_onnx_to_torch_pt", ["port", str(FIX / "onnx" / "rnn_legacy.onnx"), "--to",
                                     str(work / "_made" / "rnn_torch.py"), "--out", "out.pt"]),
        ("gpt2_conv1d_to_fused_qkv", ["port", str(work / "_made" / "gpt2.safetensors"), "--to",
                                      str(work / "_made" / "gpt_target.py"), "--out",
                                      "out.safetensors", "--save-plan", "plan.json"]),
        ("gpt2_sharded_output", ["port", str(work / "_made" / "gpt2.safetensors"), "--to",
                                 str(work / "_made" / "gpt_target.py"), "--out",
                                 "out.safetensors", "--shard-size", "60KB"]),
        ("gpt2_to_pt", ["port", str(work / "_made" / "gpt2.safetensors"), "--to",
                        str(work / "_made" / "gpt_target_head.py"), "--out", "out.pt"]),
        ("llama_sharded_convert", ["convert", str(FIX / "safetensors" / "sharded"), "--out",
                                   "out.pt"]),
        ("convert_torch_pt", ["convert", str(FIX / "torch" / "cnn.pt"), "--out",
                              "out.safetensors"]),
        ("convert_lightning", ["convert", str(FIX / "torch" / "lightning.ckpt"), "--out",
                               "out.safetensors", "--strip-prefix"]),
        ("convert_keras3", ["convert", str(FIX / "keras" / "k3_mixed.keras"), "--out",
                            "out.safetensors"]),
        ("convert_tfkeras", ["convert", str(FIX / "keras" / "tfk_seq.h5"), "--out", "out.pt"]),
        ("convert_onnx", ["convert", str(FIX / "onnx" / "cnn_legacy.onnx"), "--out",
                          "out.safetensors", "--cast", "bf16"]),
        ("convert_tied", ["convert", str(FIX / "torch" / "tied_lm.pt"), "--out", "out.pt"]),
    ]


def make_inputs(made: Path) -> None:
    """The sources and targets this script writes (fixed seeds)."""
    made.mkdir(parents=True, exist_ok=True)
    (made / "cnn_torch.py").write_text(CNN_TORCH, encoding="utf-8")
    (made / "rnn_torch.py").write_text(RNN_TORCH, encoding="utf-8")
    (made / "rnn_keras.py").write_text(RNN_KERAS, encoding="utf-8")
    sys.path.insert(0, str(HERE))
    import gpt_files
    gpt_files.make_checkpoint(made / "gpt2.safetensors", gpt_files.TINY)
    gpt_files.write_target(made / "gpt_target.py", gpt_files.TINY)
    gpt_files.write_target(made / "gpt_target_head.py", gpt_files.TINY, extra_head=True)
    script = made / "_cnn_tfk.py"
    script.write_text(CNN_TFK, encoding="utf-8")
    subprocess.run([sys.executable, str(script), str(made / "cnn_tfk.h5")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def normalise(text: str, work: Path) -> str:
    for root, mark in ((str(work), "<work>"), (str(REPO), "<repo>"),
                       (os.path.realpath(work), "<work>")):
        text = text.replace(root, mark)
    return re.sub(r'"mtime_ns": \d+', '"mtime_ns": 0', text)


def digest(path: Path, work: Path) -> str:
    """SHA-256 of the file, with the work folder's path replaced wherever it is written (a
    safetensors header records its source's path)."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":      # the header's padding follows the path's length
        (n,) = struct.unpack("<Q", data[:8])
        header = normalise(data[8:8 + n].decode("utf-8").rstrip(), work)
        data = header.encode("utf-8") + data[8 + n:]
    elif path.suffix == ".json":
        data = normalise(data.decode("utf-8"), work).encode("utf-8")
    for root in {str(work), os.path.realpath(work)}:
        data = data.replace(root.encode(), b"<work>")
    return hashlib.sha256(data).hexdigest()


def run(work: Path) -> dict[str, dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "adapters")]),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    made = work / "_made"
    make_inputs(made)
    record: dict[str, dict[str, str]] = {
        "_made": {p.name: digest(p, work) for p in sorted(made.iterdir())
                  if p.is_file() and not p.name.startswith("_") and p.suffix != ".h5"}}
    for name, args in cases(work):
        folder = work / name
        folder.mkdir()
        proc = subprocess.run([sys.executable, "-m", "weightmap", *args], cwd=folder, env=env,
                              capture_output=True, text=True)
        entry = {"exit": str(proc.returncode),
                 "stdout": hashlib.sha256(normalise(proc.stdout, work).encode()).hexdigest()}
        if proc.returncode:
            entry["stderr"] = normalise(proc.stderr, work)[-400:]
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                entry[str(path.relative_to(folder))] = digest(path, work)
        record[name] = entry
        print(f"{name}: exit {proc.returncode}, {len(entry) - 2} file(s)", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", type=Path, help="write the hashes to this JSON file")
    group.add_argument("--compare", type=Path, help="compare with a recorded JSON file")
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temporary one")
    args = ap.parse_args(argv)
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
        record = run(args.keep.resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="weightmap-outputs-") as tmp:
            record = run(Path(tmp))
    if args.record:
        args.record.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n",
                               encoding="utf-8")
        print(f"recorded {len(record) - 1} case(s) in {args.record}")
        return 0
    before = json.loads(args.compare.read_text(encoding="utf-8"))
    differ = []
    for case in sorted(set(before) | set(record)):
        a, b = before.get(case, {}), record.get(case, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                differ.append(f"{case}: {key}: {a.get(key)} -> {b.get(key)}")
    for line in differ:
        print("DIFFERS", line)
    print(f"{len(record) - 1} case(s): " + ("all the same, bit for bit" if not differ else
                                           f"{len(differ)} difference(s)"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
