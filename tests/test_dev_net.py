"""virtio-net with its backends: the in-process switch, Unix sockets, tap."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from lguest import LaunchError
from lguest.devices.net import (
    NET_HDR_LEN,
    OFFLOAD_FEATURES,
    VIRTIO_NET_F_MAC,
    Net,
    Switch,
    TapBackend,
    UnixSocketBackend,
    parse_mac,
    parse_net_spec,
    parse_tunnet,
)
from lguest.errors import GuestFault
from lguest.virtqueue import Virtqueue
from test_virtqueue_guest import BusHarness, GuestRing, serve_directly

HDR = bytes(NET_HDR_LEN)
FRAME = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x06" + b"payload!" * 8


def started(net: Net) -> tuple[BusHarness, GuestRing, GuestRing]:
    h = BusHarness([net])
    h.start(0)
    return h, h.ring(0, 0), h.ring(0, 1)


def test_features_and_config() -> None:
    switch = Switch()
    plain = Net(switch)
    assert not plain.features() & OFFLOAD_FEATURES
    assert plain.features() >> 24 & 1 and plain.features() >> 28 & 1
    assert plain.config() == bytes(8)
    with_mac = Net(switch, mac="02:00:00:00:00:07")
    assert with_mac.features() >> VIRTIO_NET_F_MAC & 1
    assert with_mac.config() == bytes([2, 0, 0, 0, 0, 7, 0, 0])


def test_two_guests_on_a_switch() -> None:
    switch = Switch()
    ha, _, tx_a = started(Net(switch))
    hb, rx_b, _ = started(Net(switch))
    try:
        head, ins = rx_b.post([], [NET_HDR_LEN, 1518])
        hb.kick(0, 0)
        t, _ = tx_a.post([HDR, FRAME], indirect=True)
        ha.kick(0, 1)
        assert tx_a.wait_used(1) == [(t, 0)]
        assert rx_b.wait_used(1) == [(head, NET_HDR_LEN + len(FRAME))]
        assert rx_b.read(ins[1], len(FRAME)) == FRAME
        # The receiver's IRQ (its queue 0) was raised.
        deadline = time.monotonic() + 5
        while 1 not in hb.core.irqs and time.monotonic() < deadline:
            time.sleep(0.001)
        assert 1 in hb.core.irqs
        assert (ins[1], len(FRAME)) in hb.core.dma
    finally:
        ha.close()
        hb.close()


def test_python_callback_on_a_switch() -> None:
    switch = Switch()
    seen: list[bytes] = []
    port = switch.connect(seen.append)
    h, rx, tx = started(Net(switch))
    try:
        tx.post([HDR + FRAME])
        h.kick(0, 1)
        tx.wait_used(1)
        assert seen == [FRAME]
        head, ins = rx.post([], [NET_HDR_LEN + 1518])
        h.kick(0, 0)
        port.inject(FRAME[::-1])
        assert rx.wait_used(1) == [(head, NET_HDR_LEN + len(FRAME))]
        assert rx.read(ins[0], NET_HDR_LEN + len(FRAME)) == HDR + FRAME[::-1]
    finally:
        h.close()


def test_packets_too_big_for_the_buffer_are_dropped() -> None:
    switch = Switch()
    port = switch.connect(lambda frame: None)
    net = Net(switch)
    h, rx, _ = started(net)
    try:
        head, _ = rx.post([], [64])
        h.kick(0, 0)
        port.inject(bytes(100))
        port.inject(bytes(20))
        assert rx.wait_used(1) == [(head, NET_HDR_LEN + 20)]
    finally:
        h.close()


def test_unix_socket_link(tmp_path: Path) -> None:
    path = tmp_path / "link.sock"
    a = UnixSocketBackend(path)
    assert a.listener is not None
    b = UnixSocketBackend(path)
    assert b.conn is not None
    ha, rx_a, tx_a = started(Net(a))
    hb, rx_b, tx_b = started(Net(b))
    try:
        # a accepts b's connection when its receive side looks.
        head_a, ins_a = rx_a.post([], [NET_HDR_LEN + 1518])
        ha.kick(0, 0)
        head_b, _ = rx_b.post([], [NET_HDR_LEN + 1518])
        hb.kick(0, 0)
        tx_b.post([HDR, FRAME])
        hb.kick(0, 1)
        assert rx_a.wait_used(1) == [(head_a, NET_HDR_LEN + len(FRAME))]
        assert rx_a.read(ins_a[0] + NET_HDR_LEN, len(FRAME)) == FRAME
        tx_a.post([HDR, b"back" * 20])
        ha.kick(0, 1)
        assert rx_b.wait_used(1) == [(head_b, NET_HDR_LEN + 80)]
    finally:
        ha.close()
        hb.close()
    assert not path.exists()


def test_unix_socket_replaces_a_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.bind(str(path))
    s.close()
    backend = UnixSocketBackend(path)
    assert backend.listener is not None
    backend.close()


def test_unix_socket_in_a_missing_directory() -> None:
    with pytest.raises(LaunchError, match="unix:/nonexistent/dir/sock"):
        UnixSocketBackend("/nonexistent/dir/sock")


def test_wrong_buffer_directions_are_faults() -> None:
    mem = bytearray(1 << 20)
    net = Net(Switch())
    ring = GuestRing(mem, 0x10000, 0x20000, len(mem))
    ring.post([b"x"], [64])
    with pytest.raises(GuestFault, match="readable buffer"):
        serve_directly(net, Virtqueue(mem, 0x10000, limit=len(mem), index=0))
    ring = GuestRing(mem, 0x40000, 0x50000, len(mem))
    ring.post([HDR], [64])
    with pytest.raises(GuestFault, match="writable buffer"):
        serve_directly(net, Virtqueue(mem, 0x40000, limit=len(mem), index=1))


def test_specs() -> None:
    assert parse_tunnet("192.168.19.1").address == "192.168.19.1"
    spec = parse_tunnet("10.0.0.1:02:00:00:00:00:01")
    assert spec.mac == bytes([2, 0, 0, 0, 0, 1])
    spec = parse_tunnet("bridge:br0:02:00:00:00:00:02")
    assert spec.bridge == "br0" and spec.mac == bytes([2, 0, 0, 0, 0, 2])
    assert parse_tunnet("bridge:br0").mac is None
    for bad in (
        "",
        "300.1.1.1",
        "10.0.0.1:zz",
        "bridge:",
        "bridge::02:00:00:00:00:01",
        "eth0",
    ):
        with pytest.raises(ValueError):
            parse_tunnet(bad)
    assert parse_mac("2:0:0:0:0:a") == bytes([2, 0, 0, 0, 0, 10])
    spec2 = parse_net_spec("unix:/tmp/x.sock,mac=02:00:00:00:00:03")
    assert (spec2.path, spec2.mac) == ("/tmp/x.sock", bytes([2, 0, 0, 0, 0, 3]))
    for bad in ("unix:", "tcp:1.2.3.4", "unix:/x,speed=9"):
        with pytest.raises(ValueError):
            parse_net_spec(bad)


def tun_usable() -> bool:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        return False
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError:
        return False
    return True


needs_tun = pytest.mark.skipif(not tun_usable(), reason="needs root and /dev/net/tun")


@needs_tun
def test_tap_backend_is_configured() -> None:
    try:
        tap = TapBackend("10.213.77.1")
    except LaunchError as exc:
        pytest.skip(f"tap cannot be configured here: {exc}")
    try:
        assert tap.ifname.startswith("tap")
        assert socket.if_nametoindex(tap.ifname) > 0
        net = Net(tap)
        assert net.features() & OFFLOAD_FEATURES == OFFLOAD_FEATURES
        # Nothing to read yet.
        buf = bytearray(2048)
        assert tap.recv_into([memoryview(buf)]) == -1
    finally:
        tap.close()


@needs_tun
def test_tap_into_a_missing_bridge_is_a_launch_error() -> None:
    with pytest.raises(LaunchError, match="bridge"):
        TapBackend("bridge:nosuchbr0")
