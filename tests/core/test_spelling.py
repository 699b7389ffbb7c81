"""An option named in a message the way its caller writes it: Python, command line, spec."""
import pytest

from weightmap.spelling import CLI, PYTHON, SPEC, current, limit, option, spelled


def test_python_is_the_default_spelling():
    assert current() == PYTHON
    assert option("container", "KEY") == "container=KEY"
    assert option("source_model", "m.py") == "source_model='m.py'"
    assert option("opaque_globals", True) == "opaque_globals=True"
    assert option("out") == "out"
    assert option("source_model", "FILE.py[:NAME]") == "source_model=FILE.py[:NAME]"
    assert limit("max_header_bytes") == "max_header_bytes=N"


@pytest.mark.parametrize("how, expected", [
    (CLI, ["--container KEY", "--source-model m.py", "--opaque-globals", "--out",
           "--verify=warn", "--limit max_header_bytes=N"]),
    (SPEC, ["container: KEY", "source_model: m.py", "opaque_globals: true", "out",
            "verify: warn", "--limit max_header_bytes=N"]),
])
def test_the_command_line_and_a_spec_spell_options_their_way(how, expected):
    with spelled(how):
        assert current() == how
        assert [option("container", "KEY"), option("source_model", "m.py"),
                option("opaque_globals", True), option("out"), option("verify", "warn"),
                limit("max_header_bytes")] == expected
    assert current() == PYTHON          # put back when the block ends


def test_the_spelling_is_put_back_after_an_error():
    with pytest.raises(RuntimeError), spelled(CLI):
        raise RuntimeError
    assert option("force", True) == "force=True"
