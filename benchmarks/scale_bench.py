"""weightmap at scale against its floor: Llama-style bf16 sharded checkpoints of 1.5, 6 and 12 GB.

Run: ``python benchmarks/scale_bench.py [--sizes 1.5 6 12] [--reps 3] [--work DIR] [--blake3]``
(``--blake3`` also times each port with ``--digest blake3``).

For each size it generates once (cached in ``benchmarks/_work/scale/``, git-ignored) a Hugging
Face-style Llama checkpoint — hidden 2048, intermediate 5632, vocab 32000, as many layers as
reach the size; bf16 safetensors shards of at most 2 GB with a ``model.safetensors.index.json``
— and two torch target files written by hand: ``renamed`` (the same layout, Meta's names) and
``fused`` (fused ``qkv`` and ``gate_up`` projections). Then, as whole processes, interleaved,
``--reps`` times each, medians:

  import torch   ``python -c "import torch"`` (a port into a torch model file starts there)
  dio copy       every shard and the index copied with ``dd oflag=direct conv=fsync`` (the
                 durable copy that does not go through the page cache: the floor to hold a
                 port against)
  cp + sync      ``cp -r`` of the folder, then ``sync`` (the page-cache copy; it swings a lot)
  weightmap      ``weightmap port INDEX --to target.py --out out.safetensors --force --quiet``
                 into each target (safetensors output, durable, read back and checked)
  script         the usual hand-written port: load every shard, build the target, rename
                 (and ``torch.cat`` for the fused target), ``load_state_dict``, ``save_file``;
                 only where its peak (~2x the checkpoint) fits in memory

It prints, per size, a table of medians (wall seconds, peak RSS) and the ratios weightmap /
(import torch + dio copy) and script / weightmap, and checks that weightmap's outputs equal
the script's, tensor by tensor (then deletes them: at most two outputs are on the disk at a
time); at the end, one markdown table of all sizes (docs/performance.md keeps the latest).
``--stages`` also times weightmap's stages inside one process (``port_bench.stages``). Not a
test: the figures depend on the machine and its disk.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from port_bench import Run, gb, measure, precompile, stages  # noqa: E402

HIDDEN, INTER, VOCAB, HEADS = 2048, 5632, 32000, 16
SHARD_BYTES = 2 * 10**9

MODEL = r'''
"""A Llama written by hand (benchmarks/scale_bench.py): LAYOUT layout."""
import torch
from torch import nn

HIDDEN, INTER, VOCAB, HEADS, LAYERS = {hidden}, {inter}, {vocab}, {heads}, {layers}
FUSED = {fused}


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        if FUSED:
            self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN, bias=False)
        else:
            self.wq, self.wk, self.wv = (nn.Linear(HIDDEN, HIDDEN, bias=False) for _ in range(3))
        self.wo = nn.Linear(HIDDEN, HIDDEN, bias=False)

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = self.qkv(x).chunk(3, -1) if FUSED else (self.wq(x), self.wk(x), self.wv(x))
        q, k, v = (z.view(b, t, HEADS, e // HEADS).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(y.transpose(1, 2).reshape(b, t, e))


class FeedForward(nn.Module):
    def __init__(self):
        super().__init__()
        if FUSED:
            self.gate_up = nn.Linear(HIDDEN, 2 * INTER, bias=False)
        else:
            self.w1, self.w3 = (nn.Linear(HIDDEN, INTER, bias=False) for _ in range(2))
        self.w2 = nn.Linear(INTER, HIDDEN, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, -1) if FUSED else (self.w1(x), self.w3(x))
        return self.w2(nn.functional.silu(gate) * up)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.ffn_norm = nn.RMSNorm(HIDDEN, eps=1e-5), nn.RMSNorm(HIDDEN, eps=1e-5)
        self.attn, self.ffn = Attention(), FeedForward()

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, HIDDEN)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.RMSNorm(HIDDEN, eps=1e-5)
        self.head = nn.Linear(HIDDEN, VOCAB, bias=False)

    def forward(self, ids):
        x = self.tok(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


model = Llama().to(torch.bfloat16)
'''

# The usual script: everything in memory, names mapped by hand.
SCRIPT = r'''
import json, sys, importlib.util
from pathlib import Path
import torch
from safetensors.torch import load_file, save_file

index, target, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
state = {}
for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
    state.update(load_file(index.parent / shard))
spec = importlib.util.spec_from_file_location("target", target)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
model = module.model
fused = module.FUSED
new = {"tok.weight": state.pop("model.embed_tokens.weight"),
       "norm.weight": state.pop("model.norm.weight"), "head.weight": state.pop("lm_head.weight")}
for i in range(module.LAYERS):
    p = f"model.layers.{i}."
    q, k, v = (state.pop(f"{p}self_attn.{n}_proj.weight") for n in "qkv")
    gate, up = (state.pop(f"{p}mlp.{n}_proj.weight") for n in ("gate", "up"))
    b = f"blocks.{i}."
    if fused:
        new[b + "attn.qkv.weight"] = torch.cat([q, k, v])
        new[b + "ffn.gate_up.weight"] = torch.cat([gate, up])
    else:
        new.update({b + "attn.wq.weight": q, b + "attn.wk.weight": k, b + "attn.wv.weight": v,
                    b + "ffn.w1.weight": gate, b + "ffn.w3.weight": up})
    new[b + "attn.wo.weight"] = state.pop(f"{p}self_attn.o_proj.weight")
    new[b + "ffn.w2.weight"] = state.pop(f"{p}mlp.down_proj.weight")
    new[b + "attn_norm.weight"] = state.pop(f"{p}input_layernorm.weight")
    new[b + "ffn_norm.weight"] = state.pop(f"{p}post_attention_layernorm.weight")
assert not state, list(state)[:5]
model.load_state_dict(new, strict=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
'''


def layer_bytes() -> int:
    return 2 * (4 * HIDDEN * HIDDEN + 3 * HIDDEN * INTER + 2 * HIDDEN)


def layers_for(size_gb: float) -> int:
    fixed = 2 * (2 * VOCAB * HIDDEN + HIDDEN)
    return max(1, round((size_gb * 1e9 - fixed) / layer_bytes()))


def make_checkpoint(folder: Path, layers: int) -> Path:
    """Hugging Face's Llama names, bf16, random values; shards of at most 2 GB, each sorted
    by name by the safetensors library, and the index."""
    import numpy as np
    import torch
    from safetensors.torch import save_file
    rng = np.random.default_rng(0)

    def tensor(*shape: int) -> torch.Tensor:
        # random bf16 of moderate magnitude: the top 16 bits of float32 normals / 30
        f = (rng.standard_normal(shape, dtype=np.float32) / 30).view(np.uint32) >> 16
        return torch.from_numpy(f.astype(np.uint16)).view(torch.bfloat16)

    names: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}."
        names += [(f"{p}self_attn.{n}_proj.weight", (HIDDEN, HIDDEN)) for n in "qkvo"]
        names += [(f"{p}mlp.gate_proj.weight", (INTER, HIDDEN)),
                  (f"{p}mlp.up_proj.weight", (INTER, HIDDEN)),
                  (f"{p}mlp.down_proj.weight", (HIDDEN, INTER)),
                  (f"{p}input_layernorm.weight", (HIDDEN,)),
                  (f"{p}post_attention_layernorm.weight", (HIDDEN,))]
    names += [("model.norm.weight", (HIDDEN,)), ("lm_head.weight", (VOCAB, HIDDEN))]
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    used = 0
    for name, shape in names:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and used + nbytes > SHARD_BYTES:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for k, part in enumerate(shards, start=1):
        file = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file({n: tensor(*s) for n, s in part}, str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n, _ in part})
    index = folder / "model.safetensors.index.json"
    total = sum(2 * int(np.prod(s)) for _, s in names)
    index.write_text(json.dumps({"metadata": {"total_size": total},
                                 "weight_map": dict(sorted(weight_map.items()))}, indent=1))
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": layers, "vocab_size": VOCAB,
        "num_attention_heads": HEADS, "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}))
    return index


def prepare(work: Path, size_gb: float) -> dict[str, Path]:
    layers = layers_for(size_gb)
    folder = work / f"llama_{size_gb:g}gb"
    index = folder / "source" / "model.safetensors.index.json"
    if not index.exists():
        print(f"generating {folder / 'source'} ({layers} layers, once) ...", flush=True)
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import scale_bench as s; "
                "from pathlib import Path; s.make_checkpoint(Path(sys.argv[2]), int(sys.argv[3]))")
        tmp = folder / "source.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-c", code, str(HERE), str(tmp), str(layers)],
                       check=True)
        tmp.rename(folder / "source")
    files = {"index": index, "script": work / "usual_script.py"}
    for kind in ("renamed", "fused"):
        files[kind] = folder / f"target_{kind}.py"
        files[kind].write_text(MODEL.replace("LAYOUT", kind).format(
            hidden=HIDDEN, inter=INTER, vocab=VOCAB, heads=HEADS, layers=layers,
            fused=kind == "fused"))
    files["script"].write_text(SCRIPT)
    return files


def commands(files: dict[str, Path], out: Path, with_script: bool,
             blake3: bool = False) -> dict[str, list[str]]:
    py = sys.executable
    src = files["index"].parent
    shards = sorted(p.name for p in src.iterdir() if p.is_file())
    dio = " && ".join(f'dd if="$1/{n}" of="$2/{n}" bs=8M oflag=direct conv=fsync status=none'
                      for n in shards)
    cmds = {
        "import torch": [py, "-c", "import torch"],
        "dio copy": ["sh", "-c", f'mkdir -p "$2" && {dio}', "sh", str(src), str(out / "dio")],
        "cp + sync": ["sh", "-c", 'cp -r "$1" "$2" && sync', "sh", str(src), str(out / "cp")],
    }
    for kind in ("renamed", "fused"):
        cmds[f"weightmap {kind}"] = [py, "-m", "weightmap", "port", str(files["index"]), "--to",
                                     str(files[kind]), "--out",
                                     str(out / f"wm_{kind}.safetensors"), "--force", "--quiet"]
        if blake3:              # the same port with --digest blake3
            cmds[f"blake3 {kind}"] = cmds[f"weightmap {kind}"][:-3] + [
                str(out / f"b3_{kind}.safetensors"), "--force", "--quiet", "--digest", "blake3"]
        if with_script:
            cmds[f"script {kind}"] = [py, str(files["script"]), str(files["index"]),
                                      str(files[kind]), str(out / f"script_{kind}.safetensors")]
    return cmds


def clear(out: Path, label: str) -> None:
    """A run's output goes once it is measured (and compared), and the file system is flushed
    before the next run: at most two outputs are on the disk at a time (a 12 GB size needs
    about 36 GB with its source)."""
    stem = {"dio copy": "dio", "cp + sync": "cp"}.get(label)
    if stem:
        shutil.rmtree(out / stem, ignore_errors=True)
    elif label.startswith(("weightmap", "script", "blake3")):
        kind = label.split()[1]
        prefix = {"weightmap": "wm", "blake3": "b3"}.get(label.split()[0], "script")
        for p in out.glob(f"{prefix}_{kind}.*"):
            p.unlink()
    os.sync()


def warm(src: Path) -> None:
    """Read the source through the page cache before a measured run (not timed): the figures
    are for a warm source, and the usual script's 12-16 GB at 6 GB evicts part of it, which
    slowed whatever ran next (the fused port, the direct-I/O copy) by up to 2x."""
    buf = bytearray(64 << 20)
    for p in sorted(src.iterdir()):
        if p.is_file():
            with open(p, "rb", buffering=0) as fh:
                while fh.readinto(buf):
                    pass


def same_tensors(a: Path, b: Path) -> str:
    """Same names, dtypes, shapes and bits, tensor by tensor."""
    import torch
    from safetensors import safe_open
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        if sorted(fa.keys()) != sorted(fb.keys()):
            return "different names"
        for name in fa.keys():
            x, y = fa.get_tensor(name), fb.get_tensor(name)
            if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(
                    x.view(torch.int16), y.view(torch.int16)):
                return f"tensor {name} differs"
    return "identical"


def run_size(work: Path, size_gb: float, reps: int, script_limit: float,
             with_stages: bool = False, blake3: bool = False) -> str:
    """Measure one size, print its figures; its row of the summary table."""
    files = prepare(work, size_gb)
    src = files["index"].parent
    size = sum(p.stat().st_size for p in src.iterdir() if p.suffix == ".safetensors")
    out = work / f"llama_{size_gb:g}gb" / "out"
    out.mkdir(exist_ok=True)
    if with_stages:
        for kind in ("renamed", "fused"):
            print(f"\n{gb(size)}, weightmap into the {kind} target in stages (median of {reps}):")
            print(stages({"source": files["index"], "target": files[kind]}, out, reps),
                  flush=True)
        (out / "stages.safetensors").unlink(missing_ok=True)
    with_script = 2.2 * size < script_limit
    cmds = commands(files, out, with_script, blake3)
    env = dict(os.environ, PYTHONHASHSEED="0")
    load = os.getloadavg()[0]
    results: dict[str, list[Run]] = {}
    verdict: dict[str, str] = {}
    for label in cmds:
        clear(out, label)
    for _ in range(reps):
        for label, cmd in cmds.items():       # interleaved: drift affects all alike
            warm(src)
            results.setdefault(label, []).append(measure(cmd, env))
            kind = label.split()[-1]
            if label.startswith("weightmap") and f"script {kind}" in cmds and kind not in verdict:
                continue                      # kept until the script's output is there
            if label.startswith("script") and kind not in verdict:
                verdict[kind] = same_tensors(out / f"wm_{kind}.safetensors",
                                             out / f"script_{kind}.safetensors")
                clear(out, f"weightmap {kind}")
            clear(out, label)
    med = {k: Run(statistics.median(r.wall for r in v), int(statistics.median(r.rss for r in v)),
                  statistics.median(r.cpu for r in v)) for k, v in results.items()}
    print(f"\n{gb(size)} ({layers_for(size_gb)} layers, {len(list(src.glob('*.safetensors')))} "
          f"shards), {reps} runs each, medians; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    for label, r in med.items():
        walls = ", ".join(f"{x.wall:.2f}" for x in results[label])
        print(f"  {label:18s} wall {r.wall:6.2f} s  peak RSS {gb(r.rss):>8}   ({walls})")
    floor = med["import torch"].wall + med["dio copy"].wall
    print(f"  floor = import torch + dio copy = {floor:.2f} s")
    for kind in ("renamed", "fused"):
        w = med[f"weightmap {kind}"]
        line = f"  weightmap {kind}: {w.wall / floor:.2f}x the floor"
        if f"script {kind}" in med:
            line += f", script / weightmap {med[f'script {kind}'].wall / w.wall:.2f}x; outputs " \
                    + verdict[kind]
        else:
            line += " (script not run: it needs about 2x the checkpoint in memory)"
        if f"blake3 {kind}" in med:
            line += f"; with --digest blake3 {med[f'blake3 {kind}'].wall / floor:.2f}x"
        print(line)

    def cell(label: str) -> str:
        r = med.get(label)
        return "not run" if r is None else f"{r.wall:.2f} s, {gb(r.rss)}"
    ratios = " / ".join(f"{med[f'weightmap {k}'].wall / floor:.2f}x" for k in ("renamed", "fused"))
    if blake3:
        ratios += " (blake3: " + " / ".join(f"{med[f'blake3 {k}'].wall / floor:.2f}x"
                                           for k in ("renamed", "fused")) + ")"
    return (f"| {gb(size)} | {med['import torch'].wall:.2f} s | {med['dio copy'].wall:.2f} s | "
            f"{med['cp + sync'].wall:.2f} s | {cell('weightmap renamed')} | "
            f"{cell('weightmap fused')} | {cell('script renamed')} | {cell('script fused')} | "
            f"{ratios} |")


TABLE_HEAD = ("| size | `import torch` | direct-I/O copy | `cp -r` + `sync` | weightmap, renamed "
              "| weightmap, fused | script, renamed | script, fused | weightmap / (import torch "
              "+ direct-I/O copy), renamed / fused |\n|---|---|---|---|---|---|---|---|---|")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="*", default=[1.5, 6, 12])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--work", type=Path, default=HERE / "_work" / "scale")
    ap.add_argument("--script-memory", type=float, default=0.8 * os.sysconf("SC_PAGE_SIZE")
                    * os.sysconf("SC_PHYS_PAGES"),
                    help="run the usual script only where ~2.2x the checkpoint fits in this")
    ap.add_argument("--stages", action="store_true",
                    help="also time weightmap's stages inside one process (medians)")
    ap.add_argument("--blake3", action="store_true",
                    help="also time each port with --digest blake3 (needs the blake3 package)")
    args = ap.parse_args(argv)
    precompile()
    print(f"{os.cpu_count()} CPUs; Llama-style bf16 checkpoints (hidden {HIDDEN}, intermediate "
          f"{INTER}, vocab {VOCAB})")
    rows = [run_size(args.work, size, args.reps, args.script_memory, args.stages, args.blake3)
            for size in args.sizes]
    print(f"\nMedians of {args.reps} (wall, peak RSS):\n{TABLE_HEAD}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
