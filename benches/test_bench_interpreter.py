"""Guest instructions per second: lguest's interpreter next to unicorn.

Each workload runs on both engines in the same benchmark run; the summary
prints both rates and their ratio.  The instruction count is lguest's own
(unicorn runs exactly the same instruction stream).  Both engines are timed
over the run alone, on a freshly set-up machine each time, so translation
and decoding are in the figure but allocating memory and checking the
result are not.  Each rate is the best of five runs.
"""

from __future__ import annotations

import time
from typing import Callable

import pytest

import programs
from lguest import _core

unicorn = pytest.importorskip("unicorn")
from unicorn import x86_const  # noqa: E402


def setup_lguest(p: programs.Program) -> _core.Cpu:
    cpu = _core.Cpu()
    cpu.mem_map(programs.CODE, 0x1000)
    cpu.mem_map(programs.DATA, programs.DATA_SIZE)
    cpu.mem_map(programs.STACK - 0x1000, 0x1000)
    cpu.mem_write(programs.CODE, p.code)
    cpu.mem_write(programs.DATA, p.data)
    cpu.reg_write("esp", programs.STACK)
    for k, v in p.regs.items():
        cpu.reg_write(k, v)
    return cpu


def run_lguest(p: programs.Program, cpu: _core.Cpu | None = None) -> int:
    """Run the program (on `cpu` if set up already) and check its result."""
    if cpu is None:
        cpu = setup_lguest(p)
    ex = cpu.run(start=programs.CODE)
    assert ex.kind == "hlt", ex
    regs = {r: cpu.reg_read(r) for r in ("eax", "ebx", "ecx", "edx")}
    p.check(regs, cpu.mem_read)  # type: ignore[operator]
    return ex.instructions


def time_lguest(p: programs.Program) -> float:
    """Seconds for one run on a fresh processor: the run alone (its blocks
    are decoded during it), not the setting up of memory or the check."""
    cpu = setup_lguest(p)
    t = time.perf_counter()
    ex = cpu.run(start=programs.CODE)
    dt = time.perf_counter() - t
    assert ex.kind == "hlt", ex
    return dt


UC_REGS = {
    "eax": x86_const.UC_X86_REG_EAX, "ebx": x86_const.UC_X86_REG_EBX,
    "ecx": x86_const.UC_X86_REG_ECX, "edx": x86_const.UC_X86_REG_EDX,
    "esi": x86_const.UC_X86_REG_ESI, "edi": x86_const.UC_X86_REG_EDI,
    "ebp": x86_const.UC_X86_REG_EBP, "esp": x86_const.UC_X86_REG_ESP,
}


def setup_unicorn(p: programs.Program) -> "unicorn.Uc":
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(programs.CODE, 0x1000)
    uc.mem_map(programs.DATA, programs.DATA_SIZE)
    uc.mem_map(programs.STACK - 0x1000, 0x1000)
    uc.mem_write(programs.CODE, p.code)
    uc.mem_write(programs.DATA, p.data)
    uc.reg_write(UC_REGS["esp"], programs.STACK)
    for k, v in p.regs.items():
        uc.reg_write(UC_REGS[k], v)
    return uc


def time_unicorn(p: programs.Program) -> float:
    """Seconds for one run on a fresh engine, the run alone (as lguest's)."""
    uc = setup_unicorn(p)
    t = time.perf_counter()
    # Stop on the final hlt.
    uc.emu_start(programs.CODE, programs.CODE + len(p.code) - 1)
    dt = time.perf_counter() - t
    regs = {r: uc.reg_read(UC_REGS[r]) for r in ("eax", "ebx", "ecx", "edx")}
    p.check(regs, lambda a, n: bytes(uc.mem_read(a, n)))  # type: ignore[operator]
    return dt


def best(fn: Callable[[], float], repeat: int = 5) -> float:
    return min(fn() for _ in range(repeat))


@pytest.mark.parametrize("name", list(programs.ALL))
def test_guest_mips(benchmark: object, report: Callable[[str], None], name: str) -> None:
    p = programs.ALL[name]()
    count = run_lguest(p)  # also checks the result
    # The benchmark table times the run alone: a fresh processor is set up
    # outside the timed part of each round.
    benchmark.pedantic(  # type: ignore[attr-defined]
        run_lguest, setup=lambda: ((p, setup_lguest(p)), {}), rounds=5, iterations=1
    )
    ours = best(lambda: time_lguest(p))
    theirs = best(lambda: time_unicorn(p))
    mips_ours = count / ours / 1e6
    mips_uc = count / theirs / 1e6
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {"instructions": count, "lguest_mips": mips_ours, "unicorn_mips": mips_uc}
    )
    report(
        f"{name:8s} {count:>10d} insns  lguest {mips_ours:8.1f} MIPS  unicorn {mips_uc:8.1f} MIPS"
        f"  ratio {mips_ours / mips_uc:5.2f}"
    )
