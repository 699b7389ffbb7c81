"""The README's Python code runs as written, against the bundled example models."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_readme_python_snippets_run_as_written(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("tf_keras")
    blocks = python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert blocks, "the README has no python block"
    shutil.copytree(ROOT / "fixtures" / "examples", tmp_path / "fixtures" / "examples")
    script = tmp_path / "readme.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "adapters"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-W", "error::UserWarning", str(script)],
                       cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "carried over: 12 of 12 tensors" in r.stdout          # print(report)
    assert (tmp_path / "vgg.safetensors").exists()
