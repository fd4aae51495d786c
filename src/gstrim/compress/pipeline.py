"""`gstrim compress` in Python: c3dgs's end-to-end compression of a trained (or trimmed) scene in a run
folder: sensitivities, codebooks, quantisation-aware fine-tuning, the `.gsz` file, and test metrics of the
file as written (decoded from disk, not from memory).

Run folder: `config.json`, `codebooks.pt` (the clustered scene before fine-tuning, so a resumed run skips
the clustering), `checkpoints/`, `point_cloud/iteration_N/point_cloud.ply` (the decoded scene, for viewers)
and `point_cloud/iteration_N/point_cloud.gsz`, `results.json` with a `compress` record.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from gstrim import progress
from gstrim.compress.codebooks import ClusterSettings, CodebookReport, build_codebooks
from gstrim.compress.finetune import QuantizedParameters
from gstrim.compress.sensitivity import sensitivity
from gstrim.data.virtual import ViewConfig
from gstrim.errors import ConfigError
from gstrim.io.atomic import atomic_path
from gstrim.io.container import CODECS
from gstrim.io.formats import FORMATS
from gstrim.io.gsz import CodebookScene, read_gsz, write_gsz
from gstrim.io.model import CONFIG_NAME, latest_checkpoint, point_cloud_path
from gstrim.options import option
from gstrim.records import Evaluation, RunSummary
from gstrim.render import resolve_device
from gstrim.run_folder import open_inputs
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer

FINETUNE = {"cuda": 5_000, "cpu": 1_000}  # c3dgs's 5,000 on a GPU; a fifth on the CPU, as trim's cpu preset
CODEBOOKS_NAME = "codebooks.pt"


@dataclass
class CompressConfig:
    codebook_sh: int = option(4096, "colour (SH) codebook entries (c3dgs: 4096)")
    codebook_shape: int = option(4096, "shape (normalised covariance) codebook entries (c3dgs: 4096)")
    keep_sh: float = option(0.01, "fraction of the Gaussians, the most colour-sensitive, that keep their own SH")
    keep_shape: float = option(0.01, "fraction of the Gaussians, the most shape-sensitive, that keep their own "
                               "shape")
    kmeans_steps_sh: int = option(25, "k-means mini-batch steps for the colours (c3dgs on a GPU: 100 of 2^18)")
    kmeans_steps_shape: int = option(50, "k-means mini-batch steps for the shapes (c3dgs on a GPU: 800 of 2^20)")
    kmeans_batch: int = option(32768, "k-means mini-batch size")
    qat_iterations: int | None = option(None, "quantisation-aware fine-tuning iterations (default: 5000 as c3dgs "
                                        "on a GPU, 1000 on the CPU)")
    # lzma: 12 % smaller than zstd -19 and 13 % smaller than DEFLATE -9 on chair_400 (docs/compression.md);
    # 1 s to write, 60 ms to read there
    codec: str = option("lzma", "lossless coding of the file's arrays", choices=lambda: sorted(CODECS))
    seed: int = option(0, "seed of the clustering and of the view order", flag="--seed")

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, device) -> CompressConfig:
        if self.qat_iterations is not None:
            return self
        return replace(self, qat_iterations=FINETUNE["cuda" if torch.device(device).type == "cuda" else "cpu"])

    def validate(self) -> None:
        for name in ("codebook_sh", "codebook_shape", "kmeans_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{{{name}}} must be at least 1, got {getattr(self, name)}", name)
        for name in ("keep_sh", "keep_shape"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{{{name}}} must be a fraction in [0, 1], got {getattr(self, name)}", name)
        for name in ("kmeans_steps_sh", "kmeans_steps_shape", "qat_iterations"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{{{name}}} must not be negative, got {getattr(self, name)}", name)


@dataclass
class CompressResult:
    model_dir: Path
    file: Path
    scene: GaussianScene  # decoded from the written file
    before: Evaluation | None
    after: Evaluation | None
    summary: RunSummary

    @property
    def record(self) -> dict:
        return self.summary.details


def gsz_path(model_dir: Path, iteration: int) -> Path:
    return point_cloud_path(model_dir, iteration).with_suffix(".gsz")


def compress_model(model_path: str | Path | None, out_dir: str | Path, *, data: str | Path | None = None,
                   data_options: dict | None = None, config: CompressConfig | None = None, device: str = "auto",
                   resume: bool = False, checkpoint_every: int = 500, evaluate_test: bool = True,
                   input_evaluation: Evaluation | None = None, iteration: int | None = None,
                   nonfinite: str = "error", views: ViewConfig | None = None,
                   photo_free: bool = False) -> CompressResult:
    """Compress `model_path` (a .ply, model folder, checkpoint or trim output) into `out_dir`; without photos
    its quantisation-aware fine-tuning learns from the input's own renders (`run_folder.open_inputs`)."""
    out_dir = Path(out_dir)
    inputs = open_inputs(out_dir, "compress", model_path, data=data, data_options=data_options, resume=resume,
                         iteration=iteration, nonfinite=nonfinite, views=views, photo_free=photo_free)
    model, folder = inputs.model, inputs.folder
    if inputs.settings is not None:
        config = CompressConfig(**inputs.settings)
    config = (config or CompressConfig()).resolved(resolve_device(device))
    config.validate()
    dataset = inputs.dataset(device)
    scene = model.scene

    if folder is None:
        folder = inputs.create_folder(out_dir, "compress", {"compress": config.to_dict()})
        folder.write_layout(dataset, scene.sh_degree)
        before = folder.evaluate_input(scene, dataset, device, input_evaluation) if evaluate_test else None
    else:
        before = folder.read_evaluation("input")

    codebooks, report, stages = _codebooks(folder.root, scene, dataset.train, config)
    train_config = TrainConfig(iterations=config.qat_iterations, sh_degree=scene.sh_degree, sh_interval=0,
                               seed=config.seed, device=device)
    parameterization = QuantizedParameters(codebooks)
    trainer = Trainer(codebooks.decode(), dataset.train, extent=dataset.extent, config=train_config,
                      background=dataset.background, parameterization=parameterization)
    elapsed = folder.resume(trainer) if resume and latest_checkpoint(folder.root) is not None else 0.0
    stages["finetune_s"] = folder.fit(trainer, checkpoint_every=checkpoint_every, description="compress",
                                      elapsed=elapsed)

    t0 = time.perf_counter()
    path = gsz_path(folder.root, trainer.step)
    size = write_gsz(path, parameterization.codebook_scene(trainer.params),
                     parameterization.quant_params(trainer.params), config.codec, meta={"input": str(model.source)})
    stages["write_s"] = time.perf_counter() - t0
    decoded = read_gsz(path).decode()
    after = folder.evaluate(decoded, f"ours_{trainer.step}", dataset, device) if evaluate_test else None
    ply_in = FORMATS["ply"].size(len(scene), scene.sh_degree)
    record = {"file": str(path.relative_to(folder.root)), "mb": size / 1e6, "input_ply_mb": ply_in / 1e6,
              "ratio": ply_in / size, "codec": config.codec, "sh_entries": len(codebooks.sh_dc),
              "shape_entries": len(codebooks.rotations), **asdict(report),
              "stages_s": {k: round(v, 2) for k, v in stages.items()}}
    summary = RunSummary("compress", len(scene), len(decoded), scene.sh_degree, trainer.step,
                         sum(stages.values()), input=before.metrics() if before else None,
                         output=after.metrics() if after else None, details={**record, **inputs.details()})
    folder.write_summary(summary)
    return CompressResult(folder.root, path, decoded, before, after, summary)


