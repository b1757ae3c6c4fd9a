"""One writer per engine folder: an advisory ``fcntl.flock`` on ``FOLDER/.snnet-export.lock``.

``export``, ``build`` and ``bench`` hold it while they write; a second writer is refused at once
with "another export/build is writing to D (pid N)" instead of interleaving bytes in the shared
weight file. The lock is released by the kernel when its holder exits, even on SIGKILL, so a
stale lock file never blocks a later run. Readers (the Selector, ``verify``) take no lock.
No torch here.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from ..errors import FolderBusyError

LOCK_FILE = ".snnet-export.lock"


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "export") -> Iterator[Path]:
    """Hold the write lock of ``folder`` (created if missing) for the block.

    Raises:
        FolderBusyError: another process holds it (the message names its pid).
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").split()
            pid = holder[0] if holder else "unknown"
            doing = holder[1] if len(holder) > 1 else "export/build"
            raise FolderBusyError(f"another export/build is writing to {folder} (pid {pid}, {doing}): "
                                  "wait for it to finish, or write to another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {what}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
