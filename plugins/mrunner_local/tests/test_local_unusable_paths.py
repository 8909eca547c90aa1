"""A local context whose path-valued key cannot be used (a storage_dir that cannot be created or written, or
is a file; a python that is no program): one line naming the context and the key, a non-zero exit, no sweep
recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mrunner.testing import write_context


def recorded_sweeps(home: Path) -> int:
    db = home / "data" / "mrunner" / "records.db"
    return sqlite3.connect(db).execute("SELECT COUNT(*) FROM sweeps").fetchone()[0] if db.exists() else 0


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"storage_dir": "/proc/mrunner-storage"}, "storage_dir /proc/mrunner-storage: cannot create it"),
        ({"storage_dir": "/proc"}, "storage_dir /proc: cannot write into it"),
        ({"storage_dir": "/etc/passwd"}, "storage_dir /etc/passwd is a file"),
        ({"python": "/no/such/python"}, "python /no/such/python"),
        ({"storage_dir": "relative/storage"}, "storage_dir relative/storage is a relative path"),
    ],
)
def test_a_path_key_that_cannot_be_used_names_the_key(mrunner, mrunner_home, tmp_path, keys, says):
    (tmp_path / "train.py").write_text("print('ran')\n")
    mrunner.cwd = tmp_path
    write_context(mrunner_home, "odd", {"backend": "local", **keys})
    ran = mrunner("train.py", "+context=odd", "a=1")
    assert ran.returncode != 0, ran
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: context odd: "), ran.stderr
    assert says in lines[0], lines[0]
    assert recorded_sweeps(mrunner_home) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]  # nothing made in the project either
