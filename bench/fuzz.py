"""Fuzz every reader with crafted files: nothing may hang, burst or crash (docs/reliability.md).

From a valid file of every format gstrim reads (a seeded scene of a few hundred Gaussians written by gstrim's own
writers, and the dataset files: INRIA cameras.json, COLMAP binary, Blender transforms.json), it makes mutants:
bit flips, truncations, header fields set to 0 / max / negative / multiplied, compressed members inflated to
hundreds of MB of zeros, and trailing data. Where a format wraps its contents (gzip, zstd, zip, a checksum), the
mutation is made inside and the wrapper made again, so the mutant passes the outer checks and reaches the parser.

Each mutant is read, as `gstrim info` (or the dataset loader) reads it, in a worker process under an
address-space limit, one case at a time with a timer; the worker resets its peak RSS before each case
(/proc/self/clear_refs) and reports the growth. Prints per format: cases, one-line refusals, accepted (a mutant
that is still a valid file, a flipped value for one), tracebacks, limit hits (MemoryError under the cap), hangs
(past --timeout), and the largest peak RSS above the worker's own. Usage:
python bench/fuzz.py [--cases 60] [--seed 0] [--formats spz gsz ...] [--timeout 10] [--limit-mb 1024]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import random
import re
import resource
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zstandard

INFLATE_MB = 512  # an inflated member adds this much of zeros (a few hundred kB compressed)
NUMBERS = ("0", "-1", "255", "65535", "4294967295", "4294967296", "9223372036854775807", "18446744073709551616",
           "1e308", "-1e308", "NaN", "1.5")


# ---- seed files --------------------------------------------------------------------------------------------
def seed_scene(n: int = 300):
    from gstrim.scene import GaussianScene, num_sh_rest

    rng = np.random.default_rng(0)
    return GaussianScene.from_numpy(
        means=rng.normal(size=(n, 3)), scales=rng.normal(-3, 0.5, size=(n, 3)), quats=rng.normal(size=(n, 4)),
        opacities=rng.normal(size=n), sh0=rng.normal(size=(n, 1, 3)),
        shN=rng.normal(0, 0.1, size=(n, num_sh_rest(3), 3)))


def make_seeds(folder: Path) -> dict[str, Path]:
    """One valid file (or folder) per format, named by format."""
    from gstrim.camera import Camera
    from gstrim.data.virtual import intrinsics, look_at
    from gstrim.io import save_scene
    from gstrim.io.gsz import CodebookScene, write_gsz
    from gstrim.io.model import write_cameras_json
    from gstrim.io.spz import write_spz

    scene = seed_scene()
    seeds = {}
    for name, file in (("ply", "s.ply"), ("splat", "s.splat"), ("spz3", "s.spz"), ("sog", "s.sog"),
                       ("compressed-ply", "s.compressed.ply"), ("sog-folder", "sogdir/meta.json")):
        path = folder / name / file
        path.parent.mkdir(parents=True, exist_ok=True)
        save_scene(path, scene)
        seeds[name] = path
    (folder / "spz4").mkdir()
    write_spz(folder / "spz4" / "s.spz", scene, version=4)
    seeds["spz4"] = folder / "spz4" / "s.spz"
    for version in (1, 2):
        path = folder / f"gsz{version}" / "s.gsz"
        path.parent.mkdir()
        write_gsz(path, CodebookScene.from_scene(scene), version=version)
        seeds[f"gsz{version}"] = path
    ascii_ply = folder / "ply-ascii" / "s.ply"
    ascii_ply.parent.mkdir()
    ascii_ply.write_bytes(_ascii_ply(seeds["ply"]))
    seeds["ply-ascii"] = ascii_ply
    cameras = [Camera(f"c{i}", 64, 48, intrinsics(64, 48, 50), look_at(np.array([3.0 * np.cos(i), 3.0 * np.sin(i), 1]),
                                                                       np.zeros(3), np.array([0, 0, 1.0])))
               for i in range(8)]
    (folder / "cameras").mkdir()
    write_cameras_json(folder / "cameras" / "cameras.json", cameras)
    seeds["cameras.json"] = folder / "cameras" / "cameras.json"
    seeds["colmap"] = _colmap(folder / "colmap")
    transforms = folder / "blender" / "transforms_train.json"
    transforms.parent.mkdir()
    transforms.write_text(json.dumps({"camera_angle_x": 0.69, "frames": [
        {"file_path": f"./train/r_{i}", "rotation": 0.0, "transform_matrix": np.eye(4).tolist()} for i in range(4)]}))
    seeds["transforms.json"] = transforms
    return seeds


def _ascii_ply(binary: Path) -> bytes:
    from gstrim.io.ply import read_elements

    table = read_elements(binary)["vertex"]
    names = table.dtype.names
    header = ["ply", "format ascii 1.0", f"element vertex {len(table)}"] + [f"property float {n}" for n in names]
    rows = [" ".join(f"{float(v):.6g}" for v in row) for row in table[:50]]
    return ("\n".join(header[:2] + [f"element vertex {len(rows)}"] + header[3:] + ["end_header"] + rows)
            + "\n").encode()


def _colmap(folder: Path) -> Path:
    """A small binary COLMAP model (cameras, images with keypoints, points with tracks), as COLMAP writes it."""
    sparse = folder / "sparse" / "0"
    sparse.mkdir(parents=True)
    cams = struct.pack("<Q", 1) + struct.pack("<iiQQ", 1, 1, 64, 48) + struct.pack("<4d", 50, 50, 32, 24)
    (sparse / "cameras.bin").write_bytes(cams)
    images = struct.pack("<Q", 3)
    for i in range(3):
        images += struct.pack("<I7dI", i + 1, 1, 0, 0, 0, 0, 0, 3 + i, 1) + f"im{i}.png".encode() + b"\0"
        images += struct.pack("<Q", 2) + struct.pack("<ddq", 10, 10, 0) + struct.pack("<ddq", 20, 20, -1)
    (sparse / "images.bin").write_bytes(images)
    points = struct.pack("<Q", 4)
    for i in range(4):
        points += struct.pack("<Q3d3BdQ", i, 0.1 * i, 0, 0, 9, 9, 9, 0.5, 1) + struct.pack("<ii", 1, 0)
    (sparse / "points3D.bin").write_bytes(points)
    return folder


# ---- mutations ---------------------------------------------------------------------------------------------
def flip_bits(data: bytes, r: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(r.randint(1, 8)):
        i = r.randrange(len(b))
        b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def truncate(data: bytes, r: random.Random) -> bytes:
    return data[:r.randrange(len(data))]


def trailing(data: bytes, r: random.Random) -> bytes:
    return data + bytes(r.randrange(256) for _ in range(r.choice((1, 7, 100, 4096))))


def text_number(data: bytes, r: random.Random, region: int | None = None) -> bytes:
    """A number in the text part (a PLY header, a JSON file) set to 0 / max / negative / multiplied."""
    head = data[:region] if region is not None else data
    matches = list(re.finditer(rb"-?\d+(\.\d+)?(e-?\d+)?", head))
    if not matches:
        return flip_bits(data, r)
    m = r.choice(matches)
    value = r.choice(NUMBERS + ("x1000", "x1048576"))
    if value.startswith("x"):
        value = str(int(float(m.group()) * int(value[1:])))
    return data[:m.start()] + value.encode() + data[m.end():]


def binary_field(fields: list[tuple[int, str]]) -> Callable[[bytes, random.Random], bytes]:
    """Set one of a binary header's integer fields (offset, struct code) to an extreme or a multiple."""
    def mutate(data: bytes, r: random.Random) -> bytes:
        offset, code = r.choice(fields)
        if offset + struct.calcsize(code) > len(data):
            return flip_bits(data, r)
        bits = 8 * struct.calcsize(code)
        old = struct.unpack_from(code, data, offset)[0]
        signed = code[-1].islower()
        top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        value = r.choice((0, top, -1 if signed else top, min(top, old * 1000), min(top, old * (1 << 20)), old + 1))
        out = bytearray(data)
        struct.pack_into(code, out, offset, value)
        return bytes(out)
    return mutate


