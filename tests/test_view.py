"""`gstrim view`: the frame conventions, what is shown, the server's refusals, and the page itself in headless
Chromium (skipped, with the reason, where Chromium, playwright or the installed engine is missing)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_scene
from PIL import Image

from gstrim.cli import main
from gstrim.data.virtual import resized
from gstrim.errors import GstrimError
from gstrim.io import save_scene
from gstrim.io.model import load_model, point_cloud_path, read_cameras_json, write_cameras_json
from gstrim.pipelines.view import ViewerConfig, Viewing, collect, engine_files, manifest, screenshot
from gstrim.render import rasterize
from gstrim.view import frame
from gstrim.view.page import page_routes
from gstrim.view.server import ViewServer


def _rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _matrix(q) -> np.ndarray:
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_quaternion_of_any_rotation(rng):
    for _ in range(50):
        r = _rotation(rng)
        np.testing.assert_allclose(_matrix(frame.quaternion(r)), r, atol=1e-12)
    for angle in (np.pi, -np.pi / 2):  # the near-singular cases of the trace formula
        r = _matrix([np.sin(angle / 2), 0, 0, np.cos(angle / 2)])
        np.testing.assert_allclose(_matrix(frame.quaternion(r)), r, atol=1e-12)


def test_default_screenshot_scale():
    from gstrim.pipelines.view import screenshot_scale

    assert screenshot_scale(200, 200) == 4 and screenshot_scale(32, 24) == 25
    assert screenshot_scale(1600, 1063) == 1 and screenshot_scale(500, 300) == 1


@pytest.mark.parametrize("up", sorted(frame.UPS))
def test_engine_camera_looks_where_the_camera_looks(rng, up):
    """The engine camera's -z is the OpenCV camera's +z, its +y the camera's -y, both turned by the scene's up
    rotation; its vertical field of view is the focal length's."""
    u = np.array(frame.UPS[up].rotation, dtype=float)
    assert np.allclose(u @ u.T, np.eye(3)) and np.isclose(np.linalg.det(u), 1)
    r, c = _rotation(rng), rng.normal(size=3)
    pose = frame.engine_pose(frame.UPS[up], c, r, fy=100.0, height=200)
    m = _matrix(pose["quaternion"])
    np.testing.assert_allclose(-m[:, 2], u @ r[:, 2], atol=1e-12)
    np.testing.assert_allclose(m[:, 1], -(u @ r[:, 1]), atol=1e-12)
    np.testing.assert_allclose(pose["position"], u @ c, atol=1e-12)
    assert pose["fov"] == pytest.approx(90.0)


def test_z_up_is_shown_up():
    assert np.array(frame.UPS["z"].rotation) @ [0, 0, 1] == pytest.approx([0, 1, 0])
    assert np.array(frame.UPS["y-down"].rotation) @ [0, -1, 0] == pytest.approx([0, 1, 0])


# ---- what is shown ----------------------------------------------------------------------------------------

def _model_folder(root: Path, scene, camera_source=None, psnr: float = 31.5) -> Path:
    save_scene(point_cloud_path(root, 7), scene)
    if camera_source is not None:
        write_cameras_json(root / "cameras.json", read_cameras_json(camera_source))
    (root / "results.json").write_text(json.dumps(
        {"trim": {"verb": "trim", "output": {"PSNR": psnr, "SSIM": 0.95, "LPIPS": 0.05}}}))
    return root


def test_collect_files_and_folders(tmp_path, rng):
    scene = random_scene(rng, 40)
    model = _model_folder(tmp_path / "trimmed", scene)
    spz = tmp_path / "scene.spz"
    save_scene(spz, scene)
    save_scene(tmp_path / "unbundled" / "meta.json", scene)
    shown = collect([model, spz, tmp_path / "unbundled"], runs=[])
    assert [s.name for s in shown] == ["trimmed", "scene", "unbundled"]
    assert shown[0].metrics == {"PSNR": 31.5, "SSIM": 0.95, "LPIPS": 0.05}
    assert "ply \u00b7 40 Gaussians" in shown[0].facts()[0] and "PSNR 31.50" in shown[0].facts()[1]
    files = engine_files(shown, tmp_path / "converted")
    assert files[0] == point_cloud_path(model, 7)  # the engine reads .ply itself
    assert files[1].suffix == ".ply" and files[1].parent.parent == tmp_path / "converted"  # .spz: converted
    assert len(load_model(files[1]).scene) == 40
    assert files[2].name == "scene.ply"  # an unbundled SOG: the engine reads .sog files only


