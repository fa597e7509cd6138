"""The network device (virtio type 1) and the backends it can be plugged into.

The device moves packets between the guest and a *backend*:

- :class:`TapBackend`: a Linux tap interface, routed (an IPv4 address on the
  host side) or added to a bridge -- the original's ``--tunnet``.  Needs root
  (CAP_NET_ADMIN) and ``/dev/net/tun``.
- :class:`Switch`: an in-process hub.  Guests in one process plug into its
  ports; a Python callback can too (:meth:`Switch.connect`), to see every
  frame and to inject its own.
- :class:`UnixSocketBackend`: a point-to-point link over a ``SOCK_SEQPACKET``
  Unix socket at a path, between guests in different processes.  The first
  one to use the path listens, the second connects.

Every packet, in both directions and in every backend, starts with the
10-byte ``virtio_net_hdr`` (abi-devices.md 4.5), exactly as a tap device with
``IFF_VNET_HDR`` expects, so the device passes bytes through untouched.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import ipaddress
import os
import re
import socket
import stat
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from lguest.devices import (
    VIRTIO_F_NOTIFY_ON_EMPTY,
    VIRTIO_RING_F_INDIRECT_DESC,
    Device,
    QueueWorker,
)
from lguest.errors import GuestFault, LaunchError

if TYPE_CHECKING:
    from lguest.virtqueue import Virtqueue

__all__ = [
    "NET_HDR_LEN",
    "VIRTIO_ID_NET",
    "Net",
    "NetBackend",
    "Switch",
    "SwitchPort",
    "TapBackend",
    "TunnetSpec",
    "UnixSocketBackend",
    "parse_mac",
    "parse_net_spec",
    "parse_tunnet",
]

VIRTIO_ID_NET = 1
NET_HDR_LEN = 10

VIRTIO_NET_F_CSUM = 0
VIRTIO_NET_F_GUEST_CSUM = 1
VIRTIO_NET_F_MAC = 5
VIRTIO_NET_F_GUEST_TSO4 = 7
VIRTIO_NET_F_GUEST_TSO6 = 8
VIRTIO_NET_F_GUEST_ECN = 9
VIRTIO_NET_F_HOST_TSO4 = 11
VIRTIO_NET_F_HOST_TSO6 = 12
VIRTIO_NET_F_HOST_ECN = 13

#: What the original offered on top of the ring bits: checksum and TSO offload
#: both ways.  Only a tap device can take such packets as they are.
OFFLOAD_FEATURES = (
    1 << VIRTIO_NET_F_CSUM
    | 1 << VIRTIO_NET_F_GUEST_CSUM
    | 1 << VIRTIO_NET_F_GUEST_TSO4
    | 1 << VIRTIO_NET_F_GUEST_TSO6
    | 1 << VIRTIO_NET_F_GUEST_ECN
    | 1 << VIRTIO_NET_F_HOST_TSO4
    | 1 << VIRTIO_NET_F_HOST_TSO6
    | 1 << VIRTIO_NET_F_HOST_ECN
)

# Linux tun/tap and socket ioctls (abi-devices.md 4.5).
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNSETNOCSUM = 0x400454C8
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
SIOCBRADDIF = 0x89A2
SIOCSIFADDR = 0x8916
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFREQ_SIZE = 40

#: Packets a switch port holds for a guest that is not taking them.
PORT_QUEUE = 256
#: The largest packet a Switch or Unix-socket link carries: header plus a
#: full Ethernet frame with a VLAN tag (those backends offer no offloads, so
#: the guest never sends more).
MAX_PACKET = NET_HDR_LEN + 1518


class NetBackend(Protocol):
    """Where a network device's packets go and come from (header included)."""

    #: Whether packets may carry checksum/TSO offload (only a tap takes those).
    offload: bool

    def poll_fds(self) -> Sequence[int]:
        """File descriptors that become readable when :meth:`recv_into` may have a packet."""
        ...

    def recv_into(self, buffers: list[memoryview]) -> int:
        """Receive one packet into ``buffers``; its length, or -1 if there was none."""
        ...

    def send(self, buffers: Sequence[memoryview]) -> None:
        """Send one packet gathered from ``buffers``."""
        ...

    def close(self) -> None: ...


# --- command-line specs ------------------------------------------------------

_MAC = re.compile(r"[0-9A-Fa-f]{1,2}(:[0-9A-Fa-f]{1,2}){5}")


def parse_mac(text: str) -> bytes:
    """``"02:00:00:00:00:01"`` as 6 bytes; ValueError if it is not a MAC address."""
    if not _MAC.fullmatch(text):
        raise ValueError(f"{text!r} is not a MAC address (like 02:00:00:00:00:01)")
    return bytes(int(part, 16) for part in text.split(":"))


