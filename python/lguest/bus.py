"""The lguest bus: the device descriptor page, the status protocol, queue threads.

:class:`LguestBus` is the Launcher's :class:`~lguest.launcher.Bus`.  Given a
list of :class:`~lguest.devices.Device` objects it lays them out in the page
above the guest's RAM (abi-devices.md section 2), gives every virtqueue three
pages for its vring and an interrupt line, and then follows the guest's
driver: it starts a device (one thread per queue, each woken by an eventfd
the core signals when the guest kicks that queue) when the driver says
DRIVER_OK, and stops and clears it when the driver resets it.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from lguest.devices import Device, DeviceStopped
from lguest.errors import GuestFault, LaunchError
from lguest.layout import PAGE_SIZE
from lguest.virtqueue import VRING_NUM, VRING_PAGES, Chain, Virtqueue

if TYPE_CHECKING:
    from lguest._core import Lguest
    from lguest.layout import MemoryLayout

__all__ = [
    "STATUS_ACKNOWLEDGE",
    "STATUS_DRIVER",
    "STATUS_DRIVER_OK",
    "STATUS_FAILED",
    "Core",
    "DeviceSlot",
    "LguestBus",
]

log = logging.getLogger("lguest")

STATUS_ACKNOWLEDGE = 0x01
STATUS_DRIVER = 0x02
STATUS_DRIVER_OK = 0x04
STATUS_FAILED = 0x80

#: IRQ 0 is the timer; the host accepts lines 1..31 for devices.
FIRST_IRQ = 1
LGUEST_IRQS = 32
#: How long close() and reset wait for a queue thread to notice it must stop.
JOIN_TIMEOUT = 5.0


class Core(Protocol):
    """The parts of ``lguest._core.Lguest`` the bus uses (a fake in tests)."""

    @property
    def mem(self) -> memoryview: ...

    def irq(self, n: int) -> None: ...

    def eventfd(self, addr: int, fd: int, replace: bool = False) -> None: ...

    def detach_eventfd(self, addr: int) -> int: ...


class DeviceSlot:
    """One device on the bus: where its descriptor is, its queues, whether it runs."""

    def __init__(self, device: Device, address: int, queues: list[Virtqueue], feature_len: int):
        self.device = device
        #: Guest-physical address of the device's descriptor (its status NOTIFY address).
        self.address = address
        self.queues = queues
        self.feature_len = feature_len
        self.running = False
        self.workers: list[_Worker] = []

    @property
    def status_address(self) -> int:
        return self.address + 4

    @property
    def driver_features_address(self) -> int:
        return self.address + 5 + 8 * len(self.queues) + self.feature_len


# L:213 One thread per virtqueue, as the original Launcher had one cloned
# process per queue.  A thread owns two eventfds: ``kick``, which the core
# signals when the guest NOTIFYs this queue's vring (H:1205), and
# ``stop_fd``, which the bus signals when the device is reset or closed.
# The thread spends its life in the device's serve() (L:215), and whenever
# the queue is empty it sleeps in wait() until one of the two fires.  No
# Python code stands between the guest's kick and this thread waking up:
# the vCPU writes the eventfd from Rust and goes on running the guest.
class _Worker(threading.Thread):
    """The thread that serves one virtqueue (the original's per-queue clone)."""

    def __init__(self, bus: LguestBus, slot: DeviceSlot, queue: Virtqueue) -> None:
        super().__init__(name=f"lguest-{slot.device.name}-{queue.name}", daemon=True)
        self.bus = bus
        self.slot = slot
        self.queue = queue
        self.kick = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.stop_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self.stopping = False

    # QueueWorker, for the device code running in this thread.

    def get(self) -> Chain:
        return self.queue.get(self.wait)

    def wait(self) -> None:
        poller = select.poll()
        poller.register(self.kick, select.POLLIN)
        poller.register(self.stop_fd, select.POLLIN)
        while True:
            if self.stopping:
                raise DeviceStopped
            ready = {fd for fd, _ in poller.poll()}
            if self.stop_fd in ready or self.stopping:
                raise DeviceStopped
            if self.kick in ready:
                try:
                    os.eventfd_read(self.kick)
                except BlockingIOError:
                    continue
                return

    def wait_readable(self, fd: int | Sequence[int], timeout: float | None = None) -> bool:
        if self.stopping:
            raise DeviceStopped
        fds = [fd] if isinstance(fd, int) else list(fd)
        poller = select.poll()
        for each in fds:
            poller.register(each, select.POLLIN)
        poller.register(self.stop_fd, select.POLLIN)
        ready = dict(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))
        if self.stop_fd in ready or self.stopping:
            raise DeviceStopped
        return any(each in ready for each in fds)

    def interrupt_launcher(self) -> None:
        self.bus.request_interrupt()

    def log(self, message: str) -> None:
        log.warning("%s", message)

    def run(self) -> None:
        device = self.slot.device
        try:
            device.serve(self.queue, self)
        except DeviceStopped:
            pass
        except GuestFault as fault:
            if not self.stopping:
                self.bus.fault(str(fault))
        except Exception as exc:
            if not self.stopping:
                log.debug("%s %s thread failed", device.name, self.queue.name, exc_info=True)
                self.bus.fault(f"{device.name}: {self.queue.name} queue failed: {exc}")

    def stop(self) -> None:
        self.stopping = True
        os.eventfd_write(self.stop_fd, 1)

    def close_fds(self) -> None:
        for fd in (self.kick, self.stop_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class LguestBus:
    """The lguest bus with its devices, in order; the console should be last.

    ``on_fault(reason)`` is called (from any thread) when a device finds the
    guest misbehaving; the Launcher binds it to stop the guest with that
    reason.  ``on_interrupt()`` is the console's triple Ctrl-C.
    """

    def __init__(self, devices: Sequence[Device] = ()) -> None:
        self.devices: list[Device] = list(devices)
        self.slots: list[DeviceSlot] = []
        self.on_fault: Callable[[str], None] | None = None
        self.on_interrupt: Callable[[], None] | None = None
        #: The first fault a device reported, if any.
        self.fault_reason: str | None = None
        self._core: Core | None = None
        self._mem: memoryview | None = None
        self._by_address: dict[int, DeviceSlot] = {}
        self._by_vring: dict[int, tuple[DeviceSlot, Virtqueue]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def add(self, device: Device) -> Device:
        """Append a device (before the guest is set up)."""
        if self._core is not None:
            raise RuntimeError("devices must be added before the guest is booted")
        self.devices.append(device)
        return device

    def bind(self, on_fault: Callable[[str], None], on_interrupt: Callable[[], None]) -> None:
        """The Launcher's hooks: stop the guest with a reason, or as if interrupted."""
        self.on_fault = on_fault
        self.on_interrupt = on_interrupt

    # L:200 The device descriptor page.
    #
    # Everything the guest learns about its devices is in one page just above
    # its RAM.  Each device gets a descriptor: a 5-byte header (type, number of
    # queues, length of one feature bitmap, length of the config, status),
    # then one 8-byte record per queue (ring size, IRQ, page frame), then two
    # feature bitmaps of equal length -- the bits we offer, then the bits the
    # guest accepts, which it writes itself -- then the config bytes.  There is
    # no padding anywhere, the next descriptor follows at once, and a type of
    # zero (the rest of the zeroed page) ends the list.
    #
    # Queues get their vrings, three pages each, from the device area in
    # creation order, and their IRQs from a counter starting at 1 (0 is the
    # timer), so the console, created last, has the highest lines.  The host
    # accepts 32 lines, so the 32nd queue is refused here rather than failing
    # later at its first interrupt, as it did in the original.

    def setup(self, lguest: Lguest | Core, layout: MemoryLayout) -> None:
        """Lay out every device in ``layout.descriptor_page`` and allocate their vrings.

        Called again for a reboot with a fresh core and layout: the old queue
        threads are stopped first and the devices reset.
        """
        if self._closed:
            raise RuntimeError("this bus is closed")
        if self._core is not None:
            self._stop_all(detach=False)
            for device in self.devices:
                device.reset()
        core: Core = lguest
        self._core = core
        self._mem = mem = core.mem
        self.slots = []
        self._by_address = {}
        self._by_vring = {}
        self.fault_reason = None
        page = layout.descriptor_page
        offset = 0
        irq = FIRST_IRQ
        # note_dma is new in the core: call it when the extension has it (an
        # older build only misses dropping stale decoded code after device DMA).
        note_dma = getattr(lguest, "note_dma", None)
        for device in self.devices:
            features = device.features()
            if features < 0 or features >> 32:
                raise LaunchError(f"{device.name}: feature bits must be below 32")
            feature_len = (features.bit_length() + 7) // 8
            config = bytes(device.config())
            if len(config) > 255:
                raise LaunchError(f"{device.name}: config is {len(config)} bytes, at most 255")
            nq = len(device.queue_names)
            size = 5 + 8 * nq + 2 * feature_len + len(config)
            # A descriptor may end exactly at the end of the page: the guest's
            # scan stops there without needing a zero type byte.
            if offset + size > PAGE_SIZE:
                raise LaunchError("too many devices: the device descriptor page is full")
            address = page + offset
            queues: list[Virtqueue] = []
            for index, qname in enumerate(device.queue_names):
                if irq >= LGUEST_IRQS:
                    raise LaunchError(
                        f"too many virtqueues: the host has {LGUEST_IRQS - 1} interrupt "
                        f"lines for devices ({device.name} {qname} would need line {irq})"
                    )
                ring = layout.alloc_pages(VRING_PAGES)
                queue = Virtqueue(
                    mem,
                    ring,
                    num=VRING_NUM,
                    limit=0,  # set below, once every page is handed out
                    irq=irq,
                    raise_irq=self._raise_irq,
                    note_dma=note_dma,
                    name=f"{device.name} {qname}",
                    index=index,
                )
                queues.append(queue)
                log.debug("%s %s queue: vring at %#x, irq %d", device.name, qname, ring, irq)
                irq += 1
            header = bytes([device.device_type, nq, feature_len, len(config), 0])
            records = b"".join(
                VRING_NUM.to_bytes(2, "little")
                + q.irq.to_bytes(2, "little")
                + (q.address // PAGE_SIZE).to_bytes(4, "little")
                for q in queues
            )
            offered = features.to_bytes(feature_len, "little")
            blob = header + records + offered + bytes(feature_len) + config
            mem[address : address + len(blob)] = blob
            slot = DeviceSlot(device, address, queues, feature_len)
            self.slots.append(slot)
            self._by_address[address] = slot
            for queue in queues:
                self._by_vring[queue.address] = (slot, queue)
            log.debug(
                "%s: type %d, descriptor at %#x, features %#x, %d config bytes",
                device.name,
                device.device_type,
                address,
                features,
                len(config),
            )
            offset += size
        for slot in self.slots:
            for queue in slot.queues:
                queue.limit = layout.guest_limit

    # L:210 Following the guest's driver.
    #
    # A 2.6.32 guest NOTIFYs its device's descriptor address after every write
    # to the status byte, and we look at the status as it is now rather than at
    # what changed: zero is a reset, FAILED means the driver gave up, and
    # DRIVER_OK means the driver is ready, so the device starts.  A driver may
    # kick a queue before DRIVER_OK (the block driver reads the partition
    # table during its probe); that kick reaches us here, since no eventfd is
    # attached yet, and starts the device too.  Once a device runs, its kicks go
    # from the core straight to the queue threads' eventfds and never come
    # here, so one that does means the guest is confused.

    def notify(self, address: int) -> bool:
        """Handle a NOTIFY the core returned if it is one of ours."""
        slot = self._by_address.get(address)
        if slot is not None:
            self._status_changed(slot)
            return True
        hit = self._by_vring.get(address)
        if hit is not None:
            slot, queue = hit
            if slot.running:
                raise GuestFault(f"notification to the vring of running device {queue.name}")
            log.debug("%s kicked before DRIVER_OK: starting it", queue.name)
            self.start(slot)
            return True
        return False

    def status(self, slot: DeviceSlot) -> int:
        assert self._mem is not None
        return int(self._mem[slot.status_address])

    def _status_changed(self, slot: DeviceSlot) -> None:
        status = self.status(slot)
        log.debug("%s: status %#x", slot.device.name, status)
        if status == 0:
            self.reset(slot)
        elif status & STATUS_FAILED:
            log.warning("%s: device configuration failed", slot.device.name)
            if slot.running:
                self.reset(slot)
        elif status & STATUS_DRIVER_OK and not slot.running:
            self.start(slot)

    # L:212 Starting a device is where the fast path for kicks is set up:
    # each queue gets its thread and its eventfd, and the core is told to
    # signal that eventfd when the guest notifies the vring's address (H:1225),
    # so from now on the queue's kicks never come back to the run loop.  The
    # features the device serves with are the ones it offered and the
    # driver accepted (D:120).

    def start(self, slot: DeviceSlot) -> None:
        """Start a device: its feature negotiation is over, its queues get threads."""
        assert self._core is not None and self._mem is not None
        at = slot.driver_features_address
        accepted = int.from_bytes(self._mem[at : at + slot.feature_len], "little")
        features = accepted & slot.device.features()
        log.debug("%s: starting with features %#x", slot.device.name, features)
        slot.device.start(features)
        slot.running = True
        for queue in slot.queues:
            worker = _Worker(self, slot, queue)
            # Replacing rather than appending: after a reset the address may
            # still have the previous thread's (closed) eventfd attached, and the
            # core would keep signalling that one (abi-devices.md 5.6).
            self._core.eventfd(queue.address, worker.kick, replace=True)
            slot.workers.append(worker)
        for worker in slot.workers:
            worker.start()

    def reset(self, slot: DeviceSlot) -> None:
        """Reset a device: stop its threads, clear its vrings and accepted features."""
        assert self._mem is not None
        log.debug("%s: reset", slot.device.name)
        self._stop(slot, detach=True)
        at = slot.driver_features_address
        self._mem[at : at + slot.feature_len] = bytes(slot.feature_len)
        for queue in slot.queues:
            queue.reset()
        slot.device.reset()

    def _stop(self, slot: DeviceSlot, detach: bool) -> None:
        workers, slot.workers = slot.workers, []
        slot.running = False
        for worker in workers:
            if detach and self._core is not None:
                self._core.detach_eventfd(worker.queue.address)
            worker.stop()
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(JOIN_TIMEOUT)
                if worker.is_alive():
                    log.warning("%s: the %s thread does not stop", slot.device.name, worker.name)
                    continue
            worker.close_fds()

    def _stop_all(self, detach: bool) -> None:
        for slot in self.slots:
            self._stop(slot, detach)

    # L:245 Every queue's ``raise_irq`` comes here, in the queue's thread:
    # this is where an interrupt leaves the Launcher for the core (H:1297).
    # It returns at once; the vCPU delivers the interrupt when the guest can
    # take it (H:1040).  Once the guest is dead the core refuses, and the
    # thread stops quietly instead of reporting a failure: a device that
    # finishes a request just as the guest powers off is not an error.

    def _raise_irq(self, irq: int) -> None:
        core = self._core
        if core is None:
            raise DeviceStopped
        try:
            core.irq(irq)
        except OSError:
            # The guest is dead: nothing more to serve.
            raise DeviceStopped from None

    # L:250 When a device finds the guest misbehaving.
    #
    # A queue thread that meets a malformed ring raises GuestFault.  The guest
    # must stop, but the thread cannot stop it: only the thread running the
    # guest can.  So the bus remembers the first reason and asks the Launcher
    # to interrupt the guest.  It also detaches every eventfd, so that even
    # without a way to interrupt, the guest's next kick returns to the run loop,
    # which then sees the fault.

    def fault(self, reason: str) -> None:
        """A device found the guest misbehaving: stop the guest with ``reason``."""
        with self._lock:
            if self.fault_reason is not None:
                return
            self.fault_reason = reason
        log.debug("device fault: %s", reason)
        core = self._core
        if core is not None:
            for slot in self.slots:
                for queue in slot.queues:
                    try:
                        core.detach_eventfd(queue.address)
                    except OSError:
                        pass
        if self.on_fault is not None:
            self.on_fault(reason)

    def request_interrupt(self) -> None:
        """Stop the guest as if by Ctrl-C (the console's triple Ctrl-C)."""
        if self.on_interrupt is not None:
            self.on_interrupt()

    # L:255 Shutting the bus down, once the guest is dead or the Launcher is
    # closed: every queue thread is told to stop through its stop eventfd
    # and joined, then each device releases what it holds on the host (the
    # disk image, the tap device, the terminal's mode, L:320).  A thread stuck
    # in the device's own I/O (a write to a terminal nobody reads, say) cannot
    # see the stop request, so the join has a timeout and such a thread is
    # left behind (it is a daemon) with a warning rather than hanging the
    # Launcher.

    def close(self) -> None:
        """Stop every queue thread and release the devices' host resources."""
        if self._closed:
            return
        self._closed = True
        self._stop_all(detach=False)
        errors: list[BaseException] = []
        for device in self.devices:
            try:
                device.close()
            except Exception as exc:  # keep closing the others (the terminal!)
                errors.append(exc)
        self._core = None
        self._mem = None
        if errors:
            raise errors[0]
