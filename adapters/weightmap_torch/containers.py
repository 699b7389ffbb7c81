"""Find the weights inside what a checkpoint's pickle holds.

Checkpoints wrap their state dict in many ways: bare (``torch.save(model.state_dict())``),
Lightning (``{"state_dict": ..., "epoch": ...}``), training scripts (``{"model": ...,
"model_ema": ..., "optimizer": ...}``). The container is chosen by an explicit ``container=``
key, else ``state_dict``, else ``model``, else the dict itself when it holds tensors directly,
else the only key that holds tensors. Nested dicts are flattened with dots, in stored order.

Wrapper prefixes common to every name (``module.`` from DataParallel, ``_orig_mod.`` from
torch.compile, ``model.`` from Lightning) are reported, never stripped: matching normalises them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from weightmap.errors import FormatError, UsageError
from weightmap.spelling import option

from .pickle_reader import Opaque, TensorRef

PREFERRED_KEYS = ("state_dict", "model")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")
MAX_DEPTH = 64
# Entries a walk of the containers may visit, counting a shared container once per path to it.
# A pickle can reference one container many times (memo), so 60 lists each holding the
# previous one twice describe 2**60 paths in a few hundred bytes; a walk would never end.
# Without sharing the count is the number of objects, which the opcode cap already bounds.
MAX_ENTRIES = 2_000_000


@dataclass(frozen=True)
class Found:
    """The chosen container and its flattened tensors."""

    container: str | None                      # key used; None when the root is the state dict
    tensors: tuple[tuple[str, TensorRef], ...]
    candidates: tuple[str, ...] = ()           # other top-level keys that hold tensors
    other_keys: tuple[str, ...] = ()           # top-level keys without tensors (epoch ...)
    skipped: tuple[str, ...] = ()              # non-tensor leaves inside the container
    prefixes: tuple[str, ...] = ()


def as_mapping(obj: Any) -> dict | None:
    """The key → value view of a container (dicts, and placeholders of pickled objects)."""
    if isinstance(obj, dict):
        return obj
    if isinstance(obj, Opaque):
        # A pickle may BUILD any attribute onto a placeholder: check types, trust nothing.
        state, items = getattr(obj, "state", None), getattr(obj, "items", None)
        if isinstance(state, dict) and isinstance(state.get("_parameters"), dict):
            return _module_mapping(state)
        if isinstance(items, dict) and items:
            return items
    return None


def _module_mapping(state: dict) -> dict:
    """A pickled nn.Module's state in state_dict order: parameters, buffers, then children."""
    out: dict = {k: v for k, v in state["_parameters"].items() if v is not None}
    hidden = state.get("_non_persistent_buffers_set")
    hidden = hidden if isinstance(hidden, (set, frozenset)) else set()
    buffers = state.get("_buffers") if isinstance(state.get("_buffers"), dict) else {}
    out.update((k, v) for k, v in buffers.items() if v is not None and k not in hidden)
    modules = state.get("_modules") if isinstance(state.get("_modules"), dict) else {}
    out.update((k, v) for k, v in modules.items() if v is not None)
    return out


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, leaf) pairs in stored order; containers are walked, cycles refused."""
    stack: list[tuple[str, Any, int, frozenset[int]]] = [(prefix, obj, 0, frozenset())]
    while stack:
        name, value, depth, seen = stack.pop()
        children = _children(value)
        if children is None:
            yield name, value
            continue
        if id(value) in seen:
            raise FormatError(f"the checkpoint's containers form a cycle at {name!r}")
        if depth >= MAX_DEPTH:
            raise FormatError(f"containers nest deeper than {MAX_DEPTH} levels at {name!r}")
        inner = seen | {id(value)}
        for key, child in reversed(children):
            child_name = f"{name}.{key}" if name else str(key)
            stack.append((child_name, child, depth + 1, inner))


def check_expansion(root: Any, limit: int = MAX_ENTRIES) -> int:
    """The number of entries a walk from ``root`` visits (each container counted once per path
    to it), computed over the distinct objects only; FormatError above ``limit``. A cycle
    counts nothing here (``flatten`` refuses it by name)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    keep: list[Any] = []                   # ids stay valid while the objects are alive
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        value, done = stack.pop()
        key = id(value)
        children = _children(value)
        if children is None or (key in sizes and not done):
            continue
        if done:
            active.discard(key)
            total = 1 + sum(1 if _children(c) is None else sizes.get(id(c), 0)
                            for _, c in children)
            if total > limit:
                raise FormatError(f"the checkpoint's containers share objects so that reading "
                                  f"them means visiting more than {limit} entries",
                                  hint="a checkpoint never does; the file is forged")
            sizes[key] = total
            continue
        if key in active:
            continue                       # a cycle
        active.add(key)
        keep.append(value)
        stack.append((value, True))
        stack.extend((c, False) for _, c in children if _children(c) is not None
                     and id(c) not in sizes)
    return sizes.get(id(root), 1)


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    if isinstance(value, TensorRef):
        return None
    mapping = as_mapping(value)
    if mapping is not None:
        return list(mapping.items())
    if isinstance(value, (list, tuple)):
        return list(enumerate(value))
    return None