def test_collect_shows_what_a_compressed_run_ships(tmp_path, rng):
    scene = random_scene(rng, 30)
    run = tmp_path / "compressed"
    save_scene(point_cloud_path(run, 3), scene)
    save_scene(point_cloud_path(run, 5).with_suffix(".gsz"), scene)  # the newest iteration keeps only its .gsz
    (shown,) = collect([run], runs=[])
    assert shown.file == point_cloud_path(run, 5).with_suffix(".gsz") and shown.file_label().endswith(".gsz")
    assert "gsz \u00b7 30 Gaussians" in shown.facts()[0]


def test_collect_refuses_what_is_not_a_scene(tmp_path):
    with pytest.raises(GstrimError, match="no such scene"):
        collect([tmp_path / "missing.ply"], runs=[])
    (tmp_path / "empty").mkdir()
    with pytest.raises(GstrimError, match="not a scene file, model folder or sweep folder"):
        collect([tmp_path / "empty"], runs=[])


def test_manifest_cameras_and_up(tmp_path, rng, baseline):
    _, model = baseline
    shown = collect([model], runs=[])
    page = manifest(shown, ViewerConfig(camera=1))
    cameras = read_cameras_json(model / "cameras.json")
    assert page["up"]["name"] == "z"  # the built-in example is a Blender dataset
    assert page["background"] == [1.0, 1.0, 1.0]
    assert len(page["cameras"]) == len(cameras) and page["start"]["camera"] == 1
    assert page["home"] == page["cameras"][0]
    with pytest.raises(GstrimError, match="--camera 99"):
        manifest(shown, ViewerConfig(camera=99))
    bare = _model_folder(tmp_path / "bare", random_scene(rng, 30))
    page = manifest(collect([bare], runs=[]), ViewerConfig())
    assert page["up"]["name"] == "y-down" and page["background"] == [0.0, 0.0, 0.0] and page["cameras"] == []


# ---- the server -------------------------------------------------------------------------------------------

def _get(url: str, path: str) -> tuple[int, bytes, str]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read(), response.getheader("Content-Type") or ""


