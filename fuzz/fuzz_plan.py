"""atheris harness for the plan loader (``--plan FILE``): a plan file is edited by hand, so any
bytes must load, check and execute (every step's arrays computed) or end in weightmap's error.

    python fuzz/fuzz_plan.py CORPUS_DIR -max_total_time=60      (libFuzzer flags)

The plan is applied to two fixed small graphs (the tensors a seed plan names); nothing is
written. Seeds: plans saved by ``weightmap port --save-plan`` of those graphs, with steps.
"""
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import main  # noqa: E402

import atheris  # noqa: E402
import numpy as np  # noqa: E402

with atheris.instrument_imports():
    from weightmap import api, transform as transforms
    from weightmap.planning import plan as plans  # noqa: F401
    from weightmap.errors import WeightmapError
    from weightmap.transform.execute import produce
    from weightmap.planning.plan import Plan
    from weightmap.reading.read import graph_from_arrays

SOURCE = graph_from_arrays({"a.weight": np.arange(6, dtype=np.float32).reshape(3, 2),
                            "a.bias": np.ones(3, np.float32),
                            "b.weight": np.ones((2, 3), np.float32)}, origin="source")
TARGET = graph_from_arrays({"a.weight": np.zeros((3, 2), np.float32),
                            "a.bias": np.zeros(3, np.float32),
                            "b.weight": np.zeros((3, 2), np.float32)}, origin="target")
FOLDER = Path(tempfile.mkdtemp(prefix="weightmap-fuzz-plan-"))


def seed_plans() -> list[tuple[str, bytes]]:
    plan = api.plan(SOURCE, TARGET).to_dict()
    out = [("saved.json", json.dumps(plan).encode())]
    for t in plan["tensors"]:
        if t["target"] == "b.weight":
            t.update(status="transformed", sources=["b.weight"],
                     steps=[{"op": "transpose", "perm": [1, 0]}, {"op": "scale", "factor": 2.0}])
        if t["target"] == "a.bias":
            t.update(status="synthetic", sources=[], steps=[], value={"fill": 0.5})
    out.append(("edited.json", json.dumps(plan).encode()))
    return out


def test_one_input(data: bytes) -> None:
    path = FOLDER / "plan.json"
    path.write_bytes(data)
    try:
        plan = Plan.load(path)
        plan.check(SOURCE, TARGET)
        for _ in produce(plan, SOURCE, TARGET):
            pass
    except WeightmapError:
        pass


if __name__ == "__main__":
    main(test_one_input, seed_plans())
