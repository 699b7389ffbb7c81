"""Conv + BatchNorm across layers: conv bias into the BN mean, fusion and unfusion.

A plan pass, because each case spans two layers the matcher pairs separately. A BatchNorm with
as many channels as a conv (or depthwise conv, or dense) has outputs normalises that conv's
output when it follows it: in the data flow where a reader knew it (``attrs["fed_by"]``: the
one layer the conv feeds, fed by that conv alone), else in the graph's layer order.

* **Bias into the mean.** Source conv with bias + BN, target conv without bias + BN (the BNs
  matched): ``mean' = mean − b``. The reverse (the target conv has a bias the source lacks): the
  target bias is 0 and the BN is carried as is.
* **Unfusion.** An eval-mode ONNX export folds each BN into the conv (``onnx::Conv_N`` names with
  ``dynamo=False``; the dynamo exporter keeps names and marks the node ``FuseBatchNormIntoConv``).
  Into a target Conv(no bias) + BN that the matcher left new: ``W = W_f`` and the BN gets
  ``gamma = 1, beta = b_f, mean = 0, var = 1 − eps``, exact in eval mode. Those statistics are
  synthetic and flagged: re-estimate them before training in train mode.
* **Fusion.** Source conv + BN into a target conv with no BN after it:
  ``s = gamma/sqrt(var + eps)``, ``W_f = W·s`` per output channel, ``b_f = (b − mean)·s + beta``.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

from ...reading.dataflow import FED_BY, consumers
from ... import registry
from ...graph import Layer, Param, ParamGraph
from ..plan import COUNTER, Reason, TensorPlan
from ...transform import Step
from .base import PlanContext
from .generic import cast_steps
from .norm import epsilon_of

FOLDABLE = frozenset({"conv1d", "conv2d", "conv3d", "depthwise_conv1d", "depthwise_conv2d",
                      "dense"})


def kernel_of(layer: Layer) -> Param | None:
    return layer.param("kernel") or layer.param("depthwise_kernel")


def channel_axis(kernel: Param) -> int | list[int] | None:
    """The kernel's output-channel axis (or the adjacent axes c, m of a channels-last depthwise
    kernel, whose row-major index c·M + m is the output channel)."""
    if kernel.axes is None:
        return None
    if "out" in kernel.axes:
        return kernel.axes.index("out")
    if "c" in kernel.axes and "m" in kernel.axes:
        c, m = kernel.axes.index("c"), kernel.axes.index("m")
        return [c, m] if m == c + 1 else None
    return None


def out_channels(layer: Layer) -> int | None:
    kernel = kernel_of(layer)
    axis = channel_axis(kernel) if kernel is not None else None
    if axis is None:
        return None
    axes = axis if isinstance(axis, list) else [axis]
    n = 1
    for a in axes:
        n *= kernel.shape[a]
    return n


def bn_channels(layer: Layer) -> int | None:
    sizes = {p.shape[0] for p in layer.params if len(p.shape) == 1 and p.role != "other"
             and p.role != "num_batches_tracked"}
    return sizes.pop() if len(sizes) == 1 else None


def following_bn(graph: ParamGraph, layer: Layer,
                 feeds: Mapping[str, list[str]] | None = None) -> Layer | None:
    """The BatchNorm normalising ``layer``'s output, if it fits its outputs: where the graph
    knows its data flow (``feeds``: ``dataflow.consumers``), the one layer ``layer`` feeds, fed
    by it alone; otherwise the layer right after it in the graph's order."""
    if feeds is not None and FED_BY in layer.attrs:
        fed = feeds.get(layer.name, [])
        if len(fed) != 1:
            return None
        nxt = graph.layer(fed[0])
        if tuple(nxt.attrs.get(FED_BY, ())) != (layer.name,):
            return None
    else:
        layers = graph.layers
        idx = next(i for i, l in enumerate(layers) if l.name == layer.name)
        if idx + 1 >= len(layers):
            return None
        nxt = layers[idx + 1]
    n = out_channels(layer)
    if nxt.op != "batchnorm" or n is None or bn_channels(nxt) != n:
        return None
    return nxt


def looks_fused(layer: Layer, graph: ParamGraph) -> bool:
    """An exporter folded a BatchNorm into this layer, as its graph's convention tells
    (``Convention.bn_folded``: an ONNX exporter's mark or its name for a folded constant)."""
    return registry.convention(graph.framework).bn_folded(layer, kernel_of(layer))


class _Plans:
    """The pass's view of ctx.tensors by target name (replace in place, keep order)."""

    def __init__(self, ctx: PlanContext):
        self.ctx = ctx
        self.index = ctx.index()

    def get(self, param: Param | None) -> TensorPlan | None:
        if param is None or param.name not in self.index:
            return None
        return self.ctx.tensors[self.index[param.name]]

    def put(self, plan: TensorPlan) -> None:
        self.ctx.tensors[self.index[plan.target]] = plan

    def used(self) -> set[str]:
        return {s for t in self.ctx.tensors for s in t.sources}


