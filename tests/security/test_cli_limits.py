"""`--limit NAME=VALUE` on `inspect` and `port`: the readers' caps, set from the command line.

Each run is a forked `weightmap` process (the `weightmap_cli` runner of conftest.py): a refusal
is one line on stderr with the exit code of its error, and a port leaves no output.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from weightmap.reading.limits import parse_limits, reader_limits

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TINY = FIXTURES / "safetensors" / "tiny_hf.safetensors"
CNN = FIXTURES / "torch" / "cnn.pt"
NAMES = ("max_header_bytes", "max_pickle_bytes", "max_pickle_depth", "max_pickle_memo",
         "max_pickle_opcodes")


def one_line(run, code: int, *needles: str) -> None:
    assert run.returncode == code, run.stderr
    assert run.stdout == "" and run.stderr.startswith("weightmap: error: ")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    for needle in needles:
        assert needle in run.stderr, run.stderr


def test_every_reader_cap_is_declared_with_its_default():
    limits = reader_limits()
    assert tuple(sorted(limits)) == NAMES
    assert limits["max_header_bytes"][0] == 16 * 2**20
    assert limits["max_pickle_opcodes"][0] == 1_000_000


@pytest.mark.parametrize("item,problem", [
    ("max_foo=3", "unknown reader limit 'max_foo'"),
    ("max_header_bytes", "must be a positive integer, found ''"),
    ("max_header_bytes=abc", "must be a positive integer, found 'abc'"),
    ("max_header_bytes=0", "must be a positive integer, found '0'"),
    ("max_pickle_opcodes=-5", "must be a positive integer, found '-5'"),
    ("16MiB", "a limit is written NAME=VALUE"),
])
def test_bad_limits_are_one_line_listing_the_valid_names(weightmap_cli, tmp_path, item, problem):
    for argv in (["inspect", TINY, "--limit", item],
                 ["port", TINY, "--to", TINY, "--out", tmp_path / "o.safetensors",
                  "--limit", item]):
        run = weightmap_cli(argv, tmp_path / "cwd")
        one_line(run, 2, problem, *(f"{name} (default " for name in NAMES))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]


def test_limits_parse_to_read_options():
    assert parse_limits(["max_header_bytes=1_000", " max_pickle_depth = 7 "]) == {
        "max_header_bytes": 1000, "max_pickle_depth": 7}
    assert parse_limits([]) == {}


@pytest.mark.parametrize("source,limit,problem", [
    (TINY, "max_header_bytes=64", "header length 1320 exceeds the cap of 64 bytes"),
    (CNN, "max_pickle_opcodes=50", "more than 50 opcodes"),
    (CNN, "max_pickle_bytes=100", "above the 100-byte cap"),
    (CNN, "max_pickle_depth=3", "deeper than 3 levels"),
    (CNN, "max_pickle_memo=2", "above the cap 2"),
])
def test_a_lowered_cap_refuses_a_genuine_file(weightmap_cli, tmp_path, source, limit, problem):
    run = weightmap_cli(["inspect", source, "--limit", limit], tmp_path)
    one_line(run, 3, str(source), problem)
    name = limit.partition("=")[0]
    if name in ("max_header_bytes", "max_pickle_opcodes", "max_pickle_bytes"):
        assert f"--limit {name}=N" in run.stderr                    # the hint says how
    assert weightmap_cli(["inspect", source], tmp_path).returncode == 0


def test_a_raised_cap_reads_a_file_beyond_the_default(weightmap_cli, tmp_path):
    """A header of 17 MB (one long metadata value: quick to parse) is refused by the default
    16 MiB cap and read with a higher one."""
    header = {"__metadata__": {"pad": "x" * (17 << 20)},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "big_header.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(8))
    one_line(weightmap_cli(["inspect", path], tmp_path / "cwd"), 3, "exceeds the cap of 16777216",
             "--limit max_header_bytes=N")
    run = weightmap_cli(["inspect", path, "--json", "--limit", "max_header_bytes=20000000"],
                        tmp_path / "cwd")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["totals"]["tensors"] == 1


def test_port_applies_the_limits_to_source_and_template(weightmap_cli, tmp_path):
    out = tmp_path / "o.safetensors"
    # the source's cap, then the template's: refused before anything is written
    one_line(weightmap_cli(["port", CNN, "--to", TINY, "--out", out, "--limit",
                            "max_pickle_opcodes=50"], tmp_path / "cwd"), 3, str(CNN))
    one_line(weightmap_cli(["port", TINY, "--to", TINY, "--out", out, "--limit",
                            "max_header_bytes=64"], tmp_path / "cwd"), 3, str(TINY))
    assert not out.exists() and not (tmp_path / "o.manifest.json").exists()
    # limits that hold change nothing: the same output and manifest as without them
    plain, limited = tmp_path / "plain", tmp_path / "limited"
    for folder, extra in ((plain, []), (limited, ["--limit", "max_header_bytes=100000",
                                                  "--limit", "max_pickle_opcodes=5000"])):
        folder.mkdir()
        run = weightmap_cli(["port", TINY, "--to", TINY, "--out", folder / "o.safetensors",
                             "--manifest", folder / "m.json", "-q", *extra], tmp_path / "cwd")
        assert run.returncode == 0, run.stderr
    assert (plain / "o.safetensors").read_bytes() == (limited / "o.safetensors").read_bytes()
    strip = (lambda m: {k: v for k, v in json.loads(m.read_text()).items()
                        if k not in ("output", "created")})
    assert strip(plain / "m.json") == strip(limited / "m.json")
