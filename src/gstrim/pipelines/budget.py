"""`compress --max-loss DB`: the smallest `.gsz` within a quality budget (`compress.budget`'s search), run in
the compress run folder.

Each candidate is sized and proxied on its own (`search/proxy/`), and a verified candidate is a whole
compression in `search/<name>/`, its sensitivities copied from the run's own (computed once). What each
verification measured is kept in `search/search.json`, so an interrupted search resumes without
fine-tuning again; the chosen file is copied into the run's `point_cloud/`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from gstrim import progress
from gstrim.camera import spread_views
from gstrim.compress.budget import Point, Search, candidates, distinct
from gstrim.compress.stages import (
    BEFORE_FINETUNE,
    CACHE_DIR,
    CACHED_PLACES,
    INPUT,
    CompressionJob,
    gsz_path,
    run_stages,
    stages_at,
)
from gstrim.data import Dataset
from gstrim.errors import ConfigError, GstrimError
from gstrim.evaluate import render_views
from gstrim.io.atomic import copy_atomic, write_text_atomic
from gstrim.io.gsz import CodebookScene, quant_params_of, read_gsz, write_gsz
from gstrim.metrics.image import psnr
from gstrim.options import differing
from gstrim.pipelines.inputs import require_test_photos
from gstrim.records import Evaluation, RunSummary
from gstrim.scene import GaussianScene

SEARCH_DIR = "search"
PROXY_VIEWS = 10


def mean_psnr(scene: GaussianScene, dataset: Dataset, cameras=None, *, device: str) -> float:
    """The mean PSNR of `scene` over `cameras` (the test views), rendered on `device`."""
    cameras = dataset.test if cameras is None else cameras
    values = [float(psnr(image, cam.image)) for _, cam, image, _ in
              render_views(scene, cameras, background=dataset.background, device=device, description="budget")]
    return sum(values) / len(values)


def load_search(path: Path) -> dict:
    """What an interrupted search saved (empty before the first save)."""
    return json.loads(path.read_text()) if path.exists() else {}


def checked_search(path: Path, settings: dict, resume: bool) -> dict:
    """What an interrupted search of the same input and settings saved, to continue with --resume; a search
    found without --resume, or made with other settings, is a one-line error (never reused silently)."""
    saved = load_search(path)
    if not saved:
        return {}
    if not resume:
        raise GstrimError("holds an earlier budget search; pass --resume to continue it or choose another output",
                          path)
    changed = differing(saved.get("settings") or {}, settings)
    if changed:
        raise GstrimError(f"holds a budget search made with other settings ({', '.join(changed)}); choose "
                          "another output or remove it", path)
    return saved


def save_search(path: Path, search: Search, **extra) -> None:
    write_text_atomic(path, json.dumps({"budget": search.budget, **extra, "order": search.order,
                                        "points": [p.to_json() for p in search.points]}, indent=1))


def log_points(points: list[Point]) -> None:
    for p in sorted(points, key=lambda p: p.bytes):
        progress.log(f"budget: {p.name:>20} {p.bytes / 1e3:8.1f} kB  proxy {p.proxy_loss:+.3f} dB")


def search_record(search: Search, best: Point, **extra) -> dict:
    """The record of a finished search: the budget, its choice and every point tried, smallest first."""
    return {"max_loss": search.budget, **extra, "chosen": best.name, "settings": best.settings, "loss": best.loss,
            "verified": search.order, "points": [p.to_json() for p in sorted(search.points, key=lambda p: p.bytes)]}


def report_choice(search: Search) -> Point:
    """The search's choice, said in the log."""
    best, within = search.choice()
    progress.log(f"budget: chose {best.name} ({best.bytes / 1e3:.1f} kB, {best.loss:+.3f} dB)" if within else
                 f"budget: nothing within {search.budget} dB; the closest is {best.name} ({best.loss:+.3f} dB)")
    return best


