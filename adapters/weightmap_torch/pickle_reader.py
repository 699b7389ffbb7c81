"""A restricted unpickler for torch checkpoints: it rebuilds tensor *specs*, never tensors.

A torch checkpoint's pickle names Python callables (``torch._utils._rebuild_tensor_v2``,
``collections.OrderedDict`` ...). A general unpickler imports and calls whatever is named, which
is how a malicious checkpoint runs code. Here every global is looked up in a fixed table of
harmless stand-ins (``globals_table``): rebuild functions that return ``TensorRef`` records,
storage classes and dtypes as inert markers, plain containers. Nothing is imported and no torch
function is ever called; any other global raises ``UnsafeInputError`` naming it.

Before unpickling, the opcode stream is scanned (``scan``) under caps on size, opcode count and
memo indices, so a hostile pickle cannot make the C unpickler allocate without bound.
"""
from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import reprlib
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from weightmap import dtypes
from weightmap.errors import FormatError, UnsafeInputError, WeightmapError
from weightmap.graph import checked_nbytes
from weightmap.spelling import limit, option

from .torch_names import STORAGE_DTYPES, TORCH_DTYPES, UNSUPPORTED_GLOBALS


@dataclass(frozen=True)
class Limits:
    """Caps applied before a pickle is run through the unpickler."""

    max_bytes: int = 256 * 2**20      # size of one pickle stream
    max_opcodes: int = 1_000_000      # each opcode builds at most one object; a plain state
                                      # dict takes ~32 per tensor, and scanning runs ~1-2 M/s
    max_memo: int = 2_000_000         # memo indices (the C unpickler sizes its memo by index)
    max_depth: int = 200              # object nesting (hashing a deeper tuple crashes CPython)


def raise_hint(cap: str) -> str:
    """The hint of an error from a cap: how a user who trusts the file raises it."""
    return f"if the file is trusted, raise the cap: {limit(cap)}"


