"""Text rendering of ``weightmap inspect``."""
from __future__ import annotations

from typing import Any

from .errors import printable


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


META_WIDTH = 100     # characters of a meta value shown before it is cut (--json shows all)


def _meta_value(value: Any) -> str:
    """A meta value on one readable line: a long one (a reader's per-layer dict, a list of
    hundreds of names) is cut, with how much there is and where to see it whole."""
    text = str(value)
    if len(text) <= META_WIDTH:
        return text
    size = f"{len(value)} items" if isinstance(value, (dict, list, tuple)) \
        else f"{len(text):,} characters"
    return f"{text[:META_WIDTH - 4]} ... ({size}; --json shows all)"


def render(desc: dict[str, Any]) -> str:
    t = desc["totals"]
    dtypes = ", ".join(f"{k} {v:,}" for k, v in t["dtypes"].items()) or "-"
    lines = [
        f"{desc['source']}",
        f"  format {desc['format']} ({desc['framework']} convention), order: {desc['order']}",
        f"  {t['layers']} layers, {t['params']} parameters ({t['tensors']} tensors), "
        f"{t['elements']:,} elements, {human_bytes(t['bytes'])}; dtypes: {dtypes}",
    ]
    lines += [f"  {key}: {_meta_value(value)}" for key, value in desc["meta"].items()]
    rows = [("layer", "op", "parameter", "shape", "dtype", "layout")]
    for layer in desc["layers"]:
        first = True
        for p in layer["params"] or [None]:
            name = layer["name"] if first else ""
            op = (layer["op"] + (f" ({layer['type']})" if layer["type"] else "")) if first else ""
            first = False
            if p is None:
                rows.append((name, op, "-", "", "", ""))
                continue
            pname = p["name"] + (f" = {p['tied_to']}" if p.get("tied_to") else "")
            rows.append((name, op, f"{pname} [{p['role']}]", "x".join(map(str, p["shape"])) or "()",
                         p["dtype"], ",".join(p["axes"]) if p["axes"] is not None else "?"))
    # every name comes from the file: escaped before the columns are measured
    lines = [printable(line) for line in lines]
    rows = [tuple(printable(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines.append("")
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)
