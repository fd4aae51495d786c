"""Cold start (issue 37): the first commands on a fresh machine, where Numba's cache is empty.

Prints the wall time of `import gstrim`, of `gstrim info` and of a short `gstrim trim` (objects recipe: the
renderer's kernels and the pixel statistics), each with an empty Numba cache (cold) and again with the cache
the cold run left (warm). `--src` times another checkout's `src/` (e.g. a `git worktree` of an older commit) with
the same interpreter, for a before/after table. Run it with nothing else running: it measures compile time.

Usage: python bench/cold_start.py WORK [--src PATH] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = args.work.resolve()
    model = work / "model"
    if not (model / "results.json").exists():  # the example at 32 px, briefly trained: 100,000 Gaussians
        from gstrim.example import generate_example
        from gstrim.pipelines.inputs import RunControl
        from gstrim.pipelines.train import TrainSetup, train_model
        from gstrim.train import TrainConfig

        data = generate_example(work / "data", n_train=6, n_test=2, size=32, supersample=1, overwrite=True)
        train_model(data, model, TrainConfig(iterations=100), TrainSetup(save_iterations=[]), RunControl(no_eval=True))
    ply = next(model.glob("point_cloud/iteration_*/point_cloud.ply"))
    python = [sys.executable]
    gstrim = [*python, "-m", "gstrim.cli"]
    trim = [*gstrim, "trim", str(model), "--steps", "2", "--every", "5", "--finetune", "20", "--no-eval", "-o"]
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, PYTHONPATH=str(args.src), NUMBA_CACHE_DIR=cache)
            rows.append(("import gstrim", timed([*python, "-c", "import gstrim"], env), None))
            for name, argv in (("gstrim info", [*gstrim, "info", str(ply)]),
                               ("gstrim trim", [*trim, str(work / f"trim_{repeat}_cold")])):
                cold = timed(argv, env)
                if name == "gstrim trim":
                    argv = [*trim, str(work / f"trim_{repeat}_warm")]
                rows.append((name, cold, timed(argv, env)))
            for old in work.glob(f"trim_{repeat}_*"):
                subprocess.run(["rm", "-rf", str(old)], check=True)
    print(f"src: {args.src}")
    print("| command | cold s | warm s |\n|---|---|---|")
    for name, cold, warm in rows:
        print(f"| {name} | {cold:.2f} | {'' if warm is None else f'{warm:.2f}'} |")


if __name__ == "__main__":
    main()
