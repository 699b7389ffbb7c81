"""The restricted unpickler: what it rebuilds, what it refuses, and its caps."""
from __future__ import annotations

import io
import pickle
import struct
import sys
import time
from collections import Counter, OrderedDict

import pytest

from weightmap.errors import FormatError, UnsafeInputError
from weightmap_torch import pickle_reader as pr
from weightmap_torch.pickle_reader import Limits, Opaque, StorageRef, TensorRef


class _Ref:
    """A reference to ``module.name``, written as GLOBAL / STACK_GLOBAL; nothing is imported."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):          # pickle insists a reduce function be callable
        raise AssertionError("never called")


class _Global:
    """``module.name(*args)`` as a pickle writes it: the reference, then REDUCE."""

    def __init__(self, module, name, *args):
        self.ref, self.args = _Ref(module, name), args


class _Pickler(pickle._Pickler):
    """The pure-Python pickler, taught to write _Ref and _Global like a hostile file would."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_ref(self, obj):
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[_Ref] = _save_ref

    def reducer_override(self, obj):
        if isinstance(obj, _Global):
            return (obj.ref, obj.args)
        return NotImplemented


def dumps(obj, protocol=2):
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


STORAGE = StorageRef(key="0", dtype="float32", nbytes=48, location="cpu")


def tensor_pickle(*args, func="_rebuild_tensor_v2", protocol=2):
    """A pickle calling torch._utils.<func>(storage, *args) with a persistent storage id."""
    class P(_Pickler):
        def persistent_id(self, obj):
            return ("storage", "S") if obj == "STORAGE" else None
    buf = io.BytesIO()
    P(buf, protocol=protocol).dump({"t": _Global("torch._utils", func, "STORAGE", *args)})
    return buf.getvalue()


def load_tensor(data):
    return pr.loads(data, persistent=lambda pid: STORAGE)["t"]


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_plain_containers_round_trip(protocol):
    value = OrderedDict(a=[1, 2.5, "x", None, True], b=(b"\x00\xffraw", bytearray(b"ba")),
                        c={"nested": {3, 4}}, d=frozenset({"f", 7}), e=complex(1, -2),
                        f=Counter("aab"), g=-(2 ** 70), h={0: "int key", (1, 2.5): "tuple key"},
                        i=dict([(5, "via dict()")]))
    got = pr.loads(pickle.dumps(value, protocol=protocol))
    assert pr.plain(got) == value
    assert set(got["h"]) == {pr.Key(0), pr.Key((1, 2.5))} and str(pr.Key(0)) == "0"
    assert all(type(k) is str for k in got)          # string keys stay plain strings


@pytest.mark.parametrize("protocol", [2, 4])
def test_keys_that_hash_alike_do_not_make_reading_quadratic(protocol):
    """``i * (2**61 - 1)`` hash to 0 as ints: a dict or set of them is built in quadratic time
    by a plain unpickler. Here every one hashes differently (from its bytes, randomised)."""
    m = 2 ** 61 - 1
    keys = [i * m for i in range(1, 2001)]
    assert len({hash(k) for k in keys}) == 1
    value = {"d": dict.fromkeys(keys), "s": set(keys), "f": frozenset(keys),
             "t": {(k, 1): None for k in keys}}
    got = pr.loads(pickle.dumps(value, protocol=protocol))
    for part in ("d", "s", "f", "t"):
        assert len({hash(k) for k in got[part]}) > 1990
    assert pr.plain(got) == value


def test_rebuild_tensor_v2_gives_a_spec():
    ref = load_tensor(tensor_pickle(2, (2, 3), (3, 1), False, OrderedDict()))
    assert ref == TensorRef(STORAGE, 2, (2, 3), (3, 1), "float32")
    assert ref.byte_offset == 8


def test_parameter_and_v3_and_flags():
    inner = _Global("torch._utils", "_rebuild_tensor_v2", "STORAGE", 0, (4,), (1,), False,
                    OrderedDict(), {"neg": True})

    class P(_Pickler):
        def persistent_id(self, obj):
            return ("storage",) if obj == "STORAGE" else None
    buf = io.BytesIO()
    P(buf, protocol=2).dump({"t": _Global("torch._utils", "_rebuild_parameter", inner, True,
                                          OrderedDict())})
    ref = load_tensor(buf.getvalue())
    assert ref.parameter and ref.negative and not ref.conjugate and ref.shape == (4,)
    v3 = tensor_pickle(1, (2,), (1,), False, OrderedDict(), _Ref("torch", "bfloat16"),
                       func="_rebuild_tensor_v3")
    assert load_tensor(v3) == TensorRef(STORAGE, 1, (2,), (1,), "bfloat16")
    assert load_tensor(v3).byte_offset == 2
    complex32 = tensor_pickle(0, (2,), (1,), False, OrderedDict(), _Ref("torch", "complex32"),
                              func="_rebuild_tensor_v3")
    with pytest.raises(FormatError, match="torch.complex32 has no numpy equivalent"):
        load_tensor(complex32)


