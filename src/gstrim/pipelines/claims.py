"""Claims on runs, so that several workers (processes, machines sharing the folder) never run the same run: a
worker owns a run while its claim file (`SWEEP/claims/<run>.claim`, outside the run folder, which a new run
wants empty) exists, names it (a random token), and is kept fresh.

The protocol, exact for any number of concurrent workers:
- a claim is made by writing its content to a private file and hard-linking it to the claim's name: `link`
  fails when the name exists, so one caller wins (POSIX, and the classic NFS-safe way), and a claim file is
  never seen empty or half-written;
- a claim whose worker died is stale: its process is gone (same host), or it has not been touched for
  `STALE_S` seconds (another host; the owner touches it every `HEARTBEAT_S`); a file that does not parse
  (another program's, a disk that filled) is stale by its age alone;
- taking over a stale claim and releasing one's own happen under a lock of the claims folder (`fcntl`, which
  the kernel, or NFS's lock manager, drops when its process dies, so it is never left stale), in which the
  claim is read again: only the claim judged stale is removed, and a release removes only its own token;
- a worker whose heartbeat cannot be written for `STALE_S / 2`, or finds its claim taken over, stops its run
  (`ClaimLost`) rather than running on unclaimed.
"""

from __future__ import annotations

import _thread
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gstrim.errors import GstrimError

HEARTBEAT_S = 30.0
STALE_S = 300.0
_RETRY_S = 5.0  # a failed heartbeat is tried again this often until STALE_S / 2 have passed
_LOCAL = threading.Lock()  # fcntl locks are per process: threads of one process take this one first


class ClaimLost(GstrimError):
    """The run's claim could not be kept: another worker may now run it, so this one stopped."""


@dataclass
class Claim:
    path: Path
    token: str
    lost: str | None = None  # why the claim was lost, once it is


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> dict | None:
    """The claim's content; None where it is missing or does not parse."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _stale(path: Path, owner: dict | None) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False  # gone: nothing to take over
    if owner is not None and owner.get("host") == socket.gethostname():
        pid = owner.get("pid")
        return not (isinstance(pid, int) and _alive(pid))
    return age > STALE_S


@contextmanager
def _folder_lock(folder: Path):
    with _LOCAL, open(folder / ".lock", "a") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def _link_new(path: Path, token: str) -> bool:
    """Create the claim file whole, atomically, if no claim exists."""
    private = path.with_name(f".{path.name}.{token}")
    private.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": token,
                                   "since": time.time()}))
    try:
        os.link(private, path)
        return True
    except FileExistsError:
        return False
    finally:
        private.unlink(missing_ok=True)


def try_claim(path: Path) -> Claim | None:
    """Claim the run whose claim file is `path` for this process; None when a live worker holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    if _link_new(path, token):
        return Claim(path, token)
    with _folder_lock(path.parent):  # judged and removed in one step: exactly one taker removes it
        if not _stale(path, _owner(path)):
            return None
        path.unlink(missing_ok=True)
    return Claim(path, token) if _link_new(path, token) else None


def owns(claim: Claim) -> bool:
    owner = _owner(claim.path)
    return owner is not None and owner.get("token") == claim.token


def release(claim: Claim) -> None:
    """Remove the claim if it is still this worker's (a stale one taken over belongs to its new owner)."""
    with _folder_lock(claim.path.parent):
        if owns(claim):
            claim.path.unlink()


def _lose(claim: Claim, why: str, interrupt: bool) -> None:
    claim.lost = why
    if interrupt:
        _thread.interrupt_main()  # the run stops where it is (KeyboardInterrupt, turned into ClaimLost below)


@contextmanager
def holding(claim: Claim):
    """Keep a claimed run's claim fresh while it works, and release it after, also on errors. Where the claim
    cannot be kept, the run is stopped (in the main thread; elsewhere it ends with the error when it returns)."""
    stop = threading.Event()
    interrupt = threading.current_thread() is threading.main_thread()

    def beat() -> None:
        last_ok, wait = time.time(), HEARTBEAT_S
        while not stop.wait(wait):
            try:
                if not owns(claim):
                    return _lose(claim, "another worker took the claim over", interrupt)
                os.utime(claim.path)
                last_ok, wait = time.time(), HEARTBEAT_S
            except OSError as exc:
                if time.time() - last_ok > STALE_S / 2:
                    return _lose(claim, f"its heartbeat could not be written for {STALE_S / 2:.0f} s ({exc})",
                                 interrupt)
                wait = _RETRY_S

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield claim
    except KeyboardInterrupt:
        if claim.lost is None:
            raise
        raise ClaimLost(f"stopped: {claim.lost}", claim.path) from None
    finally:
        stop.set()
        thread.join()
        release(claim)
    if claim.lost is not None:
        raise ClaimLost(f"stopped: {claim.lost}", claim.path)
