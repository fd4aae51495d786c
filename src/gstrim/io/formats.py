"""The scene-format registry: every file format gstrim reads or writes, registered once.

A `SceneFormat` names its suffixes and gives `load(path, nonfinite)`, `save(path, scene)`, the exact file
size for a Gaussian count where the format has one (`size(n, sh_degree)`, which `trim --target-mb` turns
into a count; None for an entropy-coded format), optionally `load_described(path, nonfinite)` with the
details `gstrim info` shows, its writer options with the writer that takes them, and its `quantiser`, what
the file decodes to, through which `gstrim export --finetune` fine-tunes. Every verb that reads or writes a
scene looks its format up here by the file name, so a new format, with its options, is one
`register(SceneFormat(...))`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gstrim.errors import GstrimError
from gstrim.io import compressed_ply, gsz, ply, sog, sog_codec, splat, spz, streamed_sog
from gstrim.io.atomic import copy_atomic
from gstrim.io.quantiser import Quantiser, QuantiserContext, RoundTrip
from gstrim.resources import check_free_space
from gstrim.scene import GaussianScene


@dataclass(frozen=True)
class SceneFormat:
    name: str
    suffixes: tuple[str, ...]  # lower case, with the dot; the longest match wins (".compressed.ply")
    load: Callable[[Path, str], GaussianScene]
    save: Callable[[Path, GaussianScene], None]
    size: Callable[[int, int], int] | None  # (Gaussians, SH degree) -> bytes of the file `save` writes
    max_sh_degree: int = 3
    # load with format details for `gstrim info`: (scene, {"format": ..., "extra_properties": [...]})
    load_described: Callable[[Path, str], tuple[GaussianScene, dict]] | None = None
    # the writer's options (a dataclass of `options.option` fields, each naming its `export` flag) and the
    # writer that takes them, `write(path, scene, options)`; without them `save` is the only writer
    options: type | None = None
    write: Callable[[Path, GaussianScene, Any], None] | None = None
    # format-aware fine-tuning: `quantiser(scene, options, QuantiserContext) -> io.quantiser.Quantiser`, what a
    # file of the scene decodes to as a differentiable function; None where `export` cannot fine-tune through it
    quantiser: Callable[[GaussianScene, Any, QuantiserContext], Quantiser] | None = None
    written_size: Callable[[Path], int] | None = None  # bytes of what `save` wrote where not one file's size
    viewer: bool = True  # `gstrim export` writes it (gstrim's own .gsz: `gstrim compress`)
    # `export --max-loss`: the writer options to search for a scene of N Gaussians, each a dict of option fields
    budget_options: Callable[[int], list[dict]] | None = None
    # the files a scene's named file needs beside it (an unbundled SOG's images), which a copy takes first
    companions: Callable[[Path], list[Path]] | None = None

    def file_name(self, stem: str) -> str:
        """The file a run writes in this format under `stem` ("scene" -> scene.spz; a folder format named by its
        index file: scene/lod-meta.json)."""
        suffix = self.suffixes[0]
        return f"{stem}{suffix}" if suffix.startswith(".") else f"{stem}/{suffix}"

    def default_options(self) -> Any:
        return self.options() if self.options is not None else None

    def write_scene(self, path: Path, scene: GaussianScene, options: Any = None) -> None:
        """Write with the writer's options (its defaults when None)."""
        if self.write is None:
            self.save(path, scene)
        else:
            self.write(path, scene, options if options is not None else self.default_options())


FORMATS: dict[str, SceneFormat] = {}


def register(fmt: SceneFormat) -> SceneFormat:
    for other in FORMATS.values():
        if other.name != fmt.name and set(other.suffixes) & set(fmt.suffixes):
            raise ValueError(f"format {fmt.name!r} claims a suffix of {other.name!r}")
    FORMATS[fmt.name] = fmt
    return fmt


def suffixes() -> list[str]:
    return sorted(s for fmt in FORMATS.values() for s in fmt.suffixes)


def format_of(path: str | Path) -> SceneFormat:
    """The registered format a file name asks for; an error naming the file otherwise."""
    name = Path(path).name.lower()
    matches = [(len(s), fmt) for fmt in FORMATS.values() for s in fmt.suffixes if name.endswith(s)]
    if not matches:
        raise GstrimError(f"unknown scene format; expected one of {', '.join(suffixes())}", path)
    return max(matches, key=lambda m: m[0])[1]


