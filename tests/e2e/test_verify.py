"""``weightmap verify`` and ``port --verify`` on real models (issue 11).

A Keras 3 network (``models/proof_keras.py``) saved as ``.keras`` is ported into its torch twin
(``models/proof_torch.py``). The exact port proves itself, figures in the manifest; plans
broken on purpose — two same-shaped convs swapped, the BatchNorm epsilon compensation removed,
the flatten permutation dropped — fail and name the layer that broke, with no output left; a
new head verifies the trunk and says so; a source that is weights only cannot be run and says
what to pass.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import weightmap  # noqa: E402
from weightmap.errors import VerifyError  # noqa: E402
from weightmap.plans import Plan  # noqa: E402

MODELS = Path(__file__).parent / "models"
TORCH = MODELS / "proof_torch.py"
ROOT = Path(__file__).resolve().parents[2]


def _build_keras(**options):
    spec = importlib.util.spec_from_file_location("proof_keras", MODELS / "proof_keras.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(keras, **options)


@pytest.fixture(scope="module")
def source(tmp_path_factory, randomised_keras):
    """Random weights, non-zero biases; BatchNorm variances of 1e-6 in every third channel,
    where Keras' epsilon 1e-3 against torch's 1e-5 weighs."""
    keras.utils.set_random_seed(0)
    model = randomised_keras(_build_keras(), tiny_variance_every=3)
    path = tmp_path_factory.mktemp("proof") / "proof.keras"
    model.save(path)
    return path


def test_exact_port_proves_itself_and_the_manifest_says_so(source, tmp_path, proven):
    out = tmp_path / "net.safetensors"
    report = weightmap.port(source, TORCH, out, verify=True)
    result = proven(report)
    assert [(l.target, l.source) for l in result.layers] == [
        ("conv1", "c1"), ("conv2", "c2"), ("conv3", "c3"), ("bn", "bn"), ("fc", "fc")]
    assert result.probe["shape"] == [2, 3, 8, 8] and result.probe["seed"] == 0
    assert result.probe["layout"] == {"source": "channels_last", "target": "channels_first"}
    assert "example_input" in result.probe["origin"]
    assert "relu (fused in the source layer)" in result.layers[0].note
    saved = json.loads((tmp_path / "net.manifest.json").read_text())["verify"]
    assert saved == report.manifest["verify"] == result.to_dict()
    assert saved["passed"] and saved["first_divergence"] is None
    assert saved["compared_up_to"] is None
    assert set(saved["probe"]) >= {"shape", "dtype", "origin", "seed", "layout"}
    assert set(saved["layers"][0]) >= {"source", "target", "depth", "max_abs", "rel", "status",
                                       "note"}
    assert "verify passed" in weightmap.report.render(report)
    # and standalone, from the files (the manifest beside the weights pairs the layers)
    again = weightmap.verify(source, TORCH, out)
    assert again.passed and [l.rel for l in again.layers] == [l.rel for l in result.layers]


def test_a_softmax_classifier_into_a_model_returning_logits(tmp_path, randomised_keras):
    """Keras' ``Dense(activation="softmax")`` returns probabilities, the torch twin its
    logits: the outputs differ by the softmax alone. Verification passes and says so; the
    same port with the flatten permutation dropped still fails."""
    keras.utils.set_random_seed(1)
    path = tmp_path / "softmax.keras"
    randomised_keras(_build_keras(head_activation="softmax")).save(path)
    report = weightmap.port(path, TORCH, tmp_path / "net.safetensors", verify=True)
    (output,) = report.verify.outputs
    assert report.verify.passed and output.status == "ok" and output.rel <= 1e-5
    assert output.note.startswith("agrees once softmax is applied to the target's output")
    assert "fc applies softmax inside it" in report.verify.summary()
    broken = _edited(path, "flatten")
    with pytest.raises(VerifyError, match="first divergence: fc <- fc"):
        weightmap.port(path, TORCH, tmp_path / "broken.safetensors", plan=broken, verify=True)
    assert not (tmp_path / "broken.safetensors").exists()
    # failing, the output figure is the one past the softmax too (the target returns fc's
    # values): the last pair's own figure, not probabilities against logits (before: rel 1.8
    # on a VGG16 whose last pair differed by 3.5e-3)
    result = weightmap.port(path, TORCH, tmp_path / "broken.safetensors", plan=broken,
                            verify="warn").verify
    (output,), fc = result.outputs, result.layers[-1]
    assert output.status == "diverged" and fc.target == "fc" and output.rel == fc.rel
    assert output.note == ("compared once softmax is applied to the target's output: the "
                           "source's last layer fc applies softmax inside it, the target model "
                           "returns the values before it")
    assert "outputs differ to rel" in result.summary() and output.note in result.summary()


def _edited(source, edit):
    """The plan of the exact port, broken on purpose."""
    data = weightmap.plan(source, TORCH).to_dict()
    by_name = {t["target"]: t for t in data["tensors"]}
    if edit == "swap":                  # conv2 and conv3 have the same shape
        for role in ("weight", "bias"):
            a, b = by_name[f"conv2.{role}"], by_name[f"conv3.{role}"]
            a["sources"], b["sources"] = b["sources"], a["sources"]
    elif edit == "eps":                 # gamma copied as stored: eps 1e-3 -> 1e-5 ignored
        gamma = by_name["bn.weight"]
        assert [s["op"] for s in gamma["steps"]] == ["bn_eps_gamma"]
        gamma.update(sources=gamma["sources"][:1], steps=[], status="transferred")
    elif edit == "flatten":             # a plain transpose, as if both flattened alike
        kernel = by_name["fc.weight"]
        assert [s["op"] for s in kernel["steps"]] == ["flatten_permute", "transpose"]
        kernel["steps"] = kernel["steps"][1:]
    return Plan.from_dict(data)


@pytest.mark.parametrize("edit,where", [("swap", ("conv2", "c3")), ("eps", ("bn", "bn")),
                                        ("flatten", ("fc", "fc"))])
def test_broken_plans_fail_and_name_the_layer_that_broke(source, tmp_path, edit, where):
    plan = _edited(source, edit)
    out = tmp_path / "net.safetensors"
    with pytest.raises(VerifyError) as caught:
        weightmap.port(source, TORCH, out, plan=plan, verify=True)
    assert caught.value.exit_code == 10
    assert f"first divergence: {where[0]} <- {where[1]}" in str(caught.value)
    assert not out.exists() and not (tmp_path / "net.manifest.json").exists()
    assert list(tmp_path.iterdir()) == []                  # no temporary file either

    report = weightmap.port(source, TORCH, out, plan=plan, verify="warn")
    assert out.exists()                                    # warn keeps the output
    first = report.verify.first_divergence
    assert (first["target"], first["source"]) == where
    assert first["rel"] > 1e-3
    if where != ("conv1", "c1"):
        assert first["inputs_rel"] is not None and first["inputs_rel"] <= 1e-5
    assert not report.verify.passed and report.manifest["verify"]["passed"] is False
    before = [l for l in report.verify.layers if l.depth < [l.target for l in
                                                          report.verify.layers].index(where[0])]
    assert all(l.status == "ok" for l in before)


def test_feature_extraction_verifies_the_trunk_and_says_so(source, tmp_path):
    out = tmp_path / "new_head.safetensors"
    report = weightmap.port(source, f"{TORCH}:new_head", out, verify=True)
    result = report.verify
    assert result.passed
    assert result.compared_up_to["target"] == "bn" and result.compared_up_to["source"] == "bn"
    assert "fc is new" in result.compared_up_to["reason"]
    assert [o.status for o in result.outputs] == ["skipped"]
    assert [l.status for l in result.layers] == ["ok"] * 4      # fc is new: no pair
    text = result.summary()
    assert text.startswith("verify passed on 4 of 4 paired layers (up to bn <- bn; the "
                           "target's fc is new")


@pytest.fixture(scope="module")
def state_dict(tmp_path_factory):
    model = weightmap.read(f"{TORCH}:model").live
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    path = tmp_path_factory.mktemp("sd") / "net.pt"
    torch.save(model.state_dict(), path)
    return path


def test_a_bare_state_dict_cannot_be_run_without_its_model_file(state_dict, tmp_path,
                                                                proven):
    out = tmp_path / "net.safetensors"
    with pytest.raises(VerifyError) as caught:
        weightmap.port(state_dict, TORCH, out, verify=True)
    text = str(caught.value)
    # the Python API names its keyword (the command line, --source-model)
    assert "cannot run the source" in text and "source_model=FILE.py" in text
    assert not out.exists()
    report = weightmap.port(state_dict, TORCH, out, verify="warn")
    assert out.exists() and not report.verify.passed
    assert not report.verify.layers and not report.verify.outputs
    assert report.manifest["verify"]["passed"] is False
    report = weightmap.port(state_dict, TORCH, tmp_path / "again.safetensors", verify=True,
                            source_model=TORCH)
    proven(report)
    assert "the tensors of" in report.verify.ran["source"]


def test_cli_port_verify_and_verify(source, tmp_path, capsys):
    from weightmap.cli import main
    plan = tmp_path / "broken.json"
    plan.write_text(_edited(source, "swap").to_json())
    out = tmp_path / "net.safetensors"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "adapters")]))
    run = subprocess.run([sys.executable, "-m", "weightmap", "port", str(source), "--to",
                          str(TORCH), "--out", str(out), "--plan", str(plan), "--verify"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 10, run.stderr
    assert run.stderr.startswith("weightmap: error: ") and run.stderr.count("\n") == 1, \
        run.stderr
    assert "first divergence: conv2 <- c3" in run.stderr and not out.exists()

    assert main(["port", str(source), "--to", str(TORCH), "--out", str(out), "--plan",
                 str(plan), "--verify=warn"]) == 0
    assert out.exists()
    assert "verify FAILED" in capsys.readouterr().out
    assert main(["verify", str(source), "--to", str(TORCH), "--weights", str(out),
                 "--json"]) == 10
    data = json.loads(capsys.readouterr().out)
    assert data["first_divergence"]["target"] == "conv2" and not data["passed"]

    good = tmp_path / "good.safetensors"
    assert main(["port", str(source), "--to", str(TORCH), "--out", str(good), "-q"]) == 0
    assert main(["verify", str(source), "--to", str(TORCH), "--weights", str(good), "--tol",
                 "1e-5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("verify passed") and "conv2 <- c2" in text
    page = tmp_path / "good.html"          # the mapping report, with this verification drawn
    assert main(["verify", str(source), "--to", str(TORCH), "--weights", str(good),
                 "--report", str(page)]) == 0
    html = page.read_text(encoding="utf-8")
    assert '"verify":{"passed":true' in html and '"first_divergence":null' in html
    assert "verify" not in json.loads((tmp_path / "good.manifest.json").read_text())
    assert main(["port", str(source), "--to", str(TORCH), "--verify=maybe"]) == 2


def test_verification_options_without_verification_are_refused(source, tmp_path, capsys):
    """``--tol`` (``verify_tol=``) without ``--verify`` would be ignored: a usage error naming
    ``--verify``, nothing written (before: exit 0, no word). ``--source-model`` describes a
    weights-only source for the plan too: it is not refused."""
    from weightmap.cli import main
    from weightmap.errors import UsageError
    out = tmp_path / "net.safetensors"
    assert main(["port", str(source), "--to", str(TORCH), "--out", str(out), "--tol",
                 "1e-3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("weightmap: error: --tol serves verification, and this port does "
                          "not verify") and "add --verify" in err and "Python" not in err, err
    with pytest.raises(UsageError, match="verify_tol serves verification.*add verify=True"):
        weightmap.port(source, TORCH, out, verify_tol=1e-3)
    with pytest.raises(UsageError, match="tolerance must be a positive number"):
        weightmap.port(source, TORCH, out, verify=True, verify_tol=0)
    assert list(tmp_path.iterdir()) == []


def test_verify_finds_a_sharded_output_by_the_name_given_to_out(source, tmp_path, capsys):
    """``port --out X.safetensors --shard-size ...`` writes shards and the index
    ``X.safetensors.index.json``; ``verify --weights X.safetensors`` verifies through that index
    and says so (before: exit 2, ``no such weights file``)."""
    from weightmap.cli import main
    out = tmp_path / "net.safetensors"
    report = weightmap.port(source, TORCH, out, shard_size=2000)
    assert report.output == str(tmp_path / "net.safetensors.index.json") and not out.exists()
    assert len(list(tmp_path.glob("net-*-of-*.safetensors"))) > 1
    result = weightmap.verify(source, TORCH, out)
    assert result.passed and len(result.layers) == 5
    assert "net.safetensors is sharded: its index net.safetensors.index.json was verified" \
        in result.notes
    assert main(["verify", str(source), "--to", str(TORCH), "--weights", str(out)]) == 0
    assert "its index net.safetensors.index.json was verified" in capsys.readouterr().out


def test_a_manifest_that_does_not_describe_the_weights_is_not_trusted(source, tmp_path):
    """``weightmap verify`` pairs the layers with the manifest beside the weights only when it
    describes them: its tensors' names and shapes are the weights' and the target's, and the
    digests of the smallest tensors agree. Another port's manifest (a feature-extraction
    port's, beside the full port's weights; the full port's, beside weights written by an
    edited plan) is set aside and the plan made again, with a note (before: used silently,
    4 pairs compared, outputs skipped, passed)."""
    full, head = tmp_path / "full.safetensors", tmp_path / "head.safetensors"
    weightmap.port(source, TORCH, full)
    weightmap.port(source, f"{TORCH}:new_head", head)
    (tmp_path / "full.manifest.json").write_bytes((tmp_path / "head.manifest.json").read_bytes())
    result = weightmap.verify(source, TORCH, full)
    assert result.passed and len(result.layers) == 5 and result.compared_up_to is None
    assert [o.status for o in result.outputs] == ["ok"]
    (note,) = [n for n in result.notes if "full.manifest.json" in n]
    assert note.startswith("the manifest beside full.safetensors (full.manifest.json) does not "
                           "describe these weights (")
    assert note.endswith("): the plan was made again to pair the layers")
    # the same names and shapes, other values: the swapped port's weights, the exact manifest
    swapped = tmp_path / "swapped.safetensors"
    weightmap.port(source, TORCH, swapped, plan=_edited(source, "swap"))
    (tmp_path / "swapped.manifest.json").write_bytes(
        (tmp_path / "full.manifest.json").read_bytes())
    weightmap.port(source, TORCH, full, force=True)        # its own manifest again
    (tmp_path / "swapped.manifest.json").write_bytes(
        (tmp_path / "full.manifest.json").read_bytes())
    result = weightmap.verify(source, TORCH, swapped)
    assert any("SHA-256" in n and "swapped.manifest.json" in n for n in result.notes), \
        result.notes
    assert not weightmap.verify(source, TORCH, full).notes      # its own: trusted, no note
    # a plan given by hand that does not describe the target is an error, not a guess
    plan = tmp_path / "head.plan.json"
    plan.write_text(weightmap.plan(source, f"{TORCH}:new_head").to_json())
    with pytest.raises(weightmap.WeightmapError, match="does not describe"):
        weightmap.verify(source, TORCH, full, plan=plan)


def test_a_source_that_runs_by_itself_ignores_source_model_and_says_so(source, state_dict,
                                                                       tmp_path, proven):
    """``--source-model`` builds a source that is weights only. A migration shares it across
    jobs of mixed sources; a Keras file that carries its architecture runs by itself, and the
    note says the model file was not used (before: its tensors were loaded into the torch
    model file by name, exit 10 ``do not fit the model``)."""
    report = weightmap.port(source, TORCH, tmp_path / "k.safetensors", verify=True,
                            source_model=TORCH)
    result = proven(report)
    assert "rebuilt from the config of proof.keras" in result.ran["source"]
    assert f"source_model={TORCH.name!r} not used: the source proof.keras runs by itself" \
        in result.summary()
    # a state dict still needs it, and takes it
    report = weightmap.port(state_dict, TORCH, tmp_path / "sd.safetensors", verify=True,
                            source_model=TORCH)
    assert proven(report).ran["source"].startswith("torch Net with the tensors of")
    assert not any("not used" in n for n in report.verify.notes)


VGG_H5 = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
VGG_BN = MODELS / "small_vgg_bn_torch.py"


def test_a_comparison_that_stops_early_says_how_much_it_compared(tmp_path, capsys):
    """Every BatchNorm of the target is new: past the first conv the models compute another
    function by design, and 4 of the 5 ported layers cannot be checked. The first words say
    so, and the verdict is not a pass: ``--verify`` keeps nothing, ``--verify=warn`` keeps the
    port (before: ``verify passed`` on 1 of 5 pairs)."""
    pytest.importorskip("tf_keras")
    from weightmap.cli import main
    out = tmp_path / "bn.safetensors"
    with pytest.raises(VerifyError) as caught:
        weightmap.port(VGG_H5, VGG_BN, out, verify=True)
    assert str(caught.value).startswith(
        "verify INCOMPLETE on 1 of 5 paired layers (up to features.0 <- block1_conv1; the "
        "target's features.1 is new (features.1.weight keeps its own value), so the rest "
        "compute another function by design); 4 paired layers past it are not checked "
        "(features.3 <- block1_conv2, features.7 <- block2_conv1, features.10 <- block2_conv2 "
        "...)")
    assert not out.exists()
    result = weightmap.port(VGG_H5, VGG_BN, out, verify="warn").verify
    assert not result.passed and result.first_divergence is None
    assert result.compared_up_to == {
        "source": "block1_conv1", "target": "features.0", "compared": 1, "paired": 5,
        "unchecked": 4, "reason": "the target's features.1 is new (features.1.weight keeps its "
                                  "own value)"}
    assert main(["verify", str(VGG_H5), "--to", str(VGG_BN), "--weights", str(out)]) == 10
    assert capsys.readouterr().out.startswith("verify INCOMPLETE on 1 of 5 paired layers")


def test_feature_extraction_passes_on_every_paired_layer(source, tmp_path):
    """A new head after the last pair leaves nothing ported unchecked: a pass, which says on
    how many paired layers."""
    result = weightmap.port(source, f"{TORCH}:new_head", tmp_path / "h.safetensors",
                            verify=True).verify
    assert result.passed and result.compared_up_to["unchecked"] == 0
    assert result.summary().startswith(
        "verify passed on 4 of 4 paired layers (up to bn <- bn; the target's fc is new "
        "(fc.weight keeps its own value), so the outputs differ by design)")


def test_a_divergence_where_the_plan_assumed_a_value_says_so(source, tmp_path):
    """A torch state dict does not store its BatchNorm epsilon: ported alone, the plan assumes
    torch's 1e-5 and compensates it into Keras' 1e-3, but the model was built with 1e-3.
    Verification (with the model file) diverges at that BatchNorm and says the plan assumed
    the value there, and what to give instead (before: only 'first divergence: bn <- bn (rel
    ...)'). Ported with the model file, the plan takes its epsilon and the port is exact."""
    model = weightmap.read(f"{TORCH}:keras_eps").live
    torch.manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
        model.bn.running_var.uniform_(0.5, 1.5)[::3] = 1e-6
    from safetensors.torch import save_file
    state = tmp_path / "eps.safetensors"
    save_file(model.state_dict(), state)
    rename = {"rename": [{"pattern": r"^conv(\d)$", "replace": r"c\1"}]}   # a name-sorted
    out = tmp_path / "k.weights.h5"
    weightmap.port(state, source, out, rules=rename)                       # a name-sorted dict
    result = weightmap.verify(state, source, out, source_model=f"{TORCH}:keras_eps")
    first = result.first_divergence
    assert (first["target"], first["source"]) == ("bn", "bn")
    assert first["decided"] == ["bn: epsilon compensated from source 1e-05 (torch default, "
                                "not stored) to target 0.001; check the assumed value"]
    text = result.summary()
    assert "first divergence: bn <- bn (rel " in text
    assert "; the plan decided there: bn: epsilon compensated from source 1e-05 (torch " \
           "default, not stored)" in text
    assert "the source checkpoint does not store that value" in text and \
        "weightmap.port(model, ...)" in text
    exact = weightmap.port(state, source, tmp_path / "exact.weights.h5", verify=True,
                           source_model=f"{TORCH}:keras_eps", rules=rename)
    assert exact.verify.passed and not any("torch default" in d for d in exact.decisions)
