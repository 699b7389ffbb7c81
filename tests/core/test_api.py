"""The Python API as documented: docs/api.md names every public function and parameter, and
docs/cli.md every plan option the command line has; what ``port`` records beyond the plan
(the source's fingerprint, a job record, the census of its casts)."""
import hashlib
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import weightmap
from weightmap.api import target_graph, write_plan
from weightmap.errors import UsageError
from weightmap.options import PlanOptions
from weightmap.report import PortReport
from weightmap.sources import reader_limits, reader_options

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(text, title):
    """The text of the section whose heading starts with ``title``."""
    m = re.search(rf"^## `?{re.escape(title)}.*?(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"docs/api.md has no section {title!r}"
    return m.group(0)


def test_every_public_function_and_parameter_is_documented():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    for fn in (weightmap.port, weightmap.plan, weightmap.load_partial, weightmap.read,
               weightmap.verify, weightmap.convert, weightmap.migrate):
        section = _section(api, f"weightmap.{fn.__name__}(")
        for name in inspect.signature(fn).parameters:
            assert f"`{name}`" in section or f"`**{name}`" in section or (
                name == "options" and "`**options`" in api), (fn.__name__, name)
    read = _section(api, "weightmap.read(")
    for name in [*reader_options(), *reader_limits()]:
        assert f"`{name}`" in read, name
    for fn in ("weightmap.torch.freeze", "weightmap.torch.param_groups",
               "weightmap.keras.freeze"):
        assert f"`{fn}(" in api, fn
    for member in ("summary", "to_dict", "transferred", "new", "unused", "mismatched",
                   "manifest", "plan", "output", "manifest_path", "decisions", "verify"):
        assert hasattr(PortReport, member) or member in PortReport.__dataclass_fields__
        assert f"{member}" in _section(api, "PortReport"), member


def test_every_plan_option_is_documented_in_the_api_and_the_command_line():
    api = _section((DOCS / "api.md").read_text(encoding="utf-8"), "Plan options")
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    for spec in PlanOptions.specs():
        assert f"| `{spec.name}` |" in api, spec.name
        if spec.metadata["metavar"]:
            flag = f"`--{spec.name.replace('_', '-')} {spec.metadata['metavar']}`"
            assert flag in api and flag in cli, flag


def test_every_port_option_is_in_the_cli_table():
    from weightmap.cli import _parser
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    port = next(a for a in _parser()._actions if getattr(a, "choices", None)).choices["port"]
    for action in port._actions:
        longest = max(action.option_strings, key=len, default=None)
        if longest and longest != "--help":
            assert re.search(rf"(?<![\w-]){longest}(?![\w-])", cli), longest


@pytest.fixture
def pair(tmp_path):
    src, tgt = tmp_path / "src.safetensors", tmp_path / "template.safetensors"
    save_file({"fc.weight": np.array([[70000.0, 1e-9], [1.0, 2.0]], np.float32),
               "fc.bias": np.ones(2, np.float32)}, str(src))
    save_file({"fc.weight": np.zeros((2, 2), np.float16),
               "fc.bias": np.zeros(2, np.float16)}, str(tgt))
    return src, tgt


def test_the_manifest_records_the_source_and_the_job(pair, tmp_path):
    src, tgt = pair
    out = tmp_path / "out.safetensors"
    rep = weightmap.port(src, tgt, out, source_digest=True, job={"options": {"a": 1}})
    man = json.loads((tmp_path / "out.manifest.json").read_text())
    assert man["source"]["size"] == src.stat().st_size
    assert man["source"]["mtime_ns"] == src.stat().st_mtime_ns
    assert man["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert man["job"] == {"options": {"a": 1}} == rep.manifest["job"]
    plain = weightmap.port(src, tgt, tmp_path / "plain.safetensors")
    assert "sha256" not in plain.manifest["source"] and "job" not in plain.manifest


def test_a_narrowing_cast_is_counted_in_the_manifest(pair, tmp_path):
    src, tgt = pair
    rep = weightmap.port(src, tgt, tmp_path / "half.safetensors")
    cast = rep.manifest["params"]["fc.weight"]["cast"]
    assert cast == {"from": "float32", "to": "float16", "overflow": 1, "subnormal": 0,
                    "zero": 1}
    assert rep.manifest["summary"]["cast"] == {"tensors": 2, "overflow": 1, "subnormal": 0,
                                               "zero": 1}
    assert np.isinf(load_file(tmp_path / "half.safetensors")["fc.weight"][0, 0])


def test_a_target_graph_serves_several_ports(pair, tmp_path):
    src, tgt = pair
    graph = target_graph(tgt)
    plan = weightmap.plan(src, graph)
    for name in ("a", "b"):
        write_plan(plan, weightmap.read(src), graph, tmp_path / f"{name}.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    with pytest.raises(UsageError, match="new_values='later'"):
        target_graph(tgt, "later")


SUBCLASSED = '''
import numpy as np
import tf_keras as keras

class Sub(keras.Model):
    def __init__(self):
        super().__init__()
        self.c = keras.layers.Conv2D(8, 3, padding="same")
        self.d = keras.layers.Dense(5)

    def call(self, x):
        return self.d(keras.layers.GlobalAveragePooling2D()(self.c(x)))

model = Sub()
'''


def test_a_target_without_tensors_is_refused_and_nothing_is_written(tmp_path):
    """An unbuilt Keras subclassed model (no weights yet) and an empty torch module: refused
    with what to do, no output; the same Keras file with example_input is built and ported."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tf_keras")
    src = Path(__file__).resolve().parents[2] / "fixtures" / "examples" / "small_vgg_keras.h5"
    (tmp_path / "sub.py").write_text(SUBCLASSED)
    (tmp_path / "empty.py").write_text("from torch import nn\nmodel = nn.Identity()\n")
    for target in ("sub.py", "empty.py"):
        out = tmp_path / f"{target}.safetensors"
        with pytest.raises(UsageError, match="the target holds no tensors.*call it on an input "
                                             "or model.build.*or define example_input"):
            weightmap.port(src, tmp_path / target, out)
        assert not out.exists() and not (tmp_path / f"{target}.manifest.json").exists()
    with pytest.raises(UsageError, match="the target holds no tensors"):
        weightmap.load_partial(torch.nn.Identity(), src)
    (tmp_path / "sub.py").write_text(SUBCLASSED + "\ndef example_input():\n"
                                                   "    return np.zeros((1, 16, 16, 3), 'float32')\n")
    out = tmp_path / "sub.h5"
    report = weightmap.port(src, tmp_path / "sub.py", out, progress=False)
    assert len(report.transferred) == 2             # the conv; the head has another shape
    kernel = next(p for p in weightmap.read(out).params() if p.shape == (3, 3, 3, 8))
    np.testing.assert_array_equal(kernel.read(),
                                  weightmap.read(src).param("block1_conv1/kernel:0").read())


def test_lr_scale_as_one_text_and_load_partial_into_what_is_not_a_model(tmp_path):
    """``lr_scale="transferred=0.5"`` (the command line's spelling, one text) is one group,
    not read letter by letter; load_partial's first argument is the live model, and a path
    there says so rather than 'no such file'."""
    torch = pytest.importorskip("torch")
    root = Path(__file__).resolve().parents[2] / "fixtures" / "examples"
    src, tgt = root / "small_vgg_keras.h5", root / "small_vgg_torch.py"
    report = weightmap.port(src, tgt, tmp_path / "o.safetensors", lr_scale="transferred=0.5",
                            progress=False)
    assert {e["lr_scale"] for e in report.manifest["params"].values()} == {0.5}
    for not_a_model in ("notamodel", tgt, {"fc.weight": np.ones((2, 2), np.float32)}):
        with pytest.raises(UsageError, match="load_partial loads into a live model: its first "
                                             "argument must be a torch nn.Module or a Keras "
                                             "model, found"):
            weightmap.load_partial(not_a_model, src)
    model = torch.nn.Linear(2, 3)
    assert weightmap.load_partial(model, {"weight": np.ones((3, 2), np.float32)}).transferred