def test_server_serves_only_its_files(tmp_path):
    (tmp_path / "served.ply").write_bytes(b"ply")
    (tmp_path / "secret.txt").write_text("secret")
    routes = {"/": tmp_path / "served.ply", "/scenes/0/served.ply": tmp_path / "served.ply", "/m.json": b"{}"}
    with ViewServer(routes) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert _get(server.url, "/scenes/0/served.ply")[:2] == (200, b"ply")
        assert _get(server.url, "/m.json?x=1") == (200, b"{}", "application/json")
        for path in ("/secret.txt", "/../secret.txt", "/scenes/0/../../secret.txt", "/%2e%2e/secret.txt",
                     "//etc/passwd", "/etc/passwd", f"/{tmp_path}/secret.txt", "/scenes/0/", "/scenes"):
            status, body, _ = _get(server.url, path)
            assert status == 404 and b"secret" not in body, path


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_view_stops_on_ctrl_c(tmp_path, rng, stop):
    """Started as a CI script's background job is (SIGINT ignored, inherited), it still stops on Ctrl-C: before the
    fix it ran on, which made this test fail whenever the suite itself ran in the background."""
    model = _model_folder(tmp_path / "m", random_scene(rng, 20))
    env = dict(os.environ, GSTRIM_VIEWER_ENGINE=str(tmp_path / "m" / "results.json"))  # any file will do here
    proc = subprocess.Popen([sys.executable, "-m", "gstrim.cli", "view", str(model), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_ignore_sigint)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gstrim view: http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split()[2]
        assert _get(url, "/")[0] == 200 and _get(url, "/../pyproject.toml")[0] == 404
        proc.send_signal(stop)
        assert proc.wait(timeout=20) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        proc.kill()


def test_server_answers_only_its_own_host(tmp_path):
    """DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends Host: evil.example and is refused."""
    with ViewServer({"/": b"page"}) as server:
        port = server.server_address[1]
        for host, status in ((f"127.0.0.1:{port}", 200), (f"localhost:{port}", 200), ("localhost", 200),
                             (f"evil.example:{port}", 403), ("127.0.0.1.evil.example", 403), ("", 403)):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.putrequest("GET", "/", skip_host=True)
            if host:
                conn.putheader("Host", host)
            conn.endheaders()
            response = conn.getresponse()
            assert response.status == status, host
            assert (response.read() == b"page") == (status == 200)


def test_scene_urls_are_encoded(tmp_path):
    odd = tmp_path / "a #1 100%.ply"
    odd.write_bytes(b"ply")
    routes = page_routes({"scenes": [{"name": "odd"}]}, [odd], tmp_path / "engine.mjs")
    url = json.loads(routes["/manifest.json"])["scenes"][0]["url"]
    assert "#" not in url and " " not in url
    with ViewServer(routes) as server:
        assert _get(server.url, "/" + url)[:2] == (200, b"ply")


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.ply"), "--no-browser"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.ply" in err and "no such scene" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["view", "a.ply", "--size", "0x5"])
    assert exit_info.value.code == 2


