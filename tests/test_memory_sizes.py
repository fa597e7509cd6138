"""Guests at the edges of the memory sizes the Launcher accepts."""

from __future__ import annotations

import pytest

from lguest import Guest
from lguest.layout import MAX_MEMORY_MIB


@pytest.mark.timeout(60)
@pytest.mark.parametrize("megabytes", [2, 1100, 3500, MAX_MEMORY_MIB])
def test_demo_guest_boots_with_any_accepted_memory_size(megabytes: int) -> None:
    # Above 3 GiB of RAM the host's initial identity mapping would overlap
    # the kernel's 0xC0000000 window; the window must win (rust/mmu H:530).
    with Guest(memory=megabytes) as g:
        exit_ = g.run(timeout=50)
    assert exit_.poweroff, exit_.reason
    assert b"Power down" in g.output