@dataclass(frozen=True)
class TunnetSpec:
    """A parsed ``--tunnet`` value: ``IP[:MAC]`` or ``bridge:NAME[:MAC]``."""

    address: str | None = None
    bridge: str | None = None
    mac: bytes | None = None


def parse_tunnet(text: str) -> TunnetSpec:
    """Parse ``IP[:MAC]`` or ``bridge:NAME[:MAC]``; ValueError says what is wrong.

    As in the original, the MAC is everything after the first colon (after
    the ``bridge:`` prefix).
    """
    mac: bytes | None = None
    if text.startswith("bridge:"):
        name, sep, mac_text = text[len("bridge:") :].partition(":")
        if not name:
            raise ValueError("the bridge name is empty")
        if len(name.encode()) > 15:
            raise ValueError(f"bridge name {name!r} is longer than 15 bytes")
        if sep:
            mac = parse_mac(mac_text)
        return TunnetSpec(bridge=name, mac=mac)
    address, sep, mac_text = text.partition(":")
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IPv4 address") from None
    if sep:
        mac = parse_mac(mac_text)
    return TunnetSpec(address=address, mac=mac)


@dataclass(frozen=True)
class NetSpec:
    """A parsed ``--net`` value."""

    kind: str
    path: str
    mac: bytes | None = None


def parse_net_spec(text: str) -> NetSpec:
    """Parse ``unix:PATH[,mac=MAC]``; ValueError says what is wrong."""
    kind, sep, rest = text.partition(":")
    if kind != "unix" or not sep:
        raise ValueError(f"{text!r}: expected unix:PATH[,mac=MAC]")
    path, _, options = rest.partition(",")
    if not path:
        raise ValueError(f"{text!r}: the socket path is empty")
    mac: bytes | None = None
    for option in filter(None, options.split(",")):
        key, eq, value = option.partition("=")
        if key != "mac" or not eq:
            raise ValueError(f"{text!r}: unknown option {option!r} (only mac=MAC)")
        mac = parse_mac(value)
    return NetSpec(kind, path, mac)


# --- the device ----------------------------------------------------------------


class Net(Device):
    """A network card plugged into ``backend``; ``mac`` fixes its address.

    Without a MAC the guest makes one up (and a different one each boot).
    """

    device_type: ClassVar[int] = VIRTIO_ID_NET
    queue_names: ClassVar[tuple[str, ...]] = ("receive", "transmit")

    def __init__(self, backend: NetBackend | Switch, mac: bytes | str | None = None) -> None:
        super().__init__()
        self.backend: NetBackend = backend.port() if isinstance(backend, Switch) else backend
        if isinstance(mac, str):
            mac = parse_mac(mac)
        if mac is not None and len(mac) != 6:
            raise ValueError("a MAC address is 6 bytes")
        self.mac = mac
        self._closed = False

    @property
    def name(self) -> str:
        return "net"

    # L:350 The network device.
    #
    # Two queues: receive (the guest posts empty buffers, writable) and
    # transmit (the guest posts packets, readable).  Both carry the 10-byte
    # virtio_net_hdr first, the same header a tap device speaks with
    # IFF_VNET_HDR, so packets pass through unchanged.  On a tap we offer what
    # the original offered -- checksum and TSO offload in both directions --
    # and the guest may then hand us 64 KiB "packets" with half-done
    # checksums that the host kernel finishes.  Other backends carry plain
    # Ethernet frames to another guest or to Python code, so there we offer no
    # offloads: the guest checksums and segments everything itself and its
    # receive buffers need only hold one frame.

    def features(self) -> int:
        bits = 1 << VIRTIO_F_NOTIFY_ON_EMPTY | 1 << VIRTIO_RING_F_INDIRECT_DESC
        if self.backend.offload:
            bits |= OFFLOAD_FEATURES
        if self.mac is not None:
            bits |= 1 << VIRTIO_NET_F_MAC
        return bits

    def config(self) -> bytes:
        # mac[6], status (not offered: 0).
        return (self.mac or bytes(6)) + bytes(2)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.backend.close()

    def serve(self, queue: Virtqueue, worker: QueueWorker) -> None:
        if queue.index == 0:
            self._serve_receive(queue, worker)
        else:
            self._serve_transmit(queue, worker)

    # L:360 Receiving.  Take an empty buffer first, then wait for a packet and
    # read it straight into the buffer.  If we have handed the guest packets it
    # has not been told about yet and nothing more is waiting, interrupt before
    # sleeping: the guest may be waiting for exactly those.

    def _serve_receive(self, queue: Virtqueue, worker: QueueWorker) -> None:
        while True:
            chain = worker.get()
            if chain.readable:
                raise GuestFault(f"{queue.name}: the guest offered a readable buffer")
            while True:
                n = self.backend.recv_into(chain.writable)
                if n >= 0:
                    break
                queue.trigger()
                fds = list(self.backend.poll_fds())
                worker.wait_readable(fds)
            queue.push(chain, n)

    def _serve_transmit(self, queue: Virtqueue, worker: QueueWorker) -> None:
        while True:
            chain = worker.get()
            if chain.writable:
                raise GuestFault(f"{queue.name}: the guest offered a writable buffer")
            try:
                self.backend.send(chain.readable)
            except OSError as exc:
                worker.log(f"net: sending a packet failed: {exc.strerror or exc}")
            queue.push(chain, 0)


