"""What the command line prints about datasets, metrics and finished runs."""

from __future__ import annotations

from pathlib import Path


def dataset(ds) -> None:
    s = ds.summary()
    print(f"{s['root']}")
    print(f"  kind         {s['kind']}")
    print(f"  views        {s['train_views']} train, {s['test_views']} test")
    print(f"  resolution   {', '.join(f'{w}x{h}' for w, h in s['resolution'])}")
    print(f"  points       {s['points']:,}")
    print(f"  extent       {s['extent']}")


def metrics(m, indent: str = "  ") -> None:
    print(f"{indent}PSNR {m.psnr:.3f}  SSIM {m.ssim:.4f}  LPIPS {m.lpips:.4f}  render {m.render_ms:.1f} ms/view  "
          f"[{m.lpips_label}, SSIM {m.ssim_mode}]")


def change(i, o, note: str = "") -> None:
    """Test metrics before -> after."""
    print(f"  test PSNR    {i.psnr:.3f} -> {o.psnr:.3f}   SSIM {i.ssim:.4f} -> {o.ssim:.4f}   "
          f"LPIPS {i.lpips:.4f} -> {o.lpips:.4f}{note}")


def virtual(o) -> None:
    """Photo-free metrics: against the input's own renders, so there is no "before"."""
    if o is not None and o.label.endswith("_virtual"):
        print(f"  held-out     PSNR {o.psnr:.3f}  SSIM {o.ssim:.4f}  LPIPS {o.lpips:.4f} against the input's renders "
              f"of {o.views} virtual views (not photos)")


def photo_free_note(details: dict) -> str:
    return ", photo-free: taught by its own renders" if details.get("mode") == "photo-free" else ""


def trim(s, model_dir: Path) -> None:
    print(f"trimmed {s.gaussians_in:,} -> {s.gaussians_out:,} Gaussians ({100 * s.removed:.1f} % removed, "
          f"{s.details['variant']}, score {s.details['score']}{photo_free_note(s.details)}) in {s.wall_s:.0f} s")
    print(f"  size         {s.mb_in:.2f} MB -> {s.mb_out:.2f} MB (x{s.ratio:.2f} smaller)")
    if s.input is not None and s.output is not None:
        change(s.input, s.output)
        print(f"  render       {s.input.fps:.1f} -> {s.output.fps:.1f} FPS")
    virtual(s.output if s.input is None else None)
    print(f"  scene        {model_dir / 'point_cloud' / f'iteration_{s.iterations}' / 'point_cloud.ply'}")


def compress(result, original_mb: float | None = None) -> None:
    r, s = result.record, result.summary
    stages = ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in r["stages_s"].items())
    print(f"compressed {s.gaussians_in:,} -> {s.gaussians_out:,} Gaussians, {r['sh_entries']:,} colour and "
          f"{r['shape_entries']:,} shape codebook entries ({stages}{photo_free_note(s.details)})")
    line = f"  size         {r['input_ply_mb']:.2f} MB .ply -> {r['mb']:.3f} MB .gsz (x{r['ratio']:.1f} smaller"
    if original_mb is not None:
        line += f"; x{original_mb * 1e6 / (r['mb'] * 1e6):.1f} smaller than the untrimmed .ply"
    print(line + ")")
    if s.input is not None and s.output is not None:
        change(s.input, s.output, "   (of the file as written)")
    virtual(s.output if s.input is None else None)
    budget(r.get("budget"))
    print(f"  file         {result.file}")


def budget(record: dict | None) -> None:
    """The rate-distortion points a `--max-loss` search tried, smallest first."""
    if not record:
        return
    print(f"  budget       {record['max_loss']:g} dB: chose {record['chosen']} ({record['loss']:+.3f} dB below the "
          f"input) after {len(record['verified'])} fine-tuning(s)")
    print("    | candidate | kB | loss before fine-tuning | loss of the file |")
    print("    |---|---|---|---|")
    for p in record["points"]:
        verified = f"{p['loss']:+.3f}" if p["loss"] is not None else ""
        print(f"    | {p['name']} | {p['bytes'] / 1e3:.1f} | {p['proxy_loss']:+.3f} | {verified} |")


def trim_budget(record: dict, model_dir: Path) -> None:
    """The removal levels a `trim --max-loss` search trimmed, and its choice."""
    settings, chosen = record["settings"], record["chosen"]
    what = settings["finish"]["name"] if settings["finish"] else "ply"
    print(f"  budget       {settings['max_loss']:g} dB against the input: chose {chosen}"
          + ("" if record["within"] else " (nothing within the budget: the closest)")
          + f" after {len(record['levels'])} trim(s)")
    print(f"    | removed | Gaussians | trim loss | {what} kB | loss of the file |")
    print("    |---|---|---|---|---|")
    for lv in sorted(record["levels"], key=lambda lv: lv["removal"]):
        kb = f"{lv['bytes'] / 1e3:.1f}" if lv["bytes"] is not None else ""
        loss = f"{lv['loss']:+.3f}" if lv["loss"] is not None else ""
        print(f"    | {100 * lv['removal']:.0f} % | {lv['gaussians']:,} | {lv['trim_loss']:+.3f} | {kb} | {loss} |")
    best = next(lv for lv in record["levels"] if f"removal-{lv['removal']:.2f}" == chosen)
    if best["file"] is not None:  # None: no level left the codec room, so the trim itself is the result
        print(f"  file         {model_dir / best['file']}")


def export(result, original_mb: float | None = None) -> None:
    how = (f"fine-tuned {result.summary.iterations:,} iterations through its quantiser"
           f"{photo_free_note(result.summary.details)}" if result.summary else "plain")
    line = f"exported {len(result.scene):,} Gaussians ({how}): {result.bytes / 1e6:.3f} MB"
    line += f", x{result.ratio:.1f} smaller than the .ply"
    if original_mb is not None:
        line += f" (x{original_mb * 1e6 / result.bytes:.1f} smaller than the untrimmed .ply)"
    print(line)
    if result.before is not None and result.after is not None:
        change(result.before.metrics(), result.after.metrics(), "   (of the file as written)")
    elif result.after is not None and result.after.label.endswith("_virtual"):
        virtual(result.after.metrics())
    elif result.after is not None:
        o = result.after.metrics()
        print(f"  test PSNR    {o.psnr:.3f}   SSIM {o.ssim:.4f}   LPIPS {o.lpips:.4f}   (of the file as written)")
    budget(result.budget)
    print(f"  file         {result.file}")
