"""`gstrim export` and `trim --format`: fine-tuning renders exactly what the file decodes to, gradients pass
through the format's quantiser (and reach SOG's codebooks), resume, the CLI."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import interrupt_training_at, random_scene
from test_cli import assert_one_line_error, run

from gstrim.compress.format_finetune import FormatParameters
from gstrim.io import load_scene, ply, sog_codec
from gstrim.io.formats import FORMATS, SceneFormat, register
from gstrim.io.quantiser import QuantiserContext, RoundTrip
from gstrim.options import option
from gstrim.pipelines.export import ExportConfig, export_model, run_dir_of
from gstrim.pipelines.inputs import Inputs, RunControl
from gstrim.scene import GaussianScene


def _lexicographic(means: torch.Tensor) -> torch.Tensor:
    m = means.detach().numpy()
    return torch.from_numpy(np.lexsort((m[:, 2], m[:, 1], m[:, 0])))


@pytest.mark.parametrize("name", ["spz", "compressed-ply", "sog", "splat"])
def test_decode_is_the_file_and_gradients_flow(tmp_path, name):
    scene = random_scene(np.random.default_rng(3), n=300, sh_degree=3 if name != "splat" else 0)
    fmt = FORMATS[name]
    options = sog_codec.SogOptions(palette=64) if name == "sog" else fmt.default_options()
    param = FormatParameters(fmt.quantiser(scene, options, QuantiserContext()))
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
    config = ExportConfig(finetune=6, formats={"sog": sog_codec.SogOptions(palette=64)})
    result = export_model(Inputs(model, data), tmp_path / "s.sog", config)
    books = sog_codec.SogCodebooks(**torch.load(run_dir_of(tmp_path / "s.sog") / "quantiser.pt"))
    meta = json.loads(zipfile.ZipFile(tmp_path / "s.sog").read("meta.json"))
    assert meta["shN"]["count"] == 64
    assert not np.allclose(meta["sh0"]["codebook"], books.sh0.numpy())  # fitted, then fine-tuned
    record = json.loads((run_dir_of(tmp_path / "s.sog") / "results.json").read_text())["export"]
    assert record["details"]["mb"] == pytest.approx((tmp_path / "s.sog").stat().st_size / 1e6)
    assert record["output"]["PSNR"] == pytest.approx(result.after.metrics().psnr)


def test_export_resume_equals_uninterrupted(baseline, tmp_path, monkeypatch):
    data, model = baseline
    config = ExportConfig(finetune=8)
    control = RunControl(no_eval=True, checkpoint_every=3)
    full = export_model(Inputs(model, data), tmp_path / "full.spz", config, control)
    undo = interrupt_training_at(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        export_model(Inputs(model, data), tmp_path / "part.spz", config, control)
    assert not (tmp_path / "part.spz").exists()
    undo()
    resumed = export_model(None, tmp_path / "part.spz", control=RunControl(resume=True, no_eval=True))
    assert resumed.file.read_bytes() == full.file.read_bytes()


@dataclasses.dataclass
class ToyOptions:
    levels: int = option(16, "toy: opacity levels kept", flag="--toy-levels")

    def validate(self) -> None:
        pass


def _toy_roundtrip(scene: GaussianScene, levels: int) -> GaussianScene:
    alpha = torch.round(torch.sigmoid(scene.opacities) * (levels - 1)) / (levels - 1)
    return GaussianScene(**{**scene.params(), "opacities": torch.logit(alpha.clamp(1e-4, 1 - 1e-4))})


def _toy_write(path, scene, options):
    ply.write_ply(path, _toy_roundtrip(scene, options.levels))


def test_a_format_with_options_is_one_registration(baseline, tmp_path, capsys):
    """A toy format (a .ply with opacities on N levels, N a writer option): registered once, it gets its export
    flag, its fine-tuning through its own quantiser and its options recorded, with no edit to export or the CLI."""
    data, model = baseline
    register(SceneFormat("toy", (".toy.ply",), ply.read_ply, ply.write_ply, None, options=ToyOptions,
                         write=_toy_write,
                         quantiser=lambda scene, o, context: RoundTrip(lambda s: _toy_roundtrip(s, o.levels),
                                                                       lambda path, s: _toy_write(path, s, o))))
    try:
        code, out, err = run(capsys, "export", model, "-o", tmp_path / "x.toy.ply", "--finetune", "3",
                             "--toy-levels", "4")
        assert code == 0, err
        alpha = torch.sigmoid(load_scene(tmp_path / "x.toy.ply").opacities)
        assert len(torch.unique(torch.round(alpha * 1e3))) <= 4
        recorded = json.loads((tmp_path / "x.toy.ply.finetune" / "config.json").read_text())["export"]
        assert recorded["format"] == "toy" and recorded["options"] == {"levels": 4}
    finally:
        FORMATS.pop("toy")


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
