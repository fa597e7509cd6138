"""Guest instructions per second: lguest's interpreter next to unicorn.

Each workload runs on both engines in the same benchmark run; the summary
prints both rates and their ratio.  The instruction count is lguest's own
(unicorn runs exactly the same instruction stream).
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


def run_lguest(p: programs.Program) -> int:
    cpu = setup_lguest(p)
    ex = cpu.run(start=programs.CODE)
    assert ex.kind == "hlt", ex
    regs = {r: cpu.reg_read(r) for r in ("eax", "ebx", "ecx", "edx")}
    p.check(regs, cpu.mem_read)  # type: ignore[operator]
    return ex.instructions


UC_REGS = {
    "eax": x86_const.UC_X86_REG_EAX, "ebx": x86_const.UC_X86_REG_EBX,
    "ecx": x86_const.UC_X86_REG_ECX, "edx": x86_const.UC_X86_REG_EDX,
    "esi": x86_const.UC_X86_REG_ESI, "edi": x86_const.UC_X86_REG_EDI,
    "ebp": x86_const.UC_X86_REG_EBP, "esp": x86_const.UC_X86_REG_ESP,
}


def run_unicorn(p: programs.Program) -> None:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_32)
    uc.mem_map(programs.CODE, 0x1000)
    uc.mem_map(programs.DATA, programs.DATA_SIZE)
    uc.mem_map(programs.STACK - 0x1000, 0x1000)
    uc.mem_write(programs.CODE, p.code)
    uc.mem_write(programs.DATA, p.data)
    uc.reg_write(UC_REGS["esp"], programs.STACK)
    for k, v in p.regs.items():
        uc.reg_write(UC_REGS[k], v)
    # Stop on the final hlt.
    uc.emu_start(programs.CODE, programs.CODE + len(p.code) - 1)
    regs = {r: uc.reg_read(UC_REGS[r]) for r in ("eax", "ebx", "ecx", "edx")}
    p.check(regs, lambda a, n: bytes(uc.mem_read(a, n)))  # type: ignore[operator]


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("name", list(programs.ALL))
def test_guest_mips(benchmark: object, report: Callable[[str], None], name: str) -> None:
    p = programs.ALL[name]()
    count = run_lguest(p)  # also checks the result
    benchmark.pedantic(run_lguest, args=(p,), rounds=3, iterations=1)  # type: ignore[attr-defined]
    ours = timed(lambda: run_lguest(p))
    theirs = timed(lambda: run_unicorn(p))
    mips_ours = count / ours / 1e6
    mips_uc = count / theirs / 1e6
    benchmark.extra_info.update(  # type: ignore[attr-defined]
        {"instructions": count, "lguest_mips": mips_ours, "unicorn_mips": mips_uc}
    )
    report(
        f"{name:8s} {count:>10d} insns  lguest {mips_ours:8.1f} MIPS  unicorn {mips_uc:8.1f} MIPS"
        f"  ratio {mips_ours / mips_uc:5.2f}"
    )
