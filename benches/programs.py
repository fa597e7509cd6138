"""Small i386 workloads for the interpreter benchmarks, hand-assembled.

Each program starts at CODE, works on data at DATA and ends with ``hlt``; the
same bytes run on lguest's interpreter and on unicorn so the rates compare.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

CODE = 0x0010_0000
DATA = 0x0020_0000
DATA_SIZE = 0x0004_0000
STACK = 0x0030_0000


@dataclass
class Program:
    name: str
    code: bytes
    regs: dict[str, int]
    data: bytes = b""
    check: "object" = field(default=None)  # callable(regs, mem_read) -> None


# (a) Bitwise CRC-32 over a buffer: shr/jnc/xor inner loop, 8 steps per byte.
CRC32 = bytes.fromhex(
    "0fb616"        # movzx edx, byte [esi]
    "31d0"          # xor eax, edx
    "bb08000000"    # mov ebx, 8
    "d1e8"          # .bit: shr eax, 1
    "7305"          # jnc .skip
    "352083b8ed"    # xor eax, 0xEDB88320
    "4b"            # .skip: dec ebx
    "75f4"          # jnz .bit
    "46"            # inc esi
    "49"            # dec ecx
    "75e6"          # jnz top
    "f4"            # hlt
)

# (b) Memory copying: a byte loop (lodsb/stosb/loop) followed by rep movsd,
# repeated EBP times.
MEMCPY = bytes.fromhex(
    "be00002000"    # top: mov esi, DATA
    "bf00002200"    # mov edi, DATA+0x20000
    "b900100000"    # mov ecx, 0x1000
    "ac"            # .b: lodsb
    "aa"            # stosb
    "e2fc"          # loop .b
    "be00002000"    # mov esi, DATA
    "bf00002200"    # mov edi, DATA+0x20000
    "b900100000"    # mov ecx, 0x1000
    "f3a5"          # rep movsd
    "4d"            # dec ebp
    "75d9"          # jnz top
    "f4"            # hlt
)

# (c) Bubble sort of ECX signed dwords at ESI: compare, branch, swap.
SORT = bytes.fromhex(
    "ba00000000"    # outer: mov edx, 0
    "89f7"          # mov edi, esi
    "89cb"          # mov ebx, ecx
    "4b"            # dec ebx
    "8b07"          # inner: mov eax, [edi]
    "8b6f04"        # mov ebp, [edi+4]
    "39e8"          # cmp eax, ebp
    "7e0a"          # jle .noswap
    "892f"          # mov [edi], ebp
    "894704"        # mov [edi+4], eax
    "ba01000000"    # mov edx, 1
    "83c704"        # .noswap: add edi, 4
    "4b"            # dec ebx
    "75e7"          # jnz inner
    "85d2"          # test edx, edx
    "75d9"          # jnz outer
    "f4"            # hlt
)


def crc32_program(nbytes: int = 16384) -> Program:
    data = bytes((i * 7 + 3) & 0xFF for i in range(nbytes))

    def check(regs: dict[str, int], read: object) -> None:
        want = zlib.crc32(data) ^ 0xFFFFFFFF
        assert regs["eax"] == want, f"crc {regs['eax']:#x} != {want:#x}"

    return Program("crc32", CRC32, {"eax": 0xFFFFFFFF, "esi": DATA, "ecx": nbytes}, data, check)


def memcpy_program(rounds: int = 8) -> Program:
    data = bytes(range(256)) * 64

    def check(regs: dict[str, int], read: object) -> None:
        got = read(DATA + 0x20000, 0x4000)  # type: ignore[operator]
        assert got == data, "copy mismatch"

    return Program("memcpy", MEMCPY, {"ebp": rounds}, data, check)


def sort_program(n: int = 300) -> Program:
    values = [((i * 2654435761) & 0xFFFF) - 0x8000 for i in range(n)]
    data = struct.pack(f"<{n}i", *values)

    def check(regs: dict[str, int], read: object) -> None:
        got = struct.unpack(f"<{n}i", read(DATA, 4 * n))  # type: ignore[operator]
        assert list(got) == sorted(values), "not sorted"

    return Program("sort", SORT, {"esi": DATA, "ecx": n}, data, check)


ALL = {"crc32": crc32_program, "memcpy": memcpy_program, "sort": sort_program}
# Sanity: the jump displacements above were computed by hand.
assert CRC32[21] == 0xF4 and SORT[34] == 0xE7 and MEMCPY[38] == 0xD9
