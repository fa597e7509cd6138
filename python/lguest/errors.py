"""Exceptions the Launcher raises for problems with what the user gave it.

A guest that misbehaves is not an exception here: it simply dies, and the
Launcher reports that as a :class:`lguest.launcher.GuestExit`.  What *is* an
exception is anything wrong before the guest ever runs -- a kernel image that
is not a kernel, an option that makes no sense, a guest too small for its
kernel.  The command line prints such an error as one line, ``lguest: <msg>``,
so every message is written to stand on its own: it names the file (when there
is one) and says what is wrong with it.
"""

from __future__ import annotations

__all__ = ["GuestFault", "LaunchError"]


class LaunchError(Exception):
    """The Launcher cannot start a guest from what it was given.

    ``str(error)`` is one clear line, for example
    ``"vmlinux: not an i386 ELF (machine EM_X86_64)"``; the command line
    prints it after ``lguest:`` and exits with status 1.
    """


class GuestFault(Exception):
    """The guest did something the Launcher cannot serve, so the Launcher stops it.

    The original Launcher exited on such errors (a NOTIFY beyond guest memory,
    a malformed vring); here the run loop catches this exception, stops the
    guest, and reports ``str(fault)`` as the death reason (exit status 1).
    Device code raises it for a guest mistake; a bug in the Launcher itself
    should stay an ordinary exception.
    """
