"""Proven ports: run the source and the ported target on one probe, compare what they compute.

``verify(source, target, weights)`` runs both models, each in its own runtime (torch eager,
Keras, onnxruntime; each adapter's runner), in inference mode, on the same seeded probe, and
compares their outputs and the activations of every pair of layers the plan joined (see
``pairs``), naming the first pair that diverges. ``check`` is the same on graphs a port has
already read; ``port(verify=...)`` calls it on the written file before it is put in place.
The core orchestrates (probe, pairing, layout mapping, figures) and imports no framework.
See docs/verify.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError, VerifyError, WeightmapError
from ..graph import ParamGraph
from ..layouts import activation_axes, feature_map_axes
from ..spelling import option
from . import probe as probe_mod
from .compare import Incomparable, activation_of, figures, reconcile, side_by_side
from .adapted import adaptation
from .provenance import mismatch
from .pairs import (Entry, Pairing, Sequenced, entries_from_manifest, entries_from_plan,
                    pair_layers, sequence)
from .result import LayerFigure, OutputFigure, VerifyResult
from .runner import InputSpec, Run, Runner
from .sides import open_source, open_target

DEFAULT_TOL = 1e-4
__all__ = ["DEFAULT_TOL", "verify", "check", "entries_from_plan", "port_mode", "PortCheck",
           "VerifyResult", "InputSpec", "Run", "Runner"]


def verify(source: Any, target: Any, weights: str | os.PathLike, *, source_model: Any = None,
           tol: float = DEFAULT_TOL, plan: Any = None, seed: int = 0,
           **options: Any) -> VerifyResult:
    """Run ``source`` and ``target`` (with the ported ``weights`` loaded) on one probe and
    compare them. ``plan`` (a Plan, or a plan / manifest JSON path) says which layers feed
    which; by default the manifest beside ``weights``, else the plan is made again.
    ``source_model`` (``FILE.py[:NAME]`` or a live model) builds a source given as weights only
    (a state dict, safetensors). Never raises for a model that cannot be run: the result says
    why it did not pass. Any other keyword is a UsageError naming the closest valid one."""
    from ..api import source_graph
    from ..options import check_keywords
    check_keywords(verify, options)
    weights, found = _weights_file(Path(weights))
    src, tgt = source_graph(source, source_model), _read_target(target)
    entries, note = _entries(plan, weights, src, tgt)
    result = check(source, target, weights, src, tgt, entries, source_model=source_model,
                   tol=tol, seed=seed)
    notes = tuple(n for n in (found, note) if n)
    return replace(result, notes=result.notes + notes) if notes else result


def _weights_file(weights: Path) -> tuple[Path, str | None]:
    """The port's output by the name given to its ``--out``: a sharded output is known by its
    index (``X.safetensors`` written as shards and ``X.safetensors.index.json``)."""
    if weights.exists():
        return weights, None
    index = weights.with_name(weights.name + ".index.json")
    if index.is_file():
        return index, f"{weights.name} is sharded: its index {index.name} was verified"
    raise UsageError("no such weights file", path=weights,
                     hint=f"{option('weights')} names the output of a port")


def _read_target(target: Any) -> ParamGraph:
    from ..sources import read, split_pyref
    is_file = isinstance(target, (str, os.PathLike)) and split_pyref(os.fspath(target))[0]
    return read(target, lazy=True) if is_file else read(target)


def _entries(plan: Any, weights: Path, src: ParamGraph, tgt: ParamGraph
             ) -> tuple[list[Entry], str | None]:
    from ..emit import manifest_path_for
    from ..plans import Plan
    if isinstance(plan, Plan):
        return entries_from_plan(plan), None
    path = Path(plan) if plan is not None else manifest_path_for(weights)
    again = f"no manifest beside {weights.name}"
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"cannot read it as JSON: {exc}", path=path) from None
        is_plan = isinstance(data, dict) and "weightmap_plan" in data
        if not (is_plan or isinstance(data, dict) and "params" in data):
            raise UsageError("neither a weightmap plan nor a manifest", path=path)
        why = mismatch(data, tgt, weights)
        if why is None:
            return (entries_from_plan(Plan.from_dict(data)) if is_plan
                    else entries_from_manifest(data)), None
        if plan is not None:           # the caller's own choice: not replaced by a guess
            raise UsageError(f"it does not describe the target and these weights ({why})",
                             path=path, hint="give the plan or manifest of the port that "
                                             "wrote them, or none")
        again = f"the manifest beside {weights.name} ({path.name}) does not describe these " \
                f"weights ({why})"
    elif plan is not None:
        raise UsageError("no such plan or manifest file", path=path)
    from ..api import plan as make_plan
    return entries_from_plan(make_plan(src, tgt)), \
        f"{again}: the plan was made again to pair the layers"


def check(source: Any, target: Any, weights: Path, src: ParamGraph, tgt: ParamGraph,
          entries: Sequence[Entry], *, source_model: Any = None, tol: float = DEFAULT_TOL,
          seed: int = 0) -> VerifyResult:
    """``verify`` on graphs already read and the plan's entries."""
    check_tol(tol)
    pairing = pair_layers(entries, src, tgt)
    base = {"tol": float(tol), "synthetic": tuple(pairing.synthetic)}
    adapted = adaptation(entries, src)
    if adapted.another:
        return VerifyResult(passed=False, unverifiable=adapted.another, **base)
    runners: list[Runner] = []
    opened: list[str] = []                  # notes of opening the sides
    try:
        runners.append(open_source(source, src, source_model, opened))
        runners.append(open_target(target, tgt, weights))
        sr, tr = runners
        probe = probe_mod.make(src, tgt, sr.inputs(), tr.inputs(), seed,
                               channel_map=adapted.channel_map, mapped=adapted.mapped)
        run_s = _run(sr, "source", probe.feeds["source"], _capture(pairing, "source"))
        run_t = _run(tr, "target", probe.feeds["target"], _capture(pairing, "target"))
    except VerifyError as exc:
        return VerifyResult(passed=False, notes=(str(exc), *opened), **base)
    finally:
        for runner in reversed(runners):
            runner.close()
    ran = {"source": sr.description, "target": tr.description}
    result = _decided_at_divergence(_judge(pairing, src, tgt, run_s, run_t, probe.info, base,
                                           ran), pairing, entries)
    return replace(result, notes=result.notes + tuple(opened)) if opened else result


