"""`gstrim export` and `trim --format`: fine-tuning renders exactly what the file decodes to, gradients pass
through the format's quantiser (and reach SOG's codebooks), resume, the CLI."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import interrupt_training_at, random_scene
from test_cli import assert_one_line_error, run

from gstrim.compress.format_finetune import FormatParameters
from gstrim.export import ExportConfig, export_model, run_dir_of
from gstrim.io import load_scene, sog
from gstrim.io.formats import FORMATS


def _lexicographic(means: torch.Tensor) -> torch.Tensor:
    m = means.detach().numpy()
    return torch.from_numpy(np.lexsort((m[:, 2], m[:, 1], m[:, 0])))


@pytest.mark.parametrize("name", ["spz", "compressed-ply", "sog", "splat"])
def test_decode_is_the_file_and_gradients_flow(tmp_path, name):
    scene = random_scene(np.random.default_rng(3), n=300, sh_degree=3 if name != "splat" else 0)
    fmt = FORMATS[name]
    books = sog.fit_codebooks(scene, palette_size=64) if name == "sog" else None
    param = FormatParameters(fmt, books)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in param.init_params(scene).items()}
    decoded = param.decode(params)
    (decoded.means.sum() + decoded.scales.sum() + decoded.sh0.sum() + decoded.shN.sum()
     + decoded.opacities.sum() + decoded.quats.sum()).backward()
    for key, p in params.items():
        assert p.grad is not None and (p.numel() == 0 or p.grad.abs().sum() > 0), key  # SOG's books learn too
    path = tmp_path / f"x{fmt.suffixes[0]}"
    param.write(path, params)
    from_file = load_scene(path)
    a, b = _lexicographic(decoded.means), _lexicographic(from_file.means)
    for key in ("means", "scales", "opacities", "sh0", "shN"):
        torch.testing.assert_close(getattr(decoded, key).detach()[a], getattr(from_file, key)[b], rtol=0, atol=1e-6,
                                   msg=key)


def test_sog_fine_tuning_moves_its_codebooks(baseline, tmp_path):
    data, model = baseline
    result = export_model(model, tmp_path / "s.sog", data=data, config=ExportConfig(finetune=6, sog_palette=64))
    books = sog.SogCodebooks(**torch.load(run_dir_of(tmp_path / "s.sog") / "sog_codebooks.pt"))
    meta = json.loads(zipfile.ZipFile(tmp_path / "s.sog").read("meta.json"))
    assert meta["shN"]["count"] == 64
    assert not np.allclose(meta["sh0"]["codebook"], books.sh0.numpy())  # fitted, then fine-tuned
    record = json.loads((run_dir_of(tmp_path / "s.sog") / "results.json").read_text())["export"]
    assert record["details"]["mb"] == pytest.approx((tmp_path / "s.sog").stat().st_size / 1e6)
    assert record["output"]["PSNR"] == pytest.approx(result.after.metrics().psnr)


def test_export_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch):
    data, model = baseline
    config = ExportConfig(finetune=8)
    full = export_model(model, tmp_path / "full.spz", data=data, config=config, evaluate_test=False,
                        checkpoint_every=3)
    undo = interrupt_training_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        export_model(model, tmp_path / "part.spz", data=data, config=config, evaluate_test=False, checkpoint_every=3)
    assert not (tmp_path / "part.spz").exists()
    undo()
    resumed = export_model(None, tmp_path / "part.spz", resume=True, evaluate_test=False)
    assert resumed.file.read_bytes() == full.file.read_bytes()


def test_cli_export_plain_and_fine_tuned_and_trim_format(baseline, tmp_path, capsys):
    data, model = baseline
    code, out, err = run(capsys, "export", model, "-o", tmp_path / "plain.compressed.ply")
    assert code == 0, err
    assert "(plain)" in out and not run_dir_of(tmp_path / "plain.compressed.ply").exists()
    code, out, err = run(capsys, "export", model, "-o", tmp_path / "dir" / "meta.json", "--data", data,
                         "--finetune", "3", "--sog-palette", "64")
    assert code == 0, err
    assert "fine-tuned 3 iterations" in out and "of the file as written" in out
    assert (tmp_path / "dir" / "means_l.webp").is_file()
    code, out, err = run(capsys, "info", tmp_path / "dir" / "meta.json")
    assert code == 0 and "sog (version 2, folder, SH palette of 64)" in out

    code, out, err = run(capsys, "trim", model, "-o", tmp_path / "t", "--target-removal", "0.5", "--steps", "2",
                         "--every", "3", "--finetune", "3", "--format", "spz")
    assert code == 0, err
    assert "smaller than the untrimmed .ply" in out and (tmp_path / "t" / "scene.spz").is_file()


def test_export_errors(baseline, tmp_path, capsys):
    _, model = baseline
    code, _, err = run(capsys, "export", model, "-o", tmp_path / "x.gsz")
    assert_one_line_error(code, err, "gstrim compress")
    code, _, err = run(capsys, "export", model, "-o", tmp_path / "x.spz", "--finetune", "-1")
    assert_one_line_error(code, err, "--finetune")
    code, _, err = run(capsys, "export", model, "-o", tmp_path / "x.spz", "--spz-sh-rest-bits", "9")
    assert_one_line_error(code, err, "--spz-sh-rest-bits")
    code, _, err = run(capsys, "export", model, "-o", tmp_path / "x.abc")
    assert_one_line_error(code, err, "unknown scene format")
