"""The run loop, NOTIFY classification, death and the Guest API, against a fake core.

The fake stands in for ``lguest._core`` so that these tests need no Rust
build: it allocates a bytearray as guest memory and plays back a script of
what the guest "does" on each ``run()``.
"""

from __future__ import annotations

import errno
import io
import struct
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import lguest
import pytest
from lguest import Guest, GuestExit, GuestFault, LaunchError
from lguest import launcher as launcher_module
from lguest.launcher import (
    EXIT_DIED,
    EXIT_POWEROFF,
    EXIT_RESTART,
    Launcher,
    read_c_string,
)
from lguest.layout import MemoryLayout

MiB = 1 << 20


class FakeGuestDied(OSError):
    reason: str
    restart: bool

    def __init__(self, reason: str, restart: bool = False) -> None:
        super().__init__(85 if restart else errno.ENOENT, reason)
        self.reason = reason
        self.restart = restart


#: One step of the script: gets guest memory, returns a NOTIFY address or raises.
Step = Callable[[memoryview], int]


class FakeLguest:
    script: ClassVar[list[Step]] = []
    instances: ClassVar[list[FakeLguest]] = []

    def __init__(self, memory: int) -> None:
        self.size = memory
        self._backing = bytearray(memory)
        self.initialized: tuple[int, int] | None = None
        self.pae: bool | None = None
        self.boot_params_at_init: bytes | None = None
        self.steps = iter(list(FakeLguest.script))
        self.runs = 0
        FakeLguest.instances.append(self)

    @property
    def mem(self) -> memoryview:
        return memoryview(self._backing)

    def initialize(self, pfn_limit: int, start: int, *, pae: bool = False) -> None:
        assert self.initialized is None
        self.initialized = (pfn_limit, start)
        self.pae = pae
        self.boot_params_at_init = bytes(self._backing[:4096])

    def run(self) -> int:
        assert self.initialized is not None, "run before initialize"
        self.runs += 1
        step = next(self.steps, None)
        if step is None:
            raise FakeGuestDied("CRASH: Power down")
        return step(self.mem)

    def irq(self, n: int) -> None:
        pass


@pytest.fixture
def fake_core(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeLguest]]:
    module = types.ModuleType("lguest._core")
    module.Lguest = FakeLguest  # type: ignore[attr-defined]
    module.GuestDied = FakeGuestDied  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lguest._core", module)
    monkeypatch.setattr(lguest, "_core", module, raising=False)
    FakeLguest.script = []
    FakeLguest.instances = []
    yield FakeLguest


def make_elf(paddr: int = 0x100000, code: bytes = b"\xf4" * 16, entry: int = 0x100000) -> bytes:
    """A minimal i386 ET_EXEC with one PT_LOAD segment."""
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 3, 1, entry, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    phdr = struct.pack("<8I", 1, 84, 0xC0000000 + paddr, paddr, len(code), len(code), 7, 4096)
    return header + phdr + code


@pytest.fixture
def kernel(tmp_path: Path) -> Path:
    path = tmp_path / "vmlinux"
    path.write_bytes(make_elf(entry=0x100004))
    return path


def prints(address: int, text: bytes) -> Step:
    """A step in which the guest puts ``text`` at ``address`` and NOTIFYs it."""

    def step(mem: memoryview) -> int:
        mem[address : address + len(text)] = text
        return address

    return step


def notifies(address: int) -> Step:
    return lambda mem: address


def dies(reason: str, restart: bool = False) -> Step:
    def step(mem: memoryview) -> int:
        raise FakeGuestDied(reason, restart)

    return step


def interrupted(mem: memoryview) -> int:
    raise InterruptedError(errno.EINTR, "Interrupted system call")


# --- booting ----------------------------------------------------------------