@pytest.mark.parametrize("args,message", [
    ((-1, (2,), (1,), False, OrderedDict()), "offset"),
    ((0, (2, 3), (1,), False, OrderedDict()), "differ in rank"),
    ((0, (2,), (-1,), False, OrderedDict()), "stride"),
    ((0, "2", (1,), False, OrderedDict()), "size"),
])
def test_malformed_tensor_arguments(args, message):
    with pytest.raises(FormatError, match=message):
        load_tensor(tensor_pickle(*args))


@pytest.mark.parametrize("module,name", [
    ("os", "system"), ("posix", "system"), ("builtins", "exec"), ("builtins", "eval"),
    ("builtins", "getattr"), ("__builtin__", "eval"), ("subprocess", "Popen"),
    ("torch", "load"), ("torch._utils", "os"), ("numpy", "load"), ("builtins", "open"),
])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_unknown_globals_are_refused_by_name(module, name, protocol, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = dumps({"w": 1, "boom": _Global(module, name, "touch marker")}, protocol)
    shown = "builtins" if module == "__builtin__" else module
    with pytest.raises(UnsafeInputError, match=rf"global {shown}\.{name}\b"):
        pr.loads(data)
    assert not (tmp_path / "marker").exists()


def test_unsupported_torch_tensor_kinds_are_format_errors_not_unsafe():
    data = dumps({"q": _Global("torch._utils", "_rebuild_qtensor", 1)})
    with pytest.raises(FormatError, match="quantized tensors") as err:
        pr.loads(data)
    assert not isinstance(err.value, UnsafeInputError)


def test_harmless_builtins_are_guarded():
    with pytest.raises(FormatError, match="bytearray called with int"):
        pr.loads(dumps({"b": _Global("builtins", "bytearray", 10 ** 12)}))
    with pytest.raises(FormatError, match="_codecs.encode"):
        pr.loads(dumps({"b": _Global("_codecs", "encode", "x", "rot13")}))
    assert pr.loads(dumps(_Global("torch", "Size", (2, 3)))) == (2, 3)
    assert pr.loads(dumps(_Global("torch", "device", "cuda", 1))) == "cuda:1"


def test_build_cannot_change_a_tensor_spec():
    # {"t": _rebuild_tensor_v2(storage, 0, (2,), (1,), False, ()) then BUILD {"shape": (99,)}}
    bad = (b"\x80\x02}X\x01\x00\x00\x00tctorch._utils\n_rebuild_tensor_v2\n"
           b"(X\x07\x00\x00\x00STORAGEQK\x00K\x02\x85K\x01\x85\x89)tR"
           b"}X\x05\x00\x00\x00shapeKc\x85sbs.")
    with pytest.raises(FormatError, match="set state on a TensorRef"):
        pr.loads(bad, persistent=lambda pid: STORAGE)
    assert load_tensor(bad.replace(b"}X\x05\x00\x00\x00shapeKc\x85sb", b"")).shape == (2,)


def test_persistent_ids_need_a_handler():
    with pytest.raises(FormatError, match="external storage"):
        pr.loads(tensor_pickle(0, (2,), (1,), False, OrderedDict()))


def test_opcode_cap():
    data = pickle.dumps(list(range(1000)), protocol=2)
    with pytest.raises(FormatError, match="more than 100 opcodes"):
        pr.loads(data, limits=Limits(max_opcodes=100))
    assert pr.loads(data) == list(range(1000))


def test_memo_index_cap_stops_a_huge_allocation_before_unpickling():
    # LONG_BINPUT 2**31-1 would make the C unpickler size its memo for 2**31 entries.
    data = b"\x80\x02]r" + struct.pack("<I", 2 ** 31 - 1) + b"."
    start = time.perf_counter()
    with pytest.raises(FormatError, match="memo index 2147483647"):
        pr.loads(data)
    assert time.perf_counter() - start < 1.0


def test_size_cap_and_huge_declared_lengths():
    data = pickle.dumps(b"x" * 5000, protocol=4)
    with pytest.raises(FormatError, match="1000-byte cap"):
        pr.loads(data, limits=Limits(max_bytes=1000))
    # BINBYTES8 declaring 2**60 bytes: refused without trying to read them
    fake = b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 60) + b"abc."
    with pytest.raises(FormatError):
        pr.loads(fake)


