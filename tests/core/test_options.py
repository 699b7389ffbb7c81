"""The strict Python API: explicit keywords, one schema for plan options, typos refused."""
import inspect
import os
from pathlib import Path

import numpy as np
import pytest

import weightmap
from weightmap.errors import UsageError
from weightmap.options import PlanOptions, check_keywords

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "fixtures" / "examples" / "small_vgg_keras.h5"
TGT = ROOT / "fixtures" / "examples" / "small_vgg_torch.py"


@pytest.mark.parametrize("typo,meant", [("freez", "freeze"), ("forse", "force"),
                                        ("dryrun", "dry_run"), ("conv1d_layot", "conv1d_layout"),
                                        ("min_coverag", "min_coverage")])
def test_a_typo_in_a_port_keyword_is_a_usage_error_naming_the_valid_ones(tmp_path, typo, meant):
    pytest.importorskip("torch")
    out = tmp_path / "o.safetensors"
    with pytest.raises(UsageError) as err:
        weightmap.port(SRC, TGT, out, **{typo: "transferred"})
    text = str(err.value)
    assert f"port() got an unknown keyword {typo!r}" in text
    assert f"did you mean {meant!r}?" in text
    assert "valid keywords: source, target, out, manifest, rules, freeze" in text
    assert "conv1d_layout" in text                # the plan options are among them
    assert os.listdir(tmp_path) == []              # refused before anything ran or was written


def test_plan_and_load_partial_refuse_unknown_keywords_too():
    torch = pytest.importorskip("torch")
    src = {"fc.weight": np.ones((3, 2), np.float32)}
    with pytest.raises(UsageError, match=r"plan\(\) got an unknown keyword 'rule'.*'rules'"):
        weightmap.plan(src, src, rule="x.yaml")
    model = torch.nn.Linear(2, 3)
    before = model.weight.detach().clone()
    with pytest.raises(UsageError, match=r"load_partial\(\) got an unknown keyword 'freze'"):
        weightmap.load_partial(model, src, freze="transferred")
    assert torch.equal(model.weight.detach(), before)


def test_verify_refuses_an_unknown_keyword_and_an_abbreviation_is_suggested(tmp_path):
    """``tolerance=`` is no keyword of verify nor port: the UsageError names ``tol`` and
    ``verify_tol``, which string similarity alone would not."""
    pytest.importorskip("torch")
    out = tmp_path / "o.safetensors"
    with pytest.raises(UsageError, match=r"verify\(\) got an unknown keyword 'tolerance' "
                                         r"\(did you mean 'tol'\? valid keywords: source, "
                                         r"target, weights, source_model, tol, plan, seed\)"):
        weightmap.verify(SRC, TGT, SRC, tolerance=1e-3)
    with pytest.raises(UsageError, match=r"'tolerance' \(did you mean 'verify_tol'\?"):
        weightmap.port(SRC, TGT, out, tolerance=1e-3)
    assert os.listdir(tmp_path) == []


def test_read_and_inspect_take_reader_limits_by_name():
    with pytest.raises(UsageError, match=r"read\(\) got an unknown keyword 'max_header_byte'.*"
                                         r"did you mean 'max_header_bytes'"):
        weightmap.read(SRC, max_header_byte=10)
    with pytest.raises(UsageError, match="must be a positive integer"):
        weightmap.inspect(SRC, max_pickle_bytes=-1)
    assert weightmap.inspect(SRC, max_header_bytes=1 << 20)["totals"]["params"] == 12


def test_several_unknown_keywords_are_counted():
    with pytest.raises(UsageError, match=r"'aa' \(and 1 more unknown\)"):
        check_keywords(weightmap.port, ["aa", "freeze", "bb"], allowed=["freeze"])


def test_a_plan_option_value_is_checked_and_recorded_normalised():
    with pytest.raises(UsageError, match="conv1d_layout is 'sideways'"):
        PlanOptions(conv1d_layout="sideways")
    assert PlanOptions().as_dict() == {}
    assert PlanOptions(conv1d_layout="in,out").as_dict() == {"conv1d_layout": "in,out"}
    # the command line's repeatable texts
    assert PlanOptions(conv1d_layout=["out,in"]).conv1d_layout == "out,in"
    assert PlanOptions(conv1d_layout=["source=in,out", "target=out,in"]).conv1d_layout == \
        {"source": "in,out", "target": "out,in"}
    with pytest.raises(UsageError):
        PlanOptions(conv1d_layout=["left=in,out"])


def test_the_options_a_plan_was_made_with_are_recorded_in_it():
    src = {"h.c_attn.weight": np.ones((4, 12), np.float32)}
    tgt = {"h.c_attn.weight": np.ones((4, 12), np.float32)}
    p = weightmap.plan(src, tgt, conv1d_layout="in,out")
    assert p.options == {"conv1d_layout": "in,out"}


def test_the_public_functions_declare_their_own_keywords_with_types_and_docstrings():
    for fn in (weightmap.port, weightmap.plan, weightmap.load_partial, weightmap.read,
               weightmap.inspect):
        sig = inspect.signature(fn)
        assert fn.__doc__ and len(fn.__doc__) > 80, fn.__name__
        named = [p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]
        assert all(p.annotation is not inspect.Parameter.empty for p in named), fn.__name__
    assert "freeze" in inspect.signature(weightmap.port).parameters
    assert "min_coverage" in inspect.signature(weightmap.load_partial).parameters


def test_every_plan_option_is_a_command_line_option_when_it_has_a_metavar():
    from weightmap.cli import _parser
    port = next(a for a in _parser()._actions if getattr(a, "choices", None)).choices["port"]
    flags = {s for a in port._actions for s in a.option_strings}
    for spec in PlanOptions.specs():
        if spec.metadata["metavar"]:
            assert "--" + spec.name.replace("_", "-") in flags


@pytest.mark.parametrize("flag", ["dry_run", "force", "strict", "progress", "direct_io"])
def test_a_yes_no_keyword_takes_a_bool_not_a_text(tmp_path, flag):
    with pytest.raises(UsageError, match=rf"port\(\) takes {flag}=True or False.*not 'no'"):
        weightmap.port(SRC, SRC, tmp_path / "o.h5", **{flag: "no"})
    assert os.listdir(tmp_path) == []


def test_rules_and_plan_options_beside_a_saved_plan_are_refused_not_ignored(tmp_path):
    pytest.importorskip("torch")
    saved = tmp_path / "plan.json"
    saved.write_text(weightmap.plan(SRC, TGT).to_json())
    with pytest.raises(UsageError, match="saved plan is applied as it is: rules, conv1d_layout"):
        weightmap.port(SRC, TGT, tmp_path / "o.safetensors", plan=saved,
                       rules={"ignore": ["fc1"]}, conv1d_layout="in,out")
    assert sorted(os.listdir(tmp_path)) == ["plan.json"]
