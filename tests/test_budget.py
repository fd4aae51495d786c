"""`compress --max-loss`: the search's choices on made-up points, and a whole search on the example scene."""

from __future__ import annotations

import json

import pytest

from gstrim.compress.budget import MAX_VERIFICATIONS, Point, Search, candidates, distinct
from gstrim.compress.stages import CompressConfig
from gstrim.io.gsz import read_gsz
from gstrim.pipelines.compress import compress_model
from gstrim.pipelines.inputs import RunControl


def _points(true_loss: dict[int, float], share: float) -> list[Point]:
    """Points of sizes `true_loss`'s keys whose fine-tuning leaves `share` of their proxy loss."""
    return [Point(f"p{size}", {}, size, loss / share) for size, loss in true_loss.items()]


def test_the_search_finds_the_smallest_within_budget_in_few_verifications():
    truth = {100: 0.9, 150: 0.5, 200: 0.26, 260: 0.2, 400: 0.1, 800: 0.05}
    search = Search(0.3, _points(truth, share=0.35))
    best = search.run(lambda p: truth[p.bytes])
    assert best.bytes == 200 and len(search.order) <= MAX_VERIFICATIONS
    # the smallest verified point within budget, and every verified point measured, not guessed
    assert all(p.loss == truth[p.bytes] for p in search.verified)
    # first the proxy's own pick (the only one whose proxy is within budget), then the calibrated ones
    assert search.order[0] == "p800" and search.order[-1] == "p200"


def test_the_search_moves_up_when_a_point_misses_and_reports_none_when_nothing_fits():
    truth = {100: 0.45, 200: 0.35, 300: 0.25}
    search = Search(0.3, [Point("p100", {}, 100, 0.3), Point("p200", {}, 200, 0.2), Point("p300", {}, 300, 0.1)])
    best = search.run(lambda p: truth[p.bytes])  # the proxy is optimistic here
    assert best is not None and best.bytes == 300 and search.order == ["p200", "p300"]
    hopeless = Search(0.1, _points({100: 1.0, 200: 0.8}, share=1.0))
    assert hopeless.run(lambda p: {100: 1.0, 200: 0.8}[p.bytes]) is None
    assert len(hopeless.verified) >= 1


def test_candidates_span_sh_share_and_codebook_sizes_and_differ_on_the_scene():
    names = {p.name for p in candidates()}
    assert len(names) == len(candidates()) >= 9
    assert {p.settings["sh_share"] for p in candidates()} >= {1.0, 0.25}
    assert distinct(candidates(), 10**6, 0.01, 0.01) == candidates()  # a large scene: every size its own
    small = distinct(candidates(), 4000, 0.01, 0.01)  # 1,000 entries at most: 4,096 and 1,024 build the same
    assert len(small) < len(candidates())
    assert {(p.settings["sh_share"], p.settings["codebook_sh"]) for p in small} >= {(1.0, 4096), (1.0, 256)}


def test_compress_max_loss_on_the_example_lands_within_budget(baseline, tmp_path):
    from test_compress import TINY

    _, model = baseline
    config = CompressConfig(qat_iterations=6, max_loss=0.5, **TINY)
    result = compress_model(model, tmp_path / "c", config)
    record = json.loads((tmp_path / "c" / "results.json").read_text())["compress"]
    budget = record["details"]["budget"]
    assert 1 <= len(budget["verified"]) <= MAX_VERIFICATIONS
    chosen = next(p for p in budget["points"] if p["name"] == budget["chosen"])
    assert budget["loss"] <= 0.5  # within budget, and the smallest verified point that is
    within = [p for p in budget["points"] if p["loss"] is not None and p["loss"] <= 0.5]
    assert chosen["bytes"] == min(p["bytes"] for p in within)
    # the file's own test PSNR, measured by the run, agrees with the search's
    assert record["input"]["PSNR"] - record["output"]["PSNR"] == pytest.approx(budget["loss"], abs=1e-3)
    assert result.file.stat().st_size == chosen["bytes"] and len(read_gsz(result.file)) > 0
    assert (tmp_path / "c" / "search" / "search.json").exists()
    # a resumed run reads the search back instead of fine-tuning again
    again = compress_model(None, tmp_path / "c", config, RunControl(resume=True))
    assert json.loads((tmp_path / "c" / "results.json").read_text())["compress"]["details"]["budget"] == budget
    assert again.file.read_bytes() == result.file.read_bytes()