def test_boot_initializes_with_pfn_limit_and_entry(
    fake_core: type[FakeLguest], kernel: Path
) -> None:
    launcher = Launcher(kernel, memory=16, cmdline="hello", output=io.BytesIO())
    launcher.boot()
    (guest,) = fake_core.instances
    assert guest.size == 16 * MiB + 256 * 4096
    # Only the descriptor page is allocated: pfn_limit = (MEM + 4096) / 4096.
    assert guest.initialized == ((16 * MiB + 4096) // 4096, 0x100004)
    # boot_params was complete before INITIALIZE.
    assert guest.boot_params_at_init is not None
    assert struct.unpack_from("<H", guest.boot_params_at_init, 0x206) == (0x0207,)
    assert struct.unpack_from("<QQI", guest.boot_params_at_init, 0x2D0) == (0, 16 * MiB, 1)
    assert bytes(guest.mem[0x1000:0x1006]) == b"hello\0"
    assert launcher.boot_info is not None and launcher.boot_info.kernel.entry == 0x100004


@pytest.mark.parametrize("pae", [False, True])
def test_boot_passes_the_paging_mode(fake_core: type[FakeLguest], kernel: Path, pae: bool) -> None:
    Launcher(kernel, memory=16, output=io.BytesIO(), pae=pae).boot()
    (guest,) = fake_core.instances
    assert guest.pae is pae


def test_boot_twice_is_an_error(fake_core: type[FakeLguest], kernel: Path) -> None:
    launcher = Launcher(kernel, memory=16, output=io.BytesIO())
    launcher.boot()
    with pytest.raises(RuntimeError):
        launcher.boot()


def test_missing_kernel_fails_before_allocating(
    fake_core: type[FakeLguest], tmp_path: Path
) -> None:
    with pytest.raises(LaunchError, match="missing.elf: cannot read kernel: No such file"):
        Launcher(tmp_path / "missing.elf", memory=16).boot()
    assert fake_core.instances == []


def test_bad_kernel_fails_before_allocating(fake_core: type[FakeLguest], tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk" * 100)
    with pytest.raises(LaunchError, match="junk: not a kernel image"):
        Launcher(junk, memory=16).boot()
    assert fake_core.instances == []


def test_missing_initrd(fake_core: type[FakeLguest], kernel: Path, tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="rd.img: cannot read initrd"):
        Launcher(kernel, memory=16, initrd=tmp_path / "rd.img").boot()


def test_initrd_is_loaded(fake_core: type[FakeLguest], kernel: Path, tmp_path: Path) -> None:
    rd = tmp_path / "rd.img"
    rd.write_bytes(b"initrd!")
    launcher = Launcher(kernel, memory=16, initrd=rd, output=io.BytesIO())
    launcher.boot()
    (guest,) = fake_core.instances
    assert bytes(guest.mem[16 * MiB - 4096 : 16 * MiB - 4096 + 7]) == b"initrd!"
    assert guest.boot_params_at_init is not None
    assert guest.boot_params_at_init[0x210] == 0xFF


def test_memory_allocation_failure_is_a_launch_error(
    fake_core: type[FakeLguest], kernel: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: FakeLguest, memory: int) -> None:
        raise MemoryError

    monkeypatch.setattr(FakeLguest, "__init__", refuse)
    with pytest.raises(LaunchError, match="cannot allocate 16 MiB of guest memory"):
        Launcher(kernel, memory=16).boot()


def test_missing_demo_guest_is_a_launch_error(
    fake_core: type[FakeLguest], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher_module, "DEMO_GUEST", "guests/no-such-guest.elf")
    with pytest.raises(LaunchError, match="bundled demo guest .* is missing"):
        Launcher(None, memory=16).boot()


# --- L:150/160 the run loop and the early console ---------------------------


def test_early_console_output_then_power_off(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [
        prints(0x5000, b"Hello, \0junk"),
        prints(0x6000, b"world\n\0"),
        dies("CRASH: Power down"),
    ]
    out = io.BytesIO()
    result = Launcher(kernel, memory=16, output=out).run()
    assert out.getvalue() == b"Hello, world\n"
    assert result == GuestExit(reason="CRASH: Power down", restart=False)
    assert result.poweroff
    assert result.status == EXIT_POWEROFF == 0


def test_early_console_stops_at_guest_limit(fake_core: type[FakeLguest], kernel: Path) -> None:
    layout = MemoryLayout(16)
    limit = layout.guest_limit

    def step(mem: memoryview) -> int:
        # No NUL before the limit, and bytes beyond it that must not be read.
        mem[limit - 3 : limit + 16] = b"abc" + b"X" * 16
        return limit - 3

    fake_core.script = [step]
    out = io.BytesIO()
    Launcher(kernel, memory=16, output=out).run()
    assert out.getvalue() == b"abc"


def test_empty_early_console_string_writes_nothing(
    fake_core: type[FakeLguest], kernel: Path
) -> None:
    fake_core.script = [notifies(0x7000)]
    out = io.BytesIO()
    Launcher(kernel, memory=16, output=out).run()
    assert out.getvalue() == b""


def test_notify_beyond_guest_limit_is_fatal(fake_core: type[FakeLguest], kernel: Path) -> None:
    limit = 16 * MiB + 4096
    fake_core.script = [notifies(limit), prints(0x5000, b"never\0")]
    out = io.BytesIO()
    result = Launcher(kernel, memory=16, output=out).run()
    assert result.reason == f"bad NOTIFY {limit:#x} (guest memory ends at {limit:#x})"
    assert not result.poweroff and not result.restart
    assert result.status == EXIT_DIED == 1
    assert out.getvalue() == b""
    assert fake_core.instances[0].runs == 1


def test_crash_is_status_one(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [dies("bad read address 0x12345678 len 4")]
    result = Launcher(kernel, memory=16, output=io.BytesIO()).run()
    assert result.reason == "bad read address 0x12345678 len 4"
    assert result.status == 1


def test_panic_is_not_a_power_off(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [dies("CRASH: Kernel panic - not syncing: VFS")]
    result = Launcher(kernel, memory=16, output=io.BytesIO()).run()
    assert not result.poweroff
    assert result.status == 1


def test_restart_is_status_two(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [dies("CRASH: Restarting system", restart=True)]
    result = Launcher(kernel, memory=16, output=io.BytesIO()).run()
    assert result.restart
    assert not result.poweroff
    assert result.status == EXIT_RESTART == 2


def test_restart_recognised_by_errno(fake_core: type[FakeLguest], kernel: Path) -> None:
    def step(mem: memoryview) -> int:
        death = FakeGuestDied("restart")
        death.restart = False
        death.errno = 85
        raise death

    fake_core.script = [step]
    assert Launcher(kernel, memory=16, output=io.BytesIO()).run().restart


def test_interrupted_run_is_resumed(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [interrupted, prints(0x5000, b"ok\0")]
    out = io.BytesIO()
    assert Launcher(kernel, memory=16, output=out).run().poweroff
    assert out.getvalue() == b"ok"


def test_run_after_death_returns_the_same_exit(fake_core: type[FakeLguest], kernel: Path) -> None:
    launcher = Launcher(kernel, memory=16, output=io.BytesIO())
    first = launcher.run()
    assert launcher.run() is first
    assert fake_core.instances[0].runs == 1


def test_keyboard_interrupt_propagates(fake_core: type[FakeLguest], kernel: Path) -> None:
    def step(mem: memoryview) -> int:
        raise KeyboardInterrupt

    fake_core.script = [step]
    with pytest.raises(KeyboardInterrupt):
        Launcher(kernel, memory=16, output=io.BytesIO()).run()


def test_closed_launcher_cannot_run(fake_core: type[FakeLguest], kernel: Path) -> None:
    launcher = Launcher(kernel, memory=16, output=io.BytesIO())
    launcher.close()
    with pytest.raises(RuntimeError):
        launcher.run()


# --- the bus hook -----------------------------------------------------------


class RecordingBus:
    """A bus that claims one address and faults on another."""

    def __init__(self) -> None:
        self.claimed: list[int] = []
        self.setup_limit: int | None = None
        self.closed = False
        self.ring = 0

    def setup(self, lguest: object, layout: MemoryLayout) -> None:
        self.ring = layout.alloc_pages(3)
        self.setup_limit = layout.guest_limit

    def notify(self, address: int) -> bool:
        if address == self.ring:
            self.claimed.append(address)
            return True
        if address == self.ring + 4096:
            raise GuestFault("notification to a running device")
        return False

    def close(self) -> None:
        self.closed = True


def test_bus_allocates_before_initialize_and_claims_its_addresses(
    fake_core: type[FakeLguest], kernel: Path
) -> None:
    bus = RecordingBus()
    ring = 16 * MiB + 4096
    fake_core.script = [notifies(ring), prints(0x5000, b"console\0")]
    out = io.BytesIO()
    with Launcher(kernel, memory=16, output=out, bus=bus) as launcher:
        result = launcher.run()
    assert result.poweroff
    assert bus.ring == ring
    assert bus.claimed == [ring]
    assert out.getvalue() == b"console"
    # The vring pages count towards the guest's limit.
    assert bus.setup_limit == ring + 3 * 4096
    assert fake_core.instances[0].initialized == ((ring + 3 * 4096) // 4096, 0x100004)
    assert bus.closed


def test_guest_fault_from_the_bus_stops_the_guest(
    fake_core: type[FakeLguest], kernel: Path
) -> None:
    bus = RecordingBus()
    fake_core.script = [notifies(16 * MiB + 2 * 4096), prints(0x5000, b"never\0")]
    result = Launcher(kernel, memory=16, output=io.BytesIO(), bus=bus).run()
    assert result.reason == "notification to a running device"
    assert result.status == 1


# --- read_c_string ----------------------------------------------------------


def test_read_c_string() -> None:
    mem = bytearray(b"abc\0def" + b"g" * 5000)
    assert read_c_string(mem, 0, len(mem)) == b"abc"
    assert read_c_string(mem, 3, len(mem)) == b""
    assert read_c_string(mem, 4, len(mem)) == b"def" + b"g" * 5000
    assert read_c_string(mem, 4, 6) == b"de"
    assert read_c_string(mem, 10, 10) == b""


# --- the Guest API ----------------------------------------------------------


def test_guest_collects_output(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [prints(0x5000, b"hi there\n\0")]
    with Guest(kernel, memory=16, cmdline="quiet") as guest:
        assert guest.exit is None
        result = guest.run(timeout=10)
        assert guest.exit is result
    assert result.poweroff
    assert guest.output == b"hi there\n"
    assert guest.layout.ram_size == 16 * MiB
    assert guest.boot_info is not None and guest.boot_info.command_line == b"quiet"
    assert "exited" in repr(guest)


def test_guest_writes_to_a_given_stream(fake_core: type[FakeLguest], kernel: Path) -> None:
    fake_core.script = [prints(0x5000, b"streamed\0")]
    out = io.BytesIO()
    with Guest(kernel, memory=16, output=out) as guest:
        guest.run()
    assert out.getvalue() == b"streamed"
    assert guest.output == b""


def test_guest_with_a_bad_kernel_raises_at_construction(
    fake_core: type[FakeLguest], tmp_path: Path
) -> None:
    bad = tmp_path / "notakernel"
    bad.write_bytes(b"hello world\n")
    with pytest.raises(LaunchError, match="notakernel: not a kernel image"):
        Guest(bad, memory=16)


def test_guest_rejects_negative_timeout(fake_core: type[FakeLguest], kernel: Path) -> None:
    with Guest(kernel, memory=16) as guest, pytest.raises(ValueError):
        guest.run(timeout=-1)


def test_guest_exit_status_table() -> None:
    assert GuestExit("CRASH: Power down").status == 0
    assert GuestExit("CRASH: Power down", restart=True).status == 2
    assert GuestExit("CRASH: Power down!").status == 1
    assert GuestExit("Bad hypercall 99\n").status == 1
