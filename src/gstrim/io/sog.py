"""PlayCanvas SOG files ("spatially ordered Gaussians", version 2): `meta.json` plus lossless WebP images,
bundled as a `.sog` ZIP or written as a folder (`OUT/meta.json`). Layout from the PlayCanvas manual
("Gaussian splatting / formats / sog") and splat-transform's `write-sog.ts` / `read-sog.ts` (MIT); gstrim's
code is its own.

All images have the same size, width = ceil(sqrt(N) / 4) x 4, height = ceil(N / width / 4) x 4, and hold
the Gaussians in Morton order, row-major, one RGBA texel each:
  means_l, means_u  low and high byte of a 16-bit position per axis: sign(x) ln(1 + |x|), scaled between
                    the per-axis min and max that meta.json holds
  quats             the three smaller components of the unit (w, x, y, z) quaternion (largest made
                    positive) as u8 of q x sqrt(2) / 2 + 0.5, in increasing index order; alpha 252 + the
                    index of the largest
  scales            RGB: labels into one 256-entry codebook of log-scales shared by the three axes
  sh0               RGB: labels into one 256-entry codebook of DC coefficients; alpha sigmoid(opacity) x 255
  shN_labels        R + 256 G: a 16-bit label into the SH palette
  shN_centroids     the palette, 64 entries per row, K texels per entry (coefficient j of entry i is texel
                    i K + j), RGB: labels into one 256-entry codebook of SH values
The codebooks are the writer's choice: gstrim fits them by (importance-weighted) k-means, and
format-aware fine-tuning (`gstrim export --data`) optimises them through this very quantiser (both in
`io.sog_codec`; this module is the files). WebP is
written lossless in exact mode, so RGB under a zero alpha is kept.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gstrim.errors import GstrimError
from gstrim.io.atomic import atomic_path
from gstrim.io.limits import plausible_count, read_text_bytes, zip_member
from gstrim.io.packing import morton_order, sigmoid_logit_clamped
from gstrim.io.quantiser import QuantiserContext
from gstrim.io.sog_codec import (
    MAX_PALETTE,
    PALETTE_ROW,
    SogCodebooks,
    SogOptions,
    SogQuantiser,
    alpha_codes,
    fit_codebooks,
    means_codes,
    means_decode,
    means_range,
    nearest_entry,
    quat_codes,
    quat_decode,
)
from gstrim.resources import check_free_space
from gstrim.scene import GaussianScene, num_sh_rest, sh_degree_from_rest

VERSION = 2
MAX_SIDE = 16383
_FILES = {"means": ["means_l.webp", "means_u.webp"], "scales": ["scales.webp"], "quats": ["quats.webp"],
          "sh0": ["sh0.webp"], "shN": ["shN_centroids.webp", "shN_labels.webp"]}


def image_size(n: int) -> tuple[int, int]:
    width = max(4, math.ceil(math.sqrt(n) / 4) * 4)
    return width, max(4, math.ceil(n / width / 4) * 4)


# ---- images and meta.json -------------------------------------------------------------------------------
# Lossless WebP's effort (quality and method): its greatest (100, 6) took 37 s for the 7 images of a 25,000-Gaussian
# SOG and wrote 571.3 kB; (75, 4) 0.15 s and 570.4 kB (the texels are noise-like; bench/gpu_check.py's CPU check)
WEBP_EFFORT = {"quality": 75, "method": 4}


def _webp(texels: np.ndarray, width: int, height: int) -> bytes:
    full = np.zeros((width * height, 4), np.uint8)
    full[: len(texels)] = texels
    buf = io.BytesIO()
    Image.frombuffer("RGBA", (width, height), full.tobytes(), "raw", "RGBA", 0, 1).save(
        buf, format="WEBP", lossless=True, exact=True, **WEBP_EFFORT)
    return buf.getvalue()


def _rgba(*channels: np.ndarray, alpha: np.ndarray | int = 255) -> np.ndarray:
    n = len(channels[0])
    out = np.zeros((n, 4), np.uint8)
    for i, c in enumerate(channels):
        out[:, i] = c
    out[:, 3] = alpha
    return out


def sog_files(scene: GaussianScene, books: SogCodebooks | None = None, generator: str = "gstrim",
              keep_order: bool = False) -> dict[str, bytes]:
    """The files of a SOG (meta.json and the WebP images) of a scene, its Gaussians in Morton order (in the
    scene's own order with `keep_order`: a Streamed SOG chunk, whose index addresses rows by offset)."""
    n = len(scene)
    width, height = image_size(n)
    if width > MAX_SIDE or height > MAX_SIDE:
        raise GstrimError(f"{n:,} Gaussians exceed SOG's {MAX_SIDE} x {MAX_SIDE} images")
    books = books if books is not None else fit_codebooks(scene)
    p = {k: v.detach().cpu() for k, v in scene.params().items()}
    order = torch.arange(n) if keep_order else torch.from_numpy(morton_order(p["means"].numpy()))
    labels = books.labels.cpu()[order] if len(books.labels) else books.labels
    p = {k: v[order] for k, v in p.items() if k != "shN"}  # the SH are the palette's, by label
    lo, hi = means_range(p["means"])
    m = means_codes(p["means"], lo, hi).numpy()
    q = quat_codes(p["quats"]).numpy()
    s = nearest_entry(p["scales"], books.scales).numpy()
    c = nearest_entry(p["sh0"][:, 0], books.sh0).numpy()
    a = alpha_codes(p["opacities"]).numpy()
    files = {
        "means_l.webp": _webp(_rgba(m[:, 0] & 255, m[:, 1] & 255, m[:, 2] & 255), width, height),
        "means_u.webp": _webp(_rgba(m[:, 0] >> 8, m[:, 1] >> 8, m[:, 2] >> 8), width, height),
        "quats.webp": _webp(_rgba(q[:, 0], q[:, 1], q[:, 2], alpha=q[:, 3]), width, height),
        "scales.webp": _webp(_rgba(s[:, 0], s[:, 1], s[:, 2]), width, height),
        "sh0.webp": _webp(_rgba(c[:, 0], c[:, 1], c[:, 2], alpha=a), width, height),
    }
    meta = {"version": VERSION, "asset": {"generator": generator}, "count": n,
            "means": {"mins": lo.float().tolist(), "maxs": hi.float().tolist(), "files": _FILES["means"]},
            "scales": {"codebook": books.scales.float().tolist(), "files": _FILES["scales"]},
            "quats": {"files": _FILES["quats"]},
            "sh0": {"codebook": books.sh0.float().tolist(), "files": _FILES["sh0"]}}
    k = scene.shN.shape[1]
    if k and n:
        palette = books.palette.detach().cpu().reshape(len(books.palette), 3 * k)
        entries = nearest_entry(palette, books.sh.cpu()).reshape(-1, k, 3).numpy()  # [P, K, rgb]
        size = len(entries)
        texels = _rgba(entries[..., 0].reshape(-1), entries[..., 1].reshape(-1), entries[..., 2].reshape(-1))
        files["shN_centroids.webp"] = _webp(texels, PALETTE_ROW * k, math.ceil(size / PALETTE_ROW))
        lab = labels.numpy()
        files["shN_labels.webp"] = _webp(_rgba(lab & 255, lab >> 8, np.zeros_like(lab)), width, height)
        meta["shN"] = {"count": size, "bands": sh_degree_from_rest(k), "codebook": books.sh.float().tolist(),
                       "files": _FILES["shN"]}
    files["meta.json"] = _meta_json(meta)
    return files


def _meta_json(meta: dict) -> bytes:
    """meta.json, compact, with each codebook value as the shortest decimal that reads back to the same float32
    (readers keep codebooks as float32): half the bytes of float64 reprs, and meta.json is stored uncompressed.
    The position range stays exact: readers use it in double precision."""
    def encode(value, codebook: bool = False) -> str:
        if isinstance(value, dict):
            return "{" + ",".join(f"{json.dumps(k)}:{encode(v, k == 'codebook')}" for k, v in value.items()) + "}"
        if codebook:
            return "[" + ",".join(np.format_float_positional(np.float32(v), unique=True, trim="-")
                                  for v in value) + "]"
        return json.dumps(value, separators=(",", ":"))
    return encode(meta).encode()


def is_folder_output(path: Path) -> bool:
    return path.name.lower().endswith("meta.json")


def write_sog(path: str | Path, scene: GaussianScene, books: SogCodebooks | None = None,
              keep_order: bool = False) -> None:
    """A `.sog` bundle, or a folder when `path` is a `meta.json` (its images beside it, meta.json last)."""
    path = Path(path)
    try:
        files = sog_files(scene, books, keep_order=keep_order)
    except GstrimError as exc:
        raise GstrimError(exc.message, path) from None
    if is_folder_output(path):
        check_free_space(path.parent, sum(map(len, files.values())), "the SOG folder")
        meta = files.pop("meta.json")
        written = []
        try:
            for name, data in files.items():
                with atomic_path(path.parent / name) as tmp:
                    tmp.write_bytes(data)
                written.append(path.parent / name)
            with atomic_path(path) as tmp:
                tmp.write_bytes(meta)
        except BaseException:
            for image in written:  # no images without their meta.json
                image.unlink(missing_ok=True)
            raise
        return
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name in ["meta.json"] + sorted(n for n in files if n != "meta.json"):
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), files[name])