def inflated(data: bytes, r: random.Random) -> bytes:
    """Marks a mutant whose compressed member gets INFLATE_MB of zeros appended (`wrap` does it)."""
    return data + b"\0INFLATE"


def _deflate(raw: bytes, wbits: int) -> bytes:
    """gzip / zlib / raw DEFLATE of `raw`, with INFLATE_MB zeros streamed in where `raw` ends with the marker."""
    big = raw.endswith(b"\0INFLATE")
    raw = raw[:-len(b"\0INFLATE")] if big else raw
    c = zlib.compressobj(9 if big else 6, zlib.DEFLATED, wbits)  # zeros at ~1000:1: a crafted file under 1 MB
    out = [c.compress(raw)]
    if big:
        zeros = bytes(1 << 24)
        out += [c.compress(zeros) for _ in range(INFLATE_MB >> 4)]
    return b"".join(out + [c.flush()])


def _zstd(raw: bytes) -> bytes:
    big = raw.endswith(b"\0INFLATE")
    if not big:
        return zstandard.ZstdCompressor(level=3).compress(raw)
    c = zstandard.ZstdCompressor(level=1).compressobj()
    zeros = bytes(1 << 24)
    return b"".join([c.compress(raw[:-8])] + [c.compress(zeros) for _ in range(INFLATE_MB >> 4)] + [c.flush()])