class BudgetSearch:
    """The search of one compress run: `job` is the run's own job (its sensitivities, its fit)."""

    def __init__(self, job: CompressionJob, input_psnr: float, fit_in: Callable[[Path], Callable]):
        require_test_photos(job.dataset)
        self.job, self.input_psnr, self.fit_in = job, input_psnr, fit_in
        self.root = job.root / SEARCH_DIR
        self.record = self.root / "search.json"
        self.products: dict[str, tuple[dict, dict]] = {}  # verified in this process: (stage products, times)
        self._built: tuple[str, CodebookScene] | None = None  # the newest proxy's clustering settings, codebooks

    def _job(self, point: Point, root: Path) -> CompressionJob:
        config = replace(self.job.config, **point.settings, max_loss=None)
        return replace(self.job, config=config, root=root, fit=self.fit_in(root), values={}, times={})

    def _share_input_stages(self, root: Path) -> None:
        """A candidate's folder gets the products of the run's `input` stages (computed once)."""
        for stage in stages_at(INPUT):
            cache = root / CACHE_DIR / f"{stage.name}.pt"
            if not cache.exists():
                cache.parent.mkdir(parents=True, exist_ok=True)
                copy_atomic(self.job.root / CACHE_DIR / f"{stage.name}.pt", cache)

    def proxy(self, point: Point, views: list, input_proxy: float) -> None:
        """Size and loss of `point` before fine-tuning."""
        job = self._job(point, self.root / "proxy")
        key = json.dumps({k: v for k, v in point.settings.items() if k != "sh_bits"}, sort_keys=True)
        if self._built is None or self._built[0] != key:  # points that differ in bits only share their codebooks
            job.values.update(self.job.values)  # the input stages' products
            for stage in stages_at(BEFORE_FINETUNE):
                job.values.update(stage.run(job))
            self._built = (key, job.values["codebooks"])
        codebooks = self._built[1]
        path = self.root / "proxy" / "candidate.gsz"
        point.bytes = write_gsz(path, codebooks, quant_params_of(codebooks, job.config.quant_bits()),
                                codec=job.config.codec)
        decoded = read_gsz(path).decode()
        point.proxy_loss = input_proxy - mean_psnr(decoded, self.job.dataset, views, device=self.job.device)

    def verify(self, point: Point) -> float:
        root = self.root / point.name
        self._share_input_stages(root)
        progress.log(f"budget: fine-tuning {point.name} ({point.bytes / 1e3:.1f} kB before, "
                     f"{point.proxy_loss:+.3f} dB proxy loss)")
        job = run_stages(self._job(point, root))
        values = job.values
        self.products[point.name] = (values, job.times)
        point.bytes = values["bytes"]
        loss = self.input_psnr - mean_psnr(read_gsz(values["file"]).decode(), self.job.dataset, device=self.job.device)
        progress.log(f"budget: {point.name}: {point.bytes / 1e3:.1f} kB, {loss:+.3f} dB below the input")
        return loss

    def run(self) -> tuple[Point, Search, Path]:
        config, saved = self.job.config, load_search(self.record)
        points = [Point(**p) for p in saved.get("points", [])] or \
            distinct(candidates(), len(self.job.scene), config.keep_sh, config.keep_shape)
        search = Search(config.max_loss, points, order=saved.get("order", []))
        if not saved:
            views = spread_views(self.job.dataset.test, PROXY_VIEWS)
            input_proxy = mean_psnr(self.job.scene, self.job.dataset, views, device=self.job.device)
            for point in progress.track(points, "budget proxies"):
                self.proxy(point, views, input_proxy)
            save_search(self.record, search)
        log_points(points)
        search.run(self.verify, lambda: save_search(self.record, search))
        best = report_choice(search)
        return best, search, self.root / best.name


def _products_of(root: Path) -> tuple[dict, dict]:
    """The stage products a candidate verified by an earlier process left in its folder."""
    values, times = {}, {}
    for stage in stages_at(*CACHED_PLACES):
        saved = torch.load(root / CACHE_DIR / f"{stage.name}.pt", weights_only=False)
        values.update(saved["products"])
        times[f"{stage.name}_s"] = saved["seconds"]
    (path,) = sorted(root.glob("point_cloud/iteration_*/point_cloud.gsz"))
    iteration = int(path.parent.name.split("_")[1])
    return {**values, "codebooks": read_gsz(path), "file": path, "bytes": path.stat().st_size,
            "iteration": iteration}, times


def within_budget(job: CompressionJob, input_psnr: float, fit_in: Callable[[Path], Callable]) -> dict:
    """Run the search and put the chosen file where a plain compression puts its own: the products of the
    chosen candidate's stages, with the search's record under "budget"."""
    search_run = BudgetSearch(job, input_psnr, fit_in)
    best, search, root = search_run.run()
    values, times = search_run.products.get(best.name) or _products_of(root)
    target = gsz_path(job.root, values["iteration"])
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_atomic(values["file"], target)
    job.times.update(times)
    return {**values, "file": target, "budget": search_record(search, best)}


def trim_budget_left(max_loss: float, trim_dir: Path) -> float:
    """`budget_left` of the trim in `trim_dir`, from its recorded evaluations."""
    summary = RunSummary.read(trim_dir, "trim")
    trimmed = Evaluation.read(trim_dir, f"ours_{summary.iterations}") if summary else None
    return budget_left(max_loss, Evaluation.read(trim_dir, "input"), trimmed)


def budget_left(max_loss: float, before: Evaluation | None, trimmed: Evaluation | None) -> float:
    """What `--max-loss` leaves to the compression after the trim: the budget is against the trim's input."""
    if before is None or trimmed is None:
        raise ConfigError("trim --max-loss measures the loss on test photos: it needs the evaluation "
                          "(drop --no-eval) and a dataset with test views", "max_loss")
    spent = before.mean("PSNR") - trimmed.mean("PSNR")
    left = max(max_loss - spent, 0.0)
    progress.log(f"budget: the trim lost {spent:+.3f} dB of {max_loss:g}; the compression gets {left:.3f} dB")
    return left