def companions(path: Path) -> list[Path]:
    """The images beside a SOG folder's meta.json (none for a bundle)."""
    if not is_folder_output(path):
        return []
    meta = open_sog(path)[0]
    return sorted(path.parent / n for n in _named_files(meta))


def written_size(path: Path) -> int:
    """Bytes of a written SOG: the bundle, or the folder's meta.json with the images it names."""
    return open_sog(path)[2] if is_folder_output(path) else path.stat().st_size


def write_with(path: str | Path, scene: GaussianScene, options: SogOptions | None = None) -> None:
    """A plain SOG file: codebooks fitted to the scene with every Gaussian weighted alike."""
    o = options or SogOptions()
    write_sog(path, scene, fit_codebooks(scene, None, o.palette, seed=o.seed))


def quantiser(scene: GaussianScene, options: SogOptions | None, context: QuantiserContext) -> SogQuantiser:
    if context.state:
        return SogQuantiser(SogCodebooks(**context.state), write_sog)
    importance = context.importance() if context.importance is not None else None
    palette = (options or SogOptions()).palette
    return SogQuantiser(fit_codebooks(scene, importance, palette, seed=context.seed, device=context.device),
                        write_sog)


# ---- reading --------------------------------------------------------------------------------------------
MAX_META_BYTES = 16 << 20  # meta.json: a few codebooks of 256 numbers (a 64k-entry one takes ~1 MB)


