import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from weightmap.errors import UnknownFormatError, UsageError
from weightmap.sources import graph_from_arrays, load_python_object, read, split_pyref


def test_import_weightmap_loads_no_framework():
    code = ("import weightmap, weightmap.sources, weightmap.registry, sys; "
            "weightmap.registry.adapters(); "
            "bad = {'torch','tensorflow','keras','tf_keras','onnxruntime'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("text,expected", [
    ("model.py", ("model.py", "model")),
    ("dir/m.py:net", ("dir/m.py", "net")),
    ("C:/x/m.py:build_model", ("C:/x/m.py", "build_model")),
    ("weights.pt", (None, "")),
    ("m.py:not-an-identifier", (None, "")),
])
def test_split_pyref(text, expected):
    path, name = split_pyref(text)
    assert (str(path) if path else None, name) == expected


def test_unknown_file_is_refused_with_what_is_expected(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with pytest.raises(UnknownFormatError, match="not a checkpoint format.*expected PyTorch"):
        read(f)


def test_missing_path(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read(tmp_path / "nope.pt")


def test_dict_of_arrays_is_a_graph():
    g = read({"fc.weight": np.ones((3, 2), np.float32), "fc.bias": np.zeros(3, np.float32)})
    assert [(l.name, l.op) for l in g.layers] == [("fc", "dense")]
    np.testing.assert_array_equal(g.param("fc.weight").read(), np.ones((3, 2)))


def test_live_object_of_unknown_type_is_refused():
    with pytest.raises(UsageError, match="cannot read a live object"):
        read(object())


def _write(tmp_path: Path, body: str) -> Path:
    f = tmp_path / "m.py"
    f.write_text(body)
    return f


def test_python_file_factory_and_example_input(tmp_path):
    f = _write(tmp_path, "def model():\n    return {'a': 1}\nexample_input = lambda: 42\n")
    obj, example = load_python_object(f, "model")
    assert obj == {"a": 1} and example == 42


def test_python_file_errors_are_one_line_usage_errors(tmp_path):
    f = _write(tmp_path, "raise RuntimeError('boom')\n")
    with pytest.raises(UsageError, match="running the model file failed: RuntimeError: boom"):
        load_python_object(f)
    f = _write(tmp_path, "net = 1\n")
    with pytest.raises(UsageError, match="defines no 'model'.*net"):
        load_python_object(f)


@pytest.mark.parametrize("code, where", [
    ("import sys\nsys.exit(3)\n", "running the model file ended in sys.exit(3)"),
    ("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n",
     "running the model file ended in sys.exit(2)"),
    ("import sys\ndef model():\n    sys.exit(0)\n", "calling model() ended in sys.exit(0)"),
    ("import sys\nmodel = {}\ndef example_input():\n    sys.exit('usage: x')\n",
     "example_input() ended in sys.exit('usage: x')")])
def test_a_model_file_calling_sys_exit_is_a_usage_error(tmp_path, code, where):
    f = _write(tmp_path, code)
    with pytest.raises(UsageError) as err:
        load_python_object(f)
    assert err.value.message.startswith(where) and err.value.path == str(f)
    assert "if __name__ == '__main__':" in err.value.hint


def test_a_model_file_calling_sys_exit_through_the_command_line(tmp_path):
    """One line naming the file and exit 2 (it was a silent exit 3)."""
    f = _write(tmp_path, "import sys\nimport numpy as np\n"
                         "model = {'fc.weight': np.ones((3, 2), np.float32)}\nsys.exit(3)\n")
    r = subprocess.run([sys.executable, "-m", "weightmap", "inspect", str(f)],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr.count("\n") == 1 and str(f) in r.stderr and "sys.exit(3)" in r.stderr


def test_graph_from_arrays_keeps_order_and_dtypes():
    import ml_dtypes
    g = graph_from_arrays({"b.weight": np.zeros((2, 2), ml_dtypes.bfloat16),
                           "a.weight": np.zeros((4, 2, 3), np.float16)}, origin="t")
    assert [(p.name, p.dtype) for p in g.params()] == [("b.weight", "bfloat16"),
                                                       ("a.weight", "float16")]


def test_an_error_from_reading_a_model_file_names_the_file(tmp_path):
    pytest.importorskip("torch")
    f = _write(tmp_path, "import torch\nfrom torch import nn\n"
                         "def model():\n    return nn.Linear(2, 3)\n"
                         "def example_input():\n    return torch.zeros(1, 5)\n")
    for lazy in (False, True):
        with pytest.raises(UsageError, match="example_input") as caught:
            read(str(f), lazy=lazy)
        assert caught.value.path == str(f)


def test_a_model_file_imports_the_modules_beside_it(tmp_path):
    """As with ``python model.py``: its folder is importable while it runs, and only then."""
    torch = pytest.importorskip("torch")
    (tmp_path / "blocks_beside.py").write_text(
        "from torch import nn\n\n"
        "def block(cin, cout):\n    return nn.Sequential(nn.Conv2d(cin, cout, 3), nn.ReLU())\n")
    f = _write(tmp_path, "import torch\nfrom torch import nn\nfrom blocks_beside import block\n"
                         "model = nn.Sequential(block(3, 4), block(4, 5))\n"
                         "example_input = lambda: torch.zeros(1, 3, 9, 9)\n")
    before = list(sys.path)
    for lazy in (False, True):
        g = read(str(f), lazy=lazy)
        assert [l.name for l in g.layers] == ["0.0", "1.0"]
        assert g.param("1.0.weight").shape == (5, 4, 3, 3)
        assert sys.path == before
    assert isinstance(load_python_object(f)[0], torch.nn.Sequential)
