"""`CodebookScene`: a scene as c3dgs stores it (Niedermayr et al. 2024, §3 and `gaussian_model.py`), and
its `.gsz` file.

Per Gaussian: position, opacity logit, scale norm (log of the scale vector's 2-norm), an index into a
colour codebook (DC and higher SH bands together, as c3dgs; or, with `shared_dc` False, the higher bands
only, each Gaussian keeping its own DC) and an index into a shape codebook (rotation quaternion and
unit-norm scale direction). Scale = normalize(relu(unit_scale)) * exp(scale_norm), as c3dgs's
`get_scaling`. An index array of None means one codebook entry per Gaussian (a plain 8-bit conversion).

With `sh_index` -1 a Gaussian keeps its DC only: no view-dependent colour, no colour codebook entry
(per-Gaussian SH degree, after LightGaussian's observation that most Gaussians' higher bands matter little;
Fan et al. 2023, §3.3).

On disk, version 2 (`.gsz` container version 2, kind `/3`): positions on a grid fitted to the scene, coded as
Morton-order gaps (`io.positions`); every other array as in version 1, each coded by the smaller of lzma and
an order-0 rANS coder (`io.container.AUTO`); "DC only" is the colour index one past the codebook.
Version 1 (kinds `/1` and `/2`, still read and, with `version=1`, written): positions float16; opacity, scale
norm, DC, higher SH, rotation and unit scale 8-bit affine (`compress.quantize`) with their quantisation
parameters as array attributes; indices in the narrowest unsigned type. Gaussians in Morton order (c3dgs
§3.4), so neighbours in the file are neighbours in space and the index arrays code small. Kind `/1` files hold
a shared DC (c3dgs); kind `/2` files say in their header whether the DC is shared (`shared_dc`). Both read.

Why a DC of its own: on chair_400 trimmed to 9,089 Gaussians, the colour codebook at a quarter of them cost
0.92 dB before fine-tuning and the compressed file 0.40 dB after it (docs/compression.md); the base colour
is what the eye sees most, and 24 bits per Gaussian keep it exact to 8 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from gstrim.errors import GstrimError
from gstrim.io.container import AUTO, Entry, read_container, write_container
from gstrim.io.limits import plausible_count
from gstrim.io.packing import QuantParams, morton_order
from gstrim.io.positions import PositionGrid, cell_order, decode_cells, encode_cells
from gstrim.scene import GaussianScene, sh_degree_from_rest

QUANTIZED = ("opacities", "scale_norms", "sh_dc", "sh_rest", "rotations", "unit_scales")
_SCALE_FLOOR = 1e-8  # a quantised-away axis becomes a very thin one, not log(0)
GSZ_KIND_V1 = "gstrim.codebook-scene/1"  # DC in the colour codebook
GSZ_KIND_DC = "gstrim.codebook-scene/2"  # `shared_dc` in the header
GSZ_KIND = "gstrim.codebook-scene/3"  # .gsz version 2: gridded positions, entropy-coded, DC-only Gaussians
GSZ_KINDS = (GSZ_KIND_V1, GSZ_KIND_DC, GSZ_KIND)
DEFAULT_POSITION_BITS = 16  # a grid finer than float16 on scenes of extent >= 1; `compress` fits its own


@dataclass
class CodebookScene:
    means: torch.Tensor  # [N, 3]
    opacities: torch.Tensor  # [N] logits
    scale_norms: torch.Tensor  # [N] log ||scale||
    sh_dc: torch.Tensor  # [Ks, 1, 3], or [N, 1, 3] when not shared_dc
    sh_rest: torch.Tensor  # [Ks, K, 3]
    rotations: torch.Tensor  # [Kg, 4] w x y z
    unit_scales: torch.Tensor  # [Kg, 3] raw; activated by normalize(relu(.))
    sh_index: torch.Tensor | None = None  # [N] long, or None: entry i is Gaussian i's
    shape_index: torch.Tensor | None = None
    shared_dc: bool = True  # DC gathered by sh_index (c3dgs), or one per Gaussian
    grid: PositionGrid | None = None  # the grid the positions lie on (version 2), None: not fitted yet

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_rest(self.sh_rest.shape[1])

    @property
    def sh_entries(self) -> int:
        """Entries of the colour codebook."""
        return len(self.sh_dc if self.shared_dc else self.sh_rest)

    def tensors(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("shared_dc", "grid")}

    @property
    def sh_count(self) -> int:
        """Gaussians with view-dependent colour."""
        return len(self) if self.sh_index is None else int((self.sh_index >= 0).sum())

    @classmethod
    def from_scene(cls, scene: GaussianScene) -> CodebookScene:
        """Every Gaussian its own codebook entry: the scene itself in c3dgs's parameterisation."""
        with torch.no_grad():
            s = scene.activated_scales()
            norms = s.norm(dim=-1).clamp_min(1e-30)
            return cls(means=scene.means.clone(), opacities=scene.opacities.clone(),
                       scale_norms=torch.log(norms), sh_dc=scene.sh0.clone(), sh_rest=scene.shN.clone(),
                       rotations=scene.normalized_quats(), unit_scales=s / norms[:, None])

    def decode(self) -> GaussianScene:
        return decode_codebooks(**self.tensors(), shared_dc=self.shared_dc)


