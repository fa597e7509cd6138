"""lguest: Rusty Russell's lguest hypervisor, rebuilt as a Python package.

The guest is an unmodified i386 lguest kernel (2.6.32 ABI) or the bundled demo
guest; the host is the Rust extension ``lguest._core``, which interprets it;
this package is the Launcher, which loads the guest and serves it.

Run one from Python with :class:`Guest`, or from a shell with ``lguest run``.
Loading the kernel needs only this package; running it needs the extension,
which is imported when the first guest is built.
"""

from typing import TYPE_CHECKING, Any

from lguest.errors import GuestFault, LaunchError
from lguest.guest import Guest
from lguest.launcher import GuestExit

if TYPE_CHECKING:
    from lguest._core import Cpu

__version__ = "0.1.0"

# P:010 Welcome to the Journey.  lguest was the smallest hypervisor Linux
# ever had, and it was written to be read; so is this rebuild, and these
# stops are the reading order.  lguest has three actors, and so do we:
#
# - the Guest: a Linux kernel (2.6.32's i386 lguest ABI) that knows it is
#   virtualized and asks for what it needs by hypercall.  We bring our own
#   small one in guest/, so that you can read a guest from first
#   instruction to power-off (the G: and D: chapters);
# - the Launcher: the user program that lays out the guest's memory, loads
#   the kernel, serves its devices and reports how it died.  It is this
#   Python package (the L: chapter);
# - the Host: in Linux, a kernel module behind /dev/lguest that ran the
#   guest in ring 1 on the real processor.  Here it is a Rust extension,
#   lguest._core, and since we have no kernel module the processor is an
#   interpreter inside it (the H: chapter, from H:010).
#
# What an embedder needs from the package is just these few names.
__all__ = ["Cpu", "Guest", "GuestExit", "GuestFault", "LaunchError", "__version__"]


def __getattr__(name: str) -> Any:
    # The bare CPU lives in the extension; import it only when asked for, so
    # that loading kernels keeps working without a built extension.
    if name == "Cpu":
        from lguest._core import Cpu

        return Cpu
    raise AttributeError(f"module 'lguest' has no attribute {name!r}")
