"""The north star: an unmodified Linux 2.6.32 lguest guest boots to a busybox shell.

The kernel and initramfs are built outside the repository (see docs/linux.md);
these tests read their paths from LGUEST_LINUX_KERNEL and LGUEST_LINUX_INITRD
and are skipped without them.  The initramfs must start a shell on /dev/hvc0.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from pathlib import Path

import pytest

from lguest import Guest
from lguest.devices.net import Switch

KERNEL = os.environ.get("LGUEST_LINUX_KERNEL")
INITRD = os.environ.get("LGUEST_LINUX_INITRD")

pytestmark = [
    pytest.mark.skipif(
        not (KERNEL and INITRD),
        reason="set LGUEST_LINUX_KERNEL and LGUEST_LINUX_INITRD to boot Linux 2.6.32",
    ),
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

BOOT_TIMEOUT = float(os.environ.get("LGUEST_LINUX_BOOT_TIMEOUT", "600"))
_serial = itertools.count(1)


def shell(guest: Guest, command: str, timeout: float = 120) -> str:
    """Run ``command`` in the guest's shell and return what it printed.

    The end marker is computed by the shell (``$((n+0))``), so the echoed
    command line itself never matches it.
    """
    n = next(_serial)
    guest.send(f"{command}; echo __END$(({n}+0))__\n")
    m = guest.expect(rb"(?s)(.*?)__END" + str(n).encode() + rb"__\r?\n", timeout=timeout)
    out = m.group(1).decode(errors="replace")
    # Drop the echoed command line (everything up to its first newline).
    return out.split("\n", 1)[1] if "\n" in out else out


def boot(guest: Guest) -> None:
    guest.expect(rb"# ", timeout=BOOT_TIMEOUT)
    # A harmless command makes sure the shell is reading input.
    assert "ready" in shell(guest, "echo ready")


def linux(tmp_path: Path, **kwargs: object) -> Guest:
    assert KERNEL and INITRD
    return Guest(KERNEL, memory=128, cmdline="console=hvc0", initrd=INITRD, **kwargs)  # type: ignore[arg-type]


def test_boots_to_a_shell_and_runs_commands(tmp_path: Path) -> None:
    with linux(tmp_path) as g:
        boot(g)
        assert "2.6.32" in shell(g, "uname -r")
        listing = shell(g, "ls /")
        assert "proc" in listing and "dev" in listing
        assert "lguest" in shell(g, "cat /proc/cpuinfo") or "LguestInterp" in shell(g, "cat /proc/cpuinfo")
        g.send("poweroff -f\n")
        exit_ = g.run(timeout=120)
        assert exit_.poweroff and exit_.status == 0


def test_block_device_reads_and_writes_the_host_file(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"written-by-the-host".ljust(512, b"\0") + bytes(1 << 20))
    with linux(tmp_path) as g:
        g.add_block(image)
        boot(g)
        assert "written-by-the-host" in shell(g, "head -c 19 /dev/vda; echo")
        shell(g, "echo written-by-the-guest | dd of=/dev/vda bs=512 seek=1 conv=sync,fsync 2>/dev/null")
        g.send("poweroff -f\n")
        g.run(timeout=120)
    assert image.read_bytes()[512 : 512 + 21] == b"written-by-the-guest\n"


def test_hwrng_gives_bytes(tmp_path: Path) -> None:
    with linux(tmp_path) as g:
        g.add_rng()
        boot(g)
        out = shell(g, "head -c 32 /dev/hwrng | od -An -tx1")
        hexbytes = re.findall(r"\b[0-9a-f]{2}\b", out)
        assert len(hexbytes) == 32 and len(set(hexbytes)) > 4, out


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


class Responder:
    """The host end of the guest's network: answers ARP for 10.0.2.2 and echo
    requests to it, so the guest's ping gets replies."""

    MAC = bytes.fromhex("525400000002")
    IP = bytes([10, 0, 2, 2])

    def __init__(self, switch: Switch) -> None:
        self.port = switch.connect(self.receive)
        self.frames = 0
        self.echo_requests = 0

    def receive(self, frame: bytes) -> None:
        self.frames += 1
        dst, src, ethertype = frame[:6], frame[6:12], frame[12:14]
        if ethertype == b"\x08\x06" and frame[38:42] == self.IP and frame[20:22] == b"\x00\x01":
            reply = (
                src + self.MAC + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02"
                + self.MAC + self.IP + frame[22:28] + frame[28:32]
            )
            self.port.inject(reply)
        elif ethertype == b"\x08\x00" and frame[30:34] == self.IP and frame[23] == 1:
            ihl = (frame[14] & 0xF) * 4
            ip = bytearray(frame[14 : 14 + ihl])
            icmp = bytearray(frame[14 + ihl :])
            if icmp[0] != 8:
                return
            self.echo_requests += 1
            icmp[0] = 0
            icmp[2:4] = b"\0\0"
            icmp[2:4] = struct.pack("!H", _icmp_checksum(bytes(icmp)))
            ip[12:16], ip[16:20] = ip[16:20], ip[12:16]
            ip[10:12] = b"\0\0"
            ip[10:12] = struct.pack("!H", _icmp_checksum(bytes(ip)))
            self.port.inject(src + self.MAC + b"\x08\x00" + bytes(ip) + bytes(icmp))


def test_network_comes_up_and_exchanges_packets_with_the_host(tmp_path: Path) -> None:
    switch = Switch()
    host = Responder(switch)
    with linux(tmp_path) as g:
        g.add_net(switch)
        boot(g)
        shell(g, "ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up")
        assert "10.0.2.15" in shell(g, "ifconfig eth0")
        out = shell(g, "ping -c 2 10.0.2.2", timeout=60)
        assert "2 packets received" in out or "2 received" in out, out
    assert host.echo_requests >= 2


def test_bzimage_can_decompress_itself_in_the_guest(tmp_path: Path) -> None:
    """By default the Launcher unpacks a bzImage (L:125); the guest's own
    decompressor, the original Launcher's only path, must work too."""
    with linux(tmp_path, unpack=False) as g:
        boot(g)
        assert "2.6.32" in shell(g, "uname -r")
        g.send("poweroff -f\n")
        assert g.run(timeout=120).poweroff


def test_reboot_is_reported_as_a_restart(tmp_path: Path) -> None:
    with linux(tmp_path) as g:
        boot(g)
        g.send("reboot -f\n")
        exit_ = g.run(timeout=120)
        assert exit_.restart and exit_.status == 2