def _scatter(packet: bytes | memoryview, buffers: list[memoryview]) -> int:
    done = 0
    for buf in buffers:
        n = min(len(buf), len(packet) - done)
        buf[:n] = packet[done : done + n]
        done += n
        if done == len(packet):
            break
    return done


# --- tap -------------------------------------------------------------------------


def _ifreq(name: str, payload: bytes = b"") -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(IFREQ_SIZE - 16, b"\0")


class TapBackend:
    """A Linux tap interface set up as the original's ``--tunnet`` did.

    ``spec`` is a :class:`TunnetSpec` or its text (``IP[:MAC]`` or
    ``bridge:NAME[:MAC]``).  Raises :class:`~lguest.errors.LaunchError` if the
    interface cannot be created or configured.
    """

    offload = True

    def __init__(self, spec: TunnetSpec | str) -> None:
        if isinstance(spec, str):
            try:
                spec = parse_tunnet(spec)
            except ValueError as exc:
                raise LaunchError(f"--tunnet: {exc}") from None
        self.spec = spec
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise LaunchError(f"--tunnet: /dev/net/tun: {exc.strerror}") from None
        try:
            self.ifname = self._configure(spec)
        except OSError as exc:
            os.close(self.fd)
            raise LaunchError(f"--tunnet: {exc.strerror or exc}") from None
        except LaunchError:
            os.close(self.fd)
            raise
        os.set_blocking(self.fd, False)

    def _configure(self, spec: TunnetSpec) -> str:
        flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
        answer = fcntl.ioctl(self.fd, TUNSETIFF, _ifreq("tap%d", struct.pack("H", flags)))
        name = answer[:16].split(b"\0", 1)[0].decode()
        fcntl.ioctl(self.fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
        try:
            fcntl.ioctl(self.fd, TUNSETNOCSUM, 1)
        except OSError:
            pass
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            if spec.bridge is not None:
                try:
                    index = socket.if_nametoindex(name)
                except OSError:
                    raise LaunchError(f"--tunnet: interface {name} vanished") from None
                try:
                    fcntl.ioctl(sock, SIOCBRADDIF, _ifreq(spec.bridge, struct.pack("i", index)))
                except OSError as exc:
                    raise LaunchError(
                        f"--tunnet: cannot add {name} to bridge {spec.bridge}: {exc.strerror}"
                    ) from None
                address = "0.0.0.0"
            else:
                assert spec.address is not None
                address = spec.address
            sin = struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))
            fcntl.ioctl(sock, SIOCSIFADDR, _ifreq(name, sin))
            fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", IFF_UP)))
        return name

    def poll_fds(self) -> Sequence[int]:
        return (self.fd,)

    def recv_into(self, buffers: list[memoryview]) -> int:
        try:
            return os.readv(self.fd, buffers)
        except BlockingIOError:
            return -1

    def send(self, buffers: Sequence[memoryview]) -> None:
        os.writev(self.fd, buffers)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- the in-process switch ------------------------------------------------------


