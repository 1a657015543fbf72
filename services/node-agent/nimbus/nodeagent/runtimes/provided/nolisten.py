"""A seccomp filter, stacked on the sandbox's own, that makes listen(2) fail with EPERM.

STANDARD LIBRARY ONLY (ctypes). The provided runtime's shim installs it right after it started
listening for the Runtime API, before it runs any function code: the socket it has keeps working,
nothing it starts can ever listen. Needs no privilege, only no_new_privs, which it sets.
"""

from __future__ import annotations

import ctypes
import platform
import struct

# x86_64 and aarch64: the audit arch, the listen(2) number,
# the x32 bit (x86_64 only), seccomp(2)'s number.
_ARCH = {"x86_64": (0xC000003E, 50, 0x40000000, 317), "aarch64": (0xC00000B7, 201, 0, 277)}
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1
_RET_DENY = 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
_RET_ALLOW = 0x7FFF0000
_LD_ABS, _JEQ, _JGE, _RET = 0x20, 0x15, 0x35, 0x06


def program(machine: str) -> list[tuple[int, int, int, int]]:
    """The classic-BPF program as (code, jt, jf, k) instructions. Pure."""
    audit_arch, nr_listen, x32, _ = _ARCH[machine]
    return [
        (_LD_ABS, 0, 0, 4),  # the audit arch
        (_JEQ, 1, 0, audit_arch),
        (
            _RET,
            0,
            0,
            _RET_DENY,
        ),  # another ABI (i386, ...) could name listen differently: refuse it all
        (_LD_ABS, 0, 0, 0),  # the syscall number
        (_JGE, 0, 1, x32) if x32 else (_JEQ, 0, 1, 0xFFFFFFFF),  # x32's numbering: refuse it all
        (_RET, 0, 0, _RET_DENY),
        (_JEQ, 0, 1, nr_listen),
        (_RET, 0, 0, _RET_DENY),
        (_RET, 0, 0, _RET_ALLOW),
    ]


def forbid_listen() -> None:
    machine = platform.machine()
    if machine not in _ARCH:
        raise SystemExit(f"nimbus runtime: no seccomp filter for {machine}")
    prog = program(machine)
    raw = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(prog), ctypes.addressof(raw)))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    # TSYNC: every thread of this process, not only the calling one.
    flags = _SECCOMP_FILTER_FLAG_TSYNC
    if libc.syscall(_ARCH[machine][3], _SECCOMP_SET_MODE_FILTER, flags, fprog) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