def _with(plan: TensorPlan, add_notes=(), **changes) -> TensorPlan:
    """``replace`` that appends ``add_notes`` to the notes (or to the given ``notes``)."""
    notes = tuple(changes.pop("notes", plan.notes)) + tuple(add_notes)
    return replace(plan, notes=notes, **changes)


# ---- the pass ---------------------------------------------------------------------------------

def conv_bn_pass(ctx: PlanContext) -> None:
    src_of = {m.target: m.source for m in ctx.matching.layers}
    plans = _Plans(ctx)
    t_feeds, s_feeds = consumers(ctx.target_graph.layers), consumers(ctx.source_graph.layers)
    for tconv in ctx.target_graph.layers:
        if tconv.op not in FOLDABLE or tconv.name not in src_of:
            continue
        sconv = ctx.source_graph.layer(src_of[tconv.name])
        if sconv.op not in FOLDABLE:
            continue
        tbn = following_bn(ctx.target_graph, tconv, t_feeds)
        sbn = following_bn(ctx.source_graph, sconv, s_feeds)
        if tbn is not None and sbn is not None and src_of.get(tbn.name) == sbn.name:
            move_bias(ctx, plans, sconv, tconv, tbn)
        elif tbn is not None and sbn is None and tbn.name not in src_of and (
                looks_fused(sconv, ctx.source_graph) or (sconv.param("bias") is not None
                                       and tconv.param("bias") is None)):
            unfuse(ctx, plans, sconv, tconv, tbn)
        elif sbn is not None and tbn is None and not (
                {p.name for p in sbn.params} & plans.used()):
            fuse(ctx, plans, sconv, sbn, tconv)


def move_bias(ctx: PlanContext, plans: _Plans, sconv: Layer, tconv: Layer, tbn: Layer) -> None:
    """Both sides Conv + BN; only one conv has a bias."""
    sbias, tbias = sconv.param("bias"), tconv.param("bias")
    if sbias is not None and tbias is None and sbias.name not in plans.used():
        mean = plans.get(tbn.param("moving_mean"))
        if mean is None or len(mean.sources) != 1 or mean.status not in ("transferred",
                                                                          "transformed"):
            ctx.decisions.append(f"{tconv.name}: the source conv's bias {sbias.name} has no "
                                 f"place (the target conv has none and {tbn.name}'s running "
                                 f"mean is not carried); outputs differ")
            return
        note = f"conv bias {sbias.name} folded into the running mean (mean' = mean - b): " \
               f"target conv {tconv.name} has no bias"
        plans.put(_with(mean, status="transformed", sources=mean.sources + (sbias.name,),
                        steps=(Step("subtract"),) + mean.steps, add_notes=[note]))
        kernel = plans.get(kernel_of(tconv))
        if kernel is not None:
            plans.put(_with(kernel, add_notes=[f"the source bias is carried by "
                                               f"{tbn.name}.running_mean (mean' = mean - b)"]))
    elif tbias is not None and sbias is None:
        plan = plans.get(tbias)
        if plan is not None and plan.status == "new":
            plans.put(_with(plan, status="synthetic", value=0.0, notes=(
                "the source conv has no bias: 0 keeps its output (BatchNorm carried as is)",)))


def unfuse(ctx: PlanContext, plans: _Plans, sconv: Layer, tconv: Layer, tbn: Layer) -> None:
    """The source conv carries a fused BatchNorm; the target has Conv + BN."""
    eps, how = epsilon_of(tbn, ctx.target_graph)
    if eps is None or not 0 <= eps < 1:
        ctx.decisions.append(f"{tbn.name}: cannot unfuse {sconv.name} into it: the target "
                             f"BatchNorm's epsilon is {'unknown' if eps is None else eps}")
        return
    sbias, tbias = sconv.param("bias"), tconv.param("bias")
    bias_into_bn = sbias is not None and tbias is None
    beta = tbn.param("beta")
    origin = f"unfused BN (synthetic stats) from fused conv {sconv.name}"
    for p in tbn.params:
        plan = plans.get(p)
        if plan is None:
            continue
        if p.role == "gamma":
            plans.put(_synthetic(plan, 1.0, f"{origin}: gamma = 1"))
        elif p.role == "beta":
            if bias_into_bn:
                plans.put(_with(plan, status="transferred", sources=(sbias.name,),
                                steps=tuple(cast_steps(sbias, p)), notes=(
                                    f"{origin}: beta = the fused conv bias {sbias.name}",)))
            else:
                plans.put(_synthetic(plan, 0.0, f"{origin}: beta = 0 (the fused bias is in "
                                                 f"the conv)"))
        elif p.role == "moving_mean":
            if bias_into_bn and beta is None:     # no beta (center=False): mean = −b_f instead
                plans.put(_with(plan, status="synthetic", sources=(sbias.name,),
                                steps=(Step("scale", {"factor": -1.0}),) + tuple(
                                    cast_steps(sbias, p)), notes=(
                                    f"{origin}: mean = -(fused conv bias) (no beta)",)))
            else:
                plans.put(_synthetic(plan, 0.0, f"{origin}: mean = 0"))
        elif p.role == "moving_var":
            eps_text = f"eps {eps:g}" + ("" if how == "stored" else f", {how}")
            plans.put(_synthetic(plan, 1.0 - eps, f"{origin}: var = 1 - eps ({1.0 - eps:g}, "
                                                  f"{eps_text}); exact in eval mode"))
        elif p.role == "num_batches_tracked":
            # one wording for every BatchNorm: the report groups them in one line
            plans.put(_with(plan, reason=Reason.COUNTER,
                            notes=(f"{COUNTER} (unfused BN, synthetic stats)",)))
    if tbias is not None and sbias is None:
        plan = plans.get(tbias)
        if plan is not None and plan.status == "new":
            plans.put(_synthetic(plan, 0.0, f"the fused conv {sconv.name} has no bias: 0"))
    kernel = plans.get(kernel_of(tconv))
    if kernel is not None:
        plans.put(_with(kernel, add_notes=[f"fused kernel (BatchNorm folded in by the "
                                           f"exporter); {tbn.name} unfused"]))
    # the conv is named in the tensors' notes: this line reads the same for every BatchNorm,
    # so the report says it once for all of them
    ctx.decisions.append(
        f"{tbn.name}: unfused from the conv before it, whose BatchNorm the exporter fused into "
        f"it: gamma=1, beta=fused bias, mean=0, var=1-eps are synthetic (exact in eval mode); "
        f"re-estimate the statistics before training in train mode")


