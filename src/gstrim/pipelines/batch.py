"""`gstrim batch`: the sweep of many scenes, on this machine or a cluster. Each scene is an ordinary sweep
folder (`BATCH/<scene>/`, which `gstrim sweep` and `gstrim report` open as well); all the scenes' runs are
jobs of one driver, so an executor with room (`--jobs N`, a Ray cluster) runs several scenes at once. After
the runs, the driver measures every row's render speed on its own machine and writes one table across the
scenes with the mean of each setting (`report.batch_table`).

A scene that cannot run (a bad file, missing photos, a run that fails) becomes a row with its one-line error;
the other scenes go on. Running the command again finishes what is left; a second driver on the same folder
takes only the runs nobody holds (`claims`).

Layout: BATCH/batch.json (the scenes asked for), BATCH/<scene>/ (a sweep folder each), BATCH/table.*.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from gstrim import progress
from gstrim.errors import ConfigError, GstrimError
from gstrim.io.atomic import holds_other_files, write_text_atomic
from gstrim.io.model import names_path, relative_to_folder
from gstrim.pipelines.executors import ExecutorConfig, drive
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.jobs import first_failure
from gstrim.pipelines.sweep import Sweep, SweepResult, describe_report, prepare_sweep, start_executor
from gstrim.pipelines.sweep_config import SweepConfig, SweepRunConfigs, check_sweep_settings
from gstrim.report.batch_table import scene_rows, write_batch_table
from gstrim.report.table import Row

BATCH_RECORD = "gstrim.batch/1"
BATCH_NAME = "batch.json"


@dataclass
class BatchResult:
    root: Path
    rows: list[Row]  # every scene's rows, each with its scene's name
    errors: dict[str, str]  # scene -> why it has no rows
    sweeps: dict[str, SweepResult]


def scene_names(paths: list[str | Path]) -> list[str]:
    """A folder name per scene: a model folder's name or a file's stem, made unique with the parent folder's
    name and then a number."""
    def base(path: Path) -> str:
        return path.name if path.is_dir() or not path.suffix else path.stem

    names = []
    for path in map(Path, paths):
        name = base(path)
        if name in names:
            name = f"{base(path.absolute().parent)}-{name}"
        stem, k = name, 2
        while name in names:
            name, k = f"{stem}-{k}", k + 1
        names.append(name)
    return names


def _record(out: Path, scenes: dict[str, Inputs]) -> None:
    """batch.json: the scenes of this folder by name; a later batch may add scenes, not move a name. (A folder
    that holds something else is refused before the executor starts.)"""
    path = out / BATCH_NAME
    entry = {name: {"model": relative_to_folder(i.scene, out),
                    "data": relative_to_folder(i.data, out) if i.data is not None else None}
             for name, i in scenes.items()}
    if path.is_file():
        recorded = json.loads(path.read_text())
        for name, inputs in scenes.items():
            known = recorded["scenes"].get(name)
            if known and not names_path(known["model"], out, inputs.scene):
                raise GstrimError(f"this batch's scene {name!r} is another model ({known['model']}); batch into "
                                  "another folder", out)
        entry = {**recorded["scenes"], **entry}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"record": BATCH_RECORD, "scenes": entry}, indent=1))


def run_batch(scenes: list[Inputs | str | Path], out_dir: str | Path, config: SweepConfig | None = None,
              configs: SweepRunConfigs | None = None, control: RunControl | None = None,
              executor: ExecutorConfig | None = None) -> BatchResult:
    """The sweep of every scene in `scenes` into `out_dir/<scene>/`, its runs on `executor`, and one table."""
    out = Path(out_dir).absolute()
    config, configs, control = config or SweepConfig(), configs or SweepRunConfigs(), control or RunControl()
    executor = executor or ExecutorConfig()
    check_sweep_settings(config, configs)  # wrong settings are the command's error, not every scene's
    if not scenes:
        raise ConfigError("give at least one scene", "scenes")
    inputs = [Inputs.of(s) for s in scenes]
    named = dict(zip(scene_names([i.scene for i in inputs]), inputs, strict=True))
    if not (out / BATCH_NAME).is_file() and holds_other_files(out, BATCH_NAME):
        raise GstrimError("output folder is not empty and holds no batch; choose another", out)
    runner = start_executor(executor, out, inputs)
    try:
        _record(out, named)
        sweeps, errors = _prepare_scenes(named, out, config, configs, control)
    except BaseException:
        runner.close()
        raise

    jobs = [job for name, sweep in sweeps.items() for job in sweep.jobs(prefix=f"{name}/")]
    reports = drive(jobs, runner, describe_report)  # closes the executor

    results: dict[str, SweepResult] = {}
    fps_device = ""
    for name, sweep in sweeps.items():
        failed = first_failure(r for r in reports.values() if r.key.startswith(f"{name}/"))
        if failed is not None:
            errors[name] = failed.error
            continue
        try:
            results[name] = sweep.finish()
            fps_device = fps_device or sweep.fps_device
        except GstrimError as exc:
            errors[name] = str(exc)
    rows = [row for name, result in results.items() for row in scene_rows(name, result.rows)]
    errors = {name: errors[name] for name in named if name in errors}  # in the order given
    meta = {"scenes": list(named), "fps_device": fps_device, "executor": executor.executor}
    write_batch_table(out, rows, errors, meta)
    return BatchResult(out, rows, errors, results)


def _prepare_scenes(named: dict[str, Inputs], out: Path, config: SweepConfig, configs: SweepRunConfigs,
                    control: RunControl) -> tuple[dict[str, Sweep], dict[str, str]]:
    """Each scene's sweep, checked and recorded; a scene that cannot run is left out with its reason."""
    sweeps, errors = {}, {}
    for name, scene in named.items():
        try:
            sweeps[name] = prepare_sweep(scene, out / name, config, configs, control)
        except ConfigError:
            raise
        except GstrimError as exc:
            errors[name] = str(exc)
            progress.log(f"{name}: left out: {exc}")
    return sweeps, errors


def scenes_with_data(paths: list[str], data: list[str] | None, data_options: dict, **fields) -> list[Inputs]:
    """The command line's scenes and datasets: one --data for all scenes, or one per scene in order ('-': the
    scene's recorded dataset)."""
    data = data or []
    if len(data) not in (0, 1, len(paths)):
        raise ConfigError(f"give {{data}} once for every scene or once per scene ({len(paths)}), not {len(data)} "
                          "times", "data")
    per_scene = data * len(paths) if len(data) == 1 else data or [None] * len(paths)
    return [replace(Inputs(path, None if d in (None, "-") else d, dict(data_options)), **fields)
            for path, d in zip(paths, per_scene, strict=True)]
