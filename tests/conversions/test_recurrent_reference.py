"""Numpy LSTM/GRU cells in each convention's own tensors, checked here against torch, Keras and
onnxruntime; the recurrent conversion tests load this file (``load_reference()``) and judge every
conversion by the outputs these cells compute.

Each convention is read the way CONVERSIONS.md describes it: torch ``weight_ih_l{k}[_reverse]``
(gates ifgo / rzn, two biases), Keras ``kernel (in, G·H)`` (ifco / zrh, one bias or ``(2, 3H)``),
ONNX ``W/R (directions, G·H, ·)`` and ``B = [Wb; Rb]`` (iofc / zrh).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from weightmap.graph import ArrayData, Layer, Param
from weightmap import registry

GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}
# canonical gate letters: torch's g is the candidate c, the GRU's n is h
CANON = {"g": "c", "n": "h"}


def gate_order(framework, op):
    return registry.convention(framework).gate_orders.get(op, "h")         # a simple RNN has one block


def load_reference():
    """This module, for other test files (pytest runs with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("recurrent_reference", Path(__file__))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _blocks(w, order, units):
    """Gate blocks of a (G·H, ...) array by canonical letter."""
    order = "".join(CANON.get(g, g) for g in order)
    return {g: w[i * units:(i + 1) * units] for i, g in enumerate(order)}


def run_cell(op, x, wx, wh, bx, bh, order, *, reverse=False, reset_after=True):
    """One direction over x (batch, time, in): wx (G·H, in), wh (G·H, H), biases (G·H,)."""
    units = wh.shape[1]
    wx, wh, bx, bh = (_blocks(a, order, units) for a in (wx, wh, bx, bh))
    batch, steps, _ = x.shape
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    out = np.zeros((batch, steps, units))
    times = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in times:
        xt = x[:, t]

        def pre(g, with_h=True):
            return xt @ wx[g].T + bx[g] + ((h @ wh[g].T + bh[g]) if with_h else 0)
        if op == "simple_rnn":
            h = np.tanh(pre("h"))
        elif op == "lstm":
            i, f, o = _sig(pre("i")), _sig(pre("f")), _sig(pre("o"))
            c = f * c + i * np.tanh(pre("c"))
            h = o * np.tanh(c)
        else:
            r, z = _sig(pre("r")), _sig(pre("z"))
            if reset_after:
                n = np.tanh(xt @ wx["h"].T + bx["h"] + r * (h @ wh["h"].T + bh["h"]))
            else:
                n = np.tanh(xt @ wx["h"].T + bx["h"] + (r * h) @ wh["h"].T + bh["h"])
            h = (1 - z) * n + z * h
        out[:, t] = h
    return out


def _both(op, x, cells, **kw):
    """Forward cell, then the backward one if any, concatenated on features."""
    outs = [run_cell(op, x, *cell, reverse=(d == "backward"), **kw) for d, cell in cells]
    return np.concatenate(outs, axis=-1)


# ----------------------------------------------------------------- conventions
def run_torch(op, params, x, num_layers=1, bidirectional=False, prefix="rnn."):
    order = gate_order("torch", op)
    for k in range(num_layers):
        cells = []
        for d, suffix in (("forward", ""), ("backward", "_reverse"))[:1 + bidirectional]:
            g = {n: params[f"{prefix}{n}_l{k}{suffix}"] for n in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            cells.append((d, (g["weight_ih"], g["weight_hh"], g["bias_ih"], g["bias_hh"],
                              order)))
        x = _both(op, x, cells)
    return x


def run_keras(op, cells, x, reset_after=True):
    """cells: [(direction, (kernel, recurrent_kernel, bias))]."""
    order = gate_order("keras", op)
    out = []
    for d, (k, rk, b) in cells:
        gh = k.shape[1]
        if b is None:
            bx = bh = np.zeros(gh)
        elif b.ndim == 2:
            bx, bh = b[0], b[1]
        else:
            bx, bh = b, np.zeros(gh)
        out.append((d, (k.T, rk.T, bx, bh, order)))
    return _both(op, x, out, reset_after=reset_after)


def run_onnx(op, w, r, b, x, direction="forward", lbr=1):
    order = gate_order("onnx", op)
    dirs = {"bidirectional": ("forward", "backward"), "reverse": ("backward",)}.get(
        direction, ("forward",))
    gh = w.shape[1]
    cells = [(d, (w[i], r[i], b[i][:gh], b[i][gh:], order)) for i, d in enumerate(dirs)]
    return _both(op, x, cells, reset_after=bool(lbr))


# ----------------------------------------------------------------- graph layers
def param(framework, op, name, role, arr):
    return Param(name, role, tuple(arr.shape), str(arr.dtype),
                 registry.convention(framework).axes(op, role, arr.ndim), ArrayData(arr))


def torch_params(op, n_in, units, rng, num_layers=1, bidirectional=False, bias=True,
                 prefix="rnn.", dtype=np.float64):
    out = {}
    gh = GATES[op] * units
    for k in range(num_layers):
        width = n_in if k == 0 else units * (1 + bidirectional)
        for suffix in ("", "_reverse")[:1 + bidirectional]:
            out[f"{prefix}weight_ih_l{k}{suffix}"] = rng.standard_normal((gh, width))
            out[f"{prefix}weight_hh_l{k}{suffix}"] = rng.standard_normal((gh, units))
            if bias:
                out[f"{prefix}bias_ih_l{k}{suffix}"] = rng.standard_normal(gh)
                out[f"{prefix}bias_hh_l{k}{suffix}"] = rng.standard_normal(gh)
    return {n: (0.5 * a).astype(dtype) for n, a in out.items()}


_TORCH_ROLE = {"weight_ih": "kernel", "weight_hh": "recurrent_kernel", "bias_ih": "bias",
               "bias_hh": "recurrent_bias"}


def torch_layer(op, params, name="rnn", num_layers=1, bidirectional=False):
    ps = [param("torch", op, n, _TORCH_ROLE[n.rsplit(".", 1)[-1].split("_l")[0]], a)
          for n, a in params.items()]
    units = next(a for n, a in params.items() if "weight_hh" in n).shape[1]
    attrs = {"units": units, "num_layers": num_layers, "bidirectional": bidirectional}
    if op in registry.convention("torch").gate_orders:
        attrs["gate_order"] = registry.convention("torch").gate_orders[op]
    return Layer(name, op, tuple(ps), attrs)


def keras_cells(op, n_in, units, rng, bidirectional=False, bias="auto", reset_after=True,
                dtype=np.float64):
    gh = GATES[op] * units
    cells = []
    for d in ("forward", "backward")[:1 + bidirectional]:
        b = None
        if bias:
            b = rng.standard_normal((2, gh) if op == "gru" and reset_after else (gh,))
        cells.append((d, tuple(None if a is None else (0.5 * a).astype(dtype) for a in (
            rng.standard_normal((n_in, gh)), rng.standard_normal((units, gh)), b))))
    return cells


def keras_layer(op, cells, name="rnn", reset_after=None, attrs=None):
    ps, dirs = [], {}
    for d, arrays in cells:
        names = []
        for role, arr in zip(("kernel", "recurrent_kernel", "bias"), arrays):
            if arr is None:
                continue
            pname = f"{name}/{d}_layer/cell/{role}" if len(cells) > 1 else f"{name}/cell/{role}"
            ps.append(param("keras", op, pname, role, arr))
            names.append(pname)
        dirs[d] = tuple(names)
    a = {"units": cells[0][1][1].shape[0]}
    if op in registry.convention("keras").gate_orders:
        a["gate_order"] = registry.convention("keras").gate_orders[op]
    if op == "gru" and reset_after is not None:
        a["reset_after"] = reset_after
    if len(cells) > 1:
        a.update(bidirectional=True, directions=dirs)
    a.update(attrs or {})
    return Layer(name, op, tuple(ps), a)


def onnx_arrays(op, n_in, units, rng, dirs=1, bias=True, dtype=np.float64):
    gh = GATES[op] * units
    w = rng.standard_normal((dirs, gh, n_in))
    r = rng.standard_normal((dirs, gh, units))
    b = rng.standard_normal((dirs, 2 * gh)) if bias else None
    return tuple(None if a is None else (0.5 * a).astype(dtype) for a in (w, r, b))


def onnx_layer(op, w, r, b, name="/rnn/LSTM", direction="forward", lbr=1, attrs=None):
    ps = [param("onnx", op, f"{name}.W", "kernel", w), param("onnx", op, f"{name}.R",
                                                            "recurrent_kernel", r)]
    if b is not None:
        ps.append(param("onnx", op, f"{name}.B", "bias", b))
    a = {"hidden_size": r.shape[2], "direction": direction, "num_directions": w.shape[0]}
    if op in registry.convention("onnx").gate_orders:
        a["gate_order"] = registry.convention("onnx").gate_orders[op]
    if op == "gru":
        a["linear_before_reset"] = lbr
    a.update(attrs or {})
    return Layer(name, op, tuple(ps), a)


# ----------------------------------------------------------------- the references are right
N_IN, UNITS, BATCH, STEPS = 3, 4, 2, 5


def _x(rng, n_in=N_IN):
    return rng.standard_normal((BATCH, STEPS, n_in))


@pytest.mark.parametrize("op", ["lstm", "gru", "simple_rnn"])
def test_torch_reference_matches_torch(op):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple_rnn": torch.nn.RNN}[op]
    m = cls(N_IN, UNITS, num_layers=2, bidirectional=True, batch_first=True).double()
    x = _x(np.random.default_rng(1))
    params = {f"rnn.{k}": v.detach().numpy() for k, v in m.state_dict().items()}
    with torch.no_grad():
        want = m(torch.from_numpy(x))[0].numpy()
    got = run_torch(op, params, x, num_layers=2, bidirectional=True)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("op,reset_after", [("lstm", None), ("gru", True), ("gru", False),
                                             ("simple_rnn", None)])
def test_keras_reference_matches_keras(op, reset_after):
    keras = pytest.importorskip("keras")
    kw = {} if reset_after is None else {"reset_after": reset_after}
    inner = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
             "simple_rnn": keras.layers.SimpleRNN}[op](
        UNITS, return_sequences=True, **kw)
    layer = keras.layers.Bidirectional(inner)
    rng = np.random.default_rng(2)
    x = _x(rng).astype(np.float32)
    layer(x)                                       # build
    cells = keras_cells(op, N_IN, UNITS, rng, bidirectional=True, dtype=np.float32,
                        reset_after=bool(reset_after) if op == "gru" else True)
    layer.set_weights([a for _, arrays in cells for a in arrays])
    want = np.asarray(layer(x))
    got = run_keras(op, cells, x.astype(np.float64), reset_after=bool(reset_after))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,lbr", [("lstm", 0), ("gru", 1), ("gru", 0), ("simple_rnn", 0)])
def test_onnx_reference_matches_onnxruntime(op, lbr):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    w, r, b = (a.astype(np.float32) for a in onnx_arrays(op, N_IN, UNITS, rng, dirs=2))
    attrs = {"hidden_size": UNITS, "direction": "bidirectional"}
    if op == "gru":
        attrs["linear_before_reset"] = lbr
    op_type = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}[op]
    node = helper.make_node(op_type, ["X", "W", "R", "B"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [STEPS, BATCH, N_IN])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    x = _x(rng).astype(np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"X": x.transpose(1, 0, 2).copy()})[0]      # (T, dirs, B, H)
    want = y.transpose(2, 0, 1, 3).reshape(BATCH, STEPS, 2 * UNITS)
    got = run_onnx(op, w, r, b, x.astype(np.float64), "bidirectional", lbr)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