DECISION = "decision: "
ASSUMED = "not stored"          # how the plan words a value it assumed (norm.epsilon_of)


def _decided_at_divergence(result: VerifyResult, pairing: Pairing, entries: Sequence[Entry]
                           ) -> VerifyResult:
    """The first divergence with the plan's decisions at its target layers (``decided``): an
    epsilon assumed because the checkpoint does not store it is the likely cause there, and a
    note says what gives the real value."""
    first = result.first_divergence
    if not first:
        return result
    pair = next((p for p in pairing.pairs if (p.target, p.source) ==
                 (first["target"], first["source"])), None)
    layers = set(pair.target_layers) if pair else {first["target"]}
    decided = list(dict.fromkeys(n[len(DECISION):] for e in entries if e.layer in layers
                                 for n in e.notes if n.startswith(DECISION)))
    if not decided:
        return result
    notes = result.notes
    if any(ASSUMED in d for d in decided):
        notes += ("the source checkpoint does not store that value and the plan assumed it: if "
                  "the source model uses another, port the model itself, built and loaded "
                  "(Python: weightmap.port(model, ...)), whose layers state it",)
    return replace(result, first_divergence=dict(first, decided=decided), notes=notes)


def _capture(pairing: Pairing, side: str) -> list[str]:
    """The layers whose outputs ``side`` must keep: each pair's last one, and split parts."""
    names: dict[str, None] = {}
    for pair in pairing.pairs:
        names[pair.source if side == "source" else pair.target] = None
        names.update(dict.fromkeys(pair.parts(side)))
    return list(names)


def _run(runner: Runner, side: str, feeds, capture) -> Run:
    try:
        return runner.run(feeds, capture)
    except VerifyError as exc:
        raise VerifyError(f"running the {side} failed: {exc.message}", path=exc.path,
                          hint=exc.hint) from exc
    except WeightmapError as exc:
        raise VerifyError(f"running the {side} failed: {exc.message}", path=exc.path) from exc