def _synthetic(plan: TensorPlan, value: float, note: str) -> TensorPlan:
    return replace(plan, status="synthetic", sources=(), steps=(), value=value, notes=(note,))


def fuse(ctx: PlanContext, plans: _Plans, sconv: Layer, sbn: Layer, tconv: Layer) -> None:
    """Source Conv + BN into a target conv without a BatchNorm after it."""
    eps, how = epsilon_of(sbn, ctx.source_graph)
    skernel = kernel_of(sconv)
    axis = channel_axis(skernel) if skernel is not None else None
    kernel = plans.get(kernel_of(tconv))
    if eps is None or axis is None or kernel is None or kernel.sources != (skernel.name,):
        ctx.decisions.append(f"{tconv.name}: the source BatchNorm {sbn.name} after {sconv.name} "
                             f"is not carried (epsilon or kernel layout unknown); outputs differ")
        return
    stats = {role: sbn.param(role) for role in ("gamma", "beta", "moving_mean", "moving_var")}
    if stats["moving_mean"] is None or stats["moving_var"] is None:
        ctx.decisions.append(f"{tconv.name}: the source BatchNorm {sbn.name} has no running "
                             f"statistics; not fused")
        return
    eps_text = f"eps {eps:g}" + ("" if how == "stored" else f", {how}")
    if how != "stored":
        ctx.decisions.append(f"source BatchNorm epsilon not stored: fused with the {how} "
                             f"{eps:g}; a model built with another epsilon fuses differently")
    k_parts = [("kernel", skernel), ("gamma", stats["gamma"]), ("var", stats["moving_var"])]
    k_parts = [(n, p) for n, p in k_parts if p is not None]
    fold = Step("bn_fold_kernel", {"eps": eps, "axis": axis, "parts": [n for n, _ in k_parts]})
    plans.put(_with(kernel, status="transformed", sources=tuple(p.name for _, p in k_parts),
                    steps=(fold,) + kernel.steps, add_notes=[
                        f"fused BN {sbn.name} into the kernel (W·gamma/sqrt(var+eps), "
                        f"{eps_text})"]))
    tbias = tconv.param("bias")
    if tbias is None:
        how = registry.convention(ctx.target_graph.framework).hint(
            "fused_bias", "build the target conv with a bias")
        # the BatchNorm is named in the kernel's note: one wording for every conv, one line
        ctx.decisions.append(f"{tconv.name}: the target conv has no bias, so the shift of the "
                             f"source BatchNorm fused into it (beta - mean·gamma/sqrt(var+eps)) "
                             f"has no place: outputs differ ({how})")
        return
    b_parts = [("bias", sconv.param("bias")), ("gamma", stats["gamma"]),
               ("beta", stats["beta"]), ("mean", stats["moving_mean"]),
               ("var", stats["moving_var"])]
    b_parts = [(n, p) for n, p in b_parts if p is not None]
    step = Step("bn_fold_bias", {"eps": eps, "parts": [n for n, _ in b_parts]})
    bias = plans.get(tbias)
    plans.put(replace(bias, status="transformed", sources=tuple(p.name for _, p in b_parts),
                      steps=(step,) + tuple(cast_steps(b_parts[0][1], tbias)), value=None,
                      notes=(f"fused BN {sbn.name} into the bias ((b-mean)·gamma/sqrt(var+eps)"
                             f" + beta, {eps_text})",)))
