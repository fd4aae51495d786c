"""Photo-free trimming beside the two things it stands in for: the with-photos trim (what gstrim does when the
photos exist) and `splat-transform --decimate` (what a user holding only a .ply runs today).

For each trained baseline (a model folder that records its dataset) and each removal level:
  photos       `gstrim trim MODEL --target-removal R --preset cpu`
  photo-free   the same on a bare copy of its .ply (no cameras.json, no dataset): sampled virtual views at the
               photos' resolution, targets rendered by the untrimmed scene
  decimate     `splat-transform bare.ply --decimate N` to the trims' count
all scored on the dataset's real held-out photos, and against the untrimmed scene's renders of the photo-free
run's held-out virtual views. For bare scenes without photos (--splats) only the second score exists.

Usage: python bench/photo_free.py OUT --model runs/chair7k --model runs/cup7k [--removals 0.8 0.9]
       [--splats ../shared/data/splats/*.ply ...] [--splat-removal 0.8] [--resolution N]
Every run resumes or is skipped when finished; prints the Markdown table and writes OUT/table.{md,json}.
Needs `bash scripts/install_splat_transform.sh` for the decimate rows (skipped when absent).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

from gstrim import progress
from gstrim.data import load_dataset
from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.model import load_model, read_config
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"


def trimmed(source: Path, out: Path, removal: float, **options) -> RunSummary:
    """The trim in `out`: run, resumed or read back."""
    summary = RunSummary.read(out, "trim")
    if summary is None:
        resume = read_config(out) is not None
        t0 = time.perf_counter()
        inputs = Inputs() if resume else Inputs(source, **options)
        summary = trim_scene(inputs, out, None if resume else TrimConfig(target_removal=removal, preset="cpu"),
                             RunControl(resume=resume)).summary
        progress.log(f"{out.name}: {time.perf_counter() - t0:.0f} s")
    return summary


DECIMATE = {"splat-transform --decimate": "--decimate", "splat-transform --decimate-adaptive": "--decimate-adaptive"}


def decimated(bare: Path, out: Path, count: int, flag: str) -> tuple[Path, float] | None:
    """`bare` simplified by splat-transform to `count` Gaussians (its CPU path: this machine has no WebGPU)."""
    if not SPLAT_TRANSFORM.exists():
        return None
    t0 = time.perf_counter()
    if not out.exists():
        subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", "-g", "cpu", str(bare), flag, str(count), str(out)],
                       check=True)
    return out, time.perf_counter() - t0


def scores(scene, cameras, background, label: str) -> dict:
    m = evaluate(scene, cameras, label=label, background=background).metrics()
    return {"psnr": round(m.psnr, 3), "ssim": round(m.ssim, 4), "lpips": round(m.lpips, 4)}


def bench_model(model_dir: Path, out: Path, removals: list[float], resolution: int | None) -> list[dict]:
    model = load_model(model_dir)
    data, options = model.recorded_dataset()
    dataset = load_dataset(data, **options)
    bare = out / "bare" / "scene.ply"  # the .ply alone, as a user who downloaded it holds it
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(model.source, bare)
    longest = resolution or max(max(c.width, c.height) for c in dataset.train)
    views = ViewConfig(resolution=longest)
    virtual, _ = virtual_dataset(model.scene, views, bare)  # the photo-free runs' held-out views, rebuilt
    rows = []
    for removal in removals:
        for method in ("photos", "photo-free"):
            run = out / f"{method}-{removal}"
            if method == "photos":
                summary = trimmed(model_dir, run, removal)
            else:
                summary = trimmed(bare, run, removal, views=views)
            scene = load_scene(run / f"point_cloud/iteration_{summary.iterations}/point_cloud.ply")
            label = f"ours_{summary.iterations}"
            real = Evaluation.read(run, label)
            if real is None:  # photo-free: scored on the photos afterwards, as `gstrim eval RUN --data DATA`
                real = evaluate(scene, dataset.test, label=label, background=dataset.background)
                real.write(run)
            m = real.metrics()
            rows.append({"scene": model_dir.name, "removed": removal, "method": method, "gaussians": len(scene),
                         "mb": round(summary.mb_out, 3), "psnr": round(m.psnr, 3), "ssim": round(m.ssim, 4),
                         "lpips": round(m.lpips, 4),
                         "virtual_psnr": scores(scene, virtual.test, None, "virtual")["psnr"],
                         "wall_s": round(summary.wall_s)})
        for method, flag in DECIMATE.items():
            found = decimated(bare, out / f"{flag[2:]}-{removal}.ply", rows[-1]["gaussians"], flag)
            if found is None:
                continue
            path, wall = found
            scene = load_scene(path)
            real = scores(scene, dataset.test, dataset.background, "decimate")
            rows.append({"scene": model_dir.name, "removed": removal, "method": method, "gaussians": len(scene),
                         "mb": round(path.stat().st_size / 1e6, 3), **real,
                         "virtual_psnr": scores(scene, virtual.test, None, "virtual")["psnr"], "wall_s": round(wall)})
    return rows


def bench_splat(path: Path, out: Path, removal: float, resolution: int | None) -> list[dict]:
    bare = out / "bare" / path.name
    if not bare.exists():
        bare.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, bare)
    views = ViewConfig(resolution=resolution)
    summary = trimmed(bare, out / f"photo-free-{removal}", removal, views=views)
    virtual, info = virtual_dataset(load_scene(bare), views, bare)
    run = out / f"photo-free-{removal}"
    scene = load_scene(run / f"point_cloud/iteration_{summary.iterations}/point_cloud.ply")
    common = {"scene": path.name, "removed": removal, "side": info.side}
    rows = [{**common, "method": "photo-free", "gaussians": len(scene), "mb_in": round(path.stat().st_size / 1e6, 3),
             "mb": round(summary.mb_out, 3), **scores(scene, virtual.test, None, "virtual"),
             "wall_s": round(summary.wall_s)}]
    count = len(scene)
    for method, flag in DECIMATE.items():
        found = decimated(bare, out / f"{flag[2:]}-{removal}.ply", count, flag)
        if found is None:
            continue
        decimated_path, wall = found
        scene = load_scene(decimated_path)
        rows.append({**common, "method": method, "gaussians": len(scene),
                     "mb_in": round(path.stat().st_size / 1e6, 3), "mb": round(decimated_path.stat().st_size / 1e6, 3),
                     **scores(scene, virtual.test, None, "virtual"), "wall_s": round(wall)})
    return rows


def markdown(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{r[k]:,}" if isinstance(r.get(k), int) else str(r.get(k, "")) for k in keys) + " |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--model", action="append", default=[], help="trained model folder with a recorded dataset")
    parser.add_argument("--removals", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--splats", nargs="*", default=[], help="bare scene files without photos")
    parser.add_argument("--splat-removal", type=float, default=0.8)
    parser.add_argument("--resolution", type=int, help="longest side of the virtual views (default: the photos')")
    args = parser.parse_args()
    out = Path(args.out)
    tables = {}
    for model in map(Path, args.model):
        tables[model.name] = bench_model(model, out / model.name, args.removals, args.resolution)
    if args.splats:
        tables["splats"] = [row for path in map(Path, args.splats)
                            for row in bench_splat(path, out / "splats" / path.stem, args.splat_removal,
                                                   args.resolution)]
    text = "\n\n".join(f"### {name}\n\n{markdown(rows)}" for name, rows in tables.items())
    (out / "table.md").write_text(text + "\n")
    (out / "table.json").write_text(json.dumps(tables, indent=1))
    print(text)


if __name__ == "__main__":
    main()