def _judge(pairing: Pairing, src: ParamGraph, tgt: ParamGraph, run_s: Run, run_t: Run,
           probe_info, base, ran) -> VerifyResult:
    tol = base["tol"]
    seq = sequence(pairing, run_s.order or [l.name for l in src.layers],
                   run_t.order or [l.name for l in tgt.layers])
    layers = [_compare_pair(k, seq, src, tgt, run_s, run_t, tol)
              for k in range(len(seq.pairs))]
    outputs = _compare_outputs(seq, run_s, run_t, probe_info, tol,
                               _last_activations(seq, src, tgt, run_s, run_t))
    notes = list(run_s.notes) + list(run_t.notes)
    compared = [o for o in outputs if o.status != "skipped"]
    diverged = [l for l in layers if l.status == "diverged"]
    agreeing = [l for l in layers if l.status == "ok"]
    up_to = None
    if not compared:
        why = seq.stop_reason or (outputs[0].note if outputs else "the models give none")
        last_ok = agreeing[-1] if agreeing else None
        if last_ok is not None:
            # how much was compared, and how many ported pairs lie past the stop, unchecked
            up_to = {"source": last_ok.source, "target": last_ok.target, "reason": why,
                     "compared": len(agreeing) + len(diverged), "paired": len(layers),
                     "unchecked": len(seq.pairs) - seq.comparable}
        else:
            notes.append(f"nothing was compared: outputs not compared ({why}) and no pair of "
                         "layers agrees")
    # a pass checks everything ported: whole outputs, or every pair when they differ by design
    passed = not diverged and (all(o.status == "ok" for o in compared) if compared
                               else up_to is not None and not up_to["unchecked"])
    first = None
    if diverged:
        d = diverged[0]
        before = [l for l in agreeing if l.depth < d.depth]
        first = {"source": d.source, "target": d.target, "rel": d.rel,
                 "inputs_rel": before[-1].rel if before else None}
    elif compared and not passed:
        notes.append("every compared pair of layers agrees: the difference arises after the "
                     "last of them, in what the models compute without weights")
    return VerifyResult(passed=passed, probe=probe_info, outputs=tuple(outputs),
                        layers=tuple(layers), first_divergence=first, compared_up_to=up_to,
                        notes=tuple(dict.fromkeys(notes)), ran=ran, **base)


def _compare_pair(k: int, seq: Sequenced, src: ParamGraph, tgt: ParamGraph, run_s: Run,
                  run_t: Run, tol: float) -> LayerFigure:
    pair = seq.pairs[k]

    def skipped(note: str) -> LayerFigure:
        return LayerFigure(pair.source, pair.target, k, None, None, "skipped", note)

    if k >= seq.comparable:
        return skipped(f"not compared: the models compute different things from here on "
                       f"({seq.stop_reason})")
    a, b = run_s.layers.get(pair.source), run_t.layers.get(pair.target)
    if a is None:
        return skipped(run_s.skipped.get(pair.source, "the source did not run this layer"))
    if b is None:
        return skipped(run_t.skipped.get(pair.target, "the target did not run this layer"))
    s_op, s_attrs = _described(run_s, src.layer(pair.source))
    t_op, t_attrs = _described(run_t, tgt.layer(pair.target))
    a_units = activation_axes(src.framework, s_op, s_attrs, a.ndim)
    b_units = activation_axes(tgt.framework, t_op, t_attrs, b.ndim)
    joined = ""
    try:
        try:
            a2, b2 = side_by_side(a, a_units, b, b_units)
        except Incomparable:
            a, b = _joined_parts(pair, "source", run_s, a, a_units), \
                _joined_parts(pair, "target", run_t, b, b_units)
            a2, b2 = side_by_side(a, a_units, b, b_units)
            side = "source" if pair.parts("source") else "target"
            joined = f"the outputs of {', '.join(pair.parts(side))} side by side"
        a3, b3, note = reconcile(activation_of(s_op, s_attrs), activation_of(t_op, t_attrs),
                                 a2, b2)
    except Incomparable as exc:
        return skipped(str(exc))
    fig = figures(a3, b3)
    if not joined and (len(pair.source_layers) > 1 or len(pair.target_layers) > 1):
        joined = f"compared after {' + '.join(pair.target_layers)} <- " \
                 f"{' + '.join(pair.source_layers)}"
    note = "; ".join(filter(None, [joined, note]))
    return LayerFigure(pair.source, pair.target, k, fig.max_abs, fig.rel,
                       "ok" if fig.within(tol) else "diverged", note)