class _Inert:
    """Base of every object the unpickler builds itself: BUILD must not be able to change it."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise FormatError(f"the pickle tries to set state on a {type(self).__name__}",
                          hint="the file is not a plain torch checkpoint")


@dataclass(frozen=True, eq=False)
class StorageType(_Inert):
    """Stands for ``torch.FloatStorage`` and friends; ``dtype`` None is an untyped byte storage."""

    name: str
    dtype: str | None


@dataclass(frozen=True, eq=False)
class DType(_Inert):
    """Stands for ``torch.float32`` and friends; ``dtype`` None when weightmap lacks it."""

    name: str
    dtype: str | None


@dataclass(frozen=True, eq=False)
class TensorType(_Inert):
    """Stands for ``torch.Tensor`` / ``torch.nn.Parameter`` as a class argument."""

    name: str


@dataclass(frozen=True)
class StorageRef(_Inert):
    """One storage record: ``nbytes`` from ``base_bytes`` in the record named ``key``."""

    key: str
    dtype: str                     # element type of the storage ("uint8" for untyped storages)
    nbytes: int
    location: str
    base_bytes: int = 0            # legacy storage views start inside their root storage


@dataclass(frozen=True)
class TensorRef(_Inert):
    """A tensor as the checkpoint describes it: a strided view into a storage."""

    storage: StorageRef
    offset: int                    # storage offset, in elements of ``dtype``
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    parameter: bool = False
    negative: bool = False         # torch's lazy "neg" bit: values are stored negated
    conjugate: bool = False        # torch's lazy "conj" bit

    @property
    def byte_offset(self) -> int:
        return self.storage.base_bytes + self.offset * dtypes.itemsize(self.dtype)


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlevel = 3


def short(value: Any) -> str:
    """A bounded repr of something a pickle built (it may be huge or deeply nested)."""
    return _REPR.repr(value)


# ---------------------------------------------------------------- stand-ins for torch callables

def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise FormatError(f"tensor {what} should be a tuple of non-negative ints, "
                          f"found {short(value)}")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: str,
            metadata: Any = None) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise FormatError(f"a tensor's storage should be a storage record, found "
                          f"{type(storage).__name__}")
    if type(offset) is not int or offset < 0:
        raise FormatError(f"tensor storage offset should be a non-negative int, "
                          f"found {short(offset)}")
    shape, strides = _ints(size, "size"), _ints(stride, "stride")
    if len(shape) != len(strides):
        raise FormatError(f"tensor size {short(shape)} and stride {short(strides)} differ in "
                          "rank")
    checked_nbytes(shape, dtype)           # rank and size product within bounds
    flags = metadata if isinstance(metadata, dict) else {}
    negative = bool(flags.get("neg"))
    if negative and dtype == "bool":
        raise FormatError("a bool tensor carries torch's lazy negation bit, which torch never "
                          "sets on one (bools cannot be negated)",
                          hint="the file is forged or corrupt")
    return TensorRef(storage, offset, shape, strides, dtype, negative=negative,
                     conjugate=bool(flags.get("conj")))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride, _storage_dtype(storage))


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _tensor(storage, storage_offset, size, stride, _storage_dtype(storage), metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, DType):
        raise FormatError(f"_rebuild_tensor_v3 expects a torch dtype, found {short(dtype)}")
    return _tensor(storage, storage_offset, size, stride, _known_dtype(dtype), metadata)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    if not isinstance(data, TensorRef):
        raise FormatError(f"a Parameter should wrap a tensor, found {type(data).__name__}")
    return TensorRef(data.storage, data.offset, data.shape, data.stride, data.dtype, True,
                     data.negative, data.conjugate)


def _rebuild_from_type_v2(func, new_type, args, state):
    # torch uses this for tensors carrying Python attributes; only plain types are accepted.
    if func not in _REBUILDERS or not isinstance(new_type, TensorType):
        raise FormatError(f"_rebuild_from_type_v2 with {short(func)} and {short(new_type)} is "
                          "not a plain tensor", hint="tensor subclasses are not supported")
    if not isinstance(args, tuple):
        raise FormatError("_rebuild_from_type_v2 expects an argument tuple")
    ref = func(*args)
    return _rebuild_parameter(ref) if new_type.name.endswith("Parameter") else ref


_REBUILDERS = {_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter}


def _storage_dtype(storage: Any) -> str:
    return storage.dtype if isinstance(storage, StorageRef) else "uint8"


def _known_dtype(dtype: DType) -> str:
    if dtype.dtype is None:
        raise FormatError(f"tensor dtype torch.{dtype.name} has no numpy equivalent weightmap "
                          "supports", hint=f"supported: {', '.join(sorted(dtypes.DTYPES))}")
    return dtype.dtype


def _encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles store bytes as _codecs.encode(latin1_text, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise FormatError(f"_codecs.encode called with {type(text).__name__}, {short(encoding)}")
    return text.encode(encoding)


def _bytearray(data: Any = b"", encoding: str | None = None) -> bytearray:
    if isinstance(data, str):
        return bytearray(_encode(data, encoding or "utf-8"))
    if isinstance(data, (bytes, bytearray)):      # never an int: bytearray(10**12) allocates
        return bytearray(data)
    raise FormatError(f"bytearray called with {type(data).__name__}")


def _size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "Size")


def _device(kind: Any, index: Any = None) -> str:
    if not isinstance(kind, str) or not (index is None or type(index) is int):
        raise FormatError(f"torch.device called with {short(kind)}, {short(index)}")
    return kind if index is None else f"{kind}:{index}"


class Key:
    """A dict key or set member of a pickle that is not a string: hashed from its bytes with
    Python's randomised string hash, so that no file can make many keys hash alike.

    An ``int`` hashes to itself modulo 2**61 - 1 in every process: 100 000 keys ``i * (2**61 -
    1)`` all hash to 0 and building their dict takes minutes (each insertion compares with every
    earlier key). Strings and bytes hash with a per-process random key (SipHash), so they stay
    as they are; numbers, tuples and other objects are wrapped. ``str()`` and ``repr()`` are the
    value's."""

    __slots__ = ("value", "_hash")

    def __init__(self, value: Any) -> None:
        self.value = value
        self._hash = hash(_hashable(value))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and type(other.value) is type(self.value) and \
            other.value == self.value

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return short(self.value)


