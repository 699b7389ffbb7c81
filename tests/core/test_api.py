"""The Python API as documented: docs/api.md names every public function and parameter, and
docs/cli.md every plan option the command line has."""
import inspect
import re
from pathlib import Path

import weightmap
from weightmap.options import PlanOptions
from weightmap.report import PortReport
from weightmap.sources import reader_limits, reader_options

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _section(text, title):
    """The text of the section whose heading starts with ``title``."""
    m = re.search(rf"^## `?{re.escape(title)}.*?(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"docs/api.md has no section {title!r}"
    return m.group(0)


def test_every_public_function_and_parameter_is_documented():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    for fn in (weightmap.port, weightmap.plan, weightmap.load_partial, weightmap.read,
               weightmap.verify):
        section = _section(api, f"weightmap.{fn.__name__}(")
        for name in inspect.signature(fn).parameters:
            assert f"`{name}`" in section or f"`**{name}`" in section or (
                name == "options" and "`**options`" in api), (fn.__name__, name)
    read = _section(api, "weightmap.read(")
    for name in [*reader_options(), *reader_limits()]:
        assert f"`{name}`" in read, name
    for fn in ("weightmap.torch.freeze", "weightmap.torch.param_groups",
               "weightmap.keras.freeze"):
        assert f"`{fn}(" in api, fn
    for member in ("summary", "to_dict", "transferred", "new", "unused", "mismatched",
                   "manifest", "plan", "output", "manifest_path", "decisions", "verify"):
        assert hasattr(PortReport, member) or member in PortReport.__dataclass_fields__
        assert f"{member}" in _section(api, "PortReport"), member


def test_every_plan_option_is_documented_in_the_api_and_the_command_line():
    api = _section((DOCS / "api.md").read_text(encoding="utf-8"), "Plan options")
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    for spec in PlanOptions.specs():
        assert f"| `{spec.name}` |" in api, spec.name
        if spec.metadata["metavar"]:
            flag = f"`--{spec.name.replace('_', '-')} {spec.metadata['metavar']}`"
            assert flag in api and flag in cli, flag


def test_every_port_option_is_in_the_cli_table():
    from weightmap.cli import _parser
    cli = (DOCS / "cli.md").read_text(encoding="utf-8")
    port = next(a for a in _parser()._actions if getattr(a, "choices", None)).choices["port"]
    for action in port._actions:
        longest = max(action.option_strings, key=len, default=None)
        if longest and longest != "--help":
            assert re.search(rf"(?<![\w-]){longest}(?![\w-])", cli), longest
