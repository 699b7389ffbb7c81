import json
import subprocess
import sys

import numpy as np
import pytest

from weightmap.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "weightmap", *args], capture_output=True,
                          text=True)


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    f = tmp_path / "junk.pt"
    f.write_bytes(b"\x00garbage" * 10)
    r = _run("inspect", str(f))
    assert r.returncode != 0
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("weightmap: error: ")
    assert str(f) in r.stderr and "Traceback" not in r.stderr


def test_missing_file_exit_code(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "none.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "inspect" in capsys.readouterr().out


def test_inspect_json_of_a_python_model_file(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("import numpy as np\n"
                 "model = {'fc.weight': np.ones((3, 2), np.float32)}\n")
    assert main(["inspect", str(f), "--json"]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["totals"]["elements"] == 6
    assert desc["layers"][0]["params"][0]["axes"] == ["out", "in"]


def test_inspect_table_lists_every_param(tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("import numpy as np\n"
                 "model = {'conv.weight': np.ones((4, 3, 3, 3), np.float32),"
                 " 'conv.bias': np.ones(4, np.float32)}\n")
    assert main(["inspect", str(f)]) == 0
    out = capsys.readouterr().out
    assert "conv.weight [kernel]" in out and "4x3x3x3" in out and "out,in,kh,kw" in out
    assert "conv2d" in out


def test_inspect_cuts_a_long_meta_value_and_json_keeps_it_whole(tmp_path, capsys):
    """A tf_keras model with many layers without weights: the reader's per-layer meta is one
    readable line, whole in --json."""
    tf_keras = pytest.importorskip("tf_keras")
    L = tf_keras.layers
    x = i = tf_keras.Input((4,))
    for k in range(40):
        x = L.Activation("relu", name=f"activation_number_{k}")(L.Dense(4, name=f"d{k}")(x))
    path = tmp_path / "many.h5"
    tf_keras.Model(i, x).save(path)
    assert main(["inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    meta = next(l for l in lines if l.startswith("  weightless_layers: "))
    assert len(meta) <= 160 and meta.endswith(" ... (41 items; --json shows all)"), meta
    assert max(len(l) for l in lines) <= 160
    assert main(["inspect", str(path), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["meta"]["weightless_layers"]
    assert len(whole) == 41 and "activation_number_39" in whole


def test_a_full_disk_is_one_line_exit_9_and_no_output(tmp_path, monkeypatch, capsys):
    import errno

    from safetensors.numpy import save_file

    import weightmap_safetensors.writer as writer
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": np.ones((3, 2), np.float32)}, str(src))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "pwrite_all", full)
    out = tmp_path / "out.safetensors"
    assert main(["port", str(src), "--to", str(src), "--out", str(out), "--quiet"]) == 9
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("weightmap: error: ")
    assert str(out) in err and "No space left on device" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


def test_a_full_disk_past_the_page_cache_is_the_same_one_line(tmp_path, monkeypatch, capsys):
    """Direct I/O (here for any size) fails the same way: exit 9, one line, nothing kept."""
    import errno
    import os

    from safetensors.numpy import save_file

    from weightmap.io import direct
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": np.ones((300, 200), np.float32)}, str(src))
    fd = direct.open_direct(tmp_path / "probe")
    if fd is None:
        pytest.skip("this file system does not do O_DIRECT")
    os.close(fd)
    os.unlink(tmp_path / "probe")
    monkeypatch.setattr(direct, "MIN_SIZE", 0)
    monkeypatch.setattr(direct, "WINDOW", 2 * direct.BLOCK)
    real = os.pwritev

    def full(fd, buffers, offset, *rest):
        if offset >= direct.WINDOW:           # the probe and the first window pass
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers, offset, *rest)

    monkeypatch.setattr(os, "pwritev", full)
    out = tmp_path / "out.safetensors"
    assert main(["port", str(src), "--to", str(src), "--out", str(out), "--quiet"]) == 9
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(out) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.safetensors"]


def test_no_direct_io_keeps_the_page_cache(tmp_path, monkeypatch):
    from safetensors.numpy import load_file, save_file

    from weightmap.io import direct
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": np.arange(6, dtype=np.float32).reshape(3, 2)}, str(src))
    monkeypatch.setattr(direct, "MIN_SIZE", 0)
    opened = []
    real = direct.open_direct
    monkeypatch.setattr(direct, "open_direct", lambda path: opened.append(path) or real(path))
    for flag, out in (("--no-direct-io", "cached.safetensors"), (None, "auto.safetensors")):
        args = ["port", str(src), "--to", str(src), "--out", str(tmp_path / out), "--quiet"]
        assert main(args + ([flag] if flag else [])) == 0
        assert load_file(str(tmp_path / out))["fc.weight"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert [(p.name, p.parent.name.startswith(".weightmap-tmp-")) for p in opened] == \
        [("auto.safetensors", True)]


def test_read_back_device_re_reads_and_says_so_in_the_manifest(tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    from weightmap.io import direct
    fd = direct.open_direct(tmp_path / "probe")
    if fd is None:
        pytest.skip("this file system does not do O_DIRECT")
    import os
    os.close(fd)
    src = tmp_path / "src.safetensors"
    save_file({"fc.weight": np.arange(6, dtype=np.float32).reshape(3, 2)}, str(src))
    monkeypatch.setattr(direct, "MIN_SIZE", 0)
    reads = []
    real = direct._pread
    monkeypatch.setattr(direct, "_pread", lambda *a: (reads.append(a[2]), real(*a))[1])
    for mode in ("written", "device"):
        out = tmp_path / f"{mode}.safetensors"
        assert main(["port", str(src), "--to", str(src), "--out", str(out), "--quiet",
                     "--read-back", mode]) == 0
        manifest = json.loads((tmp_path / f"{mode}.manifest.json").read_text())
        assert manifest["summary"]["read_back"] == mode
        assert (len(reads) > 0) == (mode == "device")


def test_names_from_a_file_reach_the_terminal_escaped(tmp_path):
    """A lone surrogate crashed printing (exit 70, after the output was written); control
    characters reached the terminal raw, in tables, reports, plans and errors."""
    import re
    from pathlib import Path
    src = Path(__file__).resolve().parents[2] / "fixtures" / "hostile" / "safetensors" / \
        "hostile_names.safetensors"
    raw = re.compile("[\x00-\x09\x0b-\x1f\x7f\u202e\ud800-\udfff]")
    out = tmp_path / "o.safetensors"
    runs = [_run("inspect", str(src)), _run("inspect", str(src), "--json"),
            _run("port", str(src), "--to", str(src), "--dry-run", "--verbose"),
            _run("port", str(src), "--to", str(src), "--out", str(out), "--verbose"),
            _run("port", str(src), "--to", str(src), "--out", str(out))]       # exists: error
    for r in runs[:4]:
        assert r.returncode == 0, r.stderr
        assert not raw.search(r.stdout + r.stderr), repr(r.stdout)
    assert "w\\ud800" in runs[0].stdout and "\\x1b[2J\\x1b]0;owned\\x07\\x0d\\x0a\\u202e" in \
        runs[0].stdout
    assert json.loads(runs[1].stdout)["layers"]
    assert "w\\ud800" in runs[2].stdout and out.exists()
    assert runs[4].returncode == 2 and not raw.search(runs[4].stderr)


def _docstrings(tree):
    import ast
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                yield body[0].value


def test_every_option_a_message_names_exists_on_the_command_line():
    """Hints say "pass --force", "raise it with --limit ...": each such option is real."""
    import ast
    import re
    from pathlib import Path

    from weightmap.cli import _parser
    flags = set()
    for action in _parser()._actions:
        flags |= set(action.option_strings)
        for sub in getattr(action, "choices", None) or {}:
            flags |= {s for a in action.choices[sub]._actions for s in a.option_strings}
    root = Path(__file__).resolve().parents[2]
    named = {}
    for path in [*(root / "weightmap").rglob("*.py"), *(root / "adapters").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        docs = {id(c) for c in _docstrings(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs:
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", node.value):
                    named.setdefault(flag, path.name)
    assert named, "the scan found no option at all"
    assert {f: p for f, p in named.items() if f not in flags} == {}


def test_the_conv1d_layout_decision_names_an_option_that_settles_it(tmp_path, capsys):
    """A square Conv1D-style kernel of a state dict is left new with a decision naming
    --conv1d-layout (it used to name a Python-only option); given, it ports exactly."""
    from safetensors.numpy import load_file, save_file
    rng = np.random.default_rng(3)
    kernel = rng.standard_normal((8, 8)).astype(np.float32)
    save_file({"h.0.attn.c_proj.weight": kernel, "h.0.attn.c_proj.bias": np.ones(8, np.float32)},
              str(tmp_path / "gpt.safetensors"))
    save_file({"blocks.0.proj.weight": np.zeros((8, 8), np.float32),
               "blocks.0.proj.bias": np.zeros(8, np.float32)}, str(tmp_path / "mine.safetensors"))
    args = ["port", str(tmp_path / "gpt.safetensors"), "--to", str(tmp_path / "mine.safetensors")]
    assert main(args + ["--dry-run"]) == 0
    (decision,) = [l for l in capsys.readouterr().out.splitlines()
                   if l.startswith("check: ") and "square kernel" in l]
    assert "--conv1d-layout in,out" in decision
    out = tmp_path / "o.safetensors"
    assert main(args + ["--out", str(out), "--conv1d-layout", "in,out"]) == 0
    np.testing.assert_array_equal(load_file(str(out))["blocks.0.proj.weight"], kernel.T)
    assert "layout from option conv1d_layout" in capsys.readouterr().out


def _lightning_checkpoint(path):
    """A Lightning-style .ckpt whose callbacks hold a numpy scalar and whose hyper-parameters
    hold an argparse.Namespace: objects weightmap's reader refuses unless told otherwise."""
    import argparse
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    state = {"model." + k: v for k, v in net.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state,
                "callbacks": {"ModelCheckpoint": {"kth_value": np.float64(0.5)}},
                "hyper_parameters": {"args": argparse.Namespace(lr=1e-3)}}, path)
    return {k: v.numpy() for k, v in state.items()}


def test_opaque_globals_on_the_command_line_reads_a_lightning_checkpoint(tmp_path, capsys):
    from safetensors.numpy import load_file
    ckpt, out = tmp_path / "last.ckpt", tmp_path / "w.safetensors"
    state = _lightning_checkpoint(ckpt)
    for command in (["inspect", str(ckpt)], ["convert", str(ckpt), "--out", str(out)],
                    ["port", str(ckpt), "--to", str(ckpt), "--out", str(out)]):
        assert main(command) == 4
        err = capsys.readouterr().err
        assert "pass --opaque-globals to read only its tensors" in err, err
        assert "opaque_globals=" not in err and not out.exists()
    assert main(["inspect", str(ckpt), "--opaque-globals"]) == 0
    assert "7 parameters" in capsys.readouterr().out
    assert main(["convert", str(ckpt), "--out", str(out), "--opaque-globals",
                 "--strip-prefix"]) == 0
    assert {k: v.tolist() for k, v in load_file(str(out)).items()} == \
        {k.removeprefix("model."): v.tolist() for k, v in state.items()}
    ported = tmp_path / "p.safetensors"
    assert main(["port", str(ckpt), "--opaque-globals", "--to", str(out), "--out",
                 str(ported)]) == 0
    assert {k: v.tolist() for k, v in load_file(str(ported)).items()} == \
        {k.removeprefix("model."): v.tolist() for k, v in state.items()}
