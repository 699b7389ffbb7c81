"""Normalisation layers: BatchNorm epsilon compensation, missing gamma/beta, LayerNorm epsilon.

BatchNorm in eval mode computes ``(x − mean)/sqrt(var + eps)·gamma + beta``. When the two sides'
epsilons differ (stored, or the convention's default: ``Convention.epsilon``), ``gamma' =
gamma·sqrt((var + e_t)/(var + e_s))`` keeps the output exactly, for every channel; channels with a
tiny running variance are where a missing compensation shows. A target without gamma gets
``var' = var + e_s − e_t`` instead (checked > 0 on the values). A source BatchNorm built with
``scale=False`` / ``center=False`` stores no gamma / beta: the target gets 1 / 0 (synthetic).

LayerNorm, GroupNorm, InstanceNorm and RMSNorm normalise by statistics of each input, so a
different epsilon cannot be compensated by the weights: it is reported, never called exact.
"""
from __future__ import annotations

import math
from dataclasses import replace

from ... import registry
from ...graph import Layer, Param, ParamGraph
from ..plan import COUNTER, Decision, Reason, TensorPlan
from ...transform import Step
from .base import LayerPair
from .generic import cast_steps, plan_param

def epsilon_of(layer: Layer, graph: ParamGraph) -> tuple[float | None, str]:
    """The layer's epsilon and how it is known: ("stored"), an assumed default, or unknown
    (``Convention.epsilon``: where its convention stores it, what it assumes when a file does
    not store it)."""
    return registry.convention(graph.framework).epsilon(layer)


def same_eps(a: float, b: float) -> bool:
    # ONNX stores epsilon as float32 (1e-5 reads back as 9.99999975e-06): that is no difference
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)


def batch_momentum(layer: Layer, graph: ParamGraph) -> float | None:
    """A BatchNorm's momentum as the weight of the batch statistic (``Convention.momentum``:
    some conventions store the running average's weight, 1 minus it)."""
    return registry.convention(graph.framework).batch_momentum(layer)


def _batch_momentum_style() -> str:
    """How people know a momentum that weights the batch statistic: "<name>-style", after the
    first convention that stores it so."""
    return next((f"{c.display}-style" for c in registry.conventions().values()
                 if c.momentum == "batch"), "batch-weight")


def _eps_text(value: float | None, how: str) -> str:
    if value is None:
        return "unknown"
    return f"{value:g}" + ("" if how == "stored" else f" ({how})")


# ---- BatchNorm --------------------------------------------------------------------------------

def convert_batchnorm(pair: LayerPair) -> list[TensorPlan]:
    src, tgt = pair.source, pair.target
    e_s, how_s = epsilon_of(src, pair.source_graph)
    e_t, how_t = epsilon_of(tgt, pair.target_graph)
    known = e_s is not None and e_t is not None
    compensate = known and not same_eps(e_s, e_t)
    has_gamma = tgt.param("gamma") is not None
    plans = []
    for p in tgt.params:
        if p.role == "gamma":
            plans.append(_gamma_plan(pair, p, e_s, e_t, compensate))
        elif p.role == "beta" and not pair.sources_of(p.name):
            plans.append(pair.plan(p, "synthetic", value=0.0, notes=(
                "source BatchNorm has no beta (center=False): 0 keeps its output",)))
        elif p.role == "moving_var" and compensate and not has_gamma:
            plans.append(_var_plan(pair, p, e_s, e_t))
        elif p.role == "num_batches_tracked" and not pair.sources_of(p.name):
            plans.append(pair.plan(p, "new", reason=Reason.COUNTER, notes=(
                f"{COUNTER} (num_batches_tracked has no counterpart in "
                f"{pair.source_framework}; used only with momentum=None)",)))
        else:
            plans.append(plan_param(pair, p))
    notes = _layer_notes(pair, e_s, how_s, e_t, how_t, compensate)
    return _attach(plans, notes)


def _gamma_plan(pair: LayerPair, tgt: Param, e_s, e_t, compensate: bool) -> TensorPlan:
    sources = pair.sources_of(tgt.name)
    var = pair.source.param("moving_var")
    eps_note = f"eps {e_s:g}->{e_t:g} compensated (gamma scaled)" if compensate else None
    if sources and compensate and var is not None:
        (gamma,) = sources
        step = Step("bn_eps_gamma", {"eps_from": e_s, "eps_to": e_t, "parts": ["gamma", "var"]})
        return pair.plan(tgt, "transformed", sources=(gamma, var),
                         steps=[step] + cast_steps(gamma, tgt), notes=(eps_note,))
    if sources:
        return plan_param(pair, tgt)
    if compensate and var is not None:
        step = Step("bn_eps_gamma", {"eps_from": e_s, "eps_to": e_t, "parts": ["var"]})
        return pair.plan(tgt, "synthetic", sources=(var,), steps=[step] + cast_steps(var, tgt),
                         notes=("source BatchNorm has no gamma (scale=False): 1", eps_note))
    return pair.plan(tgt, "synthetic", value=1.0, notes=(
        "source BatchNorm has no gamma (scale=False): 1 keeps its output",))


