"""An exclusive lock on a directory that a long job writes (a shard set's --out, a run
directory): a file holding the owner's PID and host. A second job refuses at once with
the owner's name; a lock left behind by a process that died on this host is taken over."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path


class LockError(Exception):
    """Another live process holds the lock."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class DirLock:
    def __init__(self, path: str | Path, what: str):
        self.path = Path(path)
        self.what = what
        self.held = False

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def acquire(self) -> "DirLock":
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                fd = None
            if fd is None:
                owner = self._owner()
                if owner is None:          # half-written by an owner that just started, or garbage
                    time.sleep(0.05)
                    owner = self._owner()
                self._refuse_if_live(owner)
                # the owner died here: take the lock over; a rename lets one taker win a race
                try:
                    os.replace(self.path, self.path.with_name(f"{self.path.name}.stale-{os.getpid()}"))
                    os.unlink(self.path.with_name(f"{self.path.name}.stale-{os.getpid()}"))
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise LockError(f"{self.what}: could not take the lock {self.path}")

    def check(self) -> None:
        """Raise LockError if a live process holds the lock (without taking it)."""
        self._refuse_if_live(self._owner())

    def _refuse_if_live(self, owner: dict | None) -> None:
        """LockError naming the owner, unless there is none or it died on this host (a process
        on another host cannot be checked: it counts as alive)."""
        if owner is not None and (owner.get("host") != socket.gethostname() or _alive(int(owner.get("pid", -1)))):
            raise LockError(f"{self.what} is in use by PID {owner.get('pid')} on {owner.get('host')} "
                            f"(since {owner.get('since')}); wait for it to finish, or delete {self.path} if that "
                            "process is gone")

    def release(self) -> None:
        if self.held:
            owner = self._owner()
            if owner is not None and owner.get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
            self.held = False

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
