"""Kill anywhere, resume, and end where an uninterrupted run ends (docs/reliability.md).

    python bench/soak.py WORK [--kills 20] [--seed 0]

Builds the built-in example and a short baseline in WORK/model (once), then runs three jobs a user interrupts:
a sweep with compression and a viewer format, `compress --max-loss` and `export --max-loss`, each first
uninterrupted into WORK/reference/, then in rounds into WORK/soak/: started, SIGKILLed at a random moment
(uniform over 10-90 % of the uninterrupted run's wall time), started again with `--resume` (a sweep resumes by
itself), and so on until the round's kills are spent, then run to the end. Every final product (scene files,
tables, the chosen settings, the metrics of results.json) is compared with the uninterrupted run's, bit for bit
where the run is deterministic (files) and exactly for the recorded figures (times and hosts left out). Prints
the seed of every kill, the kills, resumes and differences per job; exits non-zero on any difference or a
resume that failed.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gstrim.io.container import read_container

GSTRIM = [sys.executable, "-m", "gstrim.cli", "--threads", "2"]
TRIM = ["--steps", "2", "--every", "20", "--finetune", "60"]
JOBS = {
    "sweep": lambda w, out: ["sweep", str(w / "model"), "-o", str(out), "--removals", "0.5", "--scores", "opacity",
                             "--compress", "--formats", "spz", *TRIM, "--qat-iterations", "40",
                             "--format-finetune", "40", "--fps-views", "1", "--fps-repeats", "1"],
    "compress": lambda w, out: ["compress", str(w / "model"), "-o", str(out), "--max-loss", "0.5",
                                "--qat-iterations", "40"],
    "export": lambda w, out: ["export", str(w / "model"), "-o", str(out / "scene.spz"), "--max-loss", "0.5",
                              "--finetune", "40"],
}
RESUMES_ITSELF = {"sweep"}
# what differs between two identical runs: times (keys ending _s / _ms), render speed, hosts, memory, dates
VOLATILE_KEYS = {"fps", "host", "peak_memory", "seconds", "elapsed", "date", "since"}


def _volatile(key: str) -> bool:
    return key.endswith(("_s", "_ms")) or key in VOLATILE_KEYS


def make_model(work: Path) -> None:
    if (work / "model" / "point_cloud").is_dir():
        return
    code = ("from gstrim.example import generate_example\n"
            "from gstrim.pipelines.train import TrainSetup, train_model\n"
            "from gstrim.train import DensifyConfig, TrainConfig\n"
            f"data = generate_example({str(work / 'data')!r}, seed=3, n_train=8, n_test=3, size=48, supersample=1)\n"
            f"train_model(data, {str(work / 'model')!r}, TrainConfig(iterations=300, sh_degree=2), "
            "TrainSetup(init_points=2000, save_iterations=[], densify=DensifyConfig(start=50, every=50, stop=200)))\n")
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)


def run(argv: list[str], log: Path, kill_after: float | None) -> tuple[str, float]:
    """("killed" | "done" | "failed", seconds) of one start of gstrim."""
    start = time.monotonic()
    with log.open("a") as f:
        f.write(f"\n$ gstrim {' '.join(argv)}  (kill after {kill_after})\n")
        f.flush()
        proc = subprocess.Popen([*GSTRIM, *argv], stdout=f, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return "killed", time.monotonic() - start
    return ("done" if code == 0 else "failed"), time.monotonic() - start


def _stable(value):
    """A record without what differs between identical runs."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not _volatile(k)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return Path(value).name  # absolute paths differ by folder
    return value


def products(out: Path) -> dict[str, object]:
    """Every final product of a job's folder: scene files by their bytes, JSON records without volatile fields
    (claims, logs, checkpoints and caches are the means, not the products)."""
    found = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if not path.is_file() or "/checkpoints/" in f"/{rel}" or "claims/" in rel or rel.endswith((".log", ".pt")) \
                or "/." in f"/{rel}" or "report/" in rel:
            continue
        if path.suffix == ".gsz":  # its arrays by their bytes; its header names the input by an absolute path
            entries, meta = read_container(path)
            found[rel] = ({k: e.data.tobytes() for k, e in entries.items()}, _stable(meta))
        elif path.suffix in (".ply", ".spz", ".sog", ".splat", ".webp"):
            found[rel] = path.read_bytes()
        elif path.name in ("results.json", "table.json", "search.json", "sweep.json"):
            found[rel] = _stable(json.loads(path.read_text()))
    return found


def differences(reference: dict, soaked: dict) -> list[str]:
    out = [f"missing {k}" for k in reference if k not in soaked]
    out += [f"extra {k}" for k in soaked if k not in reference]
    out += [f"differs {k}" for k in reference if k in soaked and reference[k] != soaked[k]]
    return out


def soak(work: Path, job: str, kills: int, rng: random.Random) -> dict:
    log = work / f"{job}.log"
    reference = work / "reference" / job
    if not (reference / ".done").exists():
        status, seconds = run(JOBS[job](work, reference), log, None)
        if status != "done":
            raise SystemExit(f"{job}: the uninterrupted run failed; see {log}")
        (reference / ".done").write_text(f"{seconds:.1f}")
    wall = float((reference / ".done").read_text())
    row = {"job": job, "reference_s": wall, "kills": 0, "resumes": 0, "failed": 0, "differences": [], "seeds": []}
    rounds = 0
    while row["kills"] < kills:
        rounds += 1
        out = work / "soak" / f"{job}-{rounds}"
        shutil.rmtree(out, ignore_errors=True)
        planned, first = min(3, kills - row["kills"]), True
        while True:
            seed = rng.randrange(1 << 30)
            kill_after = random.Random(seed).uniform(0.1, 0.9) * wall if planned else None
            argv = JOBS[job](work, out) + ([] if first or job in RESUMES_ITSELF else ["--resume"])
            status, _ = run(argv, log, kill_after)
            if not first:
                row["resumes"] += 1
            first = False
            if status == "killed":
                row["kills"] += 1
                planned -= 1
                row["seeds"].append(seed)
                continue
            if status == "failed":
                row["failed"] += 1
                row["differences"].append(f"round {rounds}: a start failed; see {log}")
                break
            # done (a kill planned after the end goes to the next round)
            row["differences"] += [f"round {rounds}: {d}" for d in differences(products(reference), products(out))]
            break
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs in all, shared between the jobs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    make_model(args.work)
    rng = random.Random(args.seed)
    share = [args.kills // len(args.jobs) + (i < args.kills % len(args.jobs)) for i in range(len(args.jobs))]
    rows = [soak(args.work, job, n, rng) for job, n in zip(args.jobs, share, strict=True)]
    print(f"soak (seed {args.seed}): {'job':10s} {'uninterrupted s':>15s} {'kills':>6s} {'resumes':>8s} "
          f"{'failed':>7s} {'differences':>12s}")
    for r in rows:
        print(f"{'':16s} {r['job']:10s} {r['reference_s']:15.1f} {r['kills']:6d} {r['resumes']:8d} {r['failed']:7d} "
              f"{len(r['differences']):12d}   kill seeds {r['seeds']}")
        for d in r["differences"][:10]:
            print(f"    {d}")
    (args.work / "soak.json").write_text(json.dumps(rows, indent=1))
    sys.exit(1 if any(r["differences"] or r["failed"] for r in rows) else 0)


if __name__ == "__main__":
    main()
