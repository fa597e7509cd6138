"""Costs of the lguest host: hypercalls, page-table switches, shadow fills.

Each kind runs a tiny guest (rust/host_bench.rs) that repeats one operation;
figures are per operation, in guest instructions and host nanoseconds.
"""

from __future__ import annotations

from typing import Callable

import pytest

from lguest import _core

KINDS = {
    # kind: repetitions (shadow_fill touches 256 pages per repetition)
    "sync_hypercall": 20000,
    "async_hypercall": 20000,
    "pgtable_switch": 20000,
    "shadow_fill": 100,
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_host_costs(benchmark: object, report: Callable[[str], None], kind: str) -> None:
    n = KINDS[kind]
    insns, ns, ops = benchmark.pedantic(_core._host_bench, args=(kind, n), rounds=3, iterations=1)  # type: ignore[attr-defined]
    best = min(_core._host_bench(kind, n)[1] for _ in range(3))
    report(f"{kind:16s} {insns / ops:6.2f} guest insns/op  {best / ops:8.1f} ns/op (best of 3, {ops} ops)")
