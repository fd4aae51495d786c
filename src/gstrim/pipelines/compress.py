"""`gstrim compress`: c3dgs's end-to-end compression of a trained (or trimmed) scene in a run folder: the
registered stages of `compress.stages` (sensitivities, codebooks, quantisation-aware fine-tuning, the `.gsz`
file), then test metrics of the file as written (decoded from disk, not from memory).

Run folder: `config.json`, `stages/` (the cached products of the stages before fine-tuning, so a resumed run
skips them), `checkpoints/`, `point_cloud/iteration_N/point_cloud.gsz`, `results.json` with a `compress`
record.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gstrim.compress.stages import INPUT, CompressConfig, CompressionJob, run_stages, stage_records
from gstrim.data import Dataset
from gstrim.io.formats import ply_size
from gstrim.io.gsz import read_gsz
from gstrim.pipelines.budget import mean_psnr, trim_budget_left, within_budget
from gstrim.pipelines.inputs import Inputs, RunControl, check_budget_possible, continuing
from gstrim.pipelines.run import Outcome, Run, RunResult
from gstrim.pipelines.run_folder import RunFolder
from gstrim.pipelines.trim import trim_scene
from gstrim.prune.strategy import TrimConfig
from gstrim.records import Evaluation, RunSummary
from gstrim.scene import GaussianScene

COMPRESSED_DIR = "compressed"


class CompressRun(Run):
    verb, config_cls, checkpoint_every = "compress", CompressConfig, 500

    def work(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> Outcome:
        config = self.config
        job = CompressionJob(scene, dataset, config, folder.root, self.control.device,
                             fit=lambda trainer, description: self.fit(folder, trainer, description),
                             # the input's name only: a shipped file does not carry its author's folders (the
                             # run's config.json records the whole path), and equal inputs give equal files
                             meta={"input": self.opened.model.source.name})
        if config.max_loss is None:
            values = run_stages(job).values
        else:
            run_stages(job, (INPUT,))  # computed once, shared by every candidate
            values = within_budget(job, self._input_psnr(folder, scene, dataset),
                                   lambda root: lambda trainer, description: self.fit(RunFolder(root, {}), trainer,
                                                                                      description))
        path, codebooks = values["file"], values["codebooks"]
        decoded = read_gsz(path).decode()
        ply_in = ply_size(scene)
        record = {"file": str(path.relative_to(folder.root)), "mb": values["bytes"] / 1e6, "input_ply_mb": ply_in / 1e6,
                  "ratio": ply_in / values["bytes"], "bits_per_gaussian": 8 * values["bytes"] / max(len(codebooks), 1),
                  "codec": config.codec, "dc": config.dc, "sh_share": config.sh_share,
                  "sh_entries": codebooks.sh_entries, "shape_entries": len(codebooks.rotations),
                  **stage_records(values), **({"budget": values["budget"]} if "budget" in values else {}),
                  "stages_s": {k: round(v, 2) for k, v in job.times.items()}}
        return Outcome(decoded, f"ours_{values['iteration']}", values["iteration"], sum(job.times.values()), record,
                       path)


    def _input_psnr(self, folder: RunFolder, scene: GaussianScene, dataset: Dataset) -> float:
        """The input's test PSNR: its evaluation when the run made one, else measured here."""
        known = folder.read_evaluation("input")
        return known.mean("PSNR") if known is not None else mean_psnr(scene, dataset, device=self.control.device)


def compress_model(inputs: Inputs | str | Path | None, out_dir: str | Path, config: CompressConfig | None = None,
                   control: RunControl | None = None, known_input: Evaluation | None = None) -> RunResult:
    """Compress `inputs` (a .ply, model folder, checkpoint or trim output, or `Inputs`) into `out_dir`; without
    photos its quantisation-aware fine-tuning learns from the input's own renders. The result's `file` is the
    `.gsz`, its `record` the `compress` entry of results.json."""
    if config is not None:
        check_budget_possible(config.max_loss, Inputs.of(inputs) if inputs is not None else None,
                              control or RunControl())
    return CompressRun(inputs, out_dir, config, control, known_input).execute()


def trim_and_compress(inputs: Inputs | str | Path | None, out_dir: str | Path, trim: TrimConfig | None = None,
                      compress: CompressConfig | None = None,
                      control: RunControl | None = None) -> tuple[RunSummary, RunResult]:
    """The paper's whole pipeline (Ali et al. 2024, Table 2): Trimming the Fat into `out_dir`, then c3dgs
    compression of its result into `out_dir/compressed`. Resumes whichever stage an interrupted run was in.
    Returns the trim's summary and the compression's result."""
    out_dir, control = Path(out_dir), control or RunControl()
    compress = compress or CompressConfig()
    compress.validate()  # before hours of trimming, not after
    check_budget_possible(compress.max_loss, Inputs.of(inputs) if inputs is not None else None, control)
    summary = RunSummary.read(out_dir, "trim") if control.resume else None
    if summary is None:
        summary = trim_scene(inputs, out_dir, trim, control).summary
    return summary, compress_trimmed(out_dir, compress, control)


def compress_trimmed(out_dir: str | Path, compress: CompressConfig, control: RunControl) -> RunResult:
    """c3dgs on the finished trim in `out_dir`, into `out_dir/compressed` (resumed when `control.resume` finds it
    started); a `max_loss` budget is against the trim's input, so the compression gets what the trim left."""
    out_dir = Path(out_dir)
    summary = RunSummary.read(out_dir, "trim")
    target = out_dir / COMPRESSED_DIR
    trimmed = Evaluation.read(out_dir, f"ours_{summary.iterations}") if control.evaluate else None
    if compress.max_loss is not None:
        compress = replace(compress, max_loss=trim_budget_left(compress.max_loss, out_dir))
    inputs, control = continuing(out_dir, target, control, when_asked=True)
    return compress_model(inputs, target, compress, control, trimmed)