def has_tensors(obj: Any) -> bool:
    return any(isinstance(leaf, TensorRef) for _, leaf in flatten(obj))


def is_tensor_tree(obj: Any) -> bool:
    """Every leaf is a tensor (nested dicts of tensors count), and there is at least one."""
    leaves = [leaf for _, leaf in flatten(obj)]
    return bool(leaves) and all(isinstance(leaf, TensorRef) for leaf in leaves)


def wrapper_prefixes(names: list[str]) -> tuple[str, ...]:
    """Wrapper prefixes shared by every name, outermost first (e.g. ("model.", "module."))."""
    found: list[str] = []
    rest = list(names)
    while rest:
        shared = [p for p in WRAPPER_PREFIXES if all(n.startswith(p) for n in rest)]
        if not shared:
            break
        found.append(shared[0])
        rest = [n[len(shared[0]):] for n in rest]
    return tuple(found)


def find_weights(root: Any, container: str | None = None, *,
                 max_entries: int = MAX_ENTRIES) -> Found:
    """Choose the container (see module doc) and flatten its tensors."""
    if isinstance(root, TensorRef):
        raise FormatError(f"the file holds one bare tensor of shape {root.shape}, not a state "
                          "dict", hint="save a dict: torch.save({'name': tensor}, path)")
    check_expansion(root, max_entries)
    mapping = as_mapping(root)
    if mapping is None:
        return _found(None, root, (), ())
    holding = [str(k) for k, v in mapping.items() if _is_container(v) and has_tensors(v)]
    others = tuple(str(k) for k, v in mapping.items()
                   if not isinstance(v, TensorRef) and str(k) not in holding)
    key = _choose(mapping, holding, container)
    if key is None:
        return _found(None, mapping, (), others)
    value = _lookup(mapping, key)
    return _found(key, value, tuple(k for k in holding if k != key), others)


def _choose(mapping: dict, holding: list[str], container: str | None) -> str | None:
    if container is not None:
        if _lookup(mapping, container) is None:
            raise UsageError(f"the checkpoint has no container {container!r}",
                             hint=f"keys holding tensors: {', '.join(holding) or 'none'}")
        return container
    for key in PREFERRED_KEYS:
        if key in holding:
            return key
    if is_tensor_tree(mapping) or any(isinstance(v, TensorRef) for v in mapping.values()):
        return None                                # the dict itself is the state dict
    if len(holding) == 1:
        return holding[0]
    if not holding:
        raise FormatError("the checkpoint holds no tensors",
                          hint=f"top-level keys: {', '.join(map(str, mapping)) or 'none'}")
    raise UsageError(f"the checkpoint holds several sets of weights: {', '.join(holding)}",
                     hint=f"name one with {option('container', 'KEY')}")


def _lookup(mapping: dict, key: str) -> Any:
    """``key`` itself, or a dotted path of nested keys (``"ema.model"``)."""
    if key in mapping:
        return mapping[key]
    node: Any = mapping
    for part in key.split("."):
        inner = as_mapping(node)
        if inner is None or part not in inner:
            return None
        node = inner[part]
    return node


def _is_container(value: Any) -> bool:
    return as_mapping(value) is not None or isinstance(value, (list, tuple))


def _found(key: str | None, value: Any, candidates: tuple, others: tuple) -> Found:
    tensors, skipped = [], []
    for name, leaf in flatten(value):
        (tensors if isinstance(leaf, TensorRef) else skipped).append((name, leaf))
    if not tensors:
        raise FormatError(f"container {key or '<root>'!r} holds no tensors")
    names = [n for n, _ in tensors]
    return Found(container=key, tensors=tuple(tensors), candidates=candidates,
                 other_keys=others, skipped=tuple(n for n, _ in skipped),
                 prefixes=wrapper_prefixes(names))
