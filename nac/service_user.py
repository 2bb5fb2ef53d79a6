"""The user nac runs as after ``twistd --uid U --gid G``.

twistd binds the ports as root (``privilegedStartService``) and then
switches to the service user; the worker processes, spawned after that,
run as that user too.  Everything nac sets up before the switch (the state
directory, the SQLite database and its WAL files, the demo PKI, the secret
key file) would be root's and out of their reach, so :func:`tap.makeService
<nac.tap.makeService>` does that work *as* the service user
(:meth:`ServiceUser.acting`): what nac creates belongs to it, keys keep mode
0600, and an operator's file the service user cannot read (a certificate in
/etc/nac, the configuration the workers load again) fails the start with one
line instead of failing in every worker.  Only a state directory nac creates
itself is made by root and handed over (:meth:`ServiceUser.create_directory`):
its parent is usually root's.  nac never changes the owner of anything else.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

__all__ = ["ServiceUser"]


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """A user and group other than root that nac switches to."""

    uid: int
    gid: int
    name: str
    groups: tuple[int, ...]

    @classmethod
    def from_twistd(cls, server_options) -> "ServiceUser | None":
        """The user of twistd's ``--uid``/``--gid`` (the uid's own group
        without ``--gid``) when this process runs as root and will switch
        to another user; None otherwise."""
        get = getattr(server_options, "get", None)
        if get is None or os.geteuid() != 0:
            return None
        uid, gid = get("uid"), get("gid")
        if uid is None or uid == 0:
            return None  # root stays root: it may write whatever it creates
        try:
            entry = pwd.getpwuid(uid)
            name, primary = entry.pw_name, entry.pw_gid
        except KeyError:
            name, primary = str(uid), uid
        gid = primary if gid is None else gid
        try:
            groups = tuple(os.getgrouplist(name, gid))
        except (KeyError, OSError):
            groups = (gid,)
        return cls(uid, gid, name, groups)

    @property
    def description(self) -> str:
        try:
            group = grp.getgrgid(self.gid).gr_name
        except KeyError:
            group = str(self.gid)
        return f"{self.name}:{group}"

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        """Run the body with this user's effective uid, gid and groups: files
        it creates are the user's, and it can open only what the user can.
        Root's identity comes back afterwards (the real and saved uid stay
        0), so that twistd can still bind the ports."""
        saved_groups = os.getgroups()
        os.setgroups(list(self.groups))
        os.setegid(self.gid)
        try:
            os.seteuid(self.uid)
            try:
                yield
            finally:
                os.seteuid(0)
        finally:
            os.setegid(0)
            os.setgroups(saved_groups)

    def create_directory(self, path: Path, mode: int = 0o700) -> list[Path]:
        """Create ``path`` and its missing parents as root (their parents are
        root's) and give every directory created to this user; the list of
        them.  An existing directory is left as it is."""
        missing = []
        for candidate in (path, *path.parents):
            if candidate.exists():
                break
            missing.append(candidate)
        created = []
        for directory in reversed(missing):
            try:
                directory.mkdir(mode)
            except FileExistsError:
                continue
            os.chown(directory, self.uid, self.gid)
            os.chmod(directory, mode)
            created.append(directory)
        return created

    def cannot_run_nac(self) -> str | None:
        """Why this user could not run this nac (its Python and packages),
        as the worker processes and the main process's later imports must;
        None when it can.  To be called while :meth:`acting`."""
        import nac
        import twisted

        needed = [(sys.executable, os.X_OK)]
        needed += [(os.path.dirname(module.__file__), os.R_OK | os.X_OK) for module in (nac, twisted)]
        for path, mode in needed:
            if not os.access(path, mode, effective_ids=True):
                return (f"{path}: the service user {self.name} cannot "
                        f"{'run' if mode == os.X_OK else 'read'} it (twistd --uid): install nac and its "
                        f"Python where that user can read them")
        return None

    def may_write(self, path: Path) -> bool:
        """Whether this user may create files in directory ``path``."""
        with self.acting():
            return os.access(path, os.W_OK | os.X_OK, effective_ids=True)