def load_scene(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    """Load a scene in any registered format; `nonfinite` is 'error', 'drop' or 'keep'."""
    return format_of(path).load(Path(path), nonfinite)


def ply_size(scene: GaussianScene) -> int:
    """Bytes of `scene` as the INRIA .ply: the baseline of every size ratio."""
    return FORMATS["ply"].size(len(scene), scene.sh_degree)


def written_size(path: str | Path) -> int:
    """Bytes of a written scene (a file, or a folder format's files)."""
    fmt = format_of(path)
    return fmt.written_size(Path(path)) if fmt.written_size is not None else Path(path).stat().st_size


def copy_scene(source: str | Path, target: str | Path) -> None:
    """Copy a written scene, each file atomically, the named file (which names the others) last."""
    source, target = Path(source), Path(target)
    fmt = format_of(source)
    for companion in fmt.companions(source) if fmt.companions is not None else []:
        copy = target.parent / companion.relative_to(source.parent)  # a Streamed SOG's chunks are in subfolders
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy_atomic(companion, copy)
    copy_atomic(source, target)


def save_scene(path: str | Path, scene: GaussianScene) -> None:
    """Save a scene atomically in the format its file name names, after checking that the disk holds it
    where the format's size is known beforehand."""
    fmt = format_of(path)
    if fmt.size is not None:
        check_free_space(Path(path).parent, fmt.size(len(scene), min(scene.sh_degree, fmt.max_sh_degree)),
                         f"a {fmt.name} file")
    fmt.save(Path(path), scene)


def _load_ply(path: Path, nonfinite: str) -> GaussianScene:
    # a PlayCanvas compressed .ply saved under a plain .ply name is still read
    if compressed_ply.is_compressed_ply(path):
        return compressed_ply.read_compressed_ply(path, nonfinite)
    return ply.read_ply(path, nonfinite)


def _load_described_ply(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    if compressed_ply.is_compressed_ply(path):
        return _load_described_compressed_ply(path, nonfinite)
    parsed = ply.read_ply_scene(path)
    details = {"format": f"ply ({parsed.format})", "extra_properties": parsed.extra_properties}
    return parsed.scene.check_finite(str(path), nonfinite), details


def _load_gsz(path: Path, nonfinite: str) -> GaussianScene:
    return gsz.read_gsz(path).decode().check_finite(str(path), nonfinite)


def _save_gsz(path: Path, scene: GaussianScene) -> None:
    # a plain conversion: every Gaussian its own 8-bit entry; `gstrim compress` builds the codebooks
    gsz.write_gsz(path, gsz.CodebookScene.from_scene(scene))


def _load_described_gsz(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    cs = gsz.read_gsz(path)
    kind = "codebooks" if cs.sh_index is not None else "8-bit"
    kind += f", {cs.sh_entries:,} colour / {len(cs.rotations):,} shape entries"
    kind += "" if cs.shared_dc else ", DC per Gaussian"
    kind += f", {len(cs) - cs.sh_count:,} DC only" if cs.sh_count < len(cs) else ""
    kind += f", positions on a {cs.grid.bits}-bit grid" if cs.grid is not None else ", float16 positions"
    return cs.decode().check_finite(str(path), nonfinite), {"format": f"gsz ({kind})", "extra_properties": []}


def _load_described_compressed_ply(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    scene = compressed_ply.read_compressed_ply(path, nonfinite)
    return scene, {"format": "compressed ply (PlayCanvas, 256-Gaussian chunks)", "extra_properties": []}


def _round_trip(roundtrip: Callable[[GaussianScene], GaussianScene], save, on_device: bool = False):
    """The quantiser of a format without options whose file depends on the scene alone (`on_device`: its round
    trip is torch code, run where the scene is)."""
    return lambda scene, options, context: RoundTrip(roundtrip, save, on_device)


register(SceneFormat("ply", (".ply",), _load_ply, ply.write_ply, ply.ply_size, load_described=_load_described_ply,
                     quantiser=_round_trip(lambda scene: scene, ply.write_ply, on_device=True)))
register(SceneFormat("splat", (".splat",), splat.read_splat, splat.write_splat, splat.splat_size, max_sh_degree=0,
                     quantiser=_round_trip(splat.roundtrip, splat.write_splat)))
register(SceneFormat("spz", (".spz",), spz.read_spz, spz.write_spz, None, load_described=spz.describe_spz,
                     options=spz.SpzOptions, write=spz.write_with, quantiser=spz.quantiser,
                     budget_options=spz.budget_options))
register(SceneFormat("compressed-ply", (".compressed.ply",), compressed_ply.read_compressed_ply,
                     compressed_ply.write_compressed_ply, compressed_ply.compressed_ply_size,
                     load_described=_load_described_compressed_ply,
                     quantiser=compressed_ply.quantiser))
# a .sog bundle, or a folder named by its meta.json
register(SceneFormat("sog", (".sog", "meta.json"), sog.read_sog, sog.write_sog, None, load_described=sog.describe_sog,
                     options=sog_codec.SogOptions, write=sog.write_with, quantiser=sog.quantiser,
                     written_size=sog.written_size, budget_options=sog_codec.budget_options, companions=sog.companions))
# a folder of SOG chunks at levels of detail, named by its index; reading gives level 0 (the finest)
register(SceneFormat("streamed-sog", (streamed_sog.INDEX_NAME,), streamed_sog.read_level0, streamed_sog.write_with,
                     None, load_described=streamed_sog.describe, options=streamed_sog.StreamedSogOptions,
                     write=streamed_sog.write_with, written_size=streamed_sog.written_size,
                     companions=streamed_sog.companions))
register(SceneFormat("gsz", (".gsz",), _load_gsz, _save_gsz, None, load_described=_load_described_gsz, viewer=False))


def viewer_formats() -> list[str]:
    """Names of the registered formats `export` writes."""
    return [name for name, fmt in FORMATS.items() if fmt.viewer]
