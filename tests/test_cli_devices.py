"""``lguest run`` with devices: options, order, errors, reboot."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import lguest
import pytest
from lguest.cli import _split_kernel_args, build_devices, build_parsers

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
        stdin=subprocess.DEVNULL,
    )


def parse(*words: str) -> list[tuple[str, object]]:
    _, run = build_parsers()
    options, _ = _split_kernel_args(list(words))
    return list(run.parse_intermixed_args(options).devices)


def needs_demo() -> None:
    pytest.importorskip("lguest._core")
    if not resources.files("lguest").joinpath("guests/demo.elf").is_file():
        pytest.skip("the demo guest has not been built")


def test_devices_keep_command_line_order(tmp_path: Path) -> None:
    specs = parse(
        "--block",
        "a.img",
        "--rng",
        "--net",
        "unix:/tmp/s",
        "--block=b.img,ro",
        "vmlinux",
        "x=1",
    )
    assert [kind for kind, _ in specs] == ["block", "rng", "net", "block"]
    assert specs[0][1] == ("a.img", False)
    assert specs[3][1] == ("b.img", True)


def test_bad_block_file_is_one_error_line(tmp_path: Path) -> None:
    result = lguest_cmd("run", "--block", tmp_path / "missing.img")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"lguest: {tmp_path / 'missing.img'}: No such file or directory"


def test_block_directory_is_an_error(tmp_path: Path) -> None:
    result = lguest_cmd("run", f"--block={tmp_path}")
    assert result.returncode == 1
    assert result.stderr.startswith("lguest: ") and "directory" in result.stderr.lower()


@pytest.mark.parametrize(
    "spec", ["1.2.3", "bridge:", "10.0.0.1:nomac", "eth0", "10.0.0.1:02:00:00:00:00"]
)
def test_bad_tunnet_spec_is_a_usage_error(spec: str) -> None:
    result = lguest_cmd("run", f"--tunnet={spec}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "argument --tunnet" in result.stderr


@pytest.mark.parametrize("spec", ["tcp:1.2.3.4", "unix:", "unix:/x,bogus=1"])
def test_bad_net_spec_is_a_usage_error(spec: str) -> None:
    result = lguest_cmd("run", "--net", spec)
    assert result.returncode == 2
    assert "argument --net" in result.stderr


def test_empty_block_spec_is_a_usage_error() -> None:
    result = lguest_cmd("run", "--block", ",ro")
    assert result.returncode == 2


def test_failing_device_closes_the_ones_before(tmp_path: Path) -> None:
    good = tmp_path / "good.img"
    good.write_bytes(bytes(4096))
    specs = parse("--block", str(good), "--block", str(tmp_path / "missing"))
    with pytest.raises(lguest.LaunchError):
        build_devices(specs)


def test_device_layout_with_verbose(tmp_path: Path) -> None:
    needs_demo()
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(1 << 20))
    sock = tmp_path / "n.sock"
    result = lguest_cmd(
        "run",
        "-v",
        "-m",
        "16",
        "--block",
        f"{disk},ro",
        "--rng",
        "--net",
        f"unix:{sock}",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    queues = [line for line in lines if "queue: vring at" in line]
    assert queues == [
        "lguest: block d.img requests queue: vring at 0x1001000, irq 1",
        "lguest: rng input queue: vring at 0x1004000, irq 2",
        "lguest: net receive queue: vring at 0x1007000, irq 3",
        "lguest: net transmit queue: vring at 0x100a000, irq 4",
        "lguest: console input queue: vring at 0x100d000, irq 5",
        "lguest: console output queue: vring at 0x1010000, irq 6",
    ]
    assert "lguest: initialize: pfn_limit 0x1013, start 0x100000" in lines
    assert not sock.exists()


def test_demo_guest_with_devices_powers_off_quietly(tmp_path: Path) -> None:
    needs_demo()
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(1 << 20))
    result = lguest_cmd("run", "-m", "16", "--block", disk, "--rng")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "Power down" in result.stdout


def test_no_reboot_exits_with_status_two() -> None:
    needs_demo()
    result = lguest_cmd("run", "-m", "16", "--no-reboot", "--", "reboot")
    assert result.returncode == 2
    assert result.stderr.strip() == "lguest: the guest asked to reboot (not rebooting: --no-reboot)"


def test_reboot_rebuilds_the_guest_in_process() -> None:
    needs_demo()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    # The demo guest reboots every time it sees "reboot": let it go round a
    # few times, then stop it.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lguest",
            "run",
            "-m",
            "16",
            "-v",
            "--rng",
            "--",
            "reboot",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert out.count("hello from ring 1") >= 3
    assert err.count("the guest asked to reboot: rebooting") >= 2
    # Every boot lays out the same devices at the same place.
    assert len({line for line in err.splitlines() if "vring at" in line}) == 3
    assert "Traceback" not in err
