"""Boot the bundled demo guest and check what it reports.

The demo guest (guest/, shipped as lguest/guests/demo.elf) prints one line per
check when its command line has ``selftest``: ``PASS name``, ``FAIL name: why``
or ``SKIP name: why``, then powers off with "Power down" only if nothing failed.
These tests boot it through the command line and through :class:`lguest.Guest`,
check every line, verify on the host what it wrote to a disk, let two guests
exchange frames on an in-process switch, and drive its console monitor.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path

import pytest

pytest.importorskip("lguest._core")

if not resources.files("lguest").joinpath("guests/demo.elf").is_file():
    pytest.skip("the demo guest has not been built", allow_module_level=True)

#: Checks that need nothing but the host core; each must PASS.
CORE_CHECKS = [
    "boot",
    "traps",
    "gp",
    "io-emulation",
    "gdt-tls",
    "kernel-text-ro",
    "set-pte",
    "async-ring",
    "ts",
    "timer",
    "halt",
    "tasks",
    "syscalls",
    "tls",
    "demand-zero",
    "preempt",
    "user-faults",
    "bus",
]
#: The floating-point check passes, or is skipped while the host's CPUID does
#: not advertise an FPU.
FPU_SKIP = "SKIP fpu: not advertised"
TIMEOUT = 120


def _devices():
    try:
        from lguest.devices import net  # noqa: F401
    except ImportError:
        pytest.skip("the Launcher's devices (lguest.devices) are not available yet")
    from lguest.devices.net import Switch

    return Switch


def results(output: str) -> dict[str, str]:
    """{check name: the whole PASS/FAIL/SKIP line}."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP) ([\w-]+)", line)
        if m:
            found[m.group(2)] = line
    return found


def assert_selftest_passed(output: str, also: list[str] = ()) -> dict[str, str]:
    found = results(output)
    failed = [line for line in found.values() if line.startswith("FAIL")]
    assert not failed, "\n".join(failed)
    for name in [*CORE_CHECKS, *also]:
        assert found.get(name) == f"PASS {name}", f"{name}: {found.get(name)!r}\n{output}"
    assert found.get("fpu") in ("PASS fpu", FPU_SKIP)
    assert re.search(r"selftest: \d+ passed, 0 failed, \d+ skipped", output)
    return found


def lguest(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lguest", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --- through the command line ----------------------------------------------------


def test_selftest_through_the_cli() -> None:
    result = lguest("-m", "32", "--", "selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    found = assert_selftest_passed(result.stdout, ["console"])
    for device in ("blk", "rng", "net"):
        assert found[device].startswith("SKIP"), found[device]
    assert result.stdout.rstrip().endswith("Power down")


def test_selftest_with_every_device_through_the_cli(tmp_path: Path) -> None:
    _devices()
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(64 * 512))
    result = lguest("--block", str(disk), "--rng", "--", "selftest")
    assert result.returncode == 0, result.stdout + result.stderr
    assert_selftest_passed(result.stdout, ["console", "blk", "rng"])
    # The guest wrote its marker into the last sector; read it on the host.
    last = disk.read_bytes()[-512:]
    assert last.startswith(b"lguest demo guest selftest: sector 63\n")
    assert last[128:] == bytes(i & 0xFF for i in range(128, 512))


def test_default_run_shows_the_user_tasks_and_powers_off() -> None:
    result = lguest("-m", "32")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alpha exited with 0, beta exited with 0" in result.stdout
    assert "hello from ring 3" in result.stdout


def test_bench_prints_guest_measured_times() -> None:
    result = lguest("-m", "32", "--", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
    times = re.findall(r"^bench: (\S+) .* (\d+)\.(\d{3}) ms", result.stdout, re.M)
    assert {name for name, _, _ in times} >= {"loop", "sieve", "fib", "crc32", "memcpy", "hypercall"}


def test_crash_word_ends_in_a_host_kill() -> None:
    result = lguest("-m", "16", "--", "crash")
    assert result.returncode == 1
    assert "Bad hypercall 99" in result.stderr


# --- through the Python API ---------------------------------------------------------


def test_selftest_through_the_api(tmp_path: Path) -> None:
    from lguest import Guest

    with Guest(memory=32, cmdline="selftest") as guest:
        result = guest.run(timeout=TIMEOUT)
        output = guest.output.decode()
    assert result.poweroff, result.reason
    assert_selftest_passed(output)


def test_api_selftest_with_devices(tmp_path: Path) -> None:
    switch_cls = _devices()
    from lguest import Guest

    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(16 * 512))
    with Guest(memory=32, cmdline="selftest") as guest:
        guest.add_block(disk)
        guest.add_rng()
        guest.add_net(switch_cls())
        result = guest.run(timeout=TIMEOUT)
        output = guest.output.decode()
    assert result.poweroff, result.reason + "\n" + output
    assert_selftest_passed(output, ["console", "blk", "rng", "net"])
    assert disk.read_bytes()[-512:].startswith(b"lguest demo guest selftest: sector 15\n")


def test_two_guests_exchange_frames() -> None:
    switch_cls = _devices()
    from lguest import Guest

    switch = switch_cls()
    guests = [Guest(memory=32, cmdline="selftest netpeer") for _ in range(2)]
    for guest in guests:
        guest.add_net(switch)
    exits: list[object] = [None, None]

    def run(i: int) -> None:
        exits[i] = guests[i].run(timeout=TIMEOUT)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    try:
        for guest, result in zip(guests, exits):
            output = guest.output.decode()
            assert result is not None and result.poweroff, output
            found = assert_selftest_passed(output, ["net", "net-peer"])
            assert found["net-peer"] == "PASS net-peer"
    finally:
        for guest in guests:
            guest.close()


def test_monitor_through_the_console(tmp_path: Path) -> None:
    _devices()
    from lguest import Guest

    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(8 * 512))
    prompt = b"lguest> "
    with Guest(memory=32, cmdline="monitor") as guest:
        guest.add_block(disk)
        guest.add_rng()
        guest.expect(prompt, timeout=TIMEOUT)

        def command(text: str) -> str:
            guest.send(text + "\n")
            return guest.expect(b"(?s)(.*?)" + re.escape(prompt), timeout=TIMEOUT).group(1).decode()

        assert "blk write N TEXT" in command("help")
        assert "device 0: block (type 2)" in command("info")
        assert "pages free" in command("mem")
        assert re.search(r"0 kernel +run", command("tasks"))
        assert "wrote sector 5" in command("blk write 5 written by the monitor")
        assert "77 72 69 74 74 65 6e 20" in command("blk read 5")  # "written "
        assert re.search(r"0000:( [0-9a-f]{2}){16}", command("rng"))
        assert "net: no device" in command("net send")
        assert "bench: sieve" in command("bench")
        assert "unknown command" in command("frobnicate")
        guest.send("poweroff\n")
        result = guest.run(timeout=TIMEOUT)
    assert result.poweroff
    assert disk.read_bytes()[5 * 512 :].startswith(b"written by the monitor\0")
