"""A service whose configuration is wrong says so in one line and exits 78 (EX_CONFIG)."""

from __future__ import annotations

import subprocess
import sys

from nimbus.common.config import CONFIG_ERROR_PREFIX, EXIT_CONFIG

_SERVICE = """
from nimbus.common import service
async def main():
    raise AssertionError("never reached: the loop cannot be made")
service.run(main, env={"NIMBUS_EVENT_LOOP": "bogus"})
"""


def test_a_bad_setting_is_one_line_and_exit_status_78() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_CONFIG
    assert done.stderr.startswith(CONFIG_ERROR_PREFIX + "NIMBUS_EVENT_LOOP='bogus'")
    assert "Traceback" not in done.stderr
