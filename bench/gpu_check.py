"""The GPU check's benchmark (issue 37): a real-size trim, compression and SOG export on one GPU, timed by phase,
within a fixed budget, with a table printed whatever fails.

Steps, each a gstrim command in its own process (so each pays its own start-up, as a user's does):
  baseline   the built-in example, trained briefly (--no-eval: the LPIPS weights do not travel to the GPU)
  grow       split to COUNT Gaussians (bench/large.py's 3DGS-style split)
  trim       photo-free on VIEWS virtual views at RESOLUTION px (the grown scene's renders are the photos: no
             dataset has to travel), --preset paper's 10 prunes with its iterations scaled by SCALE
  compress   c3dgs on the trimmed scene, its fine-tuning iterations scaled by SCALE
  sog        export to .sog, its fine-tuning iterations scaled by SCALE
  visibility the objects recipe's score (largest blending weight) over VISIBILITY_VIEWS views, in-process
The table gives each step's time, its phases (results.json), its peak GPU memory and, for the scaled steps, the
time extrapolated to the full schedule: fitting at the measured pace for the full iteration count, every other
phase as measured (a prune's scoring and the targets do not depend on the iteration count).

Usage: python bench/gpu_check.py WORK [--count 1000000] [--budget 330] [--scale 0.1] [--device cuda]
       (--device cpu --count 20000 --resolution 64 --views 12: the CPU check of this script, ~7 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PAPER = {"steps": 10, "every": 500, "finetune": 10_000}  # gstrim.prune.strategy.PRESETS["paper"]
QAT_ITERATIONS, SOG_FINETUNE = 5_000, 5_000  # compress and export defaults on a GPU


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def gstrim(argv: list, budget: Budget, log: Path, share: float = 1.0) -> tuple[str, float]:
    """Run `gstrim ARGV` with at most `share` of the budget left; ('ok' | 'failed (exit N)' | 'timed out', s)."""
    limit = max(budget.left() * share, 1.0)
    start = time.perf_counter()
    env = dict(os.environ, GSTRIM_PROGRESS_EVERY="30")
    with open(log, "w") as out:
        try:
            done = subprocess.run([sys.executable, "-m", "gstrim.cli", *map(str, argv)], stdout=out,
                                  stderr=subprocess.STDOUT, timeout=limit, env=env)
            status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode}, {log.name})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit:.0f} s ({log.name})"
    return status, time.perf_counter() - start


def last_progress(log: Path) -> str:
    """The step's last progress line (`GSTRIM_PROGRESS_EVERY`), for a step stopped before its record."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if " in " in line and "/" in line]
    except OSError:
        return ""
    return f"last progress: {lines[-1].strip()}" if lines else ""


def record(folder: Path, verb: str) -> dict:
    try:
        return json.loads((folder / "results.json").read_text())[verb]
    except (OSError, KeyError, ValueError):
        return {}


def extrapolated(entry: dict, scale: float) -> float | None:
    """The run's time with its fitting at full length: the fit phase / scale, every other phase as measured."""
    phases = entry.get("phases")
    if not phases or "fit" not in phases:
        return None
    return sum(p["seconds"] for p in phases.values()) + phases["fit"]["seconds"] * (1 / scale - 1)


def describe(entry: dict) -> str:
    parts = []
    for name, p in entry.get("phases", {}).items():
        text = f"{name} {p['seconds']:.1f}"
        if p.get("items"):
            text += f" ({p['items']} at {p['per_second']}/s)"
        elif p.get("times", 1) > 1:
            text += f" ({p['times']}x)"
        parts.append(text)
    return ", ".join(parts)


