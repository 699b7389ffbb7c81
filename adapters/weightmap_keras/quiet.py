"""TensorFlow's start-up logs, kept off stderr while weightmap runs a Keras model file.

The first ``import tensorflow`` of a process (``import keras`` or ``tf_keras`` does it) writes a
screenful to stderr: oneDNN notices, "Could not find cuda drivers", CPU instruction notes, and,
when the model's first variable is made, "failed call to cuInit". TensorFlow 2.21 writes them
from its C++ libraries as absl logs, most before ``absl::InitializeLog()`` is called, where no
environment variable reaches them (``TF_CPP_MIN_LOG_LEVEL`` silences only the later ones). So
while a model file runs, from the moment it first imports TensorFlow, stderr (the file
descriptor, where C++ writes) goes to a temporary file; when the file is done, every line of it
that is not one of TensorFlow's log records (the model file's own warnings, prints to stderr) is
written to stderr as it was. Nothing in the environment changes, and a process that imported
TensorFlow before is left alone.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Any, Iterator

# absl / glog records ("I0000 00:00:1796525469.860273   10390 port.cc:153] ..."), TF 1.x-2.15
# records ("2024-01-02 11:45:17.907378: I tensorflow/..."), absl's pre-initialisation banner and
# the second line of the CPU-instructions note.
_LOG_LINE = re.compile(
    rb"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate "
    rb"compiler flags\.)")
FRAMEWORK = "tensorflow"


def is_log_line(line: bytes) -> bool:
    return bool(_LOG_LINE.match(line))


class _Capture:
    """stderr's file descriptor pointed at a temporary file, from ``start()`` to ``stop()``."""

    def __init__(self) -> None:
        self.saved: int | None = None
        self.file: Any = None

    def start(self) -> None:
        if self.saved is not None:
            return
        try:
            _flush()
            self.file = tempfile.TemporaryFile()
            self.saved = os.dup(2)
            os.dup2(self.file.fileno(), 2)
        except OSError:                       # no stderr to redirect: nothing to keep quiet
            self._close()

    def stop(self) -> None:
        if self.saved is None:
            return
        _flush()
        os.dup2(self.saved, 2)
        self.file.seek(0)
        kept = [line for line in self.file.read().splitlines(keepends=True)
                if not is_log_line(line)]
        self._close()
        if kept:
            with contextlib.suppress(OSError):
                os.write(2, b"".join(kept))

    def _close(self) -> None:
        if self.saved is not None:
            os.close(self.saved)
        if self.file is not None:
            self.file.close()
        self.saved, self.file = None, None


class _OnFirstImport:
    """A meta path finder that starts the capture when TensorFlow's import begins, and finds
    nothing itself (the usual finders import it)."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] == FRAMEWORK:
            self.capture.start()
        return None


@contextlib.contextmanager
def quiet_tensorflow_start() -> Iterator[None]:
    """While the block runs, TensorFlow's start-up logs (if it is first imported in it) do
    not reach stderr; everything else written to stderr does, when the block ends."""
    if FRAMEWORK in sys.modules:
        yield
        return
    capture = _Capture()
    finder = _OnFirstImport(capture)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        capture.stop()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
