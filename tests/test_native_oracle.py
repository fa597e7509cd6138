"""Silicon as the oracle: static i386 programs run natively and on the interpreter.

Each ``tests/native/*.c`` program runs instruction sequences over tables of inputs
and prints one text line per result (flags masked to what the SDM defines), via
``write`` on ``int $0x80``.  The host runs it natively; the same ELF is then loaded
into ``lguest._core.Cpu`` (PT_LOADs at p_vaddr, a stack, ESP/EIP) and run with
write/exit emulated in Python.  The outputs must be identical.

The same programs also run on unicorn (``UnicornCpu``): where unicorn and silicon
disagree, silicon wins, and the disagreement is listed in ``UNICORN_VS_SILICON``
(and docs/interpreter-testing.md), so a change in it is noticed.

Skipped when gcc cannot build 32-bit binaries or the host cannot run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

import diffharness as H
import pytest

NATIVE = Path(__file__).parent / "native"
PROGRAMS = sorted(p.stem for p in NATIVE.glob("*.c"))
CFLAGS = [
    "-m32",
    "-ffreestanding",
    "-nostdlib",
    "-static",
    "-O2",
    "-fno-pic",
    "-fno-stack-protector",
    "-Wl,--build-id=none",
]
TIMEOUT = int(os.environ.get("LGUEST_NATIVE_TIMEOUT", "600"))

# Lines (by tag, the first word) where unicorn 2.1 and silicon disagree.  Silicon
# is the authority; these are unicorn (QEMU TCG) bugs.  See
# docs/interpreter-testing.md ("Known unicorn vs silicon differences").
UNICORN_VS_SILICON: dict[str, set[str]] = {
    # LOOPE/LOOPNE right after an arithmetic instruction: unicorn leaves wrong
    # OF/SF/AF/PF/CF (ZF is right); plain LOOP is fine.
    "misc": {"cmp1_loope", "cmp1_loopne", "negw_loopne", "addb_loope"},
    # LOCK NEG: unicorn gets SF/ZF/PF (and OF) wrong; other LOCKed ops are fine.
    # and CMPXCHG8B garbles the non-ZF flags left by a preceding ADD.
    "lock": {"lock_negb", "lock_negw", "lock_negl", "add_cmpxchg8b"},
}
# Programs unicorn cannot finish: (vector it stops with, why).
UNICORN_DIES: dict[str, tuple[int, str]] = {
    "undocumented": (
        6,
        "F6 /1 and F7 /1 (TEST aliases) are #UD on unicorn, TEST on silicon",
    ),
}


@pytest.fixture(scope="session")
def native_build(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found")
    out = tmp_path_factory.mktemp("native")
    probe = out / "probe.c"
    probe.write_text(
        'void _start(void){__asm__ volatile("movl $1,%eax; xorl %ebx,%ebx; int $0x80");}\n'
    )
    r = subprocess.run(
        [gcc, *CFLAGS, str(probe), "-o", str(out / "probe")],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"gcc cannot build static 32-bit code: {r.stderr.strip()[:300]}")
    try:
        r2 = subprocess.run(
            [str(out / "probe")], capture_output=True, timeout=10, check=False
        )
    except OSError as e:
        pytest.skip(f"host cannot run i386 binaries: {e}")
    if r2.returncode != 0:
        pytest.skip(f"host cannot run i386 binaries (exit {r2.returncode})")

    cache: dict[str, tuple[Path, bytes]] = {}

    def build(name: str) -> tuple[Path, bytes]:
        """Compile tests/native/<name>.c; return (elf path, native stdout)."""
        if name not in cache:
            exe = out / name
            r = subprocess.run(
                [
                    gcc,
                    *CFLAGS,
                    f"-I{NATIVE}",
                    str(NATIVE / f"{name}.c"),
                    "-o",
                    str(exe),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            assert r.returncode == 0, f"{name}.c does not compile:\n{r.stderr}"
            run = subprocess.run(
                [str(exe)], capture_output=True, timeout=120, check=False
            )
            if run.returncode != 0:
                pytest.skip(
                    f"{name} fails natively (exit {run.returncode}): cannot use it as an oracle"
                )
            cache[name] = (exe, run.stdout)
        return cache[name]

    return build


def _diff_lines(want: bytes, got: bytes, limit: int = 12) -> tuple[list[str], set[str]]:
    """Human-readable differences and the set of tags that differ."""
    wl, gl = (
        want.decode(errors="replace").splitlines(),
        got.decode(errors="replace").splitlines(),
    )
    out, tags = [], set()
    for i in range(max(len(wl), len(gl))):
        w = wl[i] if i < len(wl) else "<missing>"
        g = gl[i] if i < len(gl) else "<missing>"
        if w != g:
            tags.add((w if w != "<missing>" else g).split(" ", 1)[0])
            if len(out) < 2 * limit:
                out += [
                    f"  line {i + 1}: silicon: {w}",
                    f"  line {i + 1}:  got:    {g}",
                ]
    return out, tags


def _run_emulated(cpu, exe: Path) -> H.LinuxRun:
    return H.run_linux_static(cpu, str(exe))


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("program", PROGRAMS)
def test_native_oracle_lguest(native_build, program):
    """lguest._core.Cpu must print exactly what silicon printed."""
    if H.backend_name() == "unicorn":
        pytest.skip("self-test: test_native_oracle_unicorn covers unicorn")
    exe, want = native_build(program)
    factory = H.cpu_factory()
    res = _run_emulated(factory(), exe)
    assert res.exit_status == 0, (
        f"{program}: did not exit(0): last exit {res.exit}, after {len(res.stdout)} bytes of output"
    )
    if res.stdout != want:
        lines, tags = _diff_lines(want, res.stdout)
        pytest.fail(
            f"{program}: output differs from silicon in tags {sorted(tags)}:\n"
            + "\n".join(lines)
        )


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("program", PROGRAMS)
def test_native_oracle_unicorn(native_build, program):
    """unicorn vs silicon: only the documented disagreements may appear."""
    exe, want = native_build(program)
    res = _run_emulated(H.UnicornCpu(), exe)
    if program in UNICORN_DIES and res.exit_status is None:
        vector, why = UNICORN_DIES[program]
        assert (res.exit.kind, res.exit.vector) == ("exception", vector), (
            f"{program}: {why}; now: {res.exit}"
        )
        return
    assert res.exit_status == 0, f"{program} on unicorn: {res.exit}"
    lines, tags = _diff_lines(want, res.stdout)
    known = UNICORN_VS_SILICON.get(program, set())
    # A new disagreement means the reference of the differential tests is wrong in
    # a new way: document it (and add a REFERENCE_QUIRKS entry) before trusting it.
    assert tags <= known, (
        f"{program}: unicorn disagrees with silicon in undocumented tags {sorted(tags - known)}:\n"
        + "\n".join(lines)
    )
    stale = (known - tags) | ({program} if program in UNICORN_DIES else set())
    if stale:  # a newer unicorn fixed something: only worth a note
        warnings.warn(
            f"{program}: documented unicorn deviations no longer seen: {sorted(stale)}",
            stacklevel=1,
        )
