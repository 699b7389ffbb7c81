"""Does a manifest (or plan) describe the weights it would pair (``equivalence.provenance``):
names and shapes against the target and the weights, digests of the smallest tensors."""
import numpy as np
from safetensors.numpy import save_file

from weightmap import read
from weightmap.equivalence import provenance
from weightmap.readback import digest

RNG = np.random.default_rng(0)


def _weights(path, **shapes):
    save_file({n: RNG.standard_normal(s).astype(np.float32) for n, s in shapes.items()},
              str(path))
    return path


def _manifest(path):
    return {"params": {p.name: {"shape": list(p.shape), "sha256": digest(p)["sha256"]}
                       for p in read(path).params()}}


def test_a_manifest_of_these_weights_describes_them(tmp_path):
    w = _weights(tmp_path / "w.safetensors", **{"fc.weight": (3, 4), "fc.bias": (3,)})
    assert provenance.mismatch(_manifest(w), read(w), w) is None
    plan = {"tensors": [{"target": "fc.weight", "shape": [3, 4]},
                        {"target": "fc.bias", "shape": [3]}]}
    assert provenance.mismatch(plan, read(w), w) is None


def test_names_shapes_and_digests_that_differ_say_which(tmp_path):
    w = _weights(tmp_path / "w.safetensors", **{"fc.weight": (3, 4), "fc.bias": (3,)})
    manifest = _manifest(w)
    other = _weights(tmp_path / "o.safetensors", **{"fc.weight": (3, 4), "fc.bias": (3,)})
    assert provenance.mismatch(manifest, read(other), other) == \
        "the SHA-256 of fc.bias in the weights is not the one it recorded"
    head = _weights(tmp_path / "h.safetensors", **{"fc.weight": (5, 4), "fc.bias": (5,)})
    assert provenance.mismatch(manifest, read(head), head) == \
        "fc.bias is (5,) in the target, (3,) in it"
    more = _weights(tmp_path / "m.safetensors",
                    **{"fc.weight": (3, 4), "fc.bias": (3,), "out.weight": (2, 3)})
    assert provenance.mismatch(manifest, read(more), more) == \
        "it lists no out.weight of the target"
    assert provenance.mismatch(manifest, read(w), more) == \
        "it lists no out.weight of the weights"
    assert provenance.mismatch(_manifest(more), read(w), w) == \
        "the target has no out.weight"


def test_only_the_smallest_tensors_are_digested(tmp_path, monkeypatch):
    w = _weights(tmp_path / "w.safetensors", **{"big": (64, 64), "small": (4,)})
    manifest = _manifest(w)
    manifest["params"]["big"]["sha256"] = "0" * 64          # beyond the budget: not read
    monkeypatch.setattr(provenance, "DIGEST_BUDGET", 1024)
    assert provenance.mismatch(manifest, read(w), w) is None
    monkeypatch.setattr(provenance, "DIGEST_BUDGET", 1 << 20)
    assert "SHA-256 of big" in provenance.mismatch(manifest, read(w), w)