# ---- formats: how to reach their insides -------------------------------------------------------------------
class Format:
    """A seed and the mutations of its contents; `unwrap`/`wrap` open and remake a wrapper (gzip, a checksum)."""

    def __init__(self, kind: str, mutations: list[Callable], unwrap=None, wrap=None, member=None):
        self.kind, self.mutations = kind, mutations
        self.unwrap, self.wrap = unwrap or (lambda d: d), wrap or (lambda d: d)
        self.member = member  # the file to mutate inside a folder seed

    def mutant(self, seed: Path, out: Path, r: random.Random) -> Path:
        if seed.is_dir() or self.member is not None:
            root = seed if seed.is_dir() else seed.parent
            shutil.copytree(root, out)
            files = sorted(p for p in out.rglob("*") if p.is_file())
            target = r.choice(files) if self.member == "any" else next(p for p in files if p.name == self.member)
            target.write_bytes(self._mutate(target.read_bytes(), r))
            return out if seed.is_dir() else out / seed.name
        out.mkdir(parents=True)
        path = out / seed.name
        path.write_bytes(self._mutate(seed.read_bytes(), r))
        return path

    def _mutate(self, data: bytes, r: random.Random) -> bytes:
        inner = self.unwrap(data)
        return self.wrap(r.choice(self.mutations)(inner, r))


def _ply_header_end(data: bytes) -> int:
    return data.find(b"end_header") + 10


def _ply_header_number(data: bytes, r: random.Random) -> bytes:
    return text_number(data, r, _ply_header_end(data))


def _ply_mutations() -> list[Callable]:
    return [flip_bits, truncate, trailing, _ply_header_number, _ply_header_number, _ply_header_number]


def _sign(body: bytes) -> bytes:
    return body + hashlib.sha256(body).digest()


def _gsz_header(data: bytes, r: random.Random) -> bytes:
    """A number in the .gsz JSON header (counts, shapes, offsets, lengths) changed, its length field kept true."""
    header_len = struct.unpack_from("<I", data, 12)[0]
    header = data[16:16 + header_len]
    changed = text_number(header, r)
    return data[:12] + struct.pack("<I", len(changed)) + changed + data[16 + header_len:]


def _gsz_inflate(data: bytes, r: random.Random) -> bytes:
    """The first lzma array's blob replaced by one that inflates to INFLATE_MB, its table entry updated."""
    import lzma

    header_len = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(data[16:16 + header_len])
    payload = data[16 + header_len:]
    blobs = [payload[a["offset"]:a["offset"] + a["length"]] for a in header["arrays"]]
    choices = [i for i, a in enumerate(header["arrays"]) if a["codec"] == "lzma"] or [0]
    i = r.choice(choices)
    header["arrays"][i]["codec"] = "lzma"
    c = lzma.LZMACompressor(preset=0)
    zeros = bytes(1 << 24)
    blobs[i] = b"".join([c.compress(zeros) for _ in range(INFLATE_MB >> 4)] + [c.flush()])
    at = 0
    for a, blob in zip(header["arrays"], blobs, strict=True):
        a["offset"], a["length"] = at, len(blob)
        at += len(blob)
    text = json.dumps(header).encode()
    return data[:12] + struct.pack("<I", len(text)) + text + b"".join(blobs)


def _zip_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rezip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:  # zeros at ~1000:1
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def _sog_mutation(data: bytes, r: random.Random) -> bytes:
    members = _zip_members(data)
    name = r.choice(sorted(members))
    how = r.choice(("meta", "meta", "member", "inflate", "trail"))
    if how == "meta" or name == "meta.json":
        members["meta.json"] = text_number(members["meta.json"], r)
    elif how == "member":
        members[name] = r.choice((flip_bits, truncate))(members[name], r)
    elif how == "inflate":
        members[name] = members[name] + bytes(INFLATE_MB << 20)
    else:
        return _rezip(members) + bytes(r.randrange(256) for _ in range(64))
    return _rezip(members)


