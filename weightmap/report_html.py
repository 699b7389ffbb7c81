"""The mapping report as one self-contained HTML page, made from a manifest.

The page (``report_page.html``) holds its style, its script and the manifest itself: no network,
no CDN, nothing to install — it opens offline and can be attached to a pull request. Its script
is plain DOM code written for it: a page this size (a filterable two-column list, curves, one
plot) needs no library, and a vendored one would be the largest part of every report.

Names come from checkpoint files, which may be hostile: the data is embedded as JSON with every
``<``, ``>`` and ``&`` escaped (nothing in it can close the script element), and the script puts
names into the page as text only, never as markup. The page's Content-Security-Policy forbids
every network request.
"""
from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from . import manifest as manifest_mod
from .atomic import write_texts

_PLACEHOLDER = "__WEIGHTMAP_DATA__"


def render(manifest: Mapping[str, Any]) -> str:
    """The page for ``manifest`` (a dict as ``weightmap.port`` returns or writes it)."""
    manifest_mod.check(manifest)
    page = resources.files("weightmap").joinpath("report_page.html").read_text(encoding="utf-8")
    return page.replace(_PLACEHOLDER, embed(manifest), 1)


def embed(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element and parses in any browser:
    non-finite numbers (a verification's relative error can be infinite) become strings, and
    ``<``, ``>``, ``&`` are escaped so nothing in a name can end the element."""
    text = json.dumps(_finite(data), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write(manifest: Mapping[str, Any], path: str | Path, *, force: bool = False,
          inputs: tuple[Path, ...] = (), named_by: str = "out") -> Path:
    """Write the page atomically (no file unless it is whole; an existing one only with
    ``force``). ``named_by``: the option that names ``path``, for the messages."""
    path = Path(path)
    write_texts({path: render(manifest)}, force=force, inputs=inputs, named_by=named_by)
    return path


def load_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest file, as ``weightmap report`` reads it: one line of error for a file that is
    not one."""
    from .errors import UsageError
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError("no such manifest file", path=path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"not a readable JSON manifest: {exc}", path=path) from None
    try:
        manifest_mod.check(data)
    except UsageError as exc:
        raise UsageError(exc.message, path=path,
                         hint="pass the .manifest.json a port wrote beside its output") from None
    return data
