"""Property-based tests (hypothesis, derandomized, bounded).

1. Byte mutations of every valid fixture — flipped bytes, boundary values written over length
   and offset fields, cuts and insertions, biased towards headers — either read completely
   (graph and every tensor) or raise weightmap's own one-line error. Reads run in the worker
   process of conftest ``reader``, so a crash or hang is a failure, not a dead test run.
2. Plan files (``--plan``): any value of a real saved plan replaced by JSON of any type is
   applied or refused with a one-line error, never an internal error, and leaves no output.
3. Every dtype (bf16, the float8 variants, bool, complex, 0-d and empty shapes included)
   round-trips bit-exactly through the safetensors writer and reader, and through the torch
   ``.pt`` writer and reader.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from weightmap import dtypes
from weightmap.errors import UsageError
from weightmap.reading.read import read

BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\xff", b"\x00\x00\x00\x80",
            b"\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x01\x00\x00\x00\x00\x00\x00\x00"]
FUZZ = settings(derandomize=True, max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@st.composite
def mutation(draw, size: int):
    """One edit of a ``size``-byte file: (kind, position, bytes)."""
    near_start = st.integers(0, max(0, min(size, 1024) - 1))
    anywhere = st.integers(0, max(0, size - 1))
    where = draw(st.one_of(near_start, anywhere))
    kind = draw(st.sampled_from(["flip", "boundary", "cut", "insert", "delete"]))
    if kind == "flip":
        return kind, where, bytes([draw(st.integers(1, 255))])
    if kind == "boundary":
        return kind, where, draw(st.sampled_from(BOUNDARY))
    if kind == "insert":
        return kind, where, draw(st.binary(min_size=1, max_size=16))
    return kind, where, draw(st.integers(1, 64)).to_bytes(2, "little")


def apply(data: bytes, edit) -> bytes:
    kind, where, value = edit
    if not data:
        return value if kind == "insert" else data
    where = min(where, len(data) - 1)              # an earlier edit may have shortened it
    if kind == "flip":
        return data[:where] + bytes([data[where] ^ value[0]]) + data[where + 1:]
    if kind == "boundary":
        return data[:where] + value + data[where + len(value):]
    if kind == "cut":
        return data[:where]
    if kind == "insert":
        return data[:where] + value + data[where:]
    count = int.from_bytes(value, "little")
    return data[:where] + data[where + count:]


@FUZZ
@given(data=st.data())
def test_mutated_fixtures_read_or_refuse(data, reader, copy_fixture, check_clean,
                                         valid_fixtures, tmp_path_factory):
    target, damaged = data.draw(st.sampled_from(valid_fixtures), label="fixture")
    read_path, victim = copy_fixture(target, damaged, tmp_path_factory.mktemp("mut"))
    raw = victim.read_bytes()
    edits = data.draw(st.lists(mutation(len(raw)), min_size=1, max_size=4), label="edits")
    for edit in edits:
        raw = apply(raw, edit)
    victim.write_bytes(raw)
    check_clean(reader(read_path), f"{damaged} with {edits}")


# ----------------------------------------------------------------------------- Keras configs
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3), max_leaves=6)


def json_paths(value, prefix=()):
    """Every place in a JSON document (as key/index paths)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_paths(v, prefix + (i,))


def replaced(doc, path, new):
    if not path:
        return new
    copy = list(doc) if isinstance(doc, list) else dict(doc)
    copy[path[0]] = replaced(doc[path[0]], path[1:], new)
    return copy


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_mutated_keras_configs_read_or_refuse(data, reader, check_clean, tmp_path_factory):
    """A .keras config is attacker-controlled JSON: any value of any type anywhere is read as
    data or refused with weightmap's error (never an AttributeError from a list where a dict
    was expected)."""
    import json
    import zipfile

    name = data.draw(st.sampled_from(["k3_mixed.keras", "k3_convs.keras", "k3_lambda.keras",
                                      "k3_channels_first.keras"]), label="fixture")
    src = FIXTURES / "keras" / name
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(members["config.json"])
    paths = list(json_paths(config))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(paths), label="path")
        config = replaced(config, path, data.draw(JSON_VALUES, label="value"))
        paths = list(json_paths(config))
    members["config.json"] = json.dumps(config).encode()
    out = tmp_path_factory.mktemp("cfg") / name
    with zipfile.ZipFile(out, "w") as zf:
        for member, raw in members.items():
            zf.writestr(member, raw)
    check_clean(reader(out), f"{name} with config {json.dumps(config)[:300]}")



