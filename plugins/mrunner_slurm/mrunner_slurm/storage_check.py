"""Whether the cluster's user can write the context's ``storage_dir``, asked in the round trip that reads the
site's limits (``limits.site_limits``), so that a read-only, forbidden or non-folder ``storage_dir`` is refused
in one line before the sweep is recorded, at no extra round trip."""

from __future__ import annotations

import re
import shlex

#: The parts of the cluster's error (``mkdir``'s, ``mktemp``'s, in the C or a UTF-8 locale) that say why.
_QUOTED = re.compile(r"[‘'`\"]([^’'\"]+)[’'\"]")


def script(storage_dir: str, errors: str) -> str:
    """Shell that creates a file, and removes it, in the deepest folder of ``storage_dir``'s ``.mrunner`` that
    exists (the upload creates the rest there), so that it leaves nothing behind; whatever refuses goes to the
    file ``errors`` (a shell word). ``~`` is the cluster user's home, as the helper takes it."""
    return (
        f"{{ p={_path(storage_dir)}/.mrunner; "
        'while [ ! -e "$p" ] && [ ! -L "$p" ] && [ "$p" != / ] && [ "$p" != . ]; do p=$(dirname -- "$p"); done; '
        'if [ -d "$p" ]; then f=$(mktemp "$p/.mrunner-probe.XXXXXX") && rm -f -- "$f"; '
        "else echo \"mrunner: '$p': Not a directory\"; false; fi; } 2>" + errors + " >&2"
    )


def _path(storage_dir: str) -> str:
    """``storage_dir`` as a shell word: quoted, its leading ``~`` the home folder."""
    if storage_dir == "~":
        return '"$HOME"'
    if storage_dir.startswith("~/"):
        return '"$HOME"/' + shlex.quote(storage_dir[2:])
    return shlex.quote(storage_dir)


def refusal(errors: str, storage_dir: str, user: str) -> str | None:
    """One line naming the ``storage_dir`` key, the path and the fix, from what the cluster said (``None``:
    it said nothing, so the folder can be written)."""
    said = next((line.strip() for line in errors.splitlines() if line.strip()), "")
    if not said:
        return None
    quoted = _QUOTED.search(said)
    path = quoted.group(1) if quoted else f"{storage_dir}/.mrunner"
    if ".mrunner-probe." in path:  # mktemp's template: the folder it could not write
        path = path.rsplit("/", 1)[0]
    lowered = said.lower()
    if "read-only file system" in lowered:
        return (
            f"storage_dir {storage_dir}: {path} is on a read-only file system (EROFS): set the context's "
            "storage_dir to a writable folder"
        )
    if "permission denied" in lowered or "operation not permitted" in lowered:
        return (
            f"storage_dir {storage_dir}: user {user or 'of the cluster'} may not write {path} (EACCES: Permission "
            "denied): set the context's storage_dir to a folder it can write, or give it that permission"
        )
    if "not a directory" in lowered or "file exists" in lowered:
        return (
            f"storage_dir {storage_dir}: {path} is a file on the cluster, not a folder: set the context's "
            "storage_dir to a folder"
        )
    if "no space left" in lowered or "quota" in lowered:
        return (
            f"storage_dir {storage_dir}: no space left (ENOSPC) at {path}: free space on that file system, or "
            "set the context's storage_dir to another one"
        )
    return f"storage_dir {storage_dir} cannot be written on the cluster: {said[:300]}"
