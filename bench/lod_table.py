"""Levels of detail side by side: gstrim's (`gstrim lod`) against splat-transform's decimation chain at the same
counts, every level evaluated on the same test views (the photos' test split, or for a photo-free chain the
held-out virtual views its levels were evaluated on), and both published as Streamed SOG.

splat-transform's chain is what SuperSplat publishes: each level decimated from the one before (`--decimate`,
uniform, and `--decimate-adaptive`), the better of the two per level counted. Every level is scored twice:
as its .ply, and as the Streamed SOG stores it (read back from lod-meta.json, SOG-quantised).

Usage: python bench/lod_table.py LOD_OUT [--work DIR] [--plot FILE.png] [--reuse] [--no-st-sog]
LOD_OUT: a finished `gstrim lod` output. `--reuse` takes the input's and gstrim's levels' .ply scores from
LOD_OUT/levels.json (the lod run evaluated them on the same views) and scores splat-transform's Streamed SOG by
its bytes only: 10 evaluations fewer, for scenes with many test views. Finished rows in DIR (default
LOD_OUT/bench) are reused. Prints a Markdown table and writes DIR/table.md and DIR/table.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from gstrim import progress
from gstrim.data import load_dataset
from gstrim.data.virtual import ViewConfig, virtual_dataset
from gstrim.evaluate import evaluate
from gstrim.io import load_scene
from gstrim.io.formats import save_scene, written_size
from gstrim.io.model import load_model, read_config, resolve_recorded
from gstrim.io.streamed_sog import level_sizes, read_streamed_sog

SPLAT_TRANSFORM = Path(__file__).resolve().parents[1] / ".tools/splat-transform/node_modules/.bin/splat-transform"


def splat_transform(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(SPLAT_TRANSFORM), "-q", "-w", "-g", "cpu", *args], check=True)  # no GPU here
    return time.perf_counter() - t0


def test_views(lod_out: Path, source):
    """The test views the levels were evaluated on: the recorded photos, or the photo-free virtual views."""
    config = read_config(lod_out / "level-1")
    recorded = config["data"]
    if "virtual" in recorded:
        teacher = resolve_recorded(recorded["teacher"], lod_out / "level-1") if "teacher" in recorded else None
        scene = load_model(teacher).scene if teacher else source.scene
        return virtual_dataset(scene, ViewConfig(**recorded["virtual"]), source.source)[0]
    options = {k: v for k, v in recorded.items() if k != "path"}
    return load_dataset(resolve_recorded(recorded["path"], lod_out / "level-1"), **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lod_out")
    parser.add_argument("--work")
    parser.add_argument("--plot", help="write the PSNR-vs-Gaussians figure here")
    parser.add_argument("--reuse", action="store_true", help="the lod run's own scores of the input and its levels")
    parser.add_argument("--no-st-sog", action="store_true", help="leave out splat-transform's Streamed SOG: with "
                        "`-g cpu` its SH palette fit runs for tens of minutes above ~40k Gaussians with SH")
    args = parser.parse_args()
    lod_out = Path(args.lod_out)
    work = Path(args.work) if args.work else lod_out / "bench"
    work.mkdir(parents=True, exist_ok=True)
    record = json.loads((lod_out / "lod.json").read_text())["settings"]
    source = load_model(record["input"]["scene"], iteration=record["input"]["iteration"])
    counts = record["counts"]
    dataset = test_views(lod_out, source)
    saved = work / "table.json"
    rows: dict[str, dict] = json.loads(saved.read_text()) if saved.exists() else {}

    def row(name: str, make) -> dict:
        if name not in rows:
            progress.log(f"== {name}")
            rows[name] = make()
            saved.write_text(json.dumps(rows, indent=1))
        return rows[name]

    def score(scene, **extra) -> dict:
        m = evaluate(scene, dataset.test, label="level", background=dataset.background).metrics()
        return {"gaussians": len(scene), "psnr": m.psnr, "ssim": m.ssim, "lpips": m.lpips, **extra}

    input_ply = work / "input.ply"
    if not input_ply.exists():
        save_scene(input_ply, source.scene)
    recorded = json.loads((lod_out / "levels.json").read_text())["levels"] if args.reuse else None

    def from_lod(k: int) -> dict:
        r = recorded[k]
        return {"gaussians": r["gaussians"], "psnr": r["psnr"], "ssim": r["ssim"], "lpips": r["lpips"]}
    row("input", lambda: from_lod(0) if recorded else score(source.scene))
    # splat-transform's chains: each level decimated from the one before
    chains = {}
    for mode, flag in (("uniform", "--decimate"), ("adaptive", "--decimate-adaptive")):
        previous, files = input_ply, []
        for k, count in enumerate(counts, start=1):
            target = work / f"st-{mode}-{k}.ply"
            if not target.exists():
                wall = splat_transform(str(previous), flag, str(count), str(target))
                progress.log(f"splat-transform {flag} {count}: {wall:.1f} s")
            row(f"st-{mode}-{k}", lambda target=target: score(load_scene(target)))
            previous = target
            files.append(target)
        chains[mode] = files
    best = []
    for k in range(1, len(counts) + 1):
        best.append(max(("uniform", "adaptive"), key=lambda m, k=k: rows[f"st-{m}-{k}"]["psnr"]))
    # both as Streamed SOG: splat-transform's of its better chain, gstrim's from `gstrim lod`
    st_index = None if args.no_st_sog else work / "st-lod" / "lod-meta.json"
    if st_index is not None and not st_index.exists():
        st_index.parent.mkdir(exist_ok=True)
        tagged = [str(input_ply), "-l", "0"]
        for k, mode in enumerate(best, start=1):
            tagged += [str(chains[mode][k - 1]), "-l", str(k)]
        splat_transform(*tagged, str(st_index))
    ours_index = lod_out / "lod-meta.json"
    missing = [None] * (len(counts) + 1)
    st_sizes, our_sizes = level_sizes(st_index) if st_index else missing, level_sizes(ours_index)
    for k in range(len(counts) + 1):
        if st_index is not None:
            row(f"st-sog-{k}", lambda k=k: {"psnr": float("nan"), "bytes": st_sizes[k]} if recorded else
                score(read_streamed_sog(st_index, k), bytes=st_sizes[k]))
        row(f"gstrim-sog-{k}", lambda k=k: score(read_streamed_sog(ours_index, k), bytes=our_sizes[k]))
    for k in range(1, len(counts) + 1):
        row(f"gstrim-{k}", lambda k=k: from_lod(k) if recorded else score(load_model(lod_out / f"level-{k}").scene))
    lines = [f"Test views: {len(dataset.test)} ({dataset.kind}). splat-transform: the better of its uniform and "
             "adaptive decimation chains per level; SOG: each level as its Streamed SOG stores it.", "",
             "| level | Gaussians | splat-transform PSNR (mode) | gstrim PSNR | gain | splat-transform SOG | "
             "gstrim SOG | gain | SOG kB (theirs / ours) |", "|---|---|---|---|---|---|---|---|---|"]
    inp = rows["input"]
    nothing = {"psnr": float("nan")}

    def kb(size) -> str:
        return "n/a" if size is None else f"{size / 1e3:.0f}"
    lines.append(f"| 0 (input) | {inp['gaussians']:,} | {inp['psnr']:.3f} | {inp['psnr']:.3f} | | "
                 f"{rows.get('st-sog-0', nothing)['psnr']:.3f} | {rows['gstrim-sog-0']['psnr']:.3f} | | "
                 f"{kb(st_sizes[0])} / {kb(our_sizes[0])} |")
    for k, mode in enumerate(best, start=1):
        st, ours = rows[f"st-{mode}-{k}"], rows[f"gstrim-{k}"]
        st_sog, our_sog = rows.get(f"st-sog-{k}", nothing), rows[f"gstrim-sog-{k}"]
        lines.append(f"| {k} | {ours['gaussians']:,} | {st['psnr']:.3f} ({mode}) | {ours['psnr']:.3f} | "
                     f"**{ours['psnr'] - st['psnr']:+.2f}** | {st_sog['psnr']:.3f} | {our_sog['psnr']:.3f} | "
                     f"{our_sog['psnr'] - st_sog['psnr']:+.2f} | {kb(st_sizes[k])} / {kb(our_sizes[k])} |")
    st_total = kb(written_size(st_index)) if st_index else "n/a"
    lines.append(f"| all | | | | | | | | {st_total} / {kb(written_size(ours_index))} |")
    table = "\n".join(lines) + "\n"
    (work / "table.md").write_text(table)
    print(table)
    if args.plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.4))
        n = [inp["gaussians"]] + [rows[f"gstrim-{k}"]["gaussians"] for k in range(1, len(counts) + 1)]
        for label, key in (("gstrim lod", "gstrim-{k}"), ("splat-transform --decimate", "st-uniform-{k}"),
                           ("splat-transform --decimate-adaptive", "st-adaptive-{k}")):
            ax.plot(n, [inp["psnr"]] + [rows[key.format(k=k)]["psnr"] for k in range(1, len(counts) + 1)], "o-",
                    label=label)
        ax.set_xscale("log")
        ax.set_xlabel("Gaussians")
        ax.set_ylabel("test PSNR (dB)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
