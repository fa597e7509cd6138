"""Linux 2.6.32 built with CONFIG_X86_PAE boots with ``pae=True`` (``lguest run --pae``).

The kernel is built outside the repository like the 2-level one (docs/linux.md),
with ``CONFIG_X86_PAE=y``; these tests read its path from LGUEST_LINUX_PAE_KERNEL
and the initramfs from LGUEST_LINUX_INITRD, and are skipped without them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_linux import BOOT_TIMEOUT, boot, shell

from lguest import Guest

KERNEL = os.environ.get("LGUEST_LINUX_PAE_KERNEL")
INITRD = os.environ.get("LGUEST_LINUX_INITRD")

pytestmark = [
    pytest.mark.skipif(
        not (KERNEL and INITRD),
        reason="set LGUEST_LINUX_PAE_KERNEL and LGUEST_LINUX_INITRD to boot a PAE Linux 2.6.32",
    ),
    pytest.mark.slow,
    pytest.mark.timeout(900),
]


def linux_pae(**kwargs: object) -> Guest:
    assert KERNEL and INITRD
    return Guest(KERNEL, memory=128, cmdline="console=hvc0", initrd=INITRD, pae=True, **kwargs)  # type: ignore[arg-type]


def test_pae_kernel_boots_to_a_shell_and_runs_processes(tmp_path: Path) -> None:
    with linux_pae() as g:
        boot(g)
        # The guest was told to keep the top 2 MiB free, PAE's reserved region.
        assert b"Reserving virtual address space above 0xffe00000" in g.output
        assert "pae" in shell(g, "cat /proc/cpuinfo").split()
        # Processes come and go: every fork copies page tables, every exit
        # frees them, and each one's address space gets a shadow slot.
        out = shell(g, "i=0; while [ $i -lt 100 ]; do i=$((i+1)); ls / | wc -l >/dev/null; done; echo loops=$i")
        assert "loops=100" in out
        # Copy-on-write and page-cache traffic through a pipe.
        out = shell(g, "dd if=/dev/zero bs=4096 count=512 2>/dev/null | md5sum")
        assert "b2d1236c286a3c0704224fe4105eca49" in out, out
        g.send("poweroff -f\n")
        exit_ = g.run(timeout=120)
        assert exit_.poweroff and exit_.status == 0


def test_pae_kernel_without_pae_dies_early() -> None:
    # Nothing in the ABI says which format the guest uses: the 2-level host
    # sees a PAE guest's SET_PMD as an unknown hypercall.
    assert KERNEL and INITRD
    with Guest(KERNEL, memory=128, cmdline="console=hvc0", initrd=INITRD) as g:
        exit_ = g.run(timeout=BOOT_TIMEOUT)
        assert not exit_.poweroff
        assert exit_.reason == "Bad hypercall 13"
