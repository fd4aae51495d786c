"""`gstrim export` in Python: a scene into a file that viewers open (`.spz`, `.sog`, compressed `.ply`,
`.splat`, `.ply`), either converted plainly or, with the photos, fine-tuned through the format's own
quantiser first (`compress.format_finetune`), which no plain converter can do.

A fine-tuning run works in a folder beside the file, `OUT.finetune/` (config, checkpoints, `results.json`
with an `export` record: size, ratio, stage times, and test metrics of the file as written, decoded from
disk), so it resumes after an interruption; the file itself is written last, atomically.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch

from gstrim import progress
from gstrim.compress.format_finetune import FormatParameters
from gstrim.compress.sensitivity import sensitivity
from gstrim.data import load_dataset
from gstrim.data.virtual import ViewConfig
from gstrim.errors import ConfigError, GstrimError
from gstrim.evaluate import evaluate
from gstrim.io import sog, spz
from gstrim.io.atomic import atomic_path
from gstrim.io.formats import FORMATS, SceneFormat, format_of, load_scene
from gstrim.io.model import latest_checkpoint, load_model
from gstrim.options import option
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.run_folder import RunFolder, open_inputs
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer

FINETUNE = {"cuda": 5_000, "cpu": 1_000}  # as compress: c3dgs's 5,000 on a GPU, a fifth on the CPU
RUN_SUFFIX = ".finetune"
BOOKS_NAME = "sog_codebooks.pt"


@dataclass
class ExportConfig:
    finetune: int | None = option(None, "iterations of fine-tuning through the format's quantiser (default with "
                                  "--data: 5000 on a GPU, 1000 on the CPU; without --data: 0, a plain conversion)")
    spz_version: int = option(3, ".spz version: 3 (gzip, every viewer reads it) or 4 (zstd)", choices=(3, 4))
    spz_sh1_bits: int = option(spz.SH1_BITS, ".spz: significant bits kept of degree-1 SH (1-8; Niantic's default 5)")
    spz_sh_rest_bits: int = option(spz.SH_REST_BITS, ".spz: significant bits kept of degree-2 and 3 SH (1-8; "
                                   "Niantic's default 4; 6 costs ~35 %% more bytes and keeps ~0.6 dB on chair)")
    sog_palette: int | None = option(None, "SOG SH palette entries (default: a quarter of the Gaussians, in rows "
                                     "of 64)")
    seed: int = option(0, "seed of the codebooks and of the view order", flag="--seed")

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        for name in ("spz_sh1_bits", "spz_sh_rest_bits"):
            if not 1 <= getattr(self, name) <= 8:
                raise ConfigError(f"{{{name}}} must be within 1-8, got {getattr(self, name)}", name)
        if self.finetune is not None and self.finetune < 0:
            raise ConfigError(f"{{finetune}} must not be negative, got {self.finetune}", "finetune")
        if self.sog_palette is not None and not 1 <= self.sog_palette <= sog.MAX_PALETTE:
            raise ConfigError(f"{{sog_palette}} must be within 1-{sog.MAX_PALETTE}, got {self.sog_palette}",
                              "sog_palette")


@dataclass
class ExportResult:
    file: Path
    scene: GaussianScene  # decoded from the written file
    bytes: int
    input_ply_bytes: int
    before: Evaluation | None = None
    after: Evaluation | None = None
    summary: RunSummary | None = None  # fine-tuning runs only
    run_dir: Path | None = None

    @property
    def ratio(self) -> float:
        return self.input_ply_bytes / max(self.bytes, 1)


def run_dir_of(out: Path) -> Path:
    return out.with_name(out.name + RUN_SUFFIX)


def file_size(path: Path) -> int:
    """Bytes of a written scene: a file, or a SOG folder (its meta.json and images)."""
    if sog.is_folder_output(path):
        meta = sog.open_sog(path)[0]
        names = {n for key in ("means", "scales", "quats", "sh0", "shN") for n in meta.get(key, {}).get("files", [])}
        return path.stat().st_size + sum((path.parent / n).stat().st_size for n in names)
    return path.stat().st_size


def _target(out: Path) -> SceneFormat:
    fmt = format_of(out)
    if fmt.name == "gsz":
        raise GstrimError("export writes viewer formats; `gstrim compress` writes .gsz", out)
    return fmt


def _spz_bits(config: ExportConfig) -> dict:
    return {"sh1_bits": config.spz_sh1_bits, "sh_rest_bits": config.spz_sh_rest_bits}


def _writer(fmt: SceneFormat, config: ExportConfig):
    return partial(spz.write_spz, version=config.spz_version, **_spz_bits(config)) if fmt.name == "spz" else fmt.save


def _roundtrip(fmt: SceneFormat, config: ExportConfig):
    return partial(spz.roundtrip, **_spz_bits(config)) if fmt.name == "spz" else fmt.roundtrip


def _fit_scene(scene: GaussianScene, fmt: SceneFormat) -> GaussianScene:
    return scene.with_sh_degree(fmt.max_sh_degree) if scene.sh_degree > fmt.max_sh_degree else scene


def export_model(model_path: str | Path | None, out: str | Path, *, data: str | Path | None = None,
                 data_options: dict | None = None, config: ExportConfig | None = None, device: str = "auto",
                 resume: bool = False, checkpoint_every: int = 500, evaluate_test: bool = True,
                 iteration: int | None = None, nonfinite: str = "error", views: ViewConfig | None = None,
                 photo_free: bool = False) -> ExportResult:
    """Write `model_path` as `out`; with a dataset (`data`, or `config.finetune` > 0 and the model's recorded
    one, or without photos the scene's own renders from virtual views) fine-tune through the format's quantiser
    first."""
    out = Path(out)
    fmt = _target(out)
    config = config or ExportConfig()
    config.validate()
    finetune = config.finetune
    if finetune is None:
        finetune = FINETUNE[resolve_device(device).type] if (data is not None or resume or photo_free) else 0
    if finetune == 0:
        return _convert(model_path, out, fmt, config, data, data_options, evaluate_test, device, iteration,
                        nonfinite)
    return _finetune(model_path, out, fmt, replace(config, finetune=finetune), data, data_options, device, resume,
                     checkpoint_every, evaluate_test, iteration, nonfinite, views, photo_free)


def _write_plain(out: Path, scene: GaussianScene, fmt: SceneFormat, config: ExportConfig,
                 importance: torch.Tensor | None = None) -> None:
    if fmt.name == "sog":
        books = sog.fit_codebooks(scene, importance, config.sog_palette, seed=config.seed)
        sog.write_sog(out, scene, books)
    else:
        _writer(fmt, config)(out, scene)


def _convert(model_path, out: Path, fmt: SceneFormat, config: ExportConfig, data, data_options, evaluate_test,
             device, iteration, nonfinite) -> ExportResult:
    model = load_model(model_path, iteration=iteration, nonfinite=nonfinite)
    scene = _fit_scene(model.scene, fmt)
    _write_plain(out, scene, fmt, config)
    decoded = load_scene(out)
    result = ExportResult(out, decoded, file_size(out), FORMATS["ply"].size(len(model.scene), model.scene.sh_degree))
    if data is not None and evaluate_test:
        dataset = load_dataset(data, **(data_options or {}))
        if dataset.test:
            result.after = evaluate(decoded, dataset.test, label=fmt.name, background=dataset.background,
                                    device=device)
    return result


def _codebooks(folder: RunFolder, scene: GaussianScene, cameras, config: ExportConfig) -> sog.SogCodebooks:
    """SOG's codebooks weighted by c3dgs's colour sensitivity: fitted once, read back on resume."""
    path = folder.root / BOOKS_NAME
    if path.exists():
        return sog.SogCodebooks(**torch.load(path, weights_only=True))
    t0 = time.perf_counter()
    importance = sensitivity(scene, cameras).color
    books = sog.fit_codebooks(scene, importance, config.sog_palette, seed=config.seed)
    progress.log(f"SOG codebooks ({len(books.palette):,} SH palette entries), weighted by colour sensitivity: "
                 f"{time.perf_counter() - t0:.1f} s")
    with atomic_path(path) as tmp:
        torch.save(books.tensors(), tmp)
    return books


def _finetune(model_path, out: Path, fmt: SceneFormat, config: ExportConfig, data, data_options, device, resume,
              checkpoint_every, evaluate_test, iteration, nonfinite, views=None, photo_free=False) -> ExportResult:
    run = run_dir_of(out)
    inputs = open_inputs(run, "export", model_path, data=data, data_options=data_options, resume=resume,
                         iteration=iteration, nonfinite=nonfinite, views=views, photo_free=photo_free)
    model, folder = inputs.model, inputs.folder
    if inputs.settings is not None:
        config = ExportConfig(**{k: v for k, v in inputs.settings.items() if k != "format"})
    dataset = inputs.dataset(device)
    scene = _fit_scene(model.scene, fmt)
    if folder is None:
        folder = inputs.create_folder(run, "export", {"export": {**config.to_dict(), "format": fmt.name}})
        folder.write_layout(dataset, scene.sh_degree)
        before = folder.evaluate_input(model.scene, dataset, device) if evaluate_test else None
    else:
        before = folder.read_evaluation("input")
    stages = {}
    t0 = time.perf_counter()
    books = _codebooks(folder, scene, dataset.train, config) if fmt.roundtrip is None else None
    stages["codebooks_s"] = time.perf_counter() - t0
    parameterization = FormatParameters(fmt, books, save=_writer(fmt, config), roundtrip=_roundtrip(fmt, config))
    train_config = TrainConfig(iterations=config.finetune, sh_degree=scene.sh_degree, sh_interval=0,
                               seed=config.seed, device=device)
    trainer = Trainer(scene, dataset.train, extent=dataset.extent, config=train_config,
                      background=dataset.background, parameterization=parameterization)
    elapsed = folder.resume(trainer) if resume and latest_checkpoint(folder.root) is not None else 0.0
    stages["finetune_s"] = folder.fit(trainer, checkpoint_every=checkpoint_every, description=f"export {fmt.name}",
                                      elapsed=elapsed)
    t0 = time.perf_counter()
    parameterization.write(out, trainer.params)
    stages["write_s"] = time.perf_counter() - t0
    decoded = load_scene(out)
    after = folder.evaluate(decoded, f"{fmt.name}_{trainer.step}", dataset, device) if evaluate_test else None
    size, ply_in = file_size(out), FORMATS["ply"].size(len(model.scene), model.scene.sh_degree)
    record = {"file": str(out), "format": fmt.name, "mb": size / 1e6, "input_ply_mb": ply_in / 1e6,
              "ratio": ply_in / size, "stages_s": {k: round(v, 2) for k, v in stages.items()}}
    if books is not None:
        record["sog_palette"] = len(books.palette)
    summary = RunSummary("export", len(model.scene), len(decoded), scene.sh_degree, trainer.step,
                         sum(stages.values()), input=before.metrics() if before else None,
                         output=after.metrics() if after else None, details={**record, **inputs.details()})
    folder.write_summary(summary)
    return ExportResult(out, decoded, size, ply_in, before, after, summary, folder.root)


def trim_and_export(out_dir: str | Path, format_name: str, config: ExportConfig | None = None, *,
                    resume: bool = False, device: str = "auto", evaluate_test: bool = True) -> ExportResult:
    """After `gstrim trim ... -o OUT`: the trimmed scene fine-tuned through a viewer format into
    `OUT/scene.<suffix>` (its run in `OUT/scene.<suffix>.finetune`), on the trim's dataset."""
    out_dir = Path(out_dir)
    fmt = FORMATS[format_name]
    target = out_dir / f"scene{fmt.suffixes[0]}"
    config = config or ExportConfig()
    if config.finetune is None:
        config = replace(config, finetune=FINETUNE[resolve_device(device).type])
    again = resume and (run_dir_of(target) / "config.json").exists()
    return export_model(None if again else out_dir, target, config=config, resume=again, device=device,
                        evaluate_test=evaluate_test)


def viewer_formats() -> list[str]:
    """Names of the registered formats `export` writes (all but gstrim's own .gsz)."""
    return [name for name in FORMATS if name != "gsz"]