def _hashable(value: Any) -> Any:
    """What ``Key`` hashes: bytes for numbers (randomised like strings), the same for the items
    of a tuple; a frozenset built here already holds ``Key``s; other objects by identity."""
    if isinstance(value, int):
        return b"i" + value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    if isinstance(value, float):
        return b"f" + struct.pack("<d", value)
    if isinstance(value, complex):
        return b"c" + struct.pack("<dd", value.real, value.imag)
    if isinstance(value, tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, (str, bytes, frozenset)) or value is None:
        return value
    return ("id", id(value))


def key(value: Any) -> Any:
    """``value`` as this unpickler stores it as a dict key or set member."""
    return value if type(value) in (str, bytes) else Key(value)


def plain(value: Any) -> Any:
    """``value`` with the ``Key`` wrappers undone, containers rebuilt (for comparing what was
    read with what was pickled; recursion bounded by the scan's nesting cap)."""
    if isinstance(value, Key):
        return plain(value.value)
    if isinstance(value, dict):
        out = type(value)()
        for k, v in value.items():
            out[plain(k)] = plain(v)
        return out
    if isinstance(value, (set, frozenset, list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def _mapping_of(cls: type) -> Callable[..., Any]:
    """A stand-in for ``dict``, ``OrderedDict``, ``Counter`` called by the pickle: keys go
    through ``key``."""
    def build(items: Any = (), **named: Any) -> Any:
        out = cls()
        for k, v in (items.items() if isinstance(items, dict) else items):
            out[key(k)] = v
        out.update(named)
        return out
    build.__qualname__ = cls.__name__
    return build


def _set_of(cls: type) -> Callable[..., Any]:
    def build(items: Any = ()) -> Any:
        return cls(key(item) for item in items)
    build.__qualname__ = cls.__name__
    return build


def globals_table() -> dict[str, Any]:
    """Every global a checkpoint may name, mapped to what this unpickler gives it instead."""
    table: dict[str, Any] = {
        "collections.OrderedDict": _mapping_of(OrderedDict),
        "collections.Counter": _mapping_of(Counter), "builtins.dict": _mapping_of(dict),
        "builtins.list": list, "builtins.tuple": tuple,
        "builtins.set": _set_of(set), "builtins.frozenset": _set_of(frozenset),
        "builtins.complex": complex,
        "builtins.bytearray": _bytearray, "_codecs.encode": _encode,
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
        "torch.Tensor": TensorType("Tensor"), "torch._tensor.Tensor": TensorType("Tensor"),
        "torch.nn.parameter.Parameter": TensorType("Parameter"),
        "torch.Size": _size, "torch.device": _device,
        "torch.storage.UntypedStorage": StorageType("UntypedStorage", None),
        "torch.UntypedStorage": StorageType("UntypedStorage", None),
    }
    for name, dtype in STORAGE_DTYPES.items():
        for module in ("torch", "torch.cuda"):
            table[f"{module}.{name}"] = StorageType(name, dtype)
    for name, dtype in TORCH_DTYPES.items():
        table[f"torch.{name}"] = DType(name, dtype)
    return table


_GLOBALS = globals_table()


def resolve_global(module: str, name: str) -> Any:
    """The stand-in for ``module.name``; refuses anything not in the table."""
    if (module, name) in _compat_pickle.NAME_MAPPING:        # Python 2 era pickles
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    full = f"{module}.{name}"
    if full in _GLOBALS:
        return _GLOBALS[full]
    if full in UNSUPPORTED_GLOBALS:
        raise FormatError(f"the checkpoint uses {full}: {UNSUPPORTED_GLOBALS[full]}, which "
                          "weightmap does not read")
    raise UnsafeInputError(
        f"the pickle asks for the global {full}, which is not a tensor or plain container; "
        "weightmap never imports or calls what a checkpoint names",
        hint="if this file is a whole pickled model (torch.save(model)), re-save "
             f"model.state_dict(), or pass {option('opaque_globals', True)} to read only its "
             "tensors, with other objects replaced by inert placeholders")


# ---------------------------------------------------------------- opaque placeholders (opt-in)

class Opaque:
    """An inert stand-in for an object of a class the checkpoint names (``opaque_globals``).

    It records what the pickle hands it (arguments, items, state) and runs nothing."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Opaque":
        obj = object.__new__(cls)
        obj.args, obj.items, obj.values, obj.state = args, {}, [], None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.values.append(value)

    def extend(self, values: Any) -> None:
        self.values.extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.global_name}>"


def _opaque_type(full: str) -> type:
    return type("Opaque", (Opaque,), {"global_name": full})


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor (protocol 0/1 objects); only ever builds placeholders.
    if isinstance(cls, type) and issubclass(cls, Opaque):
        obj = cls.__new__(cls)
        obj.args = (state,)
        return obj
    raise UnsafeInputError(f"copyreg._reconstructor called on {short(cls)}")


# ---------------------------------------------------------------- scanning and loading

class _CappedReader:
    """A file wrapper that refuses to hand out more than ``limit`` bytes in total."""

    def __init__(self, fh: Any, limit: int):
        self.fh, self.limit, self.used = fh, limit, 0

    def _take(self, data: bytes) -> bytes:
        self.used += len(data)
        if self.used > self.limit:
            raise FormatError(f"a pickle stream is larger than the {self.limit}-byte cap",
                              hint=raise_hint("max_pickle_bytes"))
        return data

    def read(self, n: int = -1) -> bytes:
        if n < 0 or n > self.limit - self.used + 1:
            n = self.limit - self.used + 1
        return self._take(self.fh.read(n))

    def readline(self) -> bytes:
        return self._take(self.fh.readline(self.limit - self.used + 1))


# How each opcode moves the unpickler's stack, for the shadow stack in ``scan``.
(_PUSH, _POPN, _FROM_MARK, _INTO, _INTO_MARK, _MARK, _DROP, _DROP_MARK, _DUP, _GET, _PUT,
 _MEMOIZE, _NOOP, _STOP, _OUT_OF_BAND) = range(15)


def _effects() -> dict[Any, tuple[int, int]]:
    table: dict[str, tuple[int, int]] = {}
    for name in ("INT BININT BININT1 BININT2 LONG LONG1 LONG4 STRING BINSTRING SHORT_BINSTRING "
                 "BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 NONE NEWTRUE NEWFALSE UNICODE "
                 "SHORT_BINUNICODE BINUNICODE BINUNICODE8 FLOAT BINFLOAT GLOBAL PERSID EXT1 EXT2 "
                 "EXT4").split():
        table[name] = (_PUSH, 0)                       # a leaf: shares the _LEAF cell
    for name in "EMPTY_LIST EMPTY_TUPLE EMPTY_DICT EMPTY_SET".split():
        table[name] = (_PUSH, 1)                       # a container: a cell of its own
    for name in "LIST TUPLE DICT FROZENSET INST OBJ".split():
        table[name] = (_FROM_MARK, 0)
    for name, n in (("TUPLE1", 1), ("TUPLE2", 2), ("TUPLE3", 3), ("REDUCE", 2), ("NEWOBJ", 2),
                    ("NEWOBJ_EX", 3), ("STACK_GLOBAL", 2), ("BINPERSID", 1)):
        table[name] = (_POPN, n)
    for name in "APPENDS SETITEMS ADDITEMS".split():
        table[name] = (_INTO_MARK, 0)
    table.update(APPEND=(_INTO, 1), SETITEM=(_INTO, 2), BUILD=(_INTO, 1), MARK=(_MARK, 0),
                 POP=(_DROP, 0), POP_MARK=(_DROP_MARK, 0), DUP=(_DUP, 0), GET=(_GET, 0),
                 BINGET=(_GET, 0), LONG_BINGET=(_GET, 0), PUT=(_PUT, 0), BINPUT=(_PUT, 0),
                 LONG_BINPUT=(_PUT, 0), MEMOIZE=(_MEMOIZE, 0), PROTO=(_NOOP, 0),
                 FRAME=(_NOOP, 0), STOP=(_STOP, 0), NEXT_BUFFER=(_OUT_OF_BAND, 0),
                 READONLY_BUFFER=(_OUT_OF_BAND, 0))
    return {op: table[op.name] for op in pickletools.opcodes}


_EFFECTS = _effects()


class _Corrupt(Exception):
    pass


_LEAF = [0]        # the one depth cell of every leaf object (ints, strings, globals ...)


def _depth(cells: list[list[int]]) -> int:
    return 1 + max([c[0] for c in cells], default=0)


class _Shadow:
    """The unpickler's stack and memo with each object replaced by a cell holding an upper
    bound of its nesting depth; nothing is built. Checks memo indices and nesting depth."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.stack: list[list[int]] = []
        self.marks: list[int] = []
        # a list, not a dict: at most 8 bytes per memo index (the cap bounds it)
        self.memo: list[list[int] | None] = []
        self.stored = 0

    def _above_mark(self, n: int) -> list[list[int]]:
        fence = self.marks[-1] if self.marks else 0
        if n < 0 or len(self.stack) - fence < n:
            raise _Corrupt("stack underflow")
        items = self.stack[len(self.stack) - n:]
        del self.stack[len(self.stack) - n:]
        return items

    def _to_mark(self) -> list[list[int]]:
        if not self.marks:
            raise _Corrupt("no mark on the stack")
        fence = self.marks.pop()
        items = self.stack[fence:]
        del self.stack[fence:]
        return items

    def _top(self) -> list[int]:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise _Corrupt("stack underflow")
        return self.stack[-1]

    def _put(self, index: int) -> None:
        if index > self.limits.max_memo or self.stored >= self.limits.max_memo:
            raise FormatError(f"the pickle uses memo index {index}, above the cap "
                              f"{self.limits.max_memo}")
        if index >= len(self.memo):
            self.memo.extend([None] * (index + 1 - len(self.memo)))
        if self.memo[index] is None:
            self.stored += 1               # MEMOIZE uses the count of filled slots, as C does
        self.memo[index] = self._top()

    def step(self, kind: int, n: int, arg: Any) -> bool:
        """Apply one opcode; True at STOP."""
        stack = self.stack
        if kind == _PUSH:
            stack.append([n] if n else _LEAF)
            return False
        if kind == _POPN:
            depth = _depth(self._above_mark(n))
            stack.append([depth])
        elif kind == _FROM_MARK:
            depth = _depth(self._to_mark())
            stack.append([depth])
        elif kind in (_INTO, _INTO_MARK):
            items = self._above_mark(n) if kind == _INTO else self._to_mark()
            cell, depth = self._top(), _depth(items)
            if cell is _LEAF:
                raise _Corrupt("items added to an object that is not a container")
            cell[0] = max(cell[0], depth)
        elif kind == _GET:
            cell = self.memo[arg] if 0 <= arg < len(self.memo) else None
            if cell is None:
                raise _Corrupt(f"memo index {arg} was never stored")
            stack.append(cell)
            return False
        elif kind == _PUT:
            self._put(int(arg))
            return False
        elif kind == _MEMOIZE:
            self._put(self.stored)
            return False
        elif kind == _MARK:
            self.marks.append(len(stack))
            return False
        elif kind == _DROP:
            if self.marks and self.marks[-1] == len(stack):
                self.marks.pop()
            else:
                self._above_mark(1)
            return False
        elif kind == _DROP_MARK:
            self._to_mark()
            return False
        elif kind == _DUP:
            stack.append(self._top())
            return False
        elif kind == _STOP:
            self._above_mark(1)
            return True
        elif kind == _OUT_OF_BAND:
            raise FormatError("the pickle refers to out-of-band buffers")
        else:                                      # PROTO, FRAME
            return False
        if depth > self.limits.max_depth:
            raise FormatError(f"the pickle nests objects deeper than {self.limits.max_depth} "
                              "levels", hint="a checkpoint never does; the file is forged")
        return False


def scan(fh: Any, limits: Limits) -> bytes:
    """Check the pickle starting at ``fh``'s position against ``limits``; return its bytes.

    pickletools.genops only parses opcodes and arguments, it builds and calls nothing. A shadow
    of the unpickler's stack and memo follows along, so that memo indices (the C unpickler sizes
    its memo by the largest one) and object nesting (CPython hashes nested tuples recursively,
    without a depth check: a dict keyed by a 100 000-deep tuple crashes the interpreter) are
    bounded before the real unpickler sees the stream."""
    start = fh.tell()
    # bytes in memory can be parsed directly (a short read cannot allocate more than is there);
    # a file goes through a reader that refuses to hand out more than the byte cap
    source = fh if isinstance(fh, io.BytesIO) else _CappedReader(fh, limits.max_bytes)
    last = start + limits.max_bytes
    shadow = _Shadow(limits)
    ops = 0
    try:
        for opcode, arg, pos in pickletools.genops(source):
            ops += 1
            if pos is not None and pos > last:
                raise FormatError(f"a pickle stream is larger than the {limits.max_bytes}-byte "
                                  "cap", hint=raise_hint("max_pickle_bytes"))
            if ops > limits.max_opcodes:
                raise FormatError(f"the pickle has more than {limits.max_opcodes} opcodes",
                                  hint=raise_hint("max_pickle_opcodes"))
            kind, n = _EFFECTS[opcode]
            if kind == _PUSH:                      # the commonest opcodes, inline for speed
                shadow.stack.append([n] if n else _LEAF)
            elif kind == _MARK:
                shadow.marks.append(len(shadow.stack))
            elif shadow.step(kind, n, arg):
                break
    except WeightmapError:
        raise
    except (_Corrupt, ValueError, EOFError, struct.error, UnicodeDecodeError) as exc:
        raise FormatError(f"the pickle stream is corrupt or truncated: {exc}") from exc
    length = fh.tell() - start
    fh.seek(start)
    return fh.read(length)


class _SafeUnpickler(pickle._Unpickler):
    """Python's own unpickler (the C one cannot be changed per opcode) with every dict key and
    set member going through ``key``: reading is linear in the pickle, whatever its keys."""

    def __init__(self, data: bytes, persistent: Callable[[Any], Any] | None, opaque: bool):
        super().__init__(io.BytesIO(data), encoding="utf-8")
        self._persistent, self._opaque = persistent, opaque
        self._types: dict[str, type] = {}

    def load_dict(self) -> None:
        items = self.pop_mark()
        self.append({key(items[i]): items[i + 1] for i in range(0, len(items), 2)})

    def load_setitem(self) -> None:
        value = self.stack.pop()
        k = self.stack.pop()
        self.stack[-1][key(k)] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        for i in range(0, len(items), 2):
            target[key(items[i])] = items[i + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if isinstance(target, set):
            target.update(key(item) for item in items)
        else:
            raise FormatError(f"the pickle adds set items to a {type(target).__name__}")

    def load_frozenset(self) -> None:
        items = self.pop_mark()            # before self.append: pop_mark rebinds it
        self.append(frozenset(key(item) for item in items))

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch.update({pickle.DICT[0]: load_dict, pickle.SETITEM[0]: load_setitem,
                     pickle.SETITEMS[0]: load_setitems, pickle.ADDITEMS[0]: load_additems,
                     pickle.FROZENSET[0]: load_frozenset})

    def find_class(self, module: str, name: str) -> Any:
        try:
            return resolve_global(module, name)
        except UnsafeInputError:
            if not self._opaque:
                raise
            full = f"{module}.{name}"
            if full == "copyreg._reconstructor":
                return _reconstructor
            return self._types.setdefault(full, _opaque_type(full))

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise FormatError("the pickle refers to external storage where none is expected")
        return self._persistent(pid)


def load(fh: Any, *, persistent: Callable[[Any], Any] | None = None,
         limits: Limits = Limits(), opaque_globals: bool = False) -> Any:
    """Scan, then unpickle one pickle from ``fh`` (left positioned after it)."""
    data = scan(fh, limits)
    try:
        return _SafeUnpickler(data, persistent, opaque_globals).load()
    except WeightmapError:
        raise
    except RecursionError as exc:
        raise FormatError("the pickle nests too deeply") from exc
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, EOFError,
            AttributeError, UnicodeDecodeError, OverflowError, MemoryError) as exc:
        raise FormatError(f"the pickle cannot be read: {type(exc).__name__}: {exc}") from exc


def loads(data: bytes, **kwargs: Any) -> Any:
    """``load`` on bytes holding exactly one pickle."""
    return load(io.BytesIO(data), **kwargs)
