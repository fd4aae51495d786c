"""`gstrim export OUT --max-loss DB`: the writer options of a viewer format (SPZ's SH bits, SOG's palette
size) chosen per scene by `compress.budget`'s search, as `compress --max-loss` chooses codebook sizes.

Each candidate's proxy is a plain conversion (its size, and its loss on a few test views before
fine-tuning); a verified candidate is a whole fine-tuned export in `OUT.finetune/search/<name>/`. The
chosen file is copied to OUT and the search recorded beside it (`OUT.finetune/search/search.json`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from gstrim import progress
from gstrim.camera import spread_views
from gstrim.compress.budget import Point, Search
from gstrim.data import Dataset
from gstrim.errors import GstrimError
from gstrim.io.formats import SceneFormat, copy_scene, load_scene, written_size
from gstrim.io.model import Model
from gstrim.pipelines.budget import (
    PROXY_VIEWS,
    SEARCH_DIR,
    checked_search,
    log_points,
    mean_psnr,
    report_choice,
    save_search,
    search_record,
)
from gstrim.pipelines.inputs import RunControl, require_test_photos


def _as_json(options) -> dict:
    return json.loads(json.dumps(asdict(options))) if options is not None else {}


def export_within_budget(model: Model, dataset: Dataset, out: Path, fmt: SceneFormat, config, control: RunControl,
                         candidate: Callable, run_dir_of: Callable[[Path], Path]) -> tuple[Path, dict]:
    """Write as `out` the smallest fine-tuned `fmt` file of `model` within `config.max_loss` dB of its test PSNR on
    `dataset`, each candidate written by `candidate(config, target, known_input) -> ExportResult` (an export run
    without a budget, in `run_dir_of(target)`). Returns the chosen candidate's run folder and the search's record."""
    if fmt.budget_options is None:
        raise GstrimError(f"{fmt.name} has no writer options to search; export it without --max-loss", out)
    require_test_photos(dataset)
    scene = model.scene.with_sh_degree(min(model.scene.sh_degree, fmt.max_sh_degree))
    root = run_dir_of(out) / SEARCH_DIR
    record = root / "search.json"
    identity = {"input": str(Path(model.source).resolve()), "data": str(Path(dataset.root).resolve()),
                "format": fmt.name, "max_loss": config.max_loss, "finetune": config.finetune, "seed": config.seed,
                "options": _as_json(config.options_for(fmt))}
    saved = checked_search(record, identity, control.resume)
    input_psnr = saved.get("input_psnr") or mean_psnr(scene, dataset, device=control.device)
    points = [Point(**p) for p in saved.get("points", [])]
    if not points:
        views = spread_views(dataset.test, PROXY_VIEWS)
        input_proxy = mean_psnr(scene, dataset, views, device=control.device)
        base = config.options_for(fmt)
        with tempfile.TemporaryDirectory() as tmp:
            for settings in progress.track(fmt.budget_options(len(scene)), "budget proxies"):
                name = "-".join(f"{k}{v}" for k, v in settings.items())
                path = Path(tmp) / f"{name}{fmt.suffixes[0]}"
                fmt.write_scene(path, scene, replace(base, **settings))
                points.append(Point(name, settings, written_size(path),
                                    input_proxy - mean_psnr(load_scene(path), dataset, views, device=control.device)))
    search = Search(config.max_loss, points, order=saved.get("order", []))

    def save() -> None:
        save_search(record, search, input_psnr=input_psnr, settings=identity)

    save()
    log_points(points)

    known_input = None  # the input's evaluation, once a candidate's run has made it

    def target_of(point: Point) -> Path:
        return root / point.name / out.name

    def verify(point: Point) -> float:
        nonlocal known_input
        options = replace(config.options_for(fmt), **point.settings)
        settings = replace(config, max_loss=None, formats={**config.formats, fmt.name: options})
        target = target_of(point)
        target.parent.mkdir(parents=True, exist_ok=True)
        result = candidate(settings, target, known_input)
        known_input = known_input or result.before  # the input is evaluated by the first candidate's run only
        point.bytes = result.bytes
        loss = input_psnr - mean_psnr(result.scene, dataset, device=control.device)
        progress.log(f"budget: {point.name}: {point.bytes / 1e3:.1f} kB, {loss:+.3f} dB below the input")
        return loss

    search.run(verify, save)
    best = report_choice(search)
    copy_scene(target_of(best), out)
    return run_dir_of(target_of(best)), search_record(search, best, input_psnr=input_psnr)