def _max_image_bytes(pixels: int) -> int:
    """The most a lossless WebP of `pixels` RGBA texels can take (its raw size twice over, plus headers)."""
    return 8 * pixels + (64 << 10)


def open_sog(path: Path) -> tuple[dict, Callable[[str, int], bytes], int]:
    """(meta.json, a loader of the files it names, the bytes of the whole SOG) of a .sog bundle or a SOG folder's
    meta.json. `load(name, pixels)` refuses a file larger than a WebP of that many texels can be."""
    if not path.is_file():
        raise GstrimError("no such file", path)
    if is_folder_output(path):
        def load(name: str, pixels: int) -> bytes:
            f = path.parent / name
            if Path(name).name != name or not f.is_file():
                raise GstrimError(f"SOG image {name} named in meta.json is missing", path)
            if f.stat().st_size > _max_image_bytes(pixels):
                raise GstrimError(f"SOG image {name} has {f.stat().st_size:,} bytes, more than an image of "
                                  f"{pixels:,} texels can need", path)
            return f.read_bytes()
        text = read_text_bytes(path, MAX_META_BYTES)
        meta = _parse_meta(text, path)
        total = len(text) + sum((path.parent / n).stat().st_size for n in _named_files(meta)
                                if Path(n).name == n and (path.parent / n).is_file())
        return meta, load, total
    try:
        z = zipfile.ZipFile(path)
        names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise GstrimError(f"not a SOG bundle (not a ZIP: {exc})", path) from None
    if "meta.json" not in names:
        raise GstrimError("not a SOG bundle (no meta.json inside)", path)

    def load(name: str, pixels: int) -> bytes:
        if name not in names:
            raise GstrimError(f"SOG image {name} named in meta.json is missing from the bundle", path)
        return zip_member(z, name, _max_image_bytes(pixels), path)
    return _parse_meta(zip_member(z, "meta.json", MAX_META_BYTES, path), path), load, path.stat().st_size


