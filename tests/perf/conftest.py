"""Shared helpers for the performance-path tests: the benchmark's GPT files at a tiny size.

``benchmarks/gpt_files.py`` writes a GPT-2-shaped checkpoint in Hugging Face's safetensors layout,
a torch target file (nn.Linear, fused qkv, other names) and the usual hand-written port script;
here they are made with ``gpt_files.TINY`` (3 layers, n_embd 32) in a temporary folder.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gpt_files():
    spec = importlib.util.spec_from_file_location("wm_bench_gpt_files",
                                                  ROOT / "benchmarks" / "gpt_files.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


gpt_files = _gpt_files()


@pytest.fixture(scope="session")
def tiny_gpt(tmp_path_factory):
    """{"source", "source_linear", "target", "target_head", "usual", "usual_linear"} paths."""
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("tiny_gpt")
    files = {"source": folder / "gpt2_tiny.safetensors",
             "source_linear": folder / "gpt2_tiny_linear.safetensors",
             "target": folder / "gpt_target.py", "target_head": folder / "gpt_target_head.py",
             "usual": folder / "usual_port.py", "usual_linear": folder / "usual_port_linear.py"}
    gpt_files.make_checkpoint(files["source"], gpt_files.TINY, layout="conv1d")
    gpt_files.make_checkpoint(files["source_linear"], gpt_files.TINY, layout="linear")
    gpt_files.write_target(files["target"], gpt_files.TINY)
    gpt_files.write_target(files["target_head"], gpt_files.TINY, extra_head=True)
    gpt_files.write_usual_script(files["usual"], layout="conv1d")
    gpt_files.write_usual_script(files["usual_linear"], layout="linear")
    return files


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """``benchmarks/scale_bench.py``'s files at a tiny size (hidden 16, intermediate 24, vocab
    40, 2 heads, 2 layers): {"index", "renamed", "fused", "script"} paths."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    spec = importlib.util.spec_from_file_location("wm_bench_scale",
                                                  ROOT / "benchmarks" / "scale_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    folder = tmp_path_factory.mktemp("tiny_llama")
    hidden, inter, vocab, heads, layers = 16, 24, 40, 2, 2
    gen = torch.Generator().manual_seed(3)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(torch.bfloat16)
    src = {"model.embed_tokens.weight": rand(vocab, hidden), "model.norm.weight": rand(hidden),
           "lm_head.weight": rand(vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        src.update({p + f"self_attn.{n}_proj.weight": rand(hidden, hidden) for n in "qkvo"})
        src.update({p + "mlp.gate_proj.weight": rand(inter, hidden),
                    p + "mlp.up_proj.weight": rand(inter, hidden),
                    p + "mlp.down_proj.weight": rand(hidden, inter),
                    p + "input_layernorm.weight": rand(hidden),
                    p + "post_attention_layernorm.weight": rand(hidden)})
    shard = "model-00001-of-00001.safetensors"
    save_file(src, str(folder / shard), metadata={"format": "pt"})
    files = {"index": folder / "model.safetensors.index.json", "script": folder / "usual.py"}
    files["index"].write_text(json.dumps({"metadata": {}, "weight_map": {n: shard for n in src}}))
    files["script"].write_text(bench.SCRIPT)
    for kind in ("renamed", "fused"):
        files[kind] = folder / f"target_{kind}.py"
        files[kind].write_text(bench.MODEL.replace("LAYOUT", kind).format(
            hidden=hidden, inter=inter, vocab=vocab, heads=heads, layers=layers,
            fused=kind == "fused"))
    return files


@pytest.fixture
def direct_io_or_skip(tmp_path):
    """Skips where the file system of ``tmp_path`` does not do direct I/O."""
    from weightmap.io import direct
    fd = direct.open_direct(tmp_path / "probe")
    if fd is None:
        pytest.skip("this file system does not do O_DIRECT")
    os.close(fd)
    (tmp_path / "probe").unlink()


@pytest.fixture
def usual_port():
    """usual_port(script, source, target, out) -> out: the usual script, as its own process."""
    return run_usual


@pytest.fixture
def st_arrays():
    """st_arrays(path) -> {name: array} as the safetensors library loads them."""
    return safetensors_arrays


@pytest.fixture
def model_file(tmp_path):
    """model_file(name, body) -> a model .py in tmp_path importing torch and nn."""
    return lambda name, body: write_model_file(tmp_path, name, body)


def run_usual(script: Path, source: Path, target: Path, out: Path) -> Path:
    subprocess.run([sys.executable, str(script), str(source), str(target), str(out)],
                   check=True, capture_output=True)
    return out


def safetensors_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file
    return load_file(str(path))


def write_model_file(folder: Path, name: str, body: str) -> Path:
    """A model .py file (imports torch and nn) with ``body`` appended."""
    path = folder / f"{name}.py"
    path.write_text("import torch\nfrom torch import nn\n\n" + body, encoding="utf-8")
    return path
