"""weightmap's ``.pt`` output: the complete state dict in torch's zip format, streamed tensor by
tensor without torch (``zip_writer``).

Zip members are written one after another, so the writing is sequential; the next tensor is
computed (a transpose copied into one of two reusable buffers, a raw source span mapped) on a
second thread while the current one is written.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from weightmap.io.spans import FileSpan
from weightmap.transform.execute import FileSpans
from weightmap.graph import MappedData
from weightmap.io.bytes import Buffer, contiguous

from . import zip_writer


def write_output(path: Path, *, kind, plan, target, tensors, final_path: Path | None = None,
                 read_back=None) -> None:
    """``read_back`` (``weightmap.emit.readback.ReadBack``): each tensor is read back on a third
    thread as soon as its member is written."""
    specs = [(t.target, tuple(t.shape), t.dtype) for t in plan.tensors]
    stem = Path(final_path or path).name.split(".")[0]     # torch names the top folder after it
    shared = shared_storages(plan, target)
    stream = prefetched(tensors, skip=set(shared)) if hasattr(tensors, "jobs") else \
        ((t.target, arr) for i, (t, arr) in enumerate(tensors()) if i not in shared)
    if read_back is None:
        zip_writer.write(path, specs, stream, top=stem, shared=shared)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weightmap-readback") as pool:
        pending = []

        def landed(i: int, offset: int, nbytes: int) -> None:
            pending.append(pool.submit(read_back.take, path, plan.tensors[i], offset, nbytes))

        try:
            zip_writer.write(path, specs, stream, top=stem, landed=landed, shared=shared)
        except BaseException:
            for job in pending:
                job.cancel()
            raise
        for job in pending:
            job.result()


def shared_storages(plan: Any, target: Any) -> dict[int, int]:
    """Plan index -> the earlier index whose storage it shares: a target parameter tied to
    another (one tensor under two names) whose plan computes the same thing from the same
    sources is written once, as ``torch.save`` writes tied weights."""
    tied = {p.name: p.tied_to for p in target.params() if p.tied_to}
    index = {t.target: i for i, t in enumerate(plan.tensors)}
    out: dict[int, int] = {}
    for i, t in enumerate(plan.tensors):
        j = index.get(tied.get(t.target, ""))
        if j is None or j >= i or j in out:
            continue
        u = plan.tensors[j]
        if t.sources and (t.status, t.sources, t.steps, t.shape, t.dtype) == \
                (u.status, u.sources, u.steps, u.shape, u.dtype):
            out[i] = j
    return out


def prefetched(tensors: Any, skip: set[int] = frozenset()) -> Iterator[tuple[str, np.ndarray]]:
    """``(target name, array)`` in plan order (leaving out the indices in ``skip``), each
    computed on a worker thread while the previous one is consumed. Two buffers alternate: the
    array handed out is never overwritten before the consumer asks for the next one."""
    every = tensors.jobs()
    jobs = [job for i, job in enumerate(every) if i not in skip]
    buffers = (Buffer(), Buffer())

    def compute(i: int) -> np.ndarray:
        t = jobs[i].tensor
        value = jobs[i].compute()
        if isinstance(value, FileSpan):      # the checks ran in the job; map it as a reader does
            return MappedData(value.path, value.offset, tuple(t.shape), t.dtype,
                              span=value.nbytes).read()
        if isinstance(value, FileSpans):
            return value.read(tuple(t.shape), t.dtype)
        if not value.flags.c_contiguous:
            return contiguous(value, out=buffers[i % 2].view(value.shape, value.dtype))
        return value

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="weightmap-pt") as pool:
        ahead = pool.submit(compute, 0) if jobs else None
        for i, job in enumerate(jobs):
            value = ahead.result()
            ahead = pool.submit(compute, i + 1) if i + 1 < len(jobs) else None
            yield job.tensor.target, value
            tensors.advance(job.tensor)
    for i in sorted(skip):                 # written once, under the name they share
        tensors.advance(every[i].tensor)