def decode_codebooks(means, opacities, scale_norms, sh_dc, sh_rest, rotations, unit_scales, sh_index=None,
                     shape_index=None, shared_dc=True) -> GaussianScene:
    """The renderable scene of c3dgs's parameters, differentiable w.r.t. all float inputs (the
    quantisation-aware fine-tuning decodes fake-quantised tensors through this same function)."""
    def gather(table, index):
        return table if index is None else table[index]

    def gather_rest(index):  # index -1: DC only, the higher bands zero (a zero row, so no test reads the index)
        if index is None:
            return sh_rest
        padded = torch.cat([sh_rest, torch.zeros_like(sh_rest[:1])])
        return padded[torch.where(index < 0, len(sh_rest), index)]

    unit = torch.nn.functional.normalize(torch.relu(gather(unit_scales, shape_index)), dim=-1)
    scales = torch.log(unit.clamp_min(_SCALE_FLOOR)) + scale_norms[:, None]
    return GaussianScene(means=means, scales=scales, quats=gather(rotations, shape_index), opacities=opacities,
                         sh0=gather(sh_dc, sh_index if shared_dc else None), shN=gather_rest(sh_index))


# ---- the .gsz file -----------------------------------------------------------------------------
def _index_dtype(size: int) -> np.dtype:
    return np.dtype(np.uint8 if size <= 2**8 else np.uint16 if size <= 2**16 else np.uint32)


def quant_params_of(cs: CodebookScene, bits: dict[str, int] | None = None) -> dict[str, QuantParams]:
    """Quantisation parameters spanning each attribute's range (a conversion without fine-tuning), 8 bits
    unless `bits` names fewer."""
    out = {}
    for name in QUANTIZED:
        t, b = getattr(cs, name), (bits or {}).get(name, 8)
        out[name] = QuantParams.of_range(float(t.min()), float(t.max()), b) if t.numel() else QuantParams(1.0, 0, b)
    return out


def _grid_of(cs: CodebookScene, means: np.ndarray) -> PositionGrid:
    """The grid a version-2 file puts `cs`'s positions on."""
    return cs.grid or PositionGrid.fit(means, DEFAULT_POSITION_BITS)


def stored_order(cs: CodebookScene, version: int = 2) -> np.ndarray:
    """The permutation of the Gaussians a file of `version` stores them in."""
    means = cs.means.detach().cpu().numpy()
    return morton_order(means) if version == 1 else cell_order(_grid_of(cs, means).cells(means))


