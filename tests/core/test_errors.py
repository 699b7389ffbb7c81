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
