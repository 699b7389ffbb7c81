"""The adapter surface: format detection, dispatch, the config option, and reading with every
framework blocked from import."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from weightmap.errors import FormatError, UsageError

FORMATS = {
    "tfk_vgg.h5": "keras2-h5", "tfk_seq.h5": "keras2-h5",
    "tfk_vgg_weights_only.h5": "keras2-h5-weights", "tfk_seq_weights_only.h5": "keras2-h5-weights",
    "k3_convs.weights.h5": "keras3-weights-h5", "k3_mixed.weights.h5": "keras3-weights-h5",
    "k3_convs.keras": "keras-zip", "k3_mixed.keras": "keras-zip", "k3_lambda.keras": "keras-zip",
    "k3_channels_first.keras": "keras-zip",
}


def _sniff(path: Path):
    from weightmap_keras import ADAPTER
    return ADAPTER.sniff(path, path.read_bytes()[:64] if path.is_file() else b"")


def test_every_fixture_is_sniffed_as_its_format(kx):
    assert sorted(p.name for p in kx.FIXTURES.iterdir()) == sorted(FORMATS)
    for name, fmt in FORMATS.items():
        assert _sniff(kx.fixture(name)) == fmt, name


def test_other_files_are_not_claimed(kx, tmp_path):
    plain = tmp_path / "data.h5"                   # an HDF5 file without Keras markers
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
        f.create_group("layers")
    other_zip = tmp_path / "model.zip"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("data.pkl", b"x")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert [_sniff(p) for p in (plain, other_zip, text, tmp_path)] == [None] * 4


def test_damaged_files_named_like_keras_are_claimed_and_refused(kx, tmp_path):
    from weightmap_keras import ADAPTER
    not_zip = tmp_path / "model.keras"
    not_zip.write_bytes(b"this is no zip file at all")
    cut = tmp_path / "cut.weights.h5"
    cut.write_bytes(kx.fixture("k3_convs.weights.h5").read_bytes()[:2000])
    for path, fmt in ((not_zip, "keras-zip"), (cut, "keras3-weights-h5")):
        assert _sniff(path) == fmt
        with pytest.raises(FormatError) as err:
            ADAPTER.read(path)
        assert err.value.path == str(path)


def test_read_refuses_a_foreign_format_name(kx):
    from weightmap_keras import ADAPTER
    with pytest.raises(UsageError, match="keras adapter reads"):
        ADAPTER.read(kx.fixture("tfk_vgg.h5"), "onnx")


def test_read_without_format_sniffs(kx):
    from weightmap_keras import ADAPTER
    assert ADAPTER.read(kx.fixture("k3_convs.keras")).format == "keras-zip"


def test_config_option_sources(kx, tmp_path):
    from weightmap_keras.adapter import load_config
    from_zip = load_config(kx.fixture("k3_mixed.keras"))
    assert from_zip["class_name"] == "Functional"
    assert load_config(kx.fixture("tfk_seq.h5"))["class_name"] == "Functional"
    as_json = tmp_path / "config.json"
    as_json.write_text(json.dumps(from_zip))
    assert load_config(as_json) == from_zip
    assert load_config(from_zip) is from_zip
    with pytest.raises(UsageError, match="names no file"):
        load_config(tmp_path / "missing.json")
    with pytest.raises(UsageError, match="without a model_config"):
        load_config(kx.fixture("tfk_vgg_weights_only.h5"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match="cannot read a model config"):
        load_config(bad)


def test_registry_reads_every_fixture_through_weightmap_read(kx):
    import weightmap
    for name, fmt in FORMATS.items():
        graph = weightmap.read(str(kx.fixture(name)))
        assert (graph.format, graph.framework) == (fmt, "keras")


def test_files_are_read_with_every_framework_blocked(kx):
    """specs and data of every fixture, in an interpreter where tensorflow, keras, tf_keras,
    torch and jax cannot be imported; none is imported by the adapter either."""
    result = kx.run_blocked(f"""
        import sys
        from pathlib import Path
        import weightmap_keras
        from weightmap_keras import ADAPTER
        out = []
        for path in sorted(Path({str(kx.FIXTURES)!r}).iterdir()):
            fmt = ADAPTER.sniff(path, path.read_bytes()[:64])
            graph = ADAPTER.read(path, fmt)
            total = sum(p.read().size for p in graph.params())
            out.append(f"{{path.name}} {{fmt}} {{len(graph.layers)}} {{total}}")
        assert not {{"tensorflow", "keras", "tf_keras", "torch"}} & set(sys.modules)
        print("\\n".join(out))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    expected = {name: kx.read(name) for name in FORMATS}
    for name, graph in expected.items():
        total = sum(p.numel for p in graph.params())
        assert f"{name} {FORMATS[name]} {len(graph.layers)} {total}" in lines


def test_read_errors_say_what_went_wrong_in_libhdf5s_words():
    from weightmap_keras.adapter import _describe
    assert _describe(KeyError("Unable to synchronously open object (bad object header version "
                              "number)")) == ("libhdf5 cannot decode its structure: Unable to "
                                              "synchronously open object (bad object header "
                                              "version number)")
    assert _describe(RuntimeError("Link iteration failed (addr overflow)")).startswith("libhdf5")
    assert _describe(TypeError("a bytes-like object is required")) == \
        "TypeError: a bytes-like object is required"
    bad = UnicodeEncodeError("utf-8", "ab\udcc8", 2, 3, "surrogates not allowed")
    assert _describe(bad) == "a name or string in the file is not valid UTF-8 (surrogates not " \
                             "allowed)"