def _codebooks(root: Path, scene: GaussianScene, cameras, config: CompressConfig
               ) -> tuple[CodebookScene, CodebookReport, dict]:
    """The clustered scene: computed once, then read back by a resumed run."""
    path = root / CODEBOOKS_NAME
    if path.exists():
        saved = torch.load(path, weights_only=False)
        return CodebookScene(**saved["codebooks"]), CodebookReport(**saved["report"]), saved["stages"]
    t0 = time.perf_counter()
    sens = sensitivity(scene, cameras)
    t1 = time.perf_counter()
    progress.log(f"sensitivity over {len(cameras)} views: {t1 - t0:.1f} s")
    color = ClusterSettings(config.codebook_sh, config.keep_sh, config.kmeans_steps_sh, config.kmeans_batch)
    shape = ClusterSettings(config.codebook_shape, config.keep_shape, config.kmeans_steps_shape, config.kmeans_batch)
    codebooks, report = build_codebooks(scene, sens, color, shape, torch.Generator().manual_seed(config.seed))
    t2 = time.perf_counter()
    progress.log(f"codebooks: {len(codebooks.sh_dc):,} colour entries ({report.kept_sh:,} un-clustered), "
                 f"{len(codebooks.rotations):,} shape entries ({report.kept_shape:,} un-clustered), "
                 f"{report.removed:,} Gaussians of zero sensitivity removed: {t2 - t1:.1f} s")
    stages = {"sensitivity_s": t1 - t0, "clustering_s": t2 - t1}
    with atomic_path(path) as tmp:
        torch.save({"codebooks": codebooks.tensors(), "report": asdict(report), "stages": stages}, tmp)
    return codebooks, report, stages


COMPRESSED_DIR = "compressed"


def trim_and_compress(scene_path: str | Path | None, out_dir: str | Path, *, trim_config=None,
                      compress_config: CompressConfig | None = None, resume: bool = False, device: str = "auto",
                      evaluate_test: bool = True, **trim_options) -> tuple[RunSummary, CompressResult]:
    """The paper's whole pipeline (Ali et al. 2024, Table 2): Trimming the Fat into `out_dir`, then c3dgs
    compression of its result into `out_dir/compressed`. Resumes whichever stage an interrupted run was in.
    Returns the trim's summary and the compression's result."""
    from gstrim.prune.pipeline import trim_scene

    out_dir = Path(out_dir)
    trim = RunSummary.read(out_dir, "trim") if resume else None
    if trim is None:
        trim = trim_scene(scene_path, out_dir, config=trim_config, resume=resume, device=device,
                          evaluate_test=evaluate_test, **trim_options).summary
    target = out_dir / COMPRESSED_DIR
    again = resume and (target / CONFIG_NAME).exists()
    trimmed = Evaluation.read(out_dir, f"ours_{trim.iterations}") if evaluate_test else None
    compressed = compress_model(None if again else out_dir, target, config=compress_config, resume=again,
                                device=device, evaluate_test=evaluate_test, input_evaluation=trimmed)
    return trim, compressed