def test_trim_compress_spends_what_the_trim_left_of_the_budget():
    from gstrim.errors import ConfigError
    from gstrim.pipelines.budget import budget_left

    class Measured:
        def __init__(self, db):
            self.db = db

        def mean(self, key):
            return self.db

    assert budget_left(0.3, Measured(30.0), Measured(29.9)) == pytest.approx(0.2)
    assert budget_left(0.3, Measured(30.0), Measured(30.2)) == pytest.approx(0.5)  # the trim gained
    assert budget_left(0.3, Measured(30.0), Measured(29.0)) == 0.0
    with pytest.raises(ConfigError, match="max.loss"):
        budget_left(0.3, None, Measured(29.0))


def test_export_max_loss_chooses_the_spz_bits_within_budget(baseline, tmp_path, monkeypatch):
    import gstrim.pipelines.inputs
    from gstrim.pipelines.export import ExportConfig, export_model
    from gstrim.pipelines.inputs import Inputs

    data, model = baseline
    out = tmp_path / "scene.spz"
    loads = []
    real = gstrim.pipelines.inputs.load_model
    monkeypatch.setattr(gstrim.pipelines.inputs, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    result = export_model(Inputs(scene=model, data=data), out, ExportConfig(finetune=4, max_loss=0.3))
    assert len(loads) == 1  # the search and every candidate's run share the input, opened once
    budget = result.budget
    assert out.exists() and result.bytes == out.stat().st_size
    tried = {p["name"]: p for p in budget["points"]}
    assert len(tried) >= 6 and all(p["bytes"] > 0 for p in tried.values())
    assert 1 <= len(budget["verified"]) <= MAX_VERIFICATIONS
    chosen = tried[budget["chosen"]]
    assert out.read_bytes() == (tmp_path / "scene.spz.finetune" / "search" / chosen["name"] / "scene.spz").read_bytes()
    if chosen["loss"] <= 0.3:
        within = [p for p in tried.values() if p["loss"] is not None and p["loss"] <= 0.3]
        assert chosen["bytes"] == min(p["bytes"] for p in within)


def test_a_stage_before_fine_tuning_is_one_registration_for_the_search(baseline, tmp_path):
    """A toy stage registered before fine-tuning: the search's proxies run it on every candidate they size, each
    verified candidate caches it, and its record entry reaches the run's record, with no edit to the search."""
    from test_compress import TINY

    from gstrim.compress.stages import BEFORE_FINETUNE, INPUT, Stage, register_stage, unregister_stage

    built = []

    def tag(job):
        built.append(job.root.name)
        return {"toy_entries": job.values["codebooks"].sh_entries}

    register_stage(Stage("toy", tag, BEFORE_FINETUNE, record=lambda v: {"toy_entries": v["toy_entries"]}),
                   after="positions")
    try:
        with pytest.raises(ValueError, match="out of order"):
            register_stage(Stage("late-input", tag, INPUT), after="finetune")
        _, model = baseline
        result = compress_model(model, tmp_path / "c", CompressConfig(qat_iterations=4, max_loss=0.5, **TINY))
    finally:
        unregister_stage("toy")
        unregister_stage("late-input")
    budget = result.record["budget"]
    assert built.count("proxy") >= 1 and sorted(set(built) - {"proxy"}) == sorted(budget["verified"])
    for name in budget["verified"]:
        assert (tmp_path / "c" / "search" / name / "stages" / "toy.pt").exists()
    assert result.record["toy_entries"] == read_gsz(result.file).sh_entries
    assert "toy_s" in result.record["stages_s"]
