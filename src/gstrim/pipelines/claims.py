"""Claims on runs, so that several workers (processes, machines sharing the folder) never run the same run: a
worker owns a run while its claim file (`SWEEP/claims/<run>.claim`, outside the run folder, which a new run
wants empty) exists and it keeps touching it.

A claim is made by creating the file with O_CREAT | O_EXCL, which one caller wins on POSIX file systems
(also NFS v3 and later). A claim whose worker died is stale and may be taken over: its process is gone (same
host), or it has not been touched for `STALE_S` seconds (another host; the owner touches it every
`HEARTBEAT_S` while it works).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

HEARTBEAT_S = 30.0
STALE_S = 300.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return False  # being written or just removed: not ours to judge
    if owner.get("host") == socket.gethostname():
        return not _alive(int(owner.get("pid", -1)))
    return age > STALE_S


def try_claim(path: Path) -> bool:
    """Claim the run whose claim file is `path` for this process; False when a live worker holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and _stale(path):
        # take over: move the stale claim aside under a unique name (one taker wins the rename)
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
        try:
            path.rename(aside)
            aside.unlink()
        except FileNotFoundError:
            pass
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, f)
    return True


def release(path: Path) -> None:
    path.unlink(missing_ok=True)


@contextmanager
def holding(path: Path):
    """Keep a claimed run's claim fresh while it works, and release it after, also on errors."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            try:
                os.utime(path)
            except OSError:
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        release(path)