class SwitchPort:
    """One port of a :class:`Switch`: a backend for a guest's network device,
    or (with a callback) the switch's connection to Python code."""

    offload = False

    def __init__(self, switch: Switch, callback: Callable[[bytes], None] | None = None) -> None:
        self.switch = switch
        self.callback = callback
        self._queue: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._event = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        #: Packets dropped because the guest was not taking them fast enough.
        self.dropped = 0

    def poll_fds(self) -> Sequence[int]:
        return (self._event,)

    def recv_into(self, buffers: list[memoryview]) -> int:
        while True:
            with self._lock:
                if not self._queue:
                    try:
                        os.eventfd_read(self._event)
                    except BlockingIOError:
                        pass
                    return -1
                packet = self._queue.popleft()
            if len(packet) <= sum(len(b) for b in buffers):
                return _scatter(packet, buffers)
            self.dropped += 1

    def send(self, buffers: Sequence[memoryview]) -> None:
        self.switch.deliver(self, b"".join(buffers))

    def inject(self, frame: bytes) -> None:
        """Send an Ethernet frame from this (callback) port to every other port."""
        self.switch.deliver(self, bytes(NET_HDR_LEN) + bytes(frame))

    def _receive(self, packet: bytes) -> None:
        if self.callback is not None:
            self.callback(packet[NET_HDR_LEN:])
            return
        with self._lock:
            if len(self._queue) >= PORT_QUEUE:
                self.dropped += 1
                return
            self._queue.append(packet)
        os.eventfd_write(self._event, 1)

    def close(self) -> None:
        self.switch.unplug(self)
        if self._event >= 0:
            os.close(self._event)
            self._event = -1


class Switch:
    """An in-process Ethernet hub: every packet goes to every other port.

    ``Net(switch)`` (or ``guest.add_net(switch)``) plugs a guest in;
    ``switch.connect(callback)`` plugs in Python code, which is called with
    every Ethernet frame (no virtio header) and can send with the returned
    port's :meth:`~SwitchPort.inject`.
    """

    def __init__(self) -> None:
        self._ports: list[SwitchPort] = []
        self._lock = threading.Lock()

    def port(self) -> SwitchPort:
        port = SwitchPort(self)
        with self._lock:
            self._ports.append(port)
        return port

    def connect(self, callback: Callable[[bytes], None]) -> SwitchPort:
        port = SwitchPort(self, callback)
        with self._lock:
            self._ports.append(port)
        return port

    def unplug(self, port: SwitchPort) -> None:
        with self._lock:
            if port in self._ports:
                self._ports.remove(port)

    def deliver(self, sender: SwitchPort, packet: bytes) -> None:
        if len(packet) > MAX_PACKET:
            sender.dropped += 1
            return
        with self._lock:
            ports = [p for p in self._ports if p is not sender]
        for port in ports:
            port._receive(packet)


# --- Unix sockets ---------------------------------------------------------------


class UnixSocketBackend:
    """A point-to-point link to another process over a Unix socket at ``path``.

    If something listens at ``path`` we connect to it; otherwise we listen
    there (replacing a stale socket file) and take the first peer that
    connects, and the next one when that one goes.  Packets sent while no
    peer is connected are dropped, as on an unplugged cable.
    """

    offload = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.listener: socket.socket | None = None
        self.conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._owns_path = False
        try:
            self._open()
        except OSError as exc:
            raise LaunchError(f"--net unix:{self.path}: {exc.strerror or exc}") from None

    def _open(self) -> None:
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
            else:
                self._adopt(sock)
                return
            try:
                if stat.S_ISSOCK(os.stat(self.path).st_mode):
                    os.unlink(self.path)  # nobody listens: a stale socket
            except FileNotFoundError:
                pass
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                listener.bind(self.path)
            except OSError as exc:
                listener.close()
                if exc.errno == errno.EADDRINUSE:
                    continue  # the peer got there first: connect to it
                raise
            listener.listen(1)
            listener.setblocking(False)
            self.listener = listener
            self._owns_path = True
            return
        raise OSError(errno.EADDRINUSE, "cannot connect or listen")

    def _adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with self._lock:
            if self.conn is not None:
                self.conn.close()
            self.conn = sock

    def poll_fds(self) -> Sequence[int]:
        fds = []
        if self.conn is not None:
            fds.append(self.conn.fileno())
        if self.listener is not None:
            fds.append(self.listener.fileno())
        return fds

    def recv_into(self, buffers: list[memoryview]) -> int:
        if self.listener is not None:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                pass
            else:
                self._adopt(sock)
        conn = self.conn
        if conn is None:
            return -1
        try:
            n, _, flags, _ = conn.recvmsg_into(buffers)
        except (BlockingIOError, InterruptedError):
            return -1
        except OSError:
            n, flags = 0, 0
        if n == 0:
            # The peer went away.
            with self._lock:
                if self.conn is conn:
                    self.conn = None
            conn.close()
            return -1
        if flags & socket.MSG_TRUNC:
            return -1  # too big for the guest's buffer: dropped
        return n

    def send(self, buffers: Sequence[memoryview]) -> None:
        with self._lock:
            conn = self.conn
            if conn is None:
                return
            try:
                conn.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                pass  # the peer is not keeping up: drop, like a busy wire
            except OSError:
                self.conn = None
                conn.close()

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            if self._owns_path:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
