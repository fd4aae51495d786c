"""What a sweep asks for: its levels, scores, seeds, variants and files (`SweepConfig`), the settings all its
runs share (`SweepRunConfigs`), and the checks made before its first run starts."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field

from gstrim.compress.stages import CompressConfig
from gstrim.errors import ConfigError
from gstrim.io.formats import viewer_formats
from gstrim.options import option
from gstrim.pipelines.export import ExportConfig
from gstrim.prune.scores import SCORES
from gstrim.prune.strategy import TrimConfig

# fields a sweep sets per run; the others (schedule, statistics, restarts) are shared by all its trims
PER_RUN_FIELDS = ("score", "gamma", "target_removal", "target_count", "target_mb", "one_shot", "no_prune", "seed")


@dataclass
class SweepConfig:
    removals: list[float] = option([0.8, 0.9], "fractions of the Gaussians to remove", metavar="R",
                                   exclusive="levels")
    gammas: list[float] | None = option(None, "quantile levels per prune step instead", metavar="G",
                                        exclusive="levels")
    scores: list[str] = option(["gradient", "opacity"], "importance scores, each pruned iteratively",
                               choices=lambda: list(SCORES))
    one_shot: bool = option(False, "also one-shot runs of the first score")
    seeds: list[int] = option([0], "seeds of every run")
    baseline: bool = option(True, "leave out the unpruned model fine-tuned as long (the no-prune reference)",
                            flag="--no-baseline")
    compress: bool = option(False, "also c3dgs compression of the input and of the first score's iterative trims")
    formats: list[str] = option([], "also export the first score's iterative trims to these viewer formats, "
                                "fine-tuned through their quantisers", choices=viewer_formats)
    lod: bool = option(False, "also the input's levels of detail (`gstrim lod` with its defaults and the trims' "
                       "settings): one chain, a row per level")
    # named sets of TrimConfig fields, each run like the first score's iterative trims at every level and seed
    variants: dict[str, dict] = field(default_factory=dict)
    fps_views: int = option(20, "test views timed per row")
    fps_repeats: int = option(3, "renders of each timed view")

    def validate(self) -> None:
        for score in self.scores:
            if score not in SCORES:
                raise ConfigError(f"unknown score {score!r}; use one of {', '.join(SCORES)}", "scores")
        if not self.scores:
            raise ConfigError("give at least one score", "scores")
        for fmt in self.formats:
            if fmt not in viewer_formats():
                raise ConfigError(f"unknown viewer format {fmt!r}", "formats")
        for removal in self.removals:
            if not 0 < removal < 1:
                raise ConfigError(f"removal fractions must be in (0, 1), got {removal}", "removals")
        if not self.seeds:
            raise ConfigError("give at least one seed", "seeds")
        for name, overrides in self.variants.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise ConfigError(f"variant name {name!r}: use letters, digits, '.', '_' and '-' only", "variant")
            unknown = set(overrides) - {f.name for f in dataclasses.fields(TrimConfig)}
            if unknown:
                raise ConfigError(f"variant {name!r}: unknown trim settings {', '.join(sorted(unknown))}", "variant")


def parse_variant(tokens: list[str]) -> tuple[str, dict]:
    """`NAME KEY=VALUE ...` (the command line's --variant) -> (NAME, TrimConfig fields typed)."""
    if len(tokens) < 2:
        raise ConfigError("--variant takes a name and at least one KEY=VALUE trim setting", "variant")
    hints = typing.get_type_hints(TrimConfig)
    settings = {}
    for token in tokens[1:]:
        key, sep, value = token.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not sep or key not in hints or key in ("seed",):
            raise ConfigError(f"--variant {tokens[0]}: {token!r} is not KEY=VALUE of a trim setting", "variant")
        kinds = [t for t in typing.get_args(hints[key]) if t is not type(None)] or [hints[key]]
        kind = kinds[0]
        try:
            settings[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise ConfigError(f"--variant {tokens[0]}: {key} needs a {kind.__name__}, got {value!r}",
                              "variant") from None
    return tokens[0], settings


@dataclass
class SweepRunConfigs:
    """The settings every run of a sweep shares: the trims' (but what the sweep sets per run), the
    compressions' and the viewer formats'."""
    trim: TrimConfig = field(default_factory=TrimConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    export: ExportConfig = field(default_factory=ExportConfig)


def check_sweep_settings(config: SweepConfig, configs: SweepRunConfigs) -> None:
    """Every setting of every run the sweep will make, checked before the first run starts."""
    config.validate()
    if config.compress:
        configs.compress.validate()
    if config.formats:
        configs.export.validate()
    given = {f: getattr(configs.trim, f) for f in PER_RUN_FIELDS
             if getattr(configs.trim, f) != getattr(TrimConfig(), f)}
    if given:
        raise ConfigError(f"a sweep sets {', '.join(given)} per run; give its levels, scores and seeds instead",
                          *given)