def _parse_meta(text: bytes, path: Path) -> dict:
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GstrimError(f"bad meta.json ({exc})", path) from None
    if not isinstance(meta, dict):
        raise GstrimError("bad meta.json: not a JSON object", path)
    return meta


def _named_files(meta: dict) -> set[str]:
    """The image file names meta.json lists (whatever else it holds under its keys)."""
    names = set()
    for key in ("means", "scales", "quats", "sh0", "shN"):
        files = meta[key].get("files", []) if isinstance(meta.get(key), dict) else []
        names |= {f for f in files if isinstance(f, str)} if isinstance(files, list) else set()
    return names


def _max_texels(n: int) -> int:
    """The most texels an image of `n` Gaussians may declare (a generous square with its padding)."""
    return max(4 * n, 1 << 20)


def _image(data: bytes, name: str, n: int, path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The first `n` RGBA texels of a WebP, its declared size checked before its pixels are decoded."""
    try:
        img = Image.open(io.BytesIO(data))
        size = img.size
    except Exception as exc:  # Pillow raises many types for a damaged image
        raise GstrimError(f"SOG image {name} is not a readable WebP ({exc})", path) from None
    if shape is not None and size != shape:
        raise GstrimError(f"SOG image {name} is {size[0]} x {size[1]}, expected {shape[0]} x {shape[1]}", path)
    if size[0] * size[1] < n:
        raise GstrimError(f"SOG image {name} is {size[0]} x {size[1]}, too small for {n:,} Gaussians", path)
    if size[0] * size[1] > _max_texels(n):
        raise GstrimError(f"SOG image {name} is {size[0]} x {size[1]}, far larger than {n:,} Gaussians need", path)
    try:
        img.load()
        rgba = np.asarray(img.convert("RGBA"), dtype=np.uint8)
    except Exception as exc:
        raise GstrimError(f"SOG image {name} is not a readable WebP ({exc})", path) from None
    return rgba.reshape(-1, 4)[:n].astype(np.int64)


def _codebook(meta: dict, key: str, path: Path) -> torch.Tensor:
    book = meta.get(key, {}).get("codebook")
    if not isinstance(book, list) or not book or not all(isinstance(x, (int, float)) for x in book):
        raise GstrimError(f"bad meta.json: {key}.codebook is not a list of numbers", path)
    return torch.tensor(book, dtype=torch.float32)


def read_sog(path: str | Path, nonfinite: str = "error") -> GaussianScene:
    return read_sog_books(path, nonfinite)[0]


def read_sog_books(path: str | Path, nonfinite: str = "error") -> tuple[GaussianScene, SogCodebooks]:
    """The scene a SOG decodes to and the tables it was written with (file order), from which the same codes
    are written again (`write_sog(..., books)`: each stored value is its own nearest entry)."""
    path = Path(path)
    meta, load, stored_bytes = open_sog(path)
    if meta.get("version") != VERSION:
        raise GstrimError(f"unsupported SOG version {meta.get('version')!r} (gstrim reads version {VERSION})", path)
    n = meta.get("count")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise GstrimError("bad meta.json: count is not a non-negative integer", path)
    plausible_count(n, stored_bytes, path)
    try:
        mins, maxs = (torch.tensor(meta["means"][k], dtype=torch.float64) for k in ("mins", "maxs"))
        files = {key: meta[key]["files"] for key in ("means", "scales", "quats", "sh0")}
    except (KeyError, TypeError, ValueError) as exc:
        raise GstrimError(f"bad meta.json: missing or malformed {exc}", path) from None
    if mins.shape != (3,) or maxs.shape != (3,):
        raise GstrimError("bad meta.json: means.mins and means.maxs need 3 values each", path)

    def image(key: str, i: int = 0) -> np.ndarray:
        return _image(load(files[key][i], _max_texels(n)), files[key][i], n, path)

    lo, hi = image("means", 0), image("means", 1)
    means = means_decode(torch.from_numpy(lo[:, :3] | hi[:, :3] << 8), mins, maxs).float()
    quats = quat_decode(torch.from_numpy(image("quats")))
    scales_book, sh0_book = _codebook(meta, "scales", path), _codebook(meta, "sh0", path)
    s, c = image("scales"), image("sh0")
    for labels, book, key in ((s, scales_book, "scales"), (c, sh0_book, "sh0")):
        if int(labels[:, :3].max(initial=0)) >= len(book):
            raise GstrimError(f"SOG {key} labels point past the end of its codebook in meta.json", path)
    shN = torch.zeros(n, 0, 3)
    sh_book, palette, palette_labels = torch.zeros(0), torch.zeros(0, 0, 3), torch.zeros(n, dtype=torch.int64)
    if "shN" in meta:
        sh_meta = meta["shN"]
        bands, count = sh_meta.get("bands"), sh_meta.get("count")
        if bands not in (1, 2, 3) or not isinstance(count, int) or not 1 <= count <= MAX_PALETTE:
            raise GstrimError(f"bad meta.json: shN.bands must be 1-3 and shN.count within 1-{MAX_PALETTE}", path)
        k = num_sh_rest(bands)
        book = _codebook(meta, "shN", path)
        names = sh_meta.get("files", [])
        if len(names) != 2:
            raise GstrimError("bad meta.json: shN.files needs the centroids and labels images", path)
        rows = math.ceil(count / PALETTE_ROW)
        centroids = _image(load(names[0], PALETTE_ROW * k * rows), names[0], count * k, path,
                           shape=(PALETTE_ROW * k, rows))
        entries = torch.from_numpy(centroids[:, :3].reshape(count, k, 3))
        labels = torch.from_numpy(_image(load(names[1], _max_texels(n)), names[1], n, path))
        label = labels[:, 0] | labels[:, 1] << 8
        valid = label < count
        values = book[entries.clamp(max=len(book) - 1)]
        shN = torch.where(valid[:, None, None], values[label.clamp(max=count - 1)], torch.zeros(()))
        sh_book, palette, palette_labels = book, values.float(), label.clamp(max=count - 1)
    scene = GaussianScene(
        means=means, scales=scales_book[torch.from_numpy(s[:, :3])], quats=quats,
        opacities=sigmoid_logit_clamped(torch.from_numpy(c[:, 3]).double() / 255).float(),
        sh0=sh0_book[torch.from_numpy(c[:, :3])][:, None, :], shN=shN)
    books = SogCodebooks(scales_book, sh0_book, sh_book, palette, palette_labels)
    return scene.check_finite(str(path), nonfinite), books


def describe_sog(path: Path, nonfinite: str) -> tuple[GaussianScene, dict]:
    scene = read_sog(path, nonfinite)
    meta, _, _ = open_sog(path)
    palette = meta.get("shN", {}).get("count")
    kind = "folder" if is_folder_output(path) else "bundle"
    details = f"sog (version {meta['version']}, {kind}" + (f", SH palette of {palette:,})" if palette else ")")
    return scene, {"format": details, "extra_properties": []}
