"""Wall time of one `gstrim batch` with each executor on this machine, and the Ray executor's cost per run.

    python bench/batch_executors.py WORK SCENE... [--settings "--removals 0.5 0.8 ..."]

Runs the same batch (default: 2 removal levels x 2 scores, no baseline, a short schedule) into WORK/<case>/
with the local executor `--jobs 1` (all threads in one run), `--jobs 2` (half each), and Ray on a two-node
cluster started here (`ray start --head --num-cpus 1` and a second `ray start --address ... --num-cpus 1`),
then times chains of empty jobs through the Ray executor: the scheduling cost per run with warm workers, and
the start-up of a fresh worker process. Prints a table; every figure goes to WORK/results.json. A finished
case is not run again (delete its entry to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SETTINGS = ("--removals 0.5 0.8 --scores gradient opacity --no-baseline --steps 5 --every 20 --finetune 100 "
            "--fps-views 5 --fps-repeats 2")
PORT = 6391


def gstrim(*argv: str, log: Path) -> float:
    start = time.monotonic()
    with log.open("w") as f:
        code = subprocess.call([str(BIN / "gstrim"), *argv], stdout=f, stderr=subprocess.STDOUT)
    if code not in (0, 1):
        raise SystemExit(f"gstrim failed ({code}); see {log}")
    return time.monotonic() - start


def ray_cluster(start: bool) -> None:
    ray = str(BIN / "ray")
    if not start:
        subprocess.call([ray, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.check_call([ray, "start", "--head", "--port", str(PORT), "--include-dashboard", "false", *common],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Ray 2.60's head enables token authentication; a node joining on this machine shares its token file
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    subprocess.check_call([ray, "start", "--address", f"127.0.0.1:{PORT}", *common], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def table_figures(out: Path) -> dict:
    record = json.loads((out / "table.json").read_text())
    runs = [r for r in record["rows"] if r["kind"] != "input"]
    return {"runs": len(runs), "run_wall_s": round(sum(r["wall_s"] or 0 for r in runs), 1),
            "ran_on": sorted({r["host"] for r in runs}), "errors": record["errors"],
            "psnr": {f"{r['scene']}/{r['name']}": round(r["psnr"], 3) for r in runs}}


def empty_job() -> str:
    return "done"


def importing_job() -> str:
    import gstrim.pipelines.sweep  # noqa: F401  what a real job loads first in a fresh worker (torch with it)

    return "done"


def ray_costs(chain: int = 20) -> dict:
    """Seconds per job of a chain of empty jobs through the Ray executor (each waits for the one before, so
    nothing overlaps), on warm workers; and the first job of a new driver, which imports gstrim and torch in a
    fresh worker process as every batch's first runs do."""
    sys.path.insert(0, str(ROOT / "src"))
    from gstrim.pipelines.executors import ExecutorConfig, Job, drive, make_executor

    def run_chain(n: int, work=empty_job) -> float:
        jobs = [Job(f"empty{i}", work, (f"empty{i - 1}",) if i else ()) for i in range(n)]
        start = time.monotonic()  # with the check that every node sees the folder (its probe tasks import gstrim)
        drive(jobs, make_executor(ExecutorConfig(executor="ray", ray_address="auto", threads=1), [Path.cwd()]))
        return time.monotonic() - start

    import ray

    ray.init(address="auto")  # one driver for both chains, so that the second finds the worker warm
    try:
        cold = run_chain(1, importing_job)  # a fresh worker process imports gstrim and torch
        warm = (run_chain(chain + 1) - run_chain(1)) / chain  # less the executor's start and its node check
    finally:
        ray.shutdown()
    return {"cold_first_job_s": round(cold, 2), "warm_per_job_s": round(warm, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("scenes", nargs="+")
    parser.add_argument("--settings", default=SETTINGS)
    args = parser.parse_args()
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    scenes = [str(Path(s).absolute()) for s in args.scenes]
    cases = {"local --jobs 1": ["--threads", "2"], "local --jobs 2": ["--threads", "2", "--jobs", "2"],
             "ray, 2 nodes x 1 CPU": ["--threads", "1", "--executor", "ray", "--ray-address", "auto"]}
    for name, flags in cases.items():
        if name in results:
            continue
        folder = work / name.split(",")[0].replace(" --", "-").replace(" ", "-")
        threads, rest = flags[:2], flags[2:]
        if "ray" in rest:
            ray_cluster(True)
        try:
            wall = gstrim(*threads, "batch", *scenes, "-o", str(folder), *shlex.split(args.settings), *rest,
                          log=folder.with_suffix(".log"))
        finally:
            if "ray" in rest:
                ray_cluster(False)
        results[name] = {"wall_s": round(wall, 1), **table_figures(folder)}
        results_path.write_text(json.dumps(results, indent=1))
        print(f"{name}: {wall:.0f} s", flush=True)
    if "ray costs" not in results:
        ray_cluster(True)
        try:
            os.chdir(work)
            results["ray costs"] = ray_costs()
        finally:
            ray_cluster(False)
        results_path.write_text(json.dumps(results, indent=1))

    print("| executor | wall s | runs | sum of run wall s | ran on |")
    print("|---|---|---|---|---|")
    for name in cases:
        r = results[name]
        print(f"| {name} | {r['wall_s']:.0f} | {r['runs']} | {r['run_wall_s']:.0f} | {', '.join(r['ran_on'])} |")
    same = len({json.dumps(results[n]["psnr"], sort_keys=True) for n in cases}) == 1
    print(f"same PSNR in every case: {same}")
    print(f"Ray: {results['ray costs']['warm_per_job_s']} s per job on warm workers, "
          f"{results['ray costs']['cold_first_job_s']} s to start the executor and run a first job (node check, "
          "imports in fresh workers)")


if __name__ == "__main__":
    main()
