"""Where a node's sockets live: never in a directory another user made (issue 16)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from nimbus.nodeagent.layout import NodeLayout

OTHER_UID = 4242


def deep_home(tmp_path: Path, length: int) -> str:
    home = tmp_path / ("h" * max(1, length - len(str(tmp_path)) - 1))
    home.mkdir()
    return str(home)


def test_a_short_home_keeps_sockets_under_the_node(tmp_path: Path) -> None:
    layout = NodeLayout.for_node(str(tmp_path), "n1").make_dirs()
    assert layout.socket_root == tmp_path / "nodes" / "n1" / "sockets"
    assert stat.S_IMODE(layout.socket_root.stat().st_mode) == 0o700


def test_a_deep_home_uses_its_run_dir_when_that_fits(tmp_path: Path) -> None:
    home = deep_home(tmp_path, 60)
    layout = NodeLayout.for_node(home, "node-with-a-long-name-0123456789").make_dirs()
    assert layout.socket_root.parent == Path(home) / "run"
    assert stat.S_IMODE(layout.socket_root.stat().st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_a_pre_created_tmp_dir_of_another_user_is_not_used(tmp_path: Path) -> None:
    home = deep_home(tmp_path, 150)
    planned = NodeLayout.for_node(home, "n1").socket_root
    assert planned.parent == Path(tempfile.gettempdir()) and planned.name.startswith("nimbus-")
    planned.mkdir(mode=0o777)
    os.chmod(planned, 0o777)
    os.chown(planned, OTHER_UID, OTHER_UID)
    try:
        layout = NodeLayout.for_node(home, "n1").make_dirs()
        assert layout.socket_root != planned
        st = layout.socket_root.lstat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
        assert layout.socket_dir("0123456789ab").parent == layout.socket_root
        layout.socket_root.rmdir()
    finally:
        planned.rmdir()


def test_a_symlink_where_the_tmp_dir_should_be_is_not_followed(tmp_path: Path) -> None:
    home = deep_home(tmp_path, 150)
    planned = NodeLayout.for_node(home, "n2").socket_root
    target = tmp_path / "elsewhere"
    target.mkdir()
    planned.symlink_to(target)
    try:
        layout = NodeLayout.for_node(home, "n2").make_dirs()
        assert layout.socket_root != planned and not layout.socket_root.is_symlink()
        layout.socket_root.rmdir()
    finally:
        planned.unlink()


def test_the_agents_own_tmp_dir_is_reused_and_tightened(tmp_path: Path) -> None:
    home = deep_home(tmp_path, 150)
    planned = NodeLayout.for_node(home, "n3").socket_root
    planned.mkdir(mode=0o755)
    try:
        assert NodeLayout.for_node(home, "n3").make_dirs().socket_root == planned
        assert stat.S_IMODE(planned.stat().st_mode) == 0o700
    finally:
        planned.rmdir()
