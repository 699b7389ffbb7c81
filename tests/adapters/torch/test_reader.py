"""The file reader end to end: exact specs, lazy data == torch.load(weights_only=True), ties,
refusals, and reading with torch blocked from importing."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from weightmap.errors import FormatError, UnsafeInputError, UsageError
from weightmap.graph import MappedData

from weightmap_torch.storage import StridedData

CNN_SPECS = [
    ("conv", "conv2d", [("conv.weight", "kernel", (4, 3, 3, 3), "float32",
                         ("out", "in", "kh", "kw")),
                        ("conv.bias", "bias", (4,), "float32", ("out",))]),
    ("bn", "batchnorm", [("bn.weight", "gamma", (4,), "float32", ("c",)),
                         ("bn.bias", "beta", (4,), "float32", ("c",)),
                         ("bn.running_mean", "moving_mean", (4,), "float32", ("c",)),
                         ("bn.running_var", "moving_var", (4,), "float32", ("c",)),
                         ("bn.num_batches_tracked", "num_batches_tracked", (), "int64", ())]),
    ("fc", "dense", [("fc.weight", "kernel", (5, 64), "float32", ("out", "in")),
                     ("fc.bias", "bias", (5,), "float32", ("out",))]),
]


def specs(graph):
    return [(l.name, l.op, [(p.name, p.role, p.shape, p.dtype, p.axes) for p in l.params])
            for l in graph.layers]


def with_prefix(prefix):
    return [(prefix + name, op, [(prefix + n, *rest) for n, *rest in params])
            for name, op, params in CNN_SPECS]


def assert_data_equal(graph, reference):
    assert [p.name for p in graph.params()] == list(reference)
    for p in graph.params():
        np.testing.assert_array_equal(p.read(), reference[p.name])
        assert p.read().dtype == reference[p.name].dtype, p.name


def test_cnn_specs_and_mapped_data(read_torch, fixture_path, torch_load):
    g = read_torch("cnn.pt")
    assert (g.format, g.framework, g.order) == ("torch-zip", "torch", "stored")
    assert specs(g) == CNN_SPECS
    assert dict(g.meta) == {"archive_folder": "cnn", "container": None, "prefixes": [],
                            "byteorder": "little"}
    assert all(isinstance(p.data, MappedData) for p in g.params())
    assert_data_equal(g, torch_load(fixture_path("cnn.pt")))
    assert g.param("bn.num_batches_tracked").read() == 1    # the generator ran one train step


@pytest.mark.parametrize("name,prefix", [("dataparallel.pth", "module."),
                                         ("compiled.bin", "_orig_mod.")])
def test_wrapper_prefixes_reported_not_stripped(read_torch, fixture_path, torch_load, name,
                                                prefix):
    g = read_torch(name)
    assert specs(g) == with_prefix(prefix)
    assert g.meta["prefixes"] == [prefix]
    assert_data_equal(g, torch_load(fixture_path(name)))


def test_lightning_checkpoint(read_torch, fixture_path, torch_load):
    g = read_torch("lightning.ckpt")
    assert specs(g) == with_prefix("model.")
    assert g.meta["container"] == "state_dict"
    assert g.meta["prefixes"] == ["model."]
    assert g.meta["other_containers"] == ["optimizer_states"]
    assert g.meta["other_keys"] == ["epoch", "global_step", "pytorch-lightning_version",
                                    "hyper_parameters", "lr_schedulers"]
    assert_data_equal(g, torch_load(fixture_path("lightning.ckpt"), "state_dict"))


def test_ema_container_choice(read_torch, fixture_path, torch_load):
    default = read_torch("ema.pt")
    assert default.meta["container"] == "model"
    assert default.meta["other_containers"] == ["model_ema"]
    assert_data_equal(default, torch_load(fixture_path("ema.pt"), "model"))
    ema = read_torch("ema.pt", container="model_ema")
    assert ema.meta["container"] == "model_ema"
    assert ema.meta["other_containers"] == ["model"]
    assert specs(ema) == CNN_SPECS
    assert_data_equal(ema, torch_load(fixture_path("ema.pt"), "model_ema"))
    with pytest.raises(UsageError, match="no container 'ema'"):
        read_torch("ema.pt", container="ema")


def test_tied_embedding_and_head(read_torch, fixture_path, torch_load):
    g = read_torch("tied_lm.pt")
    assert specs(g) == [
        ("wte", "embedding", [("wte.weight", "embeddings", (16, 8), "float32", ("vocab", "dim"))]),
        ("ln", "layernorm", [("ln.weight", "gamma", (8,), "float32", ("c",)),
                             ("ln.bias", "beta", (8,), "float32", ("c",))]),
        ("lm_head", "dense", [("lm_head.weight", "kernel", (16, 8), "float32", ("out", "in"))]),
    ]
    assert g.param("lm_head.weight").tied_to == "wte.weight"
    assert g.param("wte.weight").tied_to is None
    assert g.totals()["tensors"] == 3
    assert_data_equal(g, torch_load(fixture_path("tied_lm.pt")))


def test_half_precision(read_torch, fixture_path, torch_load):
    g = read_torch("half.pt")
    assert [(p.name, p.dtype, p.shape) for p in g.params()] == [
        ("bf.weight", "bfloat16", (3, 4)), ("bf.bias", "bfloat16", (3,)),
        ("fp.weight", "float16", (2, 3)), ("fp.bias", "float16", (2,))]
    assert_data_equal(g, torch_load(fixture_path("half.pt")))


def test_recurrent_layers(read_torch, fixture_path, torch_load):
    g = read_torch("rnn.pt")
    lstm, gru = g.layers
    assert (lstm.op, gru.op) == ("lstm", "gru")
    assert lstm.attrs["num_layers"] == 2 and lstm.attrs["bidirectional"] is True
    assert [p.role for p in gru.params] == ["kernel", "recurrent_kernel", "bias", "recurrent_bias"]
    assert len(lstm.params) == 16
    assert_data_equal(g, torch_load(fixture_path("rnn.pt")))


def test_strided_views_and_flags(read_torch, fixture_path, torch_load):
    g = read_torch("views.pt")
    kinds = {p.name: type(p.data).__name__ for p in g.params()}
    assert kinds == {"base": "MappedData", "transposed": "StridedData", "row": "MappedData",
                     "column": "StridedData", "alias": "MappedData", "conj": "StridedData",
                     "neg": "StridedData", "empty": "MappedData", "scalar": "MappedData"}
    assert g.param("alias").tied_to == "base"
    assert [p.name for p in g.params() if p.tied_to] == ["alias"]   # views share, not tie
    assert_data_equal(g, torch_load(fixture_path("views.pt")))


def test_legacy_format(read_torch, fixture_path, torch_load):
    g = read_torch("legacy.pt")
    assert g.format == "torch-legacy"
    assert specs(g)[:3] == CNN_SPECS
    assert isinstance(g.param("extra.transposed").data, StridedData)
    assert_data_equal(g, torch_load(fixture_path("legacy.pt")))


def test_whole_model_pickle_needs_opaque_globals(read_torch, fixture_path, torch_load):
    with pytest.raises(UnsafeInputError, match=r"torch\.nn\.modules\.container\.Sequential"):
        read_torch("full_model.pt")
    g = read_torch("full_model.pt", opaque_globals=True)
    assert specs(g) == CNN_SPECS
    assert g.meta["opaque_globals"] is True
    # the generator pickled the very model whose state dict is cnn.pt
    assert_data_equal(g, torch_load(fixture_path("cnn.pt")))


def test_torchscript_refused(read_torch):
    with pytest.raises(FormatError, match="TorchScript archive") as err:
        read_torch("scripted.pt")
    assert err.value.path.endswith("scripted.pt")


@pytest.mark.parametrize("name", ["malicious_system.pt", "malicious_exec.pt"])
def test_malicious_pickle_refused_and_not_run(read_torch, fixture_path, tmp_path, monkeypatch,
                                              name):
    monkeypatch.chdir(tmp_path)
    global_name = "posix.system" if "system" in name else "builtins.exec"
    if os.name == "nt":
        global_name = "nt.system" if "system" in name else global_name
    with pytest.raises(UnsafeInputError, match=global_name.replace(".", r"\.")):
        read_torch(name)
    with pytest.raises(UnsafeInputError):
        read_torch(name, opaque_globals=False)
    assert not (tmp_path / "weightmap_pwned_marker").exists()
    # the placeholders of opaque_globals never call anything either
    g = read_torch(name, opaque_globals=True)
    assert [p.name for p in g.params()] == ["weight"]
    assert not (tmp_path / "weightmap_pwned_marker").exists()


def test_malicious_fixture_really_is_malicious(fixture_path, tmp_path):
    """A general unpickler (torch.load with weights_only=False) does run the payload: the
    refusal above is what protects, not a harmless fixture."""
    pytest.importorskip("torch")
    code = ("import torch, sys; torch.load(sys.argv[1], weights_only=False)")
    subprocess.run([sys.executable, "-c", code, str(fixture_path("malicious_exec.pt"))],
                   cwd=tmp_path, check=True, capture_output=True, timeout=120)
    assert (tmp_path / "weightmap_pwned_marker").exists()


def test_reads_without_torch(fixture_path):
    """torch cannot even be imported: the reader and the data handles still work."""
    script = textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None
        sys.meta_path.insert(0, Block())
        from pathlib import Path
        from weightmap_torch import ADAPTER
        p = Path(sys.argv[1])
        g = ADAPTER.read(p, ADAPTER.sniff(p, p.read_bytes()[:64]))
        total = sum(float(q.read().astype("float64").sum()) for q in g.params())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("torch was importable")
        assert "torch" not in sys.modules
        print(len(list(g.params())), repr(total))
    """)
    for name in ("cnn.pt", "legacy.pt", "views.pt"):
        out = subprocess.run([sys.executable, "-c", script, str(fixture_path(name))],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        count, total = out.stdout.split()
        assert int(count) > 0 and np.isfinite(float(total))


def test_cnn_total_without_torch_matches_torch(fixture_path, torch_load):
    ref = torch_load(fixture_path("cnn.pt"))
    expected = sum(float(v.astype("float64").sum()) for v in ref.values())
    script = ("import sys; sys.modules['torch'] = None\n"
              "from pathlib import Path; from weightmap_torch import ADAPTER\n"
              "p = Path(sys.argv[1]); g = ADAPTER.read(p, 'torch-zip')\n"
              "print(repr(sum(float(q.read().astype('float64').sum()) for q in g.params())))")
    out = subprocess.run([sys.executable, "-c", script, str(fixture_path("cnn.pt"))],
                         capture_output=True, text=True, timeout=120, check=True)
    assert float(out.stdout) == expected


def _rewrite_zip(src: Path, dst: Path, *, compress: int = zipfile.ZIP_STORED, edit=None):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compress) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if edit is not None:
                data = edit(info.filename, data)
            zout.writestr(info.filename, data, compress_type=compress)