def _spz4_fields(data: bytes) -> list[tuple[int, str]]:
    toc = struct.unpack_from("<I", data, 16)[0]  # magic, version, count, degree, bits, flags, streams, table
    return [(8, "<I"), (12, "B"), (15, "B"), (16, "<I")] + [(toc + 8 * i, "<Q") for i in range(12)]


def _spz4_inflate(data: bytes, r: random.Random) -> bytes:
    """One zstd stream replaced by one that inflates past its declared size, its table entry kept true."""
    toc = struct.unpack_from("<I", data, 16)[0]
    count = data[15]
    sizes = [struct.unpack_from("<QQ", data, toc + 16 * i) for i in range(count)]
    at = toc + 16 * count
    streams = []
    for packed, _ in sizes:
        streams.append(data[at:at + packed])
        at += packed
    i = r.randrange(count)
    raw = zstandard.ZstdDecompressor().decompress(streams[i], max_output_size=sizes[i][1])
    streams[i] = _zstd(raw + b"\0INFLATE")
    table = b"".join(struct.pack("<QQ", len(s), sizes[j][1]) for j, s in enumerate(streams))
    return data[:toc] + table + b"".join(streams)


FORMATS: dict[str, Format] = {
    "ply": Format("scene", _ply_mutations()),
    "ply-ascii": Format("scene", _ply_mutations()),
    "compressed-ply": Format("scene", _ply_mutations()),
    "splat": Format("scene", [flip_bits, truncate, trailing]),
    "spz3": Format("scene", [flip_bits, truncate, trailing, inflated,
                             binary_field([(8, "<I"), (12, "B"), (13, "B"), (4, "<I")])] * 1
                   + [binary_field([(8, "<I"), (12, "B")])] * 2,
                   unwrap=gzip.decompress, wrap=lambda d: _deflate(d, 31)),
    "spz4": Format("scene", [flip_bits, truncate, trailing, _spz4_inflate,
                             lambda d, r: binary_field(_spz4_fields(d))(d, r),
                             lambda d, r: binary_field(_spz4_fields(d))(d, r)]),
    "sog": Format("scene", [_sog_mutation]),
    "sog-folder": Format("scene", [flip_bits, truncate, trailing, text_number, text_number], member="any"),
    "gsz1": Format("scene", [_gsz_header, _gsz_header, _gsz_header, _gsz_inflate, flip_bits, truncate, trailing],
                   unwrap=lambda d: d[:-32], wrap=_sign),
    "gsz2": Format("scene", [_gsz_header, _gsz_header, _gsz_header, _gsz_inflate, flip_bits, truncate, trailing],
                   unwrap=lambda d: d[:-32], wrap=_sign),
    "cameras.json": Format("cameras", [text_number, text_number, flip_bits, truncate, trailing]),
    "colmap": Format("colmap", [flip_bits, truncate, trailing, binary_field([(0, "<Q")]),
                                binary_field([(0, "<Q"), (8, "<i"), (12, "<i"), (16, "<Q"), (24, "<Q")])],
                     member="any"),
    "transforms.json": Format("transforms", [text_number, flip_bits, truncate, trailing]),
}


# ---- the worker: reads one case at a time, reports outcome, time and RSS growth ----------------------------
def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _read(kind: str, path: Path) -> None:
    if kind == "scene":
        from gstrim.info import scene_info

        scene_info(path)
    elif kind == "cameras":
        from gstrim.io.model import read_cameras_json

        read_cameras_json(path)
    elif kind == "colmap":
        from gstrim.data.colmap import read_model

        read_model(path / "sparse" / "0")
    else:
        from gstrim.data.blender import read_transforms

        read_transforms(path)


