"""c3dgs compression (Niedermayr et al., CVPR 2024) as registered stages, run in order on one `CompressionJob`:

    sensitivity  ->  clustering (codebooks)  ->  positions (grid)  ->  finetune (quantisation-aware)  ->  write (.gsz)

Each stage reads what earlier stages put in `job.values` and adds its own; its time is recorded as
`<name>_s` (unless the stage records it itself). Each declares its place (`PLACES`: of the input, before,
at or after fine-tuning): stages before fine-tuning store their products in the run folder, so a resumed run
reads them back, and the budget search runs them to size its candidates. A new stage (entropy coding, SH
reduction) is one `register_stage(Stage(...), after=...)`; `gstrim compress`, `trim --compress` and
`--max-loss` pick it up unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from gstrim import progress, timing
from gstrim.compress.codebooks import ClusterSettings, build_codebooks
from gstrim.compress.finetune import QuantizedParameters
from gstrim.compress.positions import POSITION_PSNR, choose_position_bits
from gstrim.compress.sensitivity import sensitivity
from gstrim.data import Dataset
from gstrim.errors import ConfigError
from gstrim.io.atomic import atomic_path
from gstrim.io.container import AUTO, codec_choices
from gstrim.io.gsz import write_gsz
from gstrim.io.model import point_cloud_path
from gstrim.io.positions import MAX_BITS, PositionGrid
from gstrim.options import option
from gstrim.render import resolve_device
from gstrim.scene import GaussianScene
from gstrim.train.trainer import TrainConfig, Trainer

FINETUNE = {"cuda": 5_000, "cpu": 1_000}  # c3dgs's 5,000 on a GPU; a fifth on the CPU, as trim's cpu preset
CACHE_DIR = "stages"
DC_CHOICES = ("codebook", "own")


@dataclass
class CompressConfig:
    codebook_sh: int = option(4096, "colour (SH) codebook entries (c3dgs: 4096)")
    codebook_shape: int = option(4096, "shape (normalised covariance) codebook entries (c3dgs: 4096)")
    keep_sh: float = option(0.01, "fraction of the Gaussians, the most colour-sensitive, that keep their own SH")
    # own: the compressed chair trim loses 0.14 dB instead of 0.41 for 9 % more bytes (docs/compression.md)
    dc: str = option("own", "base colour (SH DC): 8 bits of its own per Gaussian (own), or in the colour "
                     "codebook with the higher bands (codebook, as c3dgs)", choices=DC_CHOICES)
    sh_share: float = option(1.0, "fraction of the Gaussians, those whose higher SH bands matter most, that keep "
                             "view-dependent colour; the others keep their DC only (needs --dc own)")
    # 6 bits: 22 bits per Gaussian fewer than 8 on chair's 80 % trim (docs/compression.md)
    sh_bits: int = option(8, "bits of each higher-band SH value in the colour codebook (c3dgs: 8)")
    position_bits: int | None = option(None, "bits per axis of the positions' grid (default: the fewest whose "
                                       f"renders stay within {POSITION_PSNR:g} dB of the unquantised ones)")
    keep_shape: float = option(0.01, "fraction of the Gaussians, the most shape-sensitive, that keep their own "
                               "shape")
    kmeans_steps_sh: int = option(25, "k-means mini-batch steps for the colours (c3dgs on a GPU: 100 of 2^18)")
    kmeans_steps_shape: int = option(50, "k-means mini-batch steps for the shapes (c3dgs on a GPU: 800 of 2^20)")
    kmeans_batch: int = option(32768, "k-means mini-batch size")
    qat_iterations: int | None = option(None, "quantisation-aware fine-tuning iterations (default: 5000 as c3dgs "
                                        "on a GPU, 1000 on the CPU)")
    # auto: per array the smaller of lzma (12 % smaller than zstd -19 and 13 % smaller than DEFLATE -9 on
    # chair_400) and rANS with the array's own order-0 model (docs/compression.md, "Where the bits go")
    codec: str = option(AUTO, "lossless coding of the file's arrays (auto: the smallest per array)",
                        choices=codec_choices)
    seed: int = option(0, "seed of the clustering and of the view order", flag="--seed")
    max_loss: float | None = option(None, "find the smallest file whose test PSNR stays within this many dB of "
                                    "the input's (searches the codebook sizes and --sh-share)")

    def to_dict(self) -> dict:
        return asdict(self)

    def quant_bits(self) -> dict[str, int]:
        """Bits of the quantised tensors that do not take 8."""
        return {"sh_rest": self.sh_bits} if self.sh_bits != 8 else {}

    def resolved(self, device) -> CompressConfig:
        if self.qat_iterations is not None:
            return self
        return replace(self, qat_iterations=FINETUNE["cuda" if torch.device(device).type == "cuda" else "cpu"])

    def validate(self) -> None:
        if self.dc not in DC_CHOICES:
            raise ConfigError(f"unknown {{dc}} {self.dc!r}; use one of {', '.join(DC_CHOICES)}", "dc")
        for name in ("codebook_sh", "codebook_shape", "kmeans_batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{{{name}}} must be at least 1, got {getattr(self, name)}", name)
        if self.codec not in codec_choices():
            raise ConfigError(f"unknown {{codec}} {self.codec!r}; use one of {', '.join(codec_choices())}", "codec")
        if self.position_bits is not None and not 1 <= self.position_bits <= MAX_BITS:
            raise ConfigError(f"{{position_bits}} must be in 1..{MAX_BITS}, got {self.position_bits}", "position_bits")
        if not 2 <= self.sh_bits <= 8:
            raise ConfigError(f"{{sh_bits}} must be in 2..8, got {self.sh_bits}", "sh_bits")
        if self.sh_share < 1 and self.dc == "codebook":
            raise ConfigError("{sh_share} below 1 needs a DC of its own per Gaussian (--dc own)", "sh_share")
        if self.max_loss is not None and self.max_loss < 0:
            raise ConfigError(f"{{max_loss}} must not be negative, got {self.max_loss}", "max_loss")
        for name in ("keep_sh", "keep_shape", "sh_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{{{name}}} must be a fraction in [0, 1], got {getattr(self, name)}", name)
        for name in ("kmeans_steps_sh", "kmeans_steps_shape", "qat_iterations"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"{{{name}}} must not be negative, got {getattr(self, name)}", name)


@dataclass
class CompressionJob:
    """What the stages of one compression share."""
    scene: GaussianScene  # the input
    dataset: Dataset  # training views for sensitivity and fine-tuning
    config: CompressConfig
    root: Path  # the run folder
    device: str
    fit: Callable[[Trainer, str], float]  # fits a trainer in the run folder, from its checkpoint when resuming
    meta: dict = field(default_factory=dict)  # written into the file
    values: dict = field(default_factory=dict)  # what the stages produced, by name
    times: dict[str, float] = field(default_factory=dict)  # seconds per stage, as `<name>_s`


# Where a stage runs, in order. A budget search (`pipelines.budget`) reads the places, not the stages' names:
# `input` stages are of the input alone, run once and shared by every candidate; `before_finetune` stages build
# a candidate, and the search runs them to size and proxy it before fine-tuning any. Stages at both places keep
# their products in the run folder (`stages/<name>.pt`): a resumed run, or a candidate verified by an earlier
# process, restores them instead of computing them again.
INPUT, BEFORE_FINETUNE, FINETUNING, AFTER_FINETUNE = PLACES = ("input", "before_finetune", "finetune", "after_finetune")
CACHED_PLACES = (INPUT, BEFORE_FINETUNE)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[CompressionJob], dict]  # returns its products, merged into `job.values`
    place: str = AFTER_FINETUNE  # one of PLACES
    record: Callable[[dict], dict] | None = None  # its entries in the run's record, from `job.values`

    @property
    def cached(self) -> bool:
        """Products kept in the run folder and read back by a resumed run."""
        return self.place in CACHED_PLACES


STAGES: list[Stage] = []


def register_stage(stage: Stage, *, after: str | None = None) -> Stage:
    """Add `stage` at the end, or right after the stage named `after`; a stage of the same name is replaced.
    The stages' places must stay in order (an `input` stage cannot follow fine-tuning)."""
    if stage.place not in PLACES:
        raise ValueError(f"stage {stage.name!r}: place {stage.place!r} is not one of {', '.join(PLACES)}")
    stages = list(STAGES)
    names = [s.name for s in stages]
    if stage.name in names:
        stages[names.index(stage.name)] = stage
    else:
        stages.insert(names.index(after) + 1 if after is not None else len(stages), stage)
    ranks = [PLACES.index(s.place) for s in stages]
    if ranks != sorted(ranks):
        raise ValueError(f"stage {stage.name!r} at {stage.place} is out of order: "
                         + " -> ".join(f"{s.name} ({s.place})" for s in stages))
    STAGES[:] = stages
    return stage