def test_compressed_members_are_read_through_zipfile(read_torch, fixture_path, torch_load,
                                                      tmp_path):
    dst = tmp_path / "deflated.pt"
    _rewrite_zip(fixture_path("views.pt"), dst, compress=zipfile.ZIP_DEFLATED)
    g = read_torch(dst)
    assert all(isinstance(p.data, StridedData) for p in g.params())
    assert_data_equal(g, torch_load(fixture_path("views.pt")))


def test_big_endian_file(read_torch, fixture_path, torch_load, tmp_path):
    """byteorder "big": every storage's elements are byte-swapped on read."""
    from weightmap_torch import ADAPTER

    def edit(name, data):          # half.pt's four storages all hold 2-byte elements
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            return np.frombuffer(data, dtype="<u2").byteswap().tobytes()
        return data
    dst = tmp_path / "big.pt"
    _rewrite_zip(fixture_path("half.pt"), dst, edit=edit)
    big = ADAPTER.read(dst, "torch-zip")
    assert big.meta["byteorder"] == "big"
    assert specs(big) == specs(read_torch("half.pt"))
    assert all(isinstance(p.data, StridedData) for p in big.params())
    assert_data_equal(big, torch_load(fixture_path("half.pt")))


def test_truncated_and_corrupt_files(read_torch, fixture_path, tmp_path):
    data = fixture_path("cnn.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    from weightmap_torch import ADAPTER
    with pytest.raises(FormatError):
        ADAPTER.read(cut, "torch-zip")
    short = tmp_path / "short.pt"
    _rewrite_zip(fixture_path("cnn.pt"), short,
                 edit=lambda n, d: d[:4] if n.endswith("/data/0") else d)
    with pytest.raises(FormatError, match="storage '0' claims 432 bytes") as err:
        ADAPTER.read(short, "torch-zip")
    assert err.value.path == str(short)
    legacy = fixture_path("legacy.pt").read_bytes()
    cut_legacy = tmp_path / "cut_legacy.pt"
    cut_legacy.write_bytes(legacy[:-40])
    with pytest.raises(FormatError, match="truncated|past the end"):
        ADAPTER.read(cut_legacy, "torch-legacy")


def test_pickle_caps_are_options(read_torch):
    with pytest.raises(FormatError, match="more than 50 opcodes"):
        read_torch("cnn.pt", max_pickle_opcodes=50)
    with pytest.raises(FormatError, match="100-byte cap"):
        read_torch("cnn.pt", max_pickle_bytes=100)
    assert len(list(read_torch("cnn.pt", max_pickle_opcodes=5000).params())) == 9


def test_unknown_format_name_is_a_usage_error(fixture_path):
    from weightmap_torch import ADAPTER
    with pytest.raises(UsageError, match="torch-zip, torch-legacy"):
        ADAPTER.read(fixture_path("cnn.pt"), "torch-tar")


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_other_pickle_protocols(tmp_path, read_torch, torch_numpy, protocol, legacy):
    """torch.save(pickle_protocol=N): STACK_GLOBAL, MEMOIZE and FRAME opcodes."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    sd = nn_state(torch)
    path = tmp_path / f"p{protocol}.pt"
    torch.save(sd, path, pickle_protocol=protocol, _use_new_zipfile_serialization=not legacy)
    g = read_torch(path)
    assert g.format == ("torch-legacy" if legacy else "torch-zip")
    assert [p.name for p in g.params()] == list(sd)
    for p in g.params():
        np.testing.assert_array_equal(p.read(), torch_numpy(sd[p.name]))


def nn_state(torch):
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 3, 3), torch.nn.LayerNorm(3))
    sd = model.state_dict()
    sd["half"] = torch.randn(3, 2).half().t()
    sd["bf16"] = torch.randn(4).bfloat16()
    return sd


@pytest.mark.parametrize("name", ["cnn.pt", "legacy.pt", "lightning.ckpt"])
def test_mutated_files_fail_only_with_weightmap_errors(fixture_path, tmp_path, name):
    """Seeded byte flips anywhere in the file: a graph, or a WeightmapError; nothing else."""
    from weightmap.errors import WeightmapError
    from weightmap_torch import ADAPTER
    data = bytearray(fixture_path(name).read_bytes())
    fmt = "torch-legacy" if name == "legacy.pt" else "torch-zip"
    rng = np.random.default_rng(7)
    path = tmp_path / name
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(150):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            mutated[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            graph = ADAPTER.read(path, fmt)
            for p in graph.params():
                p.read()
            outcomes["ok"] += 1
        except WeightmapError:
            outcomes["refused"] += 1
    assert outcomes["ok"] + outcomes["refused"] == 150 and outcomes["refused"] > 0