def _joined_parts(pair, side: str, run: Run, last, units) -> Any:
    """The outputs of ``side``'s split parts side by side on their channel axis (q, k, v as
    the fused qkv gives them), or ``last`` when the side has no parts or one was not taken."""
    parts = pair.parts(side)
    arrays = [run.layers.get(name) for name in parts]
    if not parts or any(a is None for a in arrays) or units is None or "c" not in units:
        return last
    try:
        return np.concatenate(arrays, axis=list(units).index("c"))
    except ValueError:                     # parts of other shapes: not split of one layer
        return last


def _described(run: Run, layer) -> tuple[str, Any]:
    """The layer's op and attributes as its running model knows them, else as its graph
    says (a graph read from a bare checkpoint knows no torch LSTM's batch_first)."""
    return run.described.get(layer.name) or (layer.op, layer.attrs)


def _last_activations(seq: Sequenced, src: ParamGraph, tgt: ParamGraph, run_s: Run,
                      run_t: Run) -> tuple[Any, str | None, str | None] | None:
    """The last pair of layers and the activation each side fuses into it: a Keras
    classifier's ``predictions`` applies its softmax inside the layer, where a torch model
    usually returns the logits."""
    if not seq.pairs:
        return None
    pair = seq.pairs[-1]
    return (pair, activation_of(*_described(run_s, src.layer(pair.source))),
            activation_of(*_described(run_t, tgt.layer(pair.target))))


def _compare_outputs(seq: Sequenced, run_s: Run, run_t: Run, probe_info, tol: float,
                     last=None) -> list[OutputFigure]:
    out = []
    pairs = list(zip(run_s.outputs, run_t.outputs))
    for (s_name, a), (t_name, b) in pairs:
        name = t_name if s_name == t_name else f"{t_name} <- {s_name}"
        if seq.stop_reason:
            out.append(OutputFigure(name, tuple(b.shape), None, None, "skipped",
                                    seq.stop_reason))
            continue
        try:
            a2, b2 = _outputs_side_by_side(a, b, probe_info)
        except Incomparable as exc:
            out.append(OutputFigure(name, tuple(b.shape), None, None, "skipped", str(exc)))
            continue
        fig = figures(a2, b2)
        if not fig.within(tol) and last is not None and last[1] != last[2]:
            found = _past_activation(a2, b2, last, tol, run_s, run_t)
            if found is not None:
                out.append(OutputFigure(name, tuple(b.shape), *found))
                continue
        out.append(OutputFigure(name, tuple(b.shape), fig.max_abs, fig.rel,
                                "ok" if fig.within(tol) else "diverged"))
    if len(run_s.outputs) != len(run_t.outputs) and not seq.stop_reason:
        out.append(OutputFigure("(count)", (), None, None, "skipped",
                                f"the source gives {len(run_s.outputs)} outputs, the target "
                                f"{len(run_t.outputs)}; the first {len(pairs)} compared"))
    return out


def _past_activation(a, b, last, tol: float, run_s: Run, run_t: Run):
    """(max_abs, rel, status, note) of outputs compared once the activation the last pair
    fuses on one side only is applied to the other side's output: when they then agree (the
    models differ by that activation alone), or when the other side's output is its last
    paired layer's own output (it returns the values before the activation, so the outputs
    compare only past it, agreeing or not); else None (the raw figure stands)."""
    pair, source_act, target_act = last
    try:
        a2, b2, _ = reconcile(source_act, target_act, a, b)
    except Incomparable:
        return None
    fig = figures(a2, b2)
    side, other, act = ("source", "target", source_act) if source_act else \
        ("target", "source", target_act)
    layer = pair.source if source_act else pair.target
    why = f"the {side}'s last layer {layer} applies {act} inside it, the {other} model " \
          f"returns the values before it"
    if fig.within(tol):
        return fig.max_abs, fig.rel, "ok", f"agrees once {act} is applied to the {other}'s " \
                                           f"output: {why}"
    plain_run, plain_layer, plain_out = (run_t, pair.target, b) if source_act else \
        (run_s, pair.source, a)
    before = plain_run.layers.get(plain_layer)
    if before is None or before.shape != plain_out.shape or \
            not np.array_equal(before, plain_out):
        return None
    return fig.max_abs, fig.rel, "diverged", f"compared once {act} is applied to the " \
                                             f"{other}'s output: {why}"