def visibility_timing(scene_path: Path, views: int, resolution: int, device: str) -> str:
    """Seconds of one visibility pass (the objects recipe's score) over `views` virtual views of the scene."""
    import torch

    from gstrim.data.virtual import ViewConfig, sample_views
    from gstrim.io import load_scene
    from gstrim.prune.scores import visibility_score

    scene = load_scene(scene_path).to(device)
    cameras, _, _ = sample_views(scene, ViewConfig(views=views), resolution, resolution, scene_path)
    visibility_score(scene, cameras[:1], device=device)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    visibility_score(scene, cameras, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return f"{seconds:.1f} s for {len(cameras)} views ({seconds / len(cameras) * 1000:.0f} ms a view)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--views", type=int, default=200, help="virtual views (Mip-NeRF 360 captures: ~200 photos)")
    parser.add_argument("--resolution", type=int, default=1600, help="their longest side (3DGS's default cap)")
    parser.add_argument("--scale", type=float, default=0.1, help="iterations run, as a share of the full schedule")
    parser.add_argument("--budget", type=float, default=330, help="seconds for all steps")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--visibility-views", type=int, default=20)
    parser.add_argument("--baseline-iterations", type=int, default=2000)
    parser.add_argument("--example-size", type=int, default=200, help="the built-in example's image side")
    args = parser.parse_args()
    work, budget, scale = args.work, Budget(args.budget), args.scale
    work.mkdir(parents=True, exist_ok=True)
    device = ["--device", args.device]
    rows: list[tuple[str, str, float, str, str]] = []  # step, status, seconds, phases, extrapolated / memory

    def step(name: str, argv: list, folder: Path | None = None, verb: str | None = None, share: float = 1.0,
             scaled: bool = False) -> bool:
        if budget.left() < 5:
            rows.append((name, "not run (budget spent)", 0.0, "", ""))
            return False
        status, seconds = gstrim(argv, budget, work / f"{name}.log", share)
        entry = record(folder, verb) if folder is not None else {}
        notes = []
        if entry.get("peak_memory", {}).get("cuda_mb"):
            notes.append(f"peak GPU {entry['peak_memory']['cuda_mb']:,.0f} MB")
        if scaled and (full := extrapolated(entry, scale)) is not None:
            notes.append(f"full schedule ~{full:,.0f} s")
        rows.append((name, status, seconds, describe(entry) or last_progress(work / f"{name}.log"), "; ".join(notes)))
        return status == "ok"

    data, baseline = work / "data", work / "baseline"
    try:
        if not (baseline / "results.json").exists():
            from gstrim.example import generate_example

            generate_example(data, size=args.example_size, overwrite=True)
            step("baseline", ["train", data, "-o", baseline, "--iterations", args.baseline_iterations, "--no-eval",
                              *device], share=0.2)
        scene = work / f"scene_{args.count}.ply"
        if not scene.exists() and (baseline / "point_cloud").exists():
            start = time.perf_counter()
            subprocess.run([sys.executable, str(Path(__file__).parent / "large.py"), "build", baseline, str(args.count),
                            scene], check=True, stdout=subprocess.DEVNULL)
            rows.append(("grow", "ok", time.perf_counter() - start, f"{args.count:,} Gaussians", ""))
        trim = work / "trim"
        schedule = ["--preset", "paper", "--every", str(max(1, round(PAPER["every"] * scale))),
                    "--finetune", str(max(1, round(PAPER["finetune"] * scale)))]
        if scene.exists() and step("trim", ["trim", scene, "-o", trim, "--photo-free", "--views", args.views,
                                            "--resolution", args.resolution, *schedule, "--no-eval", *device],
                                   trim, "trim", share=0.55, scaled=True):
            step("compress", ["compress", trim, "-o", work / "compress", "--qat-iterations",
                              max(1, round(QAT_ITERATIONS * scale)), "--no-eval", *device],
                 work / "compress", "compress", share=0.5, scaled=True)
            step("sog", ["export", trim, "-o", work / "scene.sog", "--finetune", max(1, round(SOG_FINETUNE * scale)),
                         "--no-eval", *device], work / "scene.sog.finetune", "export", scaled=True)
        if scene.exists() and budget.left() > 10:
            start = time.perf_counter()
            try:
                text = visibility_timing(scene, args.visibility_views, args.resolution, args.device)
                rows.append(("visibility", "ok", time.perf_counter() - start, text, ""))
            except Exception as exc:  # noqa: BLE001 - the table is printed whatever fails
                rows.append(("visibility", f"failed ({type(exc).__name__}: {exc})", time.perf_counter() - start,
                             "", ""))
    except Exception as exc:  # noqa: BLE001
        rows.append(("setup", f"failed ({type(exc).__name__}: {exc})", 0.0, "", ""))
    finally:
        print(f"\n{args.count:,} Gaussians, {args.views} views at {args.resolution} px, device {args.device}, "
              f"iterations x{scale:g} of the full schedules")
        print("| step | status | wall s | phases (s) | notes |\n|---|---|---|---|---|")
        for name, status, seconds, phases, note in rows:
            print(f"| {name} | {status} | {seconds:,.0f} | {phases} | {note} |")
    sys.exit(0 if all(r[1] == "ok" for r in rows) else 1)


if __name__ == "__main__":
    main()
