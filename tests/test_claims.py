"""Claims on runs (pipelines/claims.py): exactly one of any number of concurrent takers wins, a release removes
only its own claim, an unparsable claim goes stale by its age, a lost heartbeat stops the run."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import random
import socket
import subprocess
import threading
import time

import pytest

from gstrim.pipelines import claims
from gstrim.pipelines.claims import ClaimLost, holding, release, try_claim


def _dead_pid() -> int:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return dead.pid


def _stale_claim(path, how: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "dead":
        path.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "token": "old"}))
    else:  # another host's, untouched for longer than the stale age
        path.write_text(json.dumps({"host": "another-node", "pid": 1, "token": "old"}))
        old = time.time() - claims.STALE_S - 10
        os.utime(path, (old, old))


def test_claim_hold_release_and_takeover(tmp_path):
    path = tmp_path / "claims" / "gradient-0.8.claim"
    claim = try_claim(path)
    assert claim is not None and try_claim(path) is None  # held by a live worker (this process)
    with holding(claim):
        assert json.loads(path.read_text())["token"] == claim.token
    assert not path.exists()  # released
    _stale_claim(path, "dead")
    assert try_claim(path) is not None  # its worker is gone: taken over
    path.write_text(json.dumps({"host": "another-node", "pid": 1}))
    assert try_claim(path) is None  # another host's claim, touched recently: still held
    _stale_claim(path, "old")
    assert try_claim(path) is not None


def test_stale_age_is_minutes_not_seconds(tmp_path):
    """A claim of another host touched a minute ago belongs to a live worker (heartbeats come every 30 s)."""
    path = tmp_path / "c.claim"
    path.write_text(json.dumps({"host": "another-node", "pid": 1, "token": "t"}))
    for age in (2, 60, claims.HEARTBEAT_S * 4):
        os.utime(path, (time.time() - age, time.time() - age))
        assert try_claim(path) is None, age
    assert claims.STALE_S >= 5 * claims.HEARTBEAT_S


def _injected_delays(monkeypatch) -> None:
    """Every read of a claim sleeps a little, widening each window between a look and an act."""
    read = claims._owner

    def slow(path):
        time.sleep(random.uniform(0, 0.003))
        return read(path)
    monkeypatch.setattr(claims, "_owner", slow)


def _take(path, start, results) -> None:
    start.wait()
    results.put(try_claim(path) is not None)


@pytest.mark.parametrize("how", ["dead", "old"])
def test_exactly_one_of_many_threads_takes_a_stale_claim(tmp_path, monkeypatch, how):
    _injected_delays(monkeypatch)
    for trial in range(30):
        path = tmp_path / f"{trial}.claim"
        _stale_claim(path, how)
        start, results = threading.Event(), queue.Queue()
        threads = [threading.Thread(target=_take, args=(path, start, results)) for _ in range(8)]
        for t in threads:
            t.start()
        start.set()
        for t in threads:
            t.join()
        wins = [results.get() for _ in threads]
        assert sum(wins) == 1, (trial, wins)


def test_exactly_one_of_many_processes_takes_a_stale_claim(tmp_path, monkeypatch):
    _injected_delays(monkeypatch)
    ctx = multiprocessing.get_context("fork")
    for trial in range(10):
        path = tmp_path / f"{trial}.claim"
        _stale_claim(path, "old")
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_take, args=(path, start, results)) for _ in range(6)]
        for p in procs:
            p.start()
        start.set()
        wins = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
        assert sum(wins) == 1, (trial, wins)


def test_release_removes_only_its_own_claim(tmp_path):
    path = tmp_path / "c.claim"
    mine = try_claim(path)
    _stale_claim(path, "dead")  # our claim went stale and was taken over by another worker's
    successor = try_claim(path)
    assert successor is not None
    release(mine)
    assert path.exists() and json.loads(path.read_text())["token"] == successor.token


def test_unparsable_claim_goes_stale_by_its_age(tmp_path):
    """A kill between creating and writing a claim (or a full disk) left an empty file that held the run forever."""
    path = tmp_path / "c.claim"
    path.write_bytes(b"")
    assert try_claim(path) is None  # young: perhaps being written
    old = time.time() - claims.STALE_S - 1
    os.utime(path, (old, old))
    assert try_claim(path) is not None


def test_a_lost_heartbeat_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    monkeypatch.setattr(claims, "_RETRY_S", 0.05)
    monkeypatch.setattr(claims, "STALE_S", 0.4)
    path = tmp_path / "c.claim"
    claim = try_claim(path)

    def failing_utime(*args, **kwargs):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(claims.os, "utime", failing_utime)
    with pytest.raises(ClaimLost, match="heartbeat could not be written"), holding(claim):
        time.sleep(5)  # interrupted long before this ends
    monkeypatch.undo()


def test_a_claim_taken_over_stops_its_run(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    path = tmp_path / "c.claim"
    claim = try_claim(path)
    with pytest.raises(ClaimLost, match="took the claim over"), holding(claim):
        path.write_text(json.dumps({"host": "another-node", "pid": 1, "token": "theirs"}))
        time.sleep(5)
    assert json.loads(path.read_text())["token"] == "theirs"  # not released: not ours
