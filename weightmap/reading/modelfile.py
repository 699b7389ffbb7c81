"""Model files: ``model.py[:NAME]`` run as the user's own code (checkpoints never are), in every
adapter's context for it (torch builds lazily on the meta device, Keras keeps TensorFlow's
start-up logs off stderr)."""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any, Iterator

from .. import registry
from ..errors import UsageError, WeightmapError


def split_pyref(text: str) -> tuple[Path | None, str]:
    """``model.py`` → (model.py, "model"); ``model.py:net`` → (model.py, "net"); else (None, "")."""
    base, sep, name = text.rpartition(":")
    if sep and base.endswith(".py") and name.isidentifier():
        return Path(base), name
    if text.endswith(".py"):
        return Path(text), "model"
    return None, ""


def load_python_object(path: Path, name: str = "model") -> tuple[Any, Any]:
    """Import a model definition file; return its ``name`` (called if it is a factory) and its
    ``example_input`` (called if callable; None when the file defines none).

    This runs the file: it is the user's own model definition, exactly as ``python model.py``
    would. Checkpoints are never executed; only ``.py`` files named as models are.
    """
    if not path.is_file():
        raise UsageError("no such model file", path=path)
    with running_model_file(path):
        return _run_model_file(path, name)


@contextlib.contextmanager
def running_model_file(path: Path) -> Iterator[None]:
    """While a model file runs: its folder is importable (first on ``sys.path``, as with
    ``python model.py``, so it can import the modules beside it), and every adapter's
    ``model_file_context(path)`` is entered (Keras: TensorFlow's start-up logs stay off
    stderr)."""
    folder = str(path.resolve().parent)
    with contextlib.ExitStack() as stack:
        for adapter in registry.adapters().values():
            hook = getattr(adapter, "model_file_context", None)
            if hook is not None:
                stack.enter_context(hook(path))
        sys.path.insert(0, folder)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)        # the entry added (the first equal one)


def _run_model_file(path: Path, name: str) -> tuple[Any, Any]:
    mod_name = f"weightmap_user_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError("cannot import this file as Python", path=path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    with _user_code(path, "running the model file"):
        spec.loader.exec_module(module)
    if not hasattr(module, name):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise UsageError(f"the file defines no {name!r}", path=path,
                         hint=f"name the object as FILE.py:NAME; it defines {', '.join(public[:12])}")
    obj = getattr(module, name)
    if _is_factory(obj):
        with _user_code(path, f"calling {name}()"):
            obj = obj()
    example = getattr(module, "example_input", None)
    if callable(example):
        with _user_code(path, "example_input()"):
            example = example()
    return obj, example


@contextlib.contextmanager
def _user_code(path: Path, what: str) -> Iterator[None]:
    """The user's code failed: say where, not a traceback. ``sys.exit(N)`` in it (a script's
    own argument parsing, say) is a failure too, not weightmap's exit N with nothing said."""
    try:
        yield
    except WeightmapError:
        raise
    except SystemExit as exc:
        raise UsageError(f"{what} ended in sys.exit({exc.code!r}): a model file must define the "
                         f"model, not run a program", path=path,
                         hint="put the script part under if __name__ == '__main__':") from None
    except Exception as exc:
        raise UsageError(f"{what} failed: {type(exc).__name__}: {exc}", path=path) from exc


def load_python_lazily(path: Path, name: str = "model") -> tuple[Any, Any, dict[str, Any]]:
    """``load_python_object`` inside the first adapter's ``lazy_construction(path)`` context, if
    one offers it (torch: the model is built on the meta device, no weights allocated). Returns
    (object, example_input, options for ``read_live``: ``construction=`` what the context
    recorded and ``rebuild=`` a function building the model normally, for the adapter to use
    when it needs real values). Without such an adapter, or when the file fails to run lazily,
    the model is built normally."""
    for adapter in registry.adapters().values():
        hook = getattr(adapter, "lazy_construction", None)
        context = hook(path) if hook is not None else None
        if context is None:
            continue
        try:
            with context as record:
                obj, example = load_python_object(path, name)
        except WeightmapError as exc:   # cannot run lazily: build it normally, and say why
            obj, example = load_python_object(path, name)
            return obj, example, {"construction_failed": exc.message}
        return obj, example, {"construction": record,
                              "rebuild": lambda: load_python_object(path, name)}
    obj, example = load_python_object(path, name)
    return obj, example, {}


def _is_factory(obj: Any) -> bool:
    """A class or a plain function to be called with no arguments, not a model instance."""
    return inspect.isclass(obj) or inspect.isfunction(obj)
