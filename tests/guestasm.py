"""Tiny lguest test guests written in GNU assembler text.

``build(body)`` wraps ``body`` in the boilerplate every lguest guest needs
(a stack, an ``lguest_data`` block and the LGUEST_INIT hypercall), assembles
and links it with ``as --32`` / ``ld -m elf_i386`` at physical (= virtual)
0x100000, and returns the ELF's bytes.  ``boot(elf)`` loads it the way the
Launcher loads a vmlinux and returns an initialized ``_core.Lguest``.

Inside ``body`` these symbols and macros are available:

* ``lguest_data`` (GPA of the structure), ``reason`` (a NUL-terminated
  "test guest done" string), ``scratch`` (= ``SCRATCH``, a zeroed page the
  host side can also reach through ``Lguest.mem``);
* ``HCALL n`` (``mov $n,%eax; int $0x1f``), ``NOTIFY addr`` (an immediate or a
  register), ``HALT``, ``SHUTDOWN`` (power off with ``reason``),
  ``IDT_ENTRY vec, handler`` (an interrupt gate, DPL 1, in the kernel code
  segment) and ``STI`` (``irq_enabled = 0x200``).

Tests call :func:`require_toolchain` (it skips when binutils is missing).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from lguest import boot as lguest_boot

if TYPE_CHECKING:
    from lguest._core import Lguest

LOAD_ADDR = 0x100000
RAM = 4 << 20
SCRATCH = 0x200000

PRELUDE = r"""
    .code32
    .set LD_IRQ_ENABLED, 0x000
    .set LD_BLOCKED, 0x004
    .set scratch, SCRATCH

    .macro HCALL n
        mov $\n, %eax
        int $0x1f
    .endm
    .macro NOTIFY addr
        mov \addr, %ebx
        HCALL 17
    .endm
    .macro HALT
        HCALL 10
    .endm
    .macro SHUTDOWN
        mov $reason, %ebx
        mov $1, %ecx
        HCALL 2
    .endm
    /* An interrupt gate for vector \vec: selector 0x61 (kernel CS, RPL 1), DPL 1. */
    .macro IDT_ENTRY vec, handler
        mov $\handler, %ecx
        and $0xffff, %ecx
        or $0x00610000, %ecx
        mov $\handler, %edx
        and $0xffff0000, %edx
        or $0x0000ae00, %edx
        mov $\vec, %ebx
        HCALL 6
    .endm
    .macro STI
        movl $0x200, lguest_data + LD_IRQ_ENABLED
    .endm

    .text
    .globl _start
_start:
    mov $stack_top, %esp
    mov $lguest_data, %ebx
    HCALL 1
"""

EPILOGUE = r"""
    .data
    .balign 16
lguest_data:
    .long 0                 /* irq_enabled */
    .long 0                 /* blocked_interrupts */
    .fill 0x10, 1, 0        /* cr2, time, irq_pending */
    .fill 64, 1, 0xff       /* hcall_status: every slot empty */
    .fill 0x56c - 0x58, 1, 0
    .long 0xc0000000        /* kernel_address */
    .long 0x80              /* syscall_vec */
reason:
    .asciz "test guest done"
    .balign 16
    .fill 8192, 1, 0
stack_top:
"""


@functools.cache
def toolchain() -> bool:
    return shutil.which("as") is not None and shutil.which("ld") is not None


def require_toolchain() -> None:
    if not toolchain():
        pytest.skip("GNU as/ld (binutils) are needed to build test guests")


@functools.cache
def build(body: str) -> bytes:
    """Assemble ``body`` into a bootable lguest guest ELF; return its bytes."""
    require_toolchain()
    with tempfile.TemporaryDirectory(prefix="lguest-guestasm-") as tmp:
        src, obj, elf = Path(tmp, "g.s"), Path(tmp, "g.o"), Path(tmp, "g.elf")
        src.write_text(PRELUDE.replace("SCRATCH", hex(SCRATCH)) + body + EPILOGUE)
        for cmd in (
            ["as", "--32", "-o", str(obj), str(src)],
            ["ld", "-m", "elf_i386", "-N", "-e", "_start", "-Ttext", hex(LOAD_ADDR),
             "-o", str(elf), str(obj)],
        ):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise AssertionError(f"{cmd[0]} failed:\n{done.stderr}\n--- source ---\n{body}")
        return elf.read_bytes()


def boot(elf: bytes, ram: int = RAM, *, pae: bool = False) -> Lguest:
    """Load ``elf`` like the Launcher loads a vmlinux; return an initialized Lguest
    (with PAE page tables if ``pae``)."""
    from lguest import _core

    lg = _core.Lguest(ram)
    info = lguest_boot.load_guest(lg.mem, ram, elf, "test-guest")
    lg.initialize(ram // 4096, info.kernel.entry, pae=pae)
    return lg


def guest(body: str, ram: int = RAM, *, pae: bool = False) -> Lguest:
    """``boot(build(body), ram, pae=pae)``."""
    return boot(build(body), ram, pae=pae)
