"""Rearrangement patterns: one small language for how a tensor's axes are laid out, from which the
steps between two layouts are derived (as einops writes ``"(c m) 1 h w -> h w c m"``).

A pattern lists a tensor's axes, comma-separated: a name (``kh``, ``c``), ``1`` for an axis of
size 1, or a group ``(c*m)`` for one axis holding several, row-major. A depthwise kernel is
``kh,kw,c,m`` in a channels-last convention and ``(c*m),1,kh,kw`` in a channels-first one
(``Convention.depthwise_kernel``); ``rearrange`` gives the steps from one to the other:
reshape the groups apart (units dropped), transpose the named axes into the target's order,
reshape into the target's groups and units — each only where it changes something.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConversionError
from .steps import Step

Item = str | tuple[str, ...]          # a name, "1", or a group of names


@dataclass(frozen=True)
class Pattern:
    items: tuple[Item, ...]

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        items: list[Item] = []
        for part in (p.strip() for p in text.split(",")):
            if part.startswith("(") and part.endswith(")"):
                items.append(tuple(n.strip() for n in part[1:-1].split("*")))
            else:
                items.append(part)
        return cls(tuple(items))

    def __str__(self) -> str:
        return ",".join(f"({'*'.join(i)})" if isinstance(i, tuple) else i for i in self.items)

    @property
    def names(self) -> tuple[str, ...]:
        """The named axes in order, groups opened, units left out."""
        out: list[str] = []
        for item in self.items:
            if isinstance(item, tuple):
                out.extend(item)
            elif item != "1":
                out.append(item)
        return tuple(out)

    @property
    def plain(self) -> bool:
        """No group and no unit axis: the named axes are the tensor's axes."""
        return all(isinstance(i, str) and i != "1" for i in self.items)

    def shape(self, sizes: dict[str, int]) -> tuple[int, ...]:
        out = []
        for item in self.items:
            if isinstance(item, tuple):
                n = 1
                for name in item:
                    n *= sizes[name]
                out.append(n)
            else:
                out.append(1 if item == "1" else sizes[item])
        return tuple(out)


def sizes_of(patterns: list[tuple[Pattern, tuple[int, ...]]], where: str) -> dict[str, int]:
    """The size of every named axis from tensors of known shape laid out as the patterns say
    (a group's unknown member from its product); ConversionError where they disagree."""
    sizes: dict[str, int] = {}
    for pattern, shape in patterns:
        if len(pattern.items) != len(shape):
            raise ConversionError(f"shape {tuple(shape)} does not have the axes of "
                                  f"{pattern}", tensor=where)
        for item, n in zip(pattern.items, shape):
            if isinstance(item, str) and item != "1":
                if sizes.setdefault(item, n) != n:
                    raise ConversionError(f"axis {item} is {sizes[item]} and {n}", tensor=where)
    for pattern, shape in patterns:
        for item, n in zip(pattern.items, shape):
            if item == "1" and n != 1:
                raise ConversionError(f"shape {tuple(shape)} has {n} where {pattern} holds 1",
                                      tensor=where)
            if isinstance(item, tuple):
                unknown = [name for name in item if name not in sizes]
                known = 1
                for name in item:
                    known *= sizes.get(name, 1)
                if len(unknown) == 1 and known and n % known == 0:
                    sizes[unknown[0]] = n // known
                elif unknown or known != n:
                    raise ConversionError(f"shape {tuple(shape)} does not fit {pattern}",
                                          tensor=where)
    return sizes


def rearrange(source: str, target: str, source_shape: tuple[int, ...],
              target_shape: tuple[int, ...], where: str = "") -> tuple[list[Step], dict[str, int]]:
    """The steps that lay a tensor of ``source_shape`` out as ``source`` says into ``target``'s
    layout, and the axes' sizes; ConversionError when the shapes do not fit the patterns."""
    src, tgt = Pattern.parse(source), Pattern.parse(target)
    if sorted(src.names) != sorted(tgt.names):
        raise ConversionError(f"{src} and {tgt} name different axes", tensor=where)
    sizes = sizes_of([(src, tuple(source_shape)), (tgt, tuple(target_shape))], where)
    steps = []
    if not src.plain:
        steps.append(Step("reshape", {"shape": [sizes[n] for n in src.names]}))
    perm = [src.names.index(n) for n in tgt.names]
    if perm != list(range(len(perm))):
        steps.append(Step("transpose", {"perm": perm}))
    if not tgt.plain:
        steps.append(Step("reshape", {"shape": list(tgt.shape(sizes))}))
    return steps, sizes
