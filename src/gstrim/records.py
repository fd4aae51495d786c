"""The typed, versioned records gstrim writes into a model folder, and the one code that writes and reads them.

`results.json` and `per_view.json` keep the INRIA layout (one entry per method name, `ours_<iteration>`,
with `SSIM`, `PSNR` and `LPIPS`; per view: one dict per metric) so existing scripts read them; gstrim's
entries add the Gaussian count, render time, metric conventions and a `record` tag with the version.
A run's summary (`RunSummary`) sits in `results.json` under its verb (`train`, `trim`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from gstrim.io.atomic import write_text_atomic
from gstrim.io.formats import FORMATS
from gstrim.io.model import read_json

RESULTS_NAME, PER_VIEW_NAME = "results.json", "per_view.json"
EVALUATION_RECORD, RUN_RECORD = "gstrim.evaluation/1", "gstrim.run/1"
PER_VIEW_KEYS = ("SSIM", "PSNR", "LPIPS", "render_ms")


def merge_json(path: Path, key: str, entry) -> None:
    """Set `key` in a JSON object file, keeping its other entries."""
    existing = read_json(path)
    existing[key] = entry
    write_text_atomic(path, json.dumps(existing, indent=1))


@dataclass
class Metrics:
    """The mean test metrics of one evaluation (one `results.json` entry)."""

    label: str
    psnr: float
    ssim: float
    lpips: float
    render_ms: float
    views: int
    gaussians: int
    lpips_label: str
    ssim_mode: str

    @property
    def fps(self) -> float:
        return 1000.0 / self.render_ms if self.render_ms > 0 else float("inf")

    def to_json(self) -> dict:
        return {"SSIM": self.ssim, "PSNR": self.psnr, "LPIPS": self.lpips, "views": self.views,
                "gaussians": self.gaussians, "render_ms": self.render_ms, "fps": self.fps,
                "ssim_mode": self.ssim_mode, "lpips": self.lpips_label, "record": EVALUATION_RECORD}

    @classmethod
    def from_json(cls, label: str, d: dict) -> Metrics:
        return cls(label, d["PSNR"], d["SSIM"], d["LPIPS"], d["render_ms"], d["views"], d["gaussians"], d["lpips"],
                   d["ssim_mode"])


@dataclass
class Evaluation:
    """Per-view metrics of a scene on held-out views: view name -> {PSNR, SSIM, LPIPS, render_ms}."""

    label: str
    gaussians: int
    lpips_label: str
    ssim_mode: str
    per_view: dict[str, dict[str, float]] = field(default_factory=dict)
    # what the scores were measured under: dataset, split, resolution, background, SSIM / LPIPS conventions
    conditions: dict = field(default_factory=dict)

    def mean(self, key: str) -> float:
        return float(np.mean([v[key] for v in self.per_view.values()])) if self.per_view else float("nan")

    def metrics(self) -> Metrics:
        return Metrics(self.label, self.mean("PSNR"), self.mean("SSIM"), self.mean("LPIPS"), self.mean("render_ms"),
                       len(self.per_view), self.gaussians, self.lpips_label, self.ssim_mode)

    def write(self, model_dir: Path) -> str:
        """Into `results.json` and `per_view.json` of a model folder, beside other methods' entries. An entry of
        the same label measured under other conditions is kept: this one is written under the label with its
        differing conditions appended (`ours_7000@400x400-black`). Returns the label written."""
        model_dir = Path(model_dir)
        existing = read_json(model_dir / RESULTS_NAME).get(self.label)
        if isinstance(existing, dict) and existing.get("conditions") != self.conditions and \
                (existing.get("conditions") or existing.get("record") == EVALUATION_RECORD):
            differ = [str(v) for k, v in self.conditions.items()
                      if (existing.get("conditions") or {}).get(k) != v and k != "dataset"]
            self.label = f"{self.label}@{'-'.join(differ) or 'other'}".replace(" ", "")
        per_metric = {key: {view: m[key] for view, m in self.per_view.items()} for key in PER_VIEW_KEYS}
        merge_json(model_dir / PER_VIEW_NAME, self.label, per_metric)
        merge_json(model_dir / RESULTS_NAME, self.label, {**self.metrics().to_json(), "conditions": self.conditions})
        return self.label

    @classmethod
    def read(cls, model_dir: Path, label: str) -> Evaluation | None:
        """The evaluation `write` stored under `label`, or None when there is none (or not a gstrim one)."""
        model_dir = Path(model_dir)
        entry = read_json(model_dir / RESULTS_NAME).get(label)
        views = read_json(model_dir / PER_VIEW_NAME).get(label)
        if not entry or entry.get("record") != EVALUATION_RECORD or not views:
            return None
        names = views["PSNR"].keys()
        per_view = {name: {key: views[key][name] for key in PER_VIEW_KEYS} for name in names}
        return cls(label, entry["gaussians"], entry["lpips"], entry["ssim_mode"], per_view,
                   entry.get("conditions", {}))


@dataclass
class RunSummary:
    """What a run did: counts, sizes (as the INRIA .ply), iterations, wall time, metrics before and after.
    `details` holds what is particular to the verb (trim: variant and score)."""

    verb: str
    gaussians_in: int
    gaussians_out: int
    sh_degree: int
    iterations: int
    wall_s: float
    input: Metrics | None = None
    output: Metrics | None = None
    details: dict = field(default_factory=dict)
    peak_memory: dict = field(default_factory=dict)  # resources.peak_memory() at the end of the run
    host: dict = field(default_factory=dict)  # resources.where(): the host, cluster node and process that ended it
    # timing.Phases of the process that ended it: {name: {seconds, times, items, per_second}}
    phases: dict = field(default_factory=dict)

    @property
    def removed(self) -> float:
        return 1.0 - self.gaussians_out / self.gaussians_in if self.gaussians_in else 0.0

    @property
    def mb_in(self) -> float:
        return FORMATS["ply"].size(self.gaussians_in, self.sh_degree) / 1e6

    @property
    def mb_out(self) -> float:
        return FORMATS["ply"].size(self.gaussians_out, self.sh_degree) / 1e6

    @property
    def ratio(self) -> float:
        return self.mb_in / self.mb_out

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("input", "output", "details")}
        d |= {"removed": self.removed, "mb_in": self.mb_in, "mb_out": self.mb_out, "ratio": self.ratio}
        for name in ("input", "output"):
            metrics = getattr(self, name)
            if metrics is not None:
                d[name] = {"label": metrics.label, **metrics.to_json()}
        return {**d, "details": self.details, "record": RUN_RECORD}

    @classmethod
    def from_json(cls, d: dict) -> RunSummary:
        if d.get("record") != RUN_RECORD:
            raise ValueError(f"not a {RUN_RECORD} record")
        metrics = {name: Metrics.from_json(d[name]["label"], d[name]) if name in d else None
                   for name in ("input", "output")}
        return cls(d["verb"], d["gaussians_in"], d["gaussians_out"], d["sh_degree"], d["iterations"], d["wall_s"],
                   details=d["details"], peak_memory=d.get("peak_memory", {}), host=d.get("host", {}),
                   phases=d.get("phases", {}), **metrics)

    def write(self, model_dir: Path) -> None:
        merge_json(Path(model_dir) / RESULTS_NAME, self.verb, self.to_json())

    @classmethod
    def read(cls, model_dir: Path, verb: str) -> RunSummary | None:
        entry = read_json(Path(model_dir) / RESULTS_NAME).get(verb)
        return cls.from_json(entry) if entry and entry.get("record") == RUN_RECORD else None