def test_missing_renderer_is_one_line(tmp_path, rng, monkeypatch, capsys):
    model = _model_folder(tmp_path / "m", random_scene(rng, 20))
    monkeypatch.setenv("GSTRIM_VIEWER_ENGINE", str(tmp_path / "none.mjs"))
    assert main(["view", str(model), "--no-browser"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "scripts/install_viewer.sh" in err and "none.mjs" in err
    monkeypatch.setenv("GSTRIM_VIEWER_ENGINE", str(model / "results.json"))  # any file passes the check
    with ViewServer({}) as taken:
        port = taken.server_address[1]
        assert main(["view", str(model), "--no-browser", "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cannot serve the page on 127.0.0.1:{port}" in err
    assert main(["view", str(model), "--screenshot", str(tmp_path / "shot.jpg")]) == 1
    assert "name the file .png" in capsys.readouterr().err and not (tmp_path / "shot.jpg").exists()


# ---- the page in headless Chromium --------------------------------------------------------------------------

def _browser_missing() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install 'gstrim[view]')"
    from gstrim.view.browser import find_chromium
    from gstrim.view.engine import engine_path

    try:
        find_chromium()
        engine_path()
    except GstrimError as exc:
        return str(exc)
    return None


browser = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


def _halves(png: bytes) -> tuple[np.ndarray, np.ndarray]:
    import io

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255
    half = image.shape[1] // 2
    return image[:, :half], image[:, half:2 * half]


@browser
def test_page_shares_one_camera(baseline):
    """No console errors; both views drawn with their panels; a move of the shared camera moves both alike."""
    from gstrim.view.browser import open_page

    _, model = baseline
    with Viewing([model, model], ViewerConfig(camera=0), bare=True) as viewing, \
            open_page(viewing.url, 384, 192) as page:
        page.wait_ready(120)
        left, right = _halves(page.screenshot(None))
        for view in (left, right):  # the example's objects on its white background
            assert (view.min(axis=2) < 0.8).mean() > 0.05
        page.call("() => gstrim.orbit(30, 10)")
        page.wait_ready(120)
        moved_left, moved_right = _halves(page.screenshot(None))
        assert np.abs(moved_left - left).mean() > 0.005 and np.abs(moved_right - right).mean() > 0.005
        # alike above the panels, less the line between the views
        top = left.shape[0] // 2
        assert np.abs(moved_left[:top, 2:-2] - moved_right[:top, 2:-2]).mean() < 1 / 255
        panels = page.call("() => [...document.querySelectorAll('.panel')].map(p => p.innerText)")
        gaussians = len(load_model(model).scene)
        assert len(panels) == 2 and f"{gaussians:,} Gaussians" in panels[0] and "PSNR" in panels[0]
        poses = page.call("() => gstrim.cameraPoses()")
        assert all(np.allclose(p, poses[0]) for p in poses)
        assert page.errors == []


@browser
def test_swipe_shows_each_scene_on_its_side(tmp_path, baseline):
    from gstrim.view.browser import open_page

    _, model = baseline
    scene = load_model(model).scene
    inverted = _model_folder(tmp_path / "inverted", scene.__class__(**{
        **scene.params(), "sh0": -scene.sh0.detach()}), camera_source=model / "cameras.json")
    with Viewing([model, inverted], ViewerConfig(camera=0, mode="swipe", panels=False), bare=True) as viewing, \
            open_page(viewing.url, 128, 128) as page:
        shots = {}
        for fraction in (1.0, 0.0, 0.5):
            page.call(f"() => gstrim.setSwipe({fraction})")
            page.wait_ready(120)
            shots[fraction] = _halves(page.screenshot(None))
        bar = 12  # the slider's handle, drawn over the middle columns
        first, second, both = shots[1.0][0][:, :-bar], shots[0.0][1][:, bar:], shots[0.5]
        assert np.abs(first - shots[0.0][0][:, :-bar]).mean() > 0.01  # the two scenes differ
        np.testing.assert_allclose(both[0][:, :-bar], first, atol=2 / 255)  # left of the bar: the first scene
        np.testing.assert_allclose(both[1][:, bar:], second, atol=2 / 255)  # right of it: the second
        assert page.errors == []


@browser
def test_screenshot_agrees_with_gstrims_render(tmp_path, baseline):
    """At a training camera, at 4x its resolution, the viewer's picture and gstrim's render agree to >= 30 dB
    PSNR (same white background; both in the colours the file stores)."""
    _, model = baseline
    camera = read_cameras_json(model / "cameras.json")[0]
    camera = resized(camera, max(camera.width, camera.height) * 4)  # the default would be 25x: slow here
    out = screenshot([model], tmp_path / "shot.png", ViewerConfig(camera=0, panels=False),
                     size=(camera.width, camera.height))
    viewer = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64) / 255
    with torch.no_grad():
        ours = rasterize(load_model(model).scene, camera, background=torch.ones(3)).image.clamp(0, 1).numpy()
    psnr = 10 * np.log10(1 / ((viewer - ours) ** 2).mean())
    assert psnr >= 30, psnr


@browser
def test_streamed_sog_is_drawn_by_lod_streaming_within_the_budget(tmp_path, baseline):
    """A Streamed SOG beside its finest level as .ply: with the whole scene in budget the two agree (the chunks
    are SOG-quantised); a budget below the finest level makes the engine draw coarser levels; no console error."""
    from gstrim.io.streamed_sog import write_streamed_sog
    from gstrim.view.browser import open_page

    _, model = baseline
    scene = load_model(model).scene
    index = tmp_path / "lod" / "lod-meta.json"
    index.parent.mkdir()
    write_streamed_sog(index, [scene, scene.subset(torch.arange(0, len(scene), 8))])
    with Viewing([index, model], ViewerConfig(camera=0, panels=False), bare=True) as viewing, \
            open_page(viewing.url, 256, 128) as page:
        page.wait_ready(120)
        streamed, plain = _halves(page.screenshot(None))
        assert (streamed.min(axis=2) < 0.8).mean() > 0.05  # drawn, not the empty background
        assert 10 * np.log10(1 / ((streamed - plain) ** 2).mean()) > 25
        page.call(f"() => gstrim.setBudget({len(scene) // 8})")
        page.wait_ready(120)
        coarse, _ = _halves(page.screenshot(None))
        assert np.abs(coarse - streamed).mean() > 0.002
        assert page.errors == []
    assert viewing.manifest["scenes"][0]["levels"] == [len(scene), len(range(0, len(scene), 8))]
