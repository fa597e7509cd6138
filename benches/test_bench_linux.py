"""Linux 2.6.32 boot time: lguest next to QEMU's TCG, in the same run.

Time from start to the first userspace line, median of several boots, for
the bzImage (unpacked by the Launcher, the default, and decompressing itself
in the guest) and the ELF vmlinux on lguest, plus the guest instruction
count lguest executed to get there.  Needs LGUEST_LINUX_KERNEL (a bzImage),
LGUEST_LINUX_INITRD, and optionally LGUEST_LINUX_VMLINUX; the initramfs must
print LGUEST_LINUX_MARKER (default "userspace up") once user space runs and
power off when "autotest" is on the command line.  QEMU runs if
qemu-system-i386 is installed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from typing import Callable

import pytest

from lguest import Guest

KERNEL = os.environ.get("LGUEST_LINUX_KERNEL")
VMLINUX = os.environ.get("LGUEST_LINUX_VMLINUX")
INITRD = os.environ.get("LGUEST_LINUX_INITRD")
MARKER = os.environ.get("LGUEST_LINUX_MARKER", "userspace up")
ROUNDS = int(os.environ.get("LGUEST_LINUX_BOOTS", "5"))

pytestmark = pytest.mark.skipif(
    not (KERNEL and INITRD), reason="set LGUEST_LINUX_KERNEL and LGUEST_LINUX_INITRD"
)


def boot_lguest(kernel: str, unpack: bool = True) -> tuple[float, int]:
    assert INITRD
    t0 = time.monotonic()
    with Guest(
        kernel, memory=128, cmdline="console=hvc0 autotest", initrd=INITRD, unpack=unpack
    ) as g:
        g.expect(MARKER, timeout=300)
        elapsed = time.monotonic() - t0
        insns = g.instructions
        g.run(timeout=300)
    return elapsed, insns


def boot_qemu(kernel: str) -> float:
    assert INITRD
    cmd = [
        "qemu-system-i386", "-accel", "tcg", "-m", "128", "-kernel", kernel, "-initrd", INITRD,
        "-append", "console=ttyS0 autotest", "-nographic", "-no-reboot", "-monitor", "none",
    ]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    elapsed = None
    try:
        for line in p.stdout:
            if MARKER.encode() in line:
                elapsed = time.monotonic() - t0
                break
    finally:
        p.kill()
        p.wait()
    assert elapsed is not None, "QEMU never reached user space"
    return elapsed


def test_boot_to_userspace(benchmark: object, report: Callable[[str], None]) -> None:
    assert KERNEL
    # The variants take turns, round by round, so that whatever warms up or
    # wears down during the run (the host's page pool, its clock) treats them
    # alike.
    packed: list[tuple[float, int]] = []
    unpacked: list[tuple[float, int]] = []
    elf: list[float] = []
    qemu: list[float] = []
    for _ in range(ROUNDS):
        unpacked.append(boot_lguest(KERNEL))
        packed.append(boot_lguest(KERNEL, unpack=False))
        if VMLINUX:
            elf.append(boot_lguest(VMLINUX)[0])
        if shutil.which("qemu-system-i386"):
            qemu.append(boot_qemu(KERNEL))
    benchmark.pedantic(boot_lguest, args=(KERNEL,), rounds=1, iterations=1)  # type: ignore[attr-defined]
    ours = statistics.median(t for t, _ in unpacked)
    line = (
        f"linux bzImage: lguest {ours:.3f} s to user space"
        f" ({statistics.median(i for _, i in unpacked) / 1e6:.0f} M guest insns)"
        f"; decompressing itself in the guest {statistics.median(t for t, _ in packed):.3f} s"
        f" ({statistics.median(i for _, i in packed) / 1e6:.0f} M guest insns)"
    )
    if elf:
        line += f", vmlinux {statistics.median(elf):.3f} s"
    if qemu:
        q = statistics.median(qemu)
        line += (
            f"; qemu-system-i386 TCG {q:.3f} s (ratio {q / ours:.2f}x,"
            f" {q / statistics.median(t for t, _ in packed):.2f}x against the guest decompressor)"
        )
    report(line)
