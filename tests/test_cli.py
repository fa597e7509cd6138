"""The ``lguest`` command, run as ``python -m lguest`` in a subprocess.

Whatever the user gets wrong, they must see exactly one line on standard error
starting with ``lguest:`` (or argparse's usage error), a non-zero status, and
never a Python traceback.  Tests that actually run a guest need the Rust core
and skip without it.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from importlib import resources
from pathlib import Path

import lguest
import pytest

#: Run from anywhere, whether or not the package is installed.
PACKAGE_ROOT = str(Path(lguest.__file__).resolve().parent.parent)


def lguest_cmd(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "lguest", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exactly one ``lguest: ...`` line on stderr, non-zero status, no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lguest: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("usage: lguest")
    for fragment in fragments:
        assert fragment in result.stderr


def write_elf(
    path: Path, code: bytes = b"\x0f\x0b", paddr: int = 0x100000, machine: int = 3
) -> Path:
    """A minimal i386 ET_EXEC whose one segment holds ``code`` at ``paddr``."""
    ident = b"\x7fELF\x01\x01\x01" + bytes(9)
    header = ident + struct.pack(
        "<HHIIIIIHHHHHH", 2, machine, 1, paddr, 52, 0, 0, 52, 32, 1, 40, 0, 0
    )
    phdr = struct.pack("<8I", 1, 84, paddr, paddr, len(code), len(code), 5, 4096)
    path.write_bytes(header + phdr + code)
    return path


def write_elf64(path: Path) -> Path:
    """The header of an x86-64 executable."""
    ident = b"\x7fELF\x02\x01\x01" + bytes(9)
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, 0x401000, 64, 0, 0, 64, 56, 1, 64, 0, 0
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 120, 120, 4096)
    path.write_bytes(header + phdr)
    return path


# --- bad input: no core needed ----------------------------------------------


def test_missing_kernel(tmp_path: Path) -> None:
    result = lguest_cmd("run", tmp_path / "missing.elf")
    line = assert_one_error_line(result, "missing.elf", "No such file or directory")
    assert result.returncode == 1
    assert (
        line == f"lguest: {tmp_path / 'missing.elf'}: cannot read kernel: No such file or directory"
    )


def test_not_a_kernel_image(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a kernel\n" * 50)
    result = lguest_cmd("run", notes)
    assert_one_error_line(
        result, "notes.txt: not a kernel image (no ELF magic and no bzImage header)"
    )
    assert result.returncode == 1


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch()
    assert_one_error_line(lguest_cmd("run", empty), "empty: empty file, not a kernel image")


def test_elf_for_another_architecture(tmp_path: Path) -> None:
    result = lguest_cmd("run", write_elf64(tmp_path / "demo.elf"))
    assert_one_error_line(result, "demo.elf: not an i386 ELF (machine EM_X86_64)")
    assert result.returncode == 1


def test_kernel_is_a_directory(tmp_path: Path) -> None:
    assert_one_error_line(lguest_cmd("run", tmp_path), "Is a directory")


def test_missing_initrd(tmp_path: Path) -> None:
    kernel = write_elf(tmp_path / "vmlinux")
    result = lguest_cmd("run", "--initrd", tmp_path / "rd.img", kernel)
    assert_one_error_line(result, "rd.img: cannot read initrd: No such file or directory")


@pytest.mark.parametrize("memory", ["abc", "0", "-5", "1.5", "64M", "99999"])
def test_bad_memory_size_is_a_usage_error(tmp_path: Path, memory: str) -> None:
    result = lguest_cmd("run", "-m", memory, write_elf(tmp_path / "vmlinux"))
    assert_usage_error(result, "argument -m/--memory")
    assert result.stderr.count("\n") <= 2


def test_unknown_option_is_a_usage_error() -> None:
    assert_usage_error(lguest_cmd("run", "--frobnicate"), "unrecognized arguments: --frobnicate")


def test_unknown_command_is_a_usage_error() -> None:
    assert_usage_error(lguest_cmd("launch"), "invalid choice: 'launch'")


def test_no_command_is_a_usage_error() -> None:
    assert_usage_error(lguest_cmd(), "COMMAND")


def test_command_line_too_long(tmp_path: Path) -> None:
    result = lguest_cmd("run", write_elf(tmp_path / "vmlinux"), "--", "x" * 3000)
    assert_one_error_line(result, "kernel command line too long (3000 bytes")


def test_elf_too_big_for_memory(tmp_path: Path) -> None:
    kernel = write_elf(tmp_path / "vmlinux", paddr=0x1000000)
    result = lguest_cmd("run", "-m", "8", kernel)
    assert_one_error_line(result, "vmlinux: does not fit in 8 MiB of RAM")
    assert result.returncode == 1


# --- help and version -------------------------------------------------------


def test_help() -> None:
    result = lguest_cmd("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: lguest")
    assert "run" in result.stdout
    assert "examples:" in result.stdout


def test_run_help() -> None:
    result = lguest_cmd("run", "--help")
    assert result.returncode == 0
    out = result.stdout
    assert out.startswith("usage: lguest run [options] [KERNEL] [[--] KERNEL_ARG ...]")
    for text in (
        "-m MIB, --memory MIB",
        "--initrd FILE",
        "-v, --verbose",
        "examples:",
        "exit status:",
    ):
        assert text in out


def test_version() -> None:
    result = lguest_cmd("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"lguest {lguest.__version__}"


# --- argument splitting (in-process, no core needed) ------------------------


def test_kernel_arguments_after_double_dash() -> None:
    from lguest.cli import _split_kernel_args, build_parsers

    _, run = build_parsers()
    options, after = _split_kernel_args(["vmlinux", "root=/dev/vda", "-m", "32", "--", "-v", "x"])
    args = run.parse_intermixed_args(options)
    assert args.kernel == "vmlinux"
    assert args.memory == 32
    assert [*args.kernel_args, *after] == ["root=/dev/vda", "-v", "x"]


def test_double_dash_without_kernel_means_the_demo_guest() -> None:
    from lguest.cli import _split_kernel_args, build_parsers

    _, run = build_parsers()
    options, after = _split_kernel_args(["-m", "16", "--", "quiet"])
    args = run.parse_intermixed_args(options)
    assert args.kernel is None
    assert after == ["quiet"]


# --- running guests: needs the core -----------------------------------------


def test_crashing_guest_reports_its_death(tmp_path: Path) -> None:
    pytest.importorskip("lguest._core")
    # ud2 before the guest has even set up its traps: the host kills it.
    kernel = write_elf(tmp_path / "vmlinux", code=b"\x0f\x0b")
    result = lguest_cmd("run", "-m", "16", kernel)
    assert_one_error_line(result, "lguest: guest died: ")
    assert result.returncode == 1


def test_demo_guest_powers_off() -> None:
    pytest.importorskip("lguest._core")
    if not resources.files("lguest").joinpath("guests/demo.elf").is_file():
        pytest.skip("the demo guest has not been built")
    result = lguest_cmd("run", "-m", "32")
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout
    assert result.stderr == ""