def write_gsz(path: str | Path, cs: CodebookScene, quant: dict[str, QuantParams] | None = None,
              codec: str = AUTO, meta: dict | None = None, version: int = 2) -> int:
    """Write `cs` quantised with `quant` (default: each attribute's own range) as a .gsz of `version` 2 (its
    positions on `cs.grid`, or a fitted grid of DEFAULT_POSITION_BITS) or 1. Returns the size in bytes."""
    quant = quant or quant_params_of(cs)
    t = {k: (v.detach().cpu().numpy() if v is not None else None) for k, v in cs.tensors().items()}
    if version == 2:
        grid = _grid_of(cs, t["means"])
        order, lengths, packed = encode_cells(grid.cells(t["means"]))
        entries = {"position_lengths": Entry(lengths, grid.to_json()), "position_bits": Entry(packed, codec="raw")}
        kind = {"kind": GSZ_KIND, "shared_dc": cs.shared_dc}
    elif version == 1:
        if t["sh_index"] is not None and (t["sh_index"] < 0).any():
            raise ValueError(".gsz version 1 has no DC-only Gaussians")
        order = morton_order(t["means"])
        entries = {"means": Entry(t["means"][order].astype(np.float16))}
        # a shared DC keeps writing kind /1, which readers before /2 read too
        kind = {"kind": GSZ_KIND_V1} if cs.shared_dc else {"kind": GSZ_KIND_DC, "shared_dc": False}
    else:
        raise ValueError(f"no .gsz version {version}")
    for name in ("opacities", "scale_norms"):
        entries[name] = Entry(quant[name].quantize(t[name][order]), quant[name].to_json())
    for name in ("sh_dc", "sh_rest", "rotations", "unit_scales"):
        table = t[name]
        index = "sh_index" if name.startswith("sh_") else "shape_index"
        if t[index] is None or (name == "sh_dc" and not cs.shared_dc):
            table = table[order]
        entries[name] = Entry(quant[name].quantize(table), quant[name].to_json())
    for index, entries_of in (("sh_index", cs.sh_entries), ("shape_index", len(cs.rotations))):
        if t[index] is not None:
            values = np.where(t[index] < 0, entries_of, t[index])[order]  # DC only: one past the codebook
            entries[index] = Entry(values.astype(_index_dtype(entries_of + 1)))
    header = {**kind, "gaussians": len(cs), "sh_degree": cs.sh_degree, **(meta or {})}
    return write_container(path, entries, header, codec, version)


MAX_TABLE_ROWS = 1 << 16  # a codebook may have more entries than the scene has Gaussians, up to this many
MAX_ROW_VALUES = 3 * 16  # the widest row: degree-3 SH, 16 coefficients of 3 colours


def check_declared(meta: dict, table: list[dict], file_bytes: int) -> None:
    """A scene file's declared sizes, before anything is decoded: a Gaussian count the file's bytes can back
    (`io.limits`), every array a per-Gaussian array or a codebook (rows up to the count or MAX_TABLE_ROWS, one
    more for an index's "DC only"), rows no wider than degree-3 SH, positions of at most 64 bits each."""
    n = plausible_count(meta.get("gaussians"), file_bytes, "")
    for item in table:
        shape, name = item["shape"], item["name"]
        rows, width = (shape[0] if shape else 1), math.prod(shape[1:])
        limit = 8 * (n + 1) if name == "position_bits" else max(n, MAX_TABLE_ROWS) + 1
        if rows > limit or width > MAX_ROW_VALUES:
            raise ValueError(f"array {name!r} of shape {shape} does not fit a scene of {n:,} Gaussians")


def read_gsz(path: str | Path) -> CodebookScene:
    """The dequantised codebook scene of a .gsz file (exactly the values fine-tuning rendered)."""
    entries, meta = read_container(path, check_declared)
    if meta.get("kind") not in GSZ_KINDS:
        raise GstrimError(f"a .gsz container of kind {meta.get('kind')!r}, not a scene "
                          f"({' or '.join(GSZ_KINDS)})", path)
    shared_dc = meta["kind"] == GSZ_KIND_V1 or meta.get("shared_dc", True)
    if not isinstance(shared_dc, bool):
        raise GstrimError(f"malformed .gsz scene: shared_dc is {shared_dc!r}, not true or false", path)
    try:
        arrays, grid = {}, None
        if meta["kind"] == GSZ_KIND:
            lengths = entries.pop("position_lengths")
            grid = PositionGrid.from_json(lengths.attrs)
            cells = decode_cells(lengths.data, entries.pop("position_bits").data, grid.bits)
            arrays["means"] = torch.from_numpy(grid.values(cells))
        for name, entry in entries.items():
            data = entry.data
            if name in QUANTIZED:
                data = QuantParams.from_json(entry.attrs).dequantize(data)
            elif name.endswith("_index"):
                data = data.astype(np.int64)
            arrays[name] = torch.from_numpy(np.ascontiguousarray(data, dtype=np.int64 if name.endswith("_index")
                                                                 else np.float32))
        cs = CodebookScene(**arrays, shared_dc=shared_dc, grid=grid)
        if cs.sh_index is not None and not shared_dc:
            cs.sh_index[cs.sh_index == len(cs.sh_rest)] = -1  # DC only
        cs.decode()  # shapes and index ranges checked once, here, with the file's name
    except (TypeError, ValueError, IndexError, RuntimeError, KeyError) as exc:
        raise GstrimError(f"malformed .gsz scene: {exc}", path) from exc
    return cs