# ----------------------------------------------------------------------------- plan files
@pytest.fixture(scope="module")
def saved_plan(tmp_path_factory):
    """A real plan (transposes, a scale, a synthetic fill) and the two files it ports."""
    import json

    from safetensors.numpy import save_file

    from weightmap.cli import main
    folder = tmp_path_factory.mktemp("plan")
    tensors = {"a.weight": np.ones((3, 2), np.float32), "a.bias": np.zeros(3, np.float32)}
    for name in ("s", "t"):
        save_file(tensors, str(folder / f"{name}.safetensors"))
    assert main(["port", str(folder / "s.safetensors"), "--to", str(folder / "t.safetensors"),
                 "--dry-run", "--quiet", "--save-plan", str(folder / "plan.json")]) == 0
    plan = json.loads((folder / "plan.json").read_text())
    for t in plan["tensors"]:
        if t["target"] == "a.weight":
            t.update(status="transformed", steps=[{"op": "transpose", "perm": [1, 0]},
                                                  {"op": "transpose", "perm": [1, 0]},
                                                  {"op": "scale", "factor": 2.0}])
        else:
            t.update(status="synthetic", sources=[], steps=[], value={"fill": 0.5})
    return folder, plan


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_mutated_plans_apply_or_refuse_in_one_line(data, saved_plan, tmp_path_factory, capsys):
    """A plan file is edited by hand: any value of any type anywhere gives a port or a
    one-line error of weightmap's (exit 2-12), never an internal error (exit 70)."""
    import json

    from weightmap.cli import main
    folder, plan = saved_plan
    paths = list(json_paths(plan))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(paths), label="path")
        plan = replaced(plan, path, data.draw(JSON_VALUES, label="value"))
        paths = list(json_paths(plan))
    work = tmp_path_factory.mktemp("edit")
    (work / "plan.json").write_text(json.dumps(plan))
    capsys.readouterr()
    code = main(["port", str(folder / "s.safetensors"), "--to", str(folder / "t.safetensors"),
                 "--plan", str(work / "plan.json"), "--out", str(work / "o.safetensors"),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code != 70, f"{err} for {json.dumps(plan)[:400]}"
    if code:
        assert err.count("\n") == 1 and err.startswith("weightmap: error: "), err
        assert sorted(p.name for p in work.iterdir()) == ["plan.json"]


# ----------------------------------------------------------------------------- round trips
SHAPES = st.sampled_from([(), (0,), (1,), (5,), (2, 3), (3, 0, 2), (2, 1, 2, 2)])
ALL_DTYPES = sorted(dtypes.DTYPES)


def arrays(dtype: str, shape: tuple[int, ...]):
    """Arrays of any bit pattern (NaN payloads, infinities, subnormals); bool as 0/1."""
    npdt = dtypes.to_numpy(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == "bool":
        return st.lists(st.booleans(), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=bool).reshape(shape))
    return st.binary(min_size=n * npdt.itemsize, max_size=n * npdt.itemsize).map(
        lambda b: np.frombuffer(b, dtype=npdt).reshape(shape).copy())


def write_pt(path: Path, tensors: list[tuple[str, np.ndarray]]) -> None:
    """weightmap's own .pt writer (what a port to .pt uses)."""
    from weightmap_torch.zip_writer import write
    write(path, [(n, a.shape, dtypes.from_numpy(a.dtype)) for n, a in tensors], iter(tensors))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


@st.composite
def tensor_sets(draw):
    names = draw(st.lists(st.sampled_from(["a.weight", "a.bias", "b.weight", "c.scale"]),
                          min_size=1, max_size=4, unique=True))
    out = []
    for name in names:
        dtype = draw(st.sampled_from(ALL_DTYPES))
        out.append((name, draw(arrays(dtype, draw(SHAPES)))))
    return out


ROUND = settings(derandomize=True, max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@ROUND
@given(tensors=tensor_sets())
def test_safetensors_round_trip_is_bit_exact(tmp_path_factory, tensors):
    from weightmap_safetensors.writer import write

    path = tmp_path_factory.mktemp("st") / "t.safetensors"
    specs = [(n, tuple(a.shape), dtypes.from_numpy(a.dtype)) for n, a in tensors]
    storable = all(d in dtypes.TO_SAFETENSORS for _, _, d in specs)
    if not storable:
        with pytest.raises(UsageError, match="safetensors cannot store dtype"):
            write(path, specs, iter(tensors))
        return
    write(path, specs, iter(tensors))
    graph = read(str(path))
    for name, arr in tensors:
        p = graph.param(name)
        assert (p.shape, p.dtype) == (arr.shape, dtypes.from_numpy(arr.dtype))
        assert same_bits(p.read(), arr), name


def test_safetensors_stores_every_dtype_it_names():
    """The dtypes safetensors cannot store are exactly those without a safetensors code."""
    assert set(dtypes.TO_SAFETENSORS) == set(dtypes.DTYPES) - {
        "complex128", "float8_e4m3fnuz", "float8_e5m2fnuz"}


@ROUND
@given(tensors=tensor_sets())
def test_torch_pt_round_trip_is_bit_exact(tmp_path_factory, tensors):
    path = tmp_path_factory.mktemp("pt") / "t.pt"
    write_pt(path, tensors)
    graph = read(str(path))
    for name, arr in tensors:
        p = graph.param(name)
        assert (p.shape, p.dtype) == (arr.shape, dtypes.from_numpy(arr.dtype))
        assert same_bits(p.read(), arr), name


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_torch_pt_round_trip_every_dtype(tmp_path, dtype):
    """Each dtype once, deterministically (hypothesis may not draw every one)."""
    arr = np.frombuffer(bytes(range(256)) * 2, dtype=np.uint8)[
        : 6 * dtypes.itemsize(dtype)].view(dtypes.to_numpy(dtype)).reshape(2, 3)
    if dtype == "bool":
        arr = np.array([[True, False, True], [False, False, True]])
    write_pt(tmp_path / "t.pt", [("w", arr), ("s", arr[0, 0].copy()), ("e", arr[:0])])
    graph = read(str(tmp_path / "t.pt"))
    for name, want in (("w", arr), ("s", arr[0, 0]), ("e", arr[:0])):
        assert same_bits(graph.param(name).read(), np.asarray(want)), (dtype, name)
