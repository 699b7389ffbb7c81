"""Progress on the terminal (weightmap/progress.py), and through port and the CLI."""
from __future__ import annotations

import io

import numpy as np
from safetensors.numpy import save_file

import weightmap
from weightmap import progress
from weightmap.cli import main


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_shown_only_on_a_terminal_and_never_when_quiet():
    assert progress.wanted(Tty()) is True
    assert progress.wanted(io.StringIO()) is False
    assert progress.wanted(Tty(), quiet=True) is False
    assert progress.start(3, 10, stream=io.StringIO()) is None
    assert isinstance(progress.start(3, 10, stream=Tty()), progress.Progress)


def test_line_counts_tensors_and_bytes_and_is_erased_at_the_end():
    out, clock = Tty(), Clock()
    bar = progress.Progress(4, 4_000_000_000, stream=out, clock=clock)
    clock.now += 1.0
    bar.advance(1_000_000_000)
    assert out.getvalue() == "\rwriting: 1/4 tensors, 1.00 GB/4.00 GB (25%), 1.00 GB/s, 3 s left"
    clock.now += 0.05                     # too soon to redraw
    bar.advance(500_000_000)
    assert out.getvalue().count("\r") == 1
    clock.now += 1.0
    bar.advance(2_500_000_000, tensors=2)            # the last one is always drawn
    last = out.getvalue().rsplit("\r", 1)[1]
    assert last == "writing: 4/4 tensors, 4.00 GB/4.00 GB (100%), 1.95 GB/s" + " " * 9
    width = len(last.rstrip())                     # the shorter line padded over the longer
    bar.close()
    assert out.getvalue().endswith("\r" + " " * width + "\r")


def test_human_bytes():
    assert progress.human_bytes(512) == "512 B"
    assert progress.human_bytes(1_500) == "1.50 KB"
    assert progress.human_bytes(2_000_000_000_000) == "2000.00 GB"


def _checkpoint(tmp_path):
    path = tmp_path / "src.safetensors"
    save_file({"a.weight": np.ones((4, 4), np.float32), "b.weight": np.ones(3, np.float32)},
              path)
    return path


def test_port_draws_progress_on_stderr_when_asked(tmp_path, capsys):
    src = _checkpoint(tmp_path)
    weightmap.port(src, src, tmp_path / "out.safetensors", progress=True)
    err = capsys.readouterr().err
    assert "\rwriting: 2/2 tensors, 76 B/76 B (100%)" in err
    weightmap.port(src, src, tmp_path / "out2.safetensors")        # stderr is not a terminal
    assert capsys.readouterr().err == ""


def test_cli_quiet_prints_nothing_and_writes_the_output(tmp_path, capsys):
    src = _checkpoint(tmp_path)
    out = tmp_path / "out.safetensors"
    assert main(["port", str(src), "--to", str(src), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert out.exists()


def test_cli_shard_size_writes_an_index(tmp_path, capsys):
    src = _checkpoint(tmp_path)
    out = tmp_path / "model.safetensors"
    assert main(["port", str(src), "--to", str(src), "--out", str(out),
                 "--shard-size", "70B"]) == 0
    assert "model.safetensors.index.json" in capsys.readouterr().out
    assert (tmp_path / "model-00002-of-00002.safetensors").exists()
    assert main(["port", str(src), "--to", str(src), "--out", str(tmp_path / "o.pt"),
                 "--shard-size", "1GB"]) == 2
    # the command line names its own option (Python, shard_size)
    assert "takes no option --shard-size (--shard-size is for safetensors output)" in \
        capsys.readouterr().err


def test_a_migration_counts_jobs_and_failures():
    out, clock = Tty(), Clock()
    bar = progress.Progress(20, 2_000_000, stream=out, clock=clock, label="migrating",
                            unit="jobs")
    clock.now += 1.0
    bar.advance(500_000)
    clock.now += 1.0
    bar.advance(500_000, failed=1)
    assert out.getvalue().split("\r")[-1] == ("migrating: 2/20 jobs, 1 failed, 1.00 MB/2.00 MB "
                                              "(50%), 500.00 KB/s, 2 s left")
