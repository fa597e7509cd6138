"""The bus inside a real Launcher (needs the core): stopping a running guest
from a device thread, timeouts, expect, reboot with devices."""

from __future__ import annotations

import struct
import threading
import time
from importlib import resources
from pathlib import Path

import pytest
from lguest import Guest
from lguest.devices.rng import Rng

pytest.importorskip("lguest._core")


def spin_kernel(path: Path) -> Path:
    """An ELF whose only instruction is ``jmp .``: a guest that never stops."""
    code = b"\xeb\xfe"
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, 0x100000, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<8I", 1, 84, 0x100000, 0x100000, len(code), len(code), 5, 4096)
    path.write_bytes(header + phdr + code)
    return path


def needs_demo() -> None:
    if not resources.files("lguest").joinpath("guests/demo.elf").is_file():
        pytest.skip("the demo guest has not been built")


def test_a_device_fault_stops_a_running_guest(tmp_path: Path) -> None:
    with Guest(spin_kernel(tmp_path / "spin"), memory=16) as guest:
        guest.add_rng()
        guest.boot()
        threading.Timer(0.2, guest.bus.fault, ("rng input: descriptor chain loops",)).start()
        start = time.monotonic()
        result = guest.run(timeout=20)
        assert time.monotonic() - start < 10
        assert result.reason == "rng input: descriptor chain loops"
        assert result.status == 1


def test_run_timeout_pauses_and_resumes(tmp_path: Path) -> None:
    with Guest(spin_kernel(tmp_path / "spin"), memory=16) as guest:
        with pytest.raises(TimeoutError):
            guest.run(timeout=0.2)
        assert guest.exit is None
        with pytest.raises(TimeoutError):
            guest.expect("never", timeout=0.2)
        guest._launcher.stop_guest("enough")
        assert guest.run(timeout=10).reason == "enough"


def test_expect_on_the_demo_guest() -> None:
    needs_demo()
    with Guest(memory=16, cmdline="hello") as guest:
        guest.add_rng()
        match = guest.expect(rb"(\d+) MiB RAM", timeout=20)
        assert match.group(1) == b"16"
        with pytest.raises(EOFError):
            guest.expect("not in the output", timeout=20)
        assert guest.exit is not None and guest.exit.poweroff


def test_reboot_keeps_the_devices() -> None:
    needs_demo()
    rng = Rng()
    with Guest(memory=16, cmdline="reboot", devices=[rng]) as guest:
        first = guest.run(timeout=20)
        assert first.restart
        layout = bytes(guest.bus.slots[0].device.config()), guest.layout.guest_limit
        guest.reboot()
        assert guest.exit is None
        assert guest.run(timeout=20).restart
        assert guest.bus.devices[0] is rng
        assert (bytes(rng.config()), guest.layout.guest_limit) == layout
        assert guest.output.count(b"hello from ring 1") == 2