def stages_at(*places: str) -> list[Stage]:
    """The registered stages at `places`, in order."""
    return [s for s in STAGES if s.place in places]


def stage_records(values: dict) -> dict:
    """What the stages put in the run's record, from the products in `values`."""
    record: dict = {}
    for stage in STAGES:
        if stage.record is not None:
            record |= stage.record(values)
    return record


def unregister_stage(name: str) -> None:
    STAGES[:] = [s for s in STAGES if s.name != name]


def run_stages(job: CompressionJob, places: tuple[str, ...] = PLACES) -> CompressionJob:
    """Run the stages at `places` in order (default: all)."""
    for stage in stages_at(*places):
        cache = job.root / CACHE_DIR / f"{stage.name}.pt"
        if stage.cached and cache.exists():
            saved = torch.load(cache, weights_only=False)
            products, seconds = saved["products"], saved["seconds"]
        else:
            t0 = time.perf_counter()
            with timing.phase(stage.name):
                products = stage.run(job)
            seconds = time.perf_counter() - t0
            if stage.cached:
                with atomic_path(cache) as tmp:
                    torch.save({"products": products, "seconds": seconds}, tmp)
        job.values.update(products)
        job.times.setdefault(f"{stage.name}_s", seconds)  # a stage may time itself (fine-tuning: with earlier parts)
    return job


