"""Type stubs for lguest._core, the Rust extension (checked with mypy.stubtest)."""

from typing import Literal, final

__version__: str
__all__ = [
    "__version__",
    "LHCALL_NOTIFY",
    "LHCALL_SHUTDOWN",
    "LGUEST_IRQS",
    "PAGE_SIZE",
    "ERESTART",
    "_host_bench",
    "Exit",
    "Cpu",
    "GuestDied",
    "Lguest",
    "_notify_lookup_bench",
]

# Hypercall numbers and other ABI constants the Launcher needs.
LHCALL_NOTIFY: int
LHCALL_SHUTDOWN: int
LGUEST_IRQS: int
PAGE_SIZE: int
ERESTART: int

def _host_bench(kind: str, n: int) -> tuple[int, int, int]:
    """Run a host micro-benchmark guest ("sync_hypercall", "async_hypercall",
    "pgtable_switch", "shadow_fill") repeating its operation n times; returns
    (guest instructions, host nanoseconds, operations).  For benches/."""

@final
class Exit:
    """Why ``Cpu.run`` stopped."""

    kind: Literal["interrupt", "exception", "hlt", "count", "address"]
    vector: int | None
    """Interrupt or exception vector (``interrupt``/``exception`` only)."""
    error_code: int | None
    """Exception error code, when the exception pushes one."""
    address: int | None
    """Faulting linear address for a page fault (vector 14)."""
    instructions: int
    """Instructions retired during this ``run`` call."""

@final
class Cpu:
    """A bare i386 CPU: flat 4 GiB segments, ring 3, paging off, x87 and SSE on.

    Memory is whatever ``mem_map`` maps; touching anything else stops ``run`` with a
    page-fault exception (vector 14) whose ``address`` is the linear address.
    """

    def __init__(self) -> None: ...
    def mem_map(self, addr: int, size: int) -> None:
        """Map zeroed memory at [addr, addr+size); both page aligned. ValueError on overlap."""
    def mem_write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write into mapped memory. ValueError if any byte is unmapped."""
    def mem_read(self, addr: int, size: int) -> bytes:
        """Read mapped memory. ValueError if any byte is unmapped."""
    def reg_write(self, name: str, value: int) -> None:
        """Write a register by name: eax..edi, esp, ebp, eip, eflags, ax..di, al..bh,
        cs/ds/es/fs/gs/ss (selector only; the bare CPU keeps flat segments);
        xmm0..xmm7 (128-bit), mm0..mm7 (64-bit; like an MMX move this sets TOP to 0
        and tags every x87 register valid), st0..st7 (the stack registers relative to
        TOP as raw 80-bit integers: significand in bits 0-63, sign and exponent in
        64-79; writing one tags it valid), fpcw, fpsw (TOP included), fptag (only
        empty/non-empty is kept) and mxcsr.  ValueError if the value is too wide."""
    def reg_read(self, name: str) -> int:
        """Read a register; the names are those of ``reg_write``.  ``fptag`` is the
        full two-bit-per-register tag word, recomputed from the register contents."""
    def run(self, start: int | None = None, count: int = 0, until: int | None = None) -> Exit:
        """Run from ``start`` (default: current EIP).  Stops after ``count`` instructions
        (0 = no limit) with kind ``count``, when EIP reaches ``until`` with kind ``address``,
        at ``hlt``, at a software interrupt (EIP already past it), or at an exception
        (EIP at the faulting instruction)."""

class GuestDied(OSError):
    """The guest is dead; ``reason`` says why, ``restart`` whether it asked to reboot."""

    reason: str
    restart: bool

@final
class Lguest:
    """One guest: what an open /dev/lguest was in the original.

    ``memory`` bytes of guest-physical memory (RAM plus the device area) are
    allocated zeroed at construction; ``mem`` exposes them as a writable buffer.
    """

    def __new__(cls, memory: int) -> Lguest: ...
    @property
    def mem(self) -> memoryview: ...
    @property
    def size(self) -> int: ...
    def initialize(self, pfn_limit: int, start: int, *, pae: bool = False) -> None:
        """LHREQ_INITIALIZE: build the initial page tables and registers; boot_params must
        already be in memory.  ``pae`` selects PAE (three-level, 64-bit) page tables for a
        kernel built with CONFIG_X86_PAE; the default is the 2-level format.  Once only:
        OSError(EBUSY) afterwards, even for a dead guest; OSError(EFAULT) if pfn_limit is 0
        or beyond the allocated memory."""
    def run(self) -> int:
        """The original's read(): run the guest with the GIL released until it NOTIFYs an
        address no eventfd claims, and return that address.  Raises GuestDied (errno ENOENT,
        or ERESTART for a reboot) when the guest dies, and again on every later call;
        KeyboardInterrupt on Ctrl-C within 50 ms, the guest intact and resumable;
        OSError(EINVAL) before initialize, OSError(EPERM) if another thread is in run()."""
    def irq(self, n: int) -> None:
        """LHREQ_IRQ: mark virtual interrupt ``n`` pending, from any thread, waking a halted
        guest.  OSError: EINVAL before initialize or if n >= 32, ENOENT once dead."""
    def eventfd(self, addr: int, fd: int, replace: bool = False) -> None:
        """LHREQ_EVENTFD: when the guest NOTIFYs ``addr``, add 1 to eventfd ``fd`` and let it
        run on instead of returning from run().  Any thread, also while the guest runs.  The
        core keeps its own duplicate of ``fd``.  Several eventfds may share an address: the
        first attached wins, unless ``replace`` drops the earlier ones.  OSError: EINVAL if
        addr is 0 or fd is not an eventfd, EBADF if fd is not open, EINVAL before
        initialize, ENOENT once dead."""
    def detach_eventfd(self, addr: int) -> int:
        """Remove every eventfd attached to ``addr`` (not in the original); return how many.
        Once it returns the guest can no longer signal them.  OSError as for eventfd()."""
    def interrupt(self) -> None:
        """Make run() raise InterruptedError at its next block boundary, from any
        thread (the next run() if none is in progress).  The guest stays intact."""
    def note_dma(self, gpa: int, len: int) -> None:
        """A device wrote [gpa, gpa+len): drop decoded code there.  Any thread."""
    @property
    def reason(self) -> str | None:
        """The death reason, once dead."""
    @property
    def instructions(self) -> int:
        """Guest instructions executed so far."""

def _notify_lookup_bench(variant: str, entries: int, attacher: bool, seconds: float) -> tuple[float, int]:
    """Benchmark helper, not API: (lookups/s, attach+detach pairs) for the eventfd map
    ("rcu") or a lock-based stand-in ("mutex", "rwlock")."""
