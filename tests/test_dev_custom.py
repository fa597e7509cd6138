"""The example device of docs/devices.md, driven through the bus."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from lguest.devices import Device
from test_virtqueue_guest import BusHarness

DOC = Path(__file__).resolve().parent.parent / "docs" / "devices.md"


def shouter_class() -> type[Device]:
    """Take the class from the document itself, so the example stays true."""
    text = DOC.read_text()
    block = re.search(r"```python\n(from typing import ClassVar.*?)```", text, re.DOTALL)
    assert block is not None
    code = block.group(1).split("\n\nwith Guest(")[0]
    namespace: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    cls = namespace["Shouter"]
    assert isinstance(cls, type) and issubclass(cls, Device)
    return cls


def test_shouter_uppercases() -> None:
    h = BusHarness([shouter_class()()])
    try:
        slot = h.slot(0)
        page = bytes(h.core.mem[slot.address : slot.address + 18])
        assert page[:5] == bytes([0x7F, 1, 0, 5, 0])
        assert page[13:18] == b"SHOUT"
        h.start(0)
        ring = h.ring(0, 0)
        head, ins = ring.post([b"hello, ", b"lguest"], [32])
        h.kick(0, 0)
        assert ring.wait_used(1) == [(head, 13)]
        assert ring.read(ins[0], 13) == b"HELLO, LGUEST"
    finally:
        h.close()


def test_shouter_without_room_stops_the_guest() -> None:
    h = BusHarness([shouter_class()()])
    try:
        h.start(0)
        ring = h.ring(0, 0)
        ring.post([b"no room"])
        h.kick(0, 0)
        assert "nowhere to put the answer" in h.wait_fault()
    finally:
        h.close()


@pytest.mark.parametrize("name", ["Guest", "GuestFault"])
def test_example_imports_exist(name: str) -> None:
    import lguest

    assert hasattr(lguest, name)