def _var_plan(pair: LayerPair, tgt: Param, e_s: float, e_t: float) -> TensorPlan:
    (var,) = pair.sources_of(tgt.name) or (None,)
    if var is None:
        return plan_param(pair, tgt)
    step = Step("bn_eps_var", {"eps_from": e_s, "eps_to": e_t})
    return pair.plan(tgt, "transformed", sources=(var,), steps=[step] + cast_steps(var, tgt),
                     notes=(f"eps {e_s:g}->{e_t:g} compensated (var + {e_s:g} - {e_t:g}; the "
                            f"target has no gamma)",))


def _layer_notes(pair: LayerPair, e_s, how_s, e_t, how_t, compensate: bool) -> list[str]:
    """Notes (and decisions) about the layer as a whole, attached to its first tensor."""
    src, tgt = pair.source, pair.target
    notes = []
    if e_s is None or e_t is None:
        notes.append(Decision(
            f"{tgt.name}: BatchNorm epsilon of "
            f"{'the source' if e_s is None else 'the target'} is not stored (source "
            f"{_eps_text(e_s, how_s)}, target {_eps_text(e_t, how_t)}); not compensated: "
            f"channels with a small running variance differ if the epsilons do"))
    elif compensate and (how_s != "stored" or how_t != "stored"):
        notes.append(Decision(
            f"{tgt.name}: epsilon compensated from source {_eps_text(e_s, how_s)} to target "
            f"{_eps_text(e_t, how_t)}; check the assumed value"))
    if src.param("gamma") is not None and tgt.param("gamma") is None:
        notes.append(Decision(
            f"{tgt.name}: the target BatchNorm has no gamma (scale=False); the source's gamma "
            f"is not carried: outputs differ unless it is all ones"))
    if src.param("beta") is not None and tgt.param("beta") is None:
        notes.append(Decision(
            f"{tgt.name}: the target BatchNorm has no beta (center=False); the source's beta "
            f"is not carried: outputs differ unless it is all zeros"))
    m_s = batch_momentum(src, pair.source_graph)
    m_t = batch_momentum(tgt, pair.target_graph)
    if m_s is not None and m_t is not None and not math.isclose(m_s, m_t, abs_tol=1e-9):
        notes.append(f"momentum {src.attrs['momentum']:g} ({pair.source_framework}) = "
                     f"{m_s:g} {_batch_momentum_style()}, the target has {m_t:g}: a training "
                     f"setting, not a weight")
    return notes


def _attach(plans: list[TensorPlan], notes: list[str]) -> list[TensorPlan]:
    if not plans or not notes:
        return plans
    first = plans[0]
    return [replace(first, notes=first.notes + tuple(notes))] + plans[1:]


# ---- LayerNorm and the other per-input normalisations ----------------------------------------

def convert_input_norm(pair: LayerPair) -> list[TensorPlan]:
    """Copy by labels, fill a missing gamma/beta with 1/0, report an epsilon that differs."""
    plans = []
    for p in pair.target.params:
        if p.role in ("gamma", "beta") and not pair.sources_of(p.name):
            fill = 1.0 if p.role == "gamma" else 0.0
            flag = "scale" if p.role == "gamma" else "center"
            plans.append(pair.plan(p, "synthetic", value=fill, notes=(
                f"source {pair.source.op} has no {p.role} ({flag}=False): {fill:g} keeps its "
                f"output",)))
        else:
            plans.append(plan_param(pair, p))
    return _attach(plans, _input_norm_notes(pair))


def _input_norm_notes(pair: LayerPair) -> list[str]:
    e_s, how_s = epsilon_of(pair.source, pair.source_graph)
    e_t, how_t = epsilon_of(pair.target, pair.target_graph)
    if e_s is None or e_t is None:
        return [Decision(
            f"{pair.target.name}: {pair.target.op} epsilon unknown (source "
            f"{_eps_text(e_s, how_s)}, target {_eps_text(e_t, how_t)}); an epsilon that "
            f"differs cannot be compensated by the weights")]
    if same_eps(e_s, e_t):
        return []
    return [f"eps {e_s:g}->{e_t:g} not compensated (not possible for {pair.target.op})",
            Decision(
                f"{pair.target.name}: {pair.target.op} epsilon differs (source "
                f"{_eps_text(e_s, how_s)}, target {_eps_text(e_t, how_t)}); weights cannot "
                f"compensate it (it depends on each input's variance): outputs differ, most "
                f"for inputs of small variance; set the target's epsilon to {e_s:g} for an "
                f"exact port")]


def convert_norm_kind(pair: LayerPair) -> list[TensorPlan]:
    """LayerNorm ⇄ RMSNorm: the gamma is carried; a decision says whether the kinds are known
    to differ (then outputs differ: LayerNorm subtracts the mean, RMSNorm does not) or only a
    state dict's untyped weight-only norm was read as the other kind."""
    plans = convert_input_norm(pair)
    inferred = [l for l in (pair.source, pair.target) if l.attrs.get("inferred")
                and l.op == "layernorm" and [p.role for p in l.params] == ["gamma"]]
    if inferred:
        graph = pair.source_graph if inferred[0] is pair.source else pair.target_graph
        note = Decision(f"{graph.source}: weight-only norms (a state dict does not store the "
                        f"norm type, and no config.json rms_norm_eps says it) are paired with "
                        f"RMSNorm layers: exact only if they are RMSNorms")
    else:
        note = Decision(f"{pair.target.name}: {pair.source.op} {pair.source.name} into "
                        f"{pair.target.op}: the gamma is carried, but the computations differ "
                        f"(LayerNorm subtracts the mean, RMSNorm does not): outputs differ")
    return _attach(plans, [note])