@pytest.mark.parametrize("data", [b"", b"\x80\x02}q\x00(X\x01", b"\x80\x02\xff.",
                                  b"\x80\x02N", b"garbage"])
def test_corrupt_pickles(data):
    with pytest.raises(FormatError):
        pr.loads(data)


def test_out_of_band_buffers_refused():
    data = b"\x80\x05\x97."          # NEXT_BUFFER
    with pytest.raises(FormatError, match="out-of-band"):
        pr.loads(data)


def test_opaque_globals_build_placeholders_and_run_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = dumps({"hp": _Global("argparse", "Namespace", 1),
                  "boom": _Global("os", "system", "touch marker")}, protocol=2)
    out = pr.loads(data, opaque_globals=True)
    assert isinstance(out["boom"], Opaque) and out["boom"].global_name == "os.system"
    assert out["boom"].args == ("touch marker",)
    assert out["hp"].global_name == "argparse.Namespace"
    assert not (tmp_path / "marker").exists()


def test_opaque_placeholders_record_items_and_state(monkeypatch):
    """A dict subclass (Lightning's AttributeDict) comes back as items plus its __dict__."""
    import types

    class AttributeDict(dict):
        pass
    AttributeDict.__module__, AttributeDict.__qualname__ = "lightning_fake", "AttributeDict"
    fake = types.ModuleType("lightning_fake")
    fake.AttributeDict = AttributeDict
    monkeypatch.setitem(sys.modules, "lightning_fake", fake)
    value = AttributeDict(lr=0.1)
    value.note = "kept"
    data = pickle.dumps(value, protocol=2)
    with pytest.raises(UnsafeInputError, match="lightning_fake.AttributeDict"):
        pr.loads(data)
    out = pr.loads(data, opaque_globals=True)
    assert out.items == {"lr": 0.1} and out.state == {"note": "kept"}


def test_resolve_global_table_is_closed():
    table = pr.globals_table()
    assert "torch._utils._rebuild_tensor_v2" in table
    assert all(not k.startswith(("os.", "posix.", "subprocess.")) for k in table)
    assert table["torch.cuda.HalfStorage"].dtype == "float16"
    assert table["torch.float8_e5m2"].dtype == "float8_e5m2"
    assert table["torch.complex32"].dtype is None
    python2 = pr.resolve_global("__builtin__", "set")         # Python 2 name mapping
    assert python2 is pr.resolve_global("builtins", "set") and python2([1]) == {pr.Key(1)}


@pytest.mark.parametrize("name", ["lightning.ckpt", "views.pt"])
def test_mutated_data_pickles_fail_only_with_weightmap_errors(fixture_path, name):
    """Seeded byte flips inside a real data.pkl, through the whole file pipeline."""
    import numpy as np
    from weightmap.errors import WeightmapError
    from weightmap_torch import zip_format
    from weightmap_torch.containers import find_weights
    from weightmap_torch.reader import entries_of
    path = fixture_path(name)
    archive = zip_format.open_archive(path)
    with __import__("zipfile").ZipFile(path) as zf:
        data = zf.read(f"{archive.top}/data.pkl")
    rng = np.random.default_rng(11)
    refused = 0
    for _ in range(400):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            mutated[pos] = int(rng.integers(0, 256))
        try:
            root = pr.loads(bytes(mutated), persistent=lambda pid: zip_format.storage_ref(
                pid, archive.records, path), limits=Limits(max_opcodes=100_000))
            found = find_weights(root)
            for entry in entries_of(found.tensors, archive.records, "little"):
                entry.data.read()
        except WeightmapError:
            refused += 1
    assert refused > 0


def test_messages_about_hostile_objects_stay_short():
    from weightmap_torch import zip_format
    depth = 50_000     # EMPTY_LIST x N, APPEND x N-1: lists nested N deep, then BINPERSID
    data = b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"Q."
    with pytest.raises(FormatError) as err:
        pr.loads(data, persistent=lambda pid: zip_format.storage_ref(pid, {}, "f.pt"))
    assert len(str(err.value)) < 200