def worker(limit_mb: int) -> None:
    import gstrim.data.blender  # noqa: F401  (imported before the cap, as the CLI has them)
    import gstrim.data.colmap  # noqa: F401
    import gstrim.info  # noqa: F401
    from gstrim.errors import GstrimError

    warnings.simplefilter("ignore")  # a flipped value's RuntimeWarning is no finding
    cap = _status("VmSize") + (limit_mb << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    print(json.dumps({"ready": _status("VmRSS")}), flush=True)
    for line in sys.stdin:
        case = json.loads(line)
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS
        before = _status("VmRSS")
        t0 = time.perf_counter()
        try:
            _read(case["kind"], Path(case["path"]))
            outcome, message = "accepted", ""
        except GstrimError as exc:
            message = str(exc)
            outcome = "refused" if "\n" not in message else "traceback"
        except MemoryError as exc:
            outcome, message = "limit", f"MemoryError: {exc}"
        except Exception as exc:  # noqa: BLE001 (what the harness is here to find)
            outcome, message = "traceback", f"{type(exc).__name__}: {exc}"[:300]
        print(json.dumps({"outcome": outcome, "message": message[:300], "seconds": time.perf_counter() - t0,
                          "peak_mb": max(0, _status("VmHWM") - before) / 2**20}), flush=True)


class Worker:
    def __init__(self, limit_mb: int):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", "--limit-mb", str(limit_mb)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.rss_mb = ready["ready"] / 2**20

    def run(self, kind: str, path: Path, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            return {"outcome": "hang", "message": f"no answer in {timeout} s", "seconds": timeout, "peak_mb": 0}
        line = self.proc.stdout.readline()
        if not line:
            return {"outcome": "traceback", "message": f"worker died ({self.proc.wait()})", "seconds": 0,
                    "peak_mb": 0}
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def fuzz(formats: list[str], cases: int, seed: int, timeout: float, limit_mb: int, folder: Path,
         log=print) -> dict[str, dict]:
    """Per format: counts of each outcome, the largest peak RSS growth and the slowest case, and the failures."""
    seeds = make_seeds(folder / "seeds")
    table, w = {}, Worker(limit_mb)
    for name in formats:
        fmt, r = FORMATS[name], random.Random(f"{seed}:{name}")
        row = {"cases": 0, "refused": 0, "accepted": 0, "traceback": 0, "limit": 0, "hang": 0, "peak_mb": 0.0,
               "max_s": 0.0, "largest_kb": 0, "failures": []}
        valid = w.run(fmt.kind, seeds[name], timeout)
        if valid["outcome"] != "accepted":
            raise RuntimeError(f"the {name} seed does not read: {valid['message']}")
        for i in range(cases):
            case_dir = folder / "cases" / name / str(i)
            path = fmt.mutant(seeds[name], case_dir, r)
            size = sum(p.stat().st_size for p in case_dir.rglob("*") if p.is_file())
            result = w.run(fmt.kind, path, timeout)
            if not w.alive():
                w = Worker(limit_mb)
            row["cases"] += 1
            row[result["outcome"]] += 1
            row["peak_mb"] = max(row["peak_mb"], result["peak_mb"])
            row["max_s"] = max(row["max_s"], result["seconds"])
            row["largest_kb"] = max(row["largest_kb"], size // 1024)
            if result["outcome"] in ("traceback", "limit", "hang"):
                row["failures"].append(f"case {i}: {result['message']}")
            shutil.rmtree(case_dir)
        table[name] = row
        log(f"{name:16s} {row['cases']:5d} {row['refused']:8d} {row['accepted']:8d} {row['traceback']:10d} "
            f"{row['limit']:6d} {row['hang']:5d} {row['peak_mb']:9.1f} {row['max_s']:7.2f} {row['largest_kb']:8d}")
        for failure in row["failures"][:5]:
            log(f"    {failure}")
    w.close()
    return table


HEADER = (f"{'format':16s} {'cases':>5s} {'refused':>8s} {'accepted':>8s} {'traceback':>10s} {'limit':>6s} "
          f"{'hang':>5s} {'peak MB':>9s} {'max s':>7s} {'max kB':>8s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=60, help="mutants per format")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a read may take")
    parser.add_argument("--limit-mb", type=int, default=1024, help="address space the worker may add")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.limit_mb)
        return
    with tempfile.TemporaryDirectory(prefix="gstrim-fuzz-") as tmp:
        print(f"fuzz: {args.cases} mutants per format, seed {args.seed}, {args.timeout:g} s and "
              f"+{args.limit_mb} MB address space per read; peak MB is the RSS a read added")
        print(HEADER)
        table = fuzz(args.formats, args.cases, args.seed, args.timeout, args.limit_mb, Path(tmp))
    bad = sum(row["traceback"] + row["limit"] + row["hang"] for row in table.values())
    print(f"{sum(r['cases'] for r in table.values())} cases, {bad} tracebacks / limit hits / hangs")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