def _outputs_side_by_side(a, b, probe_info):
    """Outputs of equal shapes compare as they are; feature maps whose shapes differ are put
    in one layout by each side's input layout (a channels-last model gives channels-last
    maps)."""
    if a.shape == b.shape:
        return a, b
    layouts = (probe_info or {}).get("layout", {})
    fmts = [layouts.get(side, "none") for side in ("source", "target")]
    if "none" in fmts or a.ndim != b.ndim or a.ndim < 3:
        raise Incomparable(f"the source's output has shape {a.shape}, the target's {b.shape}")
    return side_by_side(a, feature_map_axes(fmts[0], a.ndim), b, feature_map_axes(fmts[1],
                                                                                  b.ndim))


# ---- port(verify=...) ---------------------------------------------------------------------------

_PORT_MODES = {False: None, True: "fail", "warn": "warn"}
# port's options that serve verification only: (Python keyword, command-line flag)
# options of verification alone (source_model describes the source for the plan too)
VERIFY_OPTIONS = ("verify_tol",)


def check_tol(tol: Any) -> None:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not (tol > 0):
        raise UsageError(f"the tolerance must be a positive number, found {tol!r}")


def port_mode(verify: Any, dry_run: bool = False, **options: Any) -> str | None:
    """``port(verify=...)`` as None (no verification), "fail" or "warn". ``options``: the
    port's ``verify_tol``; given without verification it would be ignored, so it is a
    UsageError."""
    if verify is None:
        verify = False
    if not isinstance(verify, (bool, str)) or verify not in _PORT_MODES:
        raise UsageError(f"verify={verify!r}; one of False, True, 'warn'")
    mode = _PORT_MODES[verify]
    if mode and dry_run:
        raise UsageError("verification runs the written model; a dry run writes none",
                         hint=f"drop {option('dry_run', True)}, or {option('verify', True)}")
    for keyword in VERIFY_OPTIONS:
        if options.get(keyword) is None:
            continue
        if not mode:
            raise UsageError(f"{option(keyword)} serves verification, and this port does not "
                             "verify: it would be ignored",
                             hint=f"add {option('verify', True)}, or drop {option(keyword)}")
        if keyword == "verify_tol":
            check_tol(options[keyword])
    return mode


class PortCheck:
    """A port's verification, the ``before_publish`` hook of ``emit.write``: it gets the written
    files, staged under their final names and not yet published, verifies the output (its side
    files beside it), puts the result into the manifest (``verify``) and ``.result``, then calls
    ``then`` (the caller's own hook). In mode "fail" a port that does not pass raises
    VerifyError, so nothing is published."""

    def __init__(self, mode: str, source: Any, target: Any, src: ParamGraph, tgt: ParamGraph,
                 plan: Any, manifest: dict, out: Path, *, source_model: Any = None,
                 tol: float | None = None, then: Any = None):
        self.mode, self.source, self.target, self.src, self.tgt = mode, source, target, src, tgt
        self.entries, self.manifest, self.out = entries_from_plan(plan), manifest, Path(out)
        self.source_model, self.then = source_model, then
        self.tol = DEFAULT_TOL if tol is None else tol
        self.result: VerifyResult | None = None

    def __call__(self, files: dict[Path, Path]) -> None:
        written = files.get(self.out) or next(iter(files.values()))
        self.result = check(self.source, self.target, written, self.src, self.tgt,
                            self.entries, source_model=self.source_model, tol=self.tol)
        self.manifest["verify"] = self.result.to_dict()
        if not self.result.passed and self.mode == "fail":
            raise VerifyError(self.result.summary(), hint="nothing was written; " + (
                f"port without {option('verify', True)} to keep it"
                if self.result.unverifiable else
                f"rerun with {option('verify', 'warn')} to keep the output and see every "
                "layer"))
        if self.then is not None:
            self.then(files)
