"""`python -m nimbus.cluster.supervisord_main LAUNCHER_PID ARGS...` runs supervisord with ARGS and
asks the kernel to SIGTERM it when its launcher dies, so a killed launcher leaves no cluster behind
(supervisord stops its programs on SIGTERM)."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    launcher = int(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != launcher:  # it died before prctl took effect
        sys.exit("nimbus: launcher gone before supervisord started")
    from supervisor.supervisord import main as supervisord

    supervisord(args=sys.argv[2:])


if __name__ == "__main__":
    main()