# ---- c3dgs's stages ---------------------------------------------------------------------------------------


def _sensitivity(job: CompressionJob) -> dict:
    t0 = time.perf_counter()
    sens = sensitivity(job.scene, job.dataset.train, device=job.device)
    progress.log(f"sensitivity over {len(job.dataset.train)} views: {time.perf_counter() - t0:.1f} s")
    return {"sensitivity": sens}


def _clustering(job: CompressionJob) -> dict:
    c = job.config
    color = ClusterSettings(c.codebook_sh, c.keep_sh, c.kmeans_steps_sh, c.kmeans_batch)
    shape = ClusterSettings(c.codebook_shape, c.keep_shape, c.kmeans_steps_shape, c.kmeans_batch)
    t0 = time.perf_counter()
    codebooks, report = build_codebooks(job.scene, job.values["sensitivity"], color, shape,
                                        torch.Generator().manual_seed(c.seed), shared_dc=c.dc == "codebook",
                                        sh_share=c.sh_share, device=resolve_device(job.device))
    progress.log(f"codebooks: {codebooks.sh_entries:,} colour entries ({report.kept_sh:,} un-clustered, "
                 f"{report.dc_only:,} Gaussians DC only), "
                 f"{len(codebooks.rotations):,} shape entries ({report.kept_shape:,} un-clustered), "
                 f"{report.removed:,} Gaussians of zero sensitivity removed: {time.perf_counter() - t0:.1f} s")
    return {"codebooks": codebooks, "report": report}


def _positions(job: CompressionJob) -> dict:
    codebooks, bits = job.values["codebooks"], job.config.position_bits
    if bits is None:
        t0 = time.perf_counter()
        bits, db = choose_position_bits(codebooks, job.dataset.train, job.dataset.background,
                                        device=job.device)
        progress.log(f"positions: {bits} bits per axis ({db:.1f} dB against unquantised renders): "
                     f"{time.perf_counter() - t0:.1f} s")
    return {"codebooks": replace(codebooks, grid=PositionGrid.fit(codebooks.means, bits)), "position_bits": bits}


def _finetune(job: CompressionJob) -> dict:
    """Quantisation-aware fine-tuning of the codebooks and the per-Gaussian attributes (c3dgs §3.3)."""
    codebooks, scene = job.values["codebooks"], job.scene
    train_config = TrainConfig(iterations=job.config.qat_iterations, sh_degree=scene.sh_degree, sh_interval=0,
                               seed=job.config.seed, device=job.device)
    parameterization = QuantizedParameters(codebooks, bits=job.config.quant_bits())
    trainer = Trainer(codebooks.decode(), job.dataset.train, extent=job.dataset.extent, config=train_config,
                      background=job.dataset.background, parameterization=parameterization)
    job.times["finetune_s"] = job.fit(trainer, "compress")
    return {"codebooks": parameterization.codebook_scene(trainer.params),
            "quantization": parameterization.quant_params(trainer.params), "iteration": trainer.step}


def gsz_path(model_dir: Path, iteration: int) -> Path:
    return point_cloud_path(model_dir, iteration).with_suffix(".gsz")


def _write(job: CompressionJob) -> dict:
    path = gsz_path(job.root, job.values["iteration"])
    size = write_gsz(path, job.values["codebooks"], job.values.get("quantization"), job.config.codec, meta=job.meta)
    return {"file": path, "bytes": size}


register_stage(Stage("sensitivity", _sensitivity, INPUT))
register_stage(Stage("clustering", _clustering, BEFORE_FINETUNE, record=lambda v: asdict(v["report"])))
register_stage(Stage("positions", _positions, BEFORE_FINETUNE, record=lambda v: {"position_bits": v["position_bits"]}))
register_stage(Stage("finetune", _finetune, FINETUNING))
register_stage(Stage("write", _write, AFTER_FINETUNE))
