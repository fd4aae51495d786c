"""The verbs, one module each on the run template of `pipelines.run`: train, trim, compress, export, ablate,
sweep, demo. Nothing below this package imports it."""

from gstrim.pipelines.compress import compress_model, trim_and_compress
from gstrim.pipelines.export import export_model, trim_and_export
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.pipelines.sweep import run_sweep
from gstrim.pipelines.train import train_model
from gstrim.pipelines.trim import trim_scene

__all__ = ["Inputs", "RunControl", "compress_model", "export_model", "run_sweep", "train_model", "trim_and_compress",
           "trim_and_export", "trim_scene"]
