"""The .pt output (adapters/weightmap_torch/emit.py): prefetched tensors in plan order, read back
as they are written, the manifest's digests those of the file torch loads."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import save_file

import weightmap
from weightmap.emit import readback
from weightmap.io.spans import FileSpan
from weightmap.transform.execute import Job
from weightmap_torch.emit import prefetched

torch = pytest.importorskip("torch")


class Stream:
    """A TensorStream stand-in: jobs giving strided views, plain arrays and raw file spans."""

    def __init__(self, jobs):
        self._jobs, self.advanced = jobs, []

    def jobs(self):
        return self._jobs

    def advance(self, t):
        self.advanced.append(t.target)


def test_prefetched_gives_every_tensor_in_order_and_never_overwrites_one_in_use(tmp_path):
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((5 + i, 7)).astype(np.float32) for i in range(5)]
    raw = rng.standard_normal(6).astype(np.float32)
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\0" * 16 + raw.tobytes())
    jobs = [Job(SimpleNamespace(target=f"m{i}", shape=m.T.shape, dtype="float32"),
                lambda m=m: m.T) for i, m in enumerate(mats)]
    jobs.insert(2, Job(SimpleNamespace(target="raw", shape=(2, 3), dtype="float32"),
                       lambda: FileSpan(str(path), 16, raw.nbytes)))
    stream = Stream(jobs)
    seen = []
    for name, arr in prefetched(stream):
        assert arr.flags.c_contiguous
        seen.append((name, arr.copy()))                   # valid while it is current
    assert [n for n, _ in seen] == ["m0", "m1", "raw", "m2", "m3", "m4"]
    assert stream.advanced == [n for n, _ in seen]
    want = {f"m{i}": m.T for i, m in enumerate(mats)} | {"raw": raw.reshape(2, 3)}
    for name, arr in seen:
        np.testing.assert_array_equal(arr, want[name])


def test_a_port_to_pt_is_read_back_as_written_and_torch_loads_what_the_manifest_hashes(
        tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    src = {"fc.weight": rng.standard_normal((4, 3)).astype(np.float32),
           "fc.bias": rng.standard_normal(4).astype(np.float32)}
    template = tmp_path / "template.safetensors"
    save_file({k: np.zeros_like(v) for k, v in src.items()}, str(template))
    taken = []
    real = readback.ReadBack.take
    monkeypatch.setattr(readback.ReadBack, "take",
                        lambda self, path, t, *a: (taken.append(t.target), real(self, path, t, *a)))
    out = tmp_path / "model.pt"
    report = weightmap.port(src, template, out)
    assert sorted(taken) == sorted(src)
    state = torch.load(out, weights_only=True)
    for name, value in src.items():
        np.testing.assert_array_equal(state[name].numpy(), value)
        assert report.manifest["params"][name]["sha256"] == \
            hashlib.sha256(value.tobytes()).hexdigest()
    assert report.manifest["summary"]["verified"] is True


TIED_MODEL = '''
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mix = nn.Linear(4, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight          # tied: one tensor, two names

    def forward(self, x):
        return self.head(self.mix(self.emb(x)))


def model():
    return M()


def example_input():
    return torch.zeros(1, 3, dtype=torch.long)
'''


def test_tied_weights_are_written_once_and_load_tied(tmp_path):
    import zipfile
    rng = np.random.default_rng(2)
    src = {"emb.weight": rng.standard_normal((10, 4)).astype(np.float32),
           "mix.weight": rng.standard_normal((4, 4)).astype(np.float32),
           "mix.bias": rng.standard_normal(4).astype(np.float32)}
    src_path = tmp_path / "src.safetensors"
    save_file(src, str(src_path))                  # as the hubs store it: the tie left out
    model_file = tmp_path / "tied.py"
    model_file.write_text(TIED_MODEL)
    out = tmp_path / "tied.pt"
    report = weightmap.port(src_path, model_file, out)
    state = torch.load(out, weights_only=True)
    assert sorted(state) == ["emb.weight", "head.weight", "mix.bias", "mix.weight"]
    assert state["head.weight"].untyped_storage().data_ptr() == \
        state["emb.weight"].untyped_storage().data_ptr()
    with zipfile.ZipFile(out) as zf:
        assert sum("/data/" in n for n in zf.namelist()) == 3
    np.testing.assert_array_equal(state["head.weight"].numpy(), src["emb.weight"])
    digest = hashlib.sha256(src["emb.weight"].tobytes()).hexdigest()
    assert report.manifest["params"]["head.weight"]["sha256"] == digest
    # the ported model computes what the weights say
    import importlib.util
    spec = importlib.util.spec_from_file_location("tied_model", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    m = module.model()
    m.load_state_dict(state)
    tokens = torch.tensor([[1, 5, 7]])
    want = (src["emb.weight"][[1, 5, 7]] @ src["mix.weight"].T + src["mix.bias"]) \
        @ src["emb.weight"].T
    np.testing.assert_allclose(m(tokens).detach().numpy()[0], want, rtol=1e-5, atol=1e-6)
