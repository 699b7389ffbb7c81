from weightmap.errors import FormatError, UsageError


def test_located_names_the_file_only_when_the_error_names_none():
    inner = FormatError("bad header", tensor="w", hint="regenerate it")
    outer = inner.located("/data/m.pt")
    assert type(outer) is FormatError and outer.exit_code == 3
    assert (outer.path, outer.tensor, outer.hint) == ("/data/m.pt", "w", "regenerate it")
    assert str(outer) == "/data/m.pt: tensor 'w': bad header (regenerate it)"
    assert outer.__cause__ is inner
    named = UsageError("no such thing", path="/a/b.h5")
    assert named.located("/elsewhere") is named


def test_every_exit_code_is_documented_once_in_the_cli_table():
    import re
    from pathlib import Path
    from weightmap import errors
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.WeightmapError)}
    table = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = [int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)]
    assert len(documented) == len(set(documented))
    assert codes <= set(documented), codes - set(documented)
