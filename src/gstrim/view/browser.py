"""Headless Chromium driven by Playwright (pip `playwright`; it drives the system's Chromium, nothing is
downloaded): the page as a user's browser shows it, for `gstrim view --screenshot` and the viewer's tests.

WebGL runs on SwiftShader (Chromium's CPU implementation), so screenshots need no GPU.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gstrim.errors import GstrimError

CHROMIUM_VARIABLE = "GSTRIM_CHROMIUM"
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist", "--no-sandbox"]


def find_chromium() -> str:
    """$GSTRIM_CHROMIUM, or a Chromium on the PATH."""
    given = os.environ.get(CHROMIUM_VARIABLE)
    found = given or next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if not found:
        raise GstrimError(f"headless screenshots need Chromium: install it (Debian: apt-get install chromium) or "
                          f"set {CHROMIUM_VARIABLE}")
    return found


class Page:
    """One open viewer page: its console errors, and waiting until it has drawn."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def wait_started(self) -> None:
        """Until the page's script has run to its end (its hooks exist), or an error naming what it reported."""
        try:
            self.page.wait_for_function("window.gstrim && (gstrim.started || gstrim.errors.length > 0)")
        except Exception as exc:  # playwright's timeout
            raise GstrimError(f"the viewer page did not start ({str(exc).splitlines()[0]})") from None
        errors = self.page.evaluate("gstrim.errors")
        if errors:
            raise GstrimError(f"the viewer page failed: {errors[0]}")

    def wait_ready(self, timeout_s: float) -> None:
        """Until every scene is loaded and drawn a few frames after the last camera change (the engine sorts in
        a worker); an error naming what the page reported otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.page.evaluate("({ready: gstrim.ready, errors: gstrim.errors})")  # there once started
            if state["errors"]:
                raise GstrimError(f"the viewer page failed: {state['errors'][0]}")
            if state["ready"]:
                return
            if self.errors:
                raise GstrimError(f"the viewer page failed: {self.errors[0]}")
            time.sleep(0.1)
        raise GstrimError(f"the viewer page did not finish drawing within {timeout_s:g} s")

    def call(self, script: str, *args):
        return self.page.evaluate(script, list(args) if args else None)

    def screenshot(self, path) -> bytes:
        return self.page.locator("#canvas").screenshot(path=str(path) if path else None)


@contextmanager
def open_page(url: str, width: int, height: int, timeout_s: float = 120.0) -> Iterator[Page]:
    """The page at `url` in a headless Chromium window of width x height CSS pixels (device pixel ratio 1)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise GstrimError("headless screenshots need the playwright package: pip install 'gstrim[view]'") from None
    chromium = find_chromium()
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            raise GstrimError(f"could not start Chromium ({str(exc).splitlines()[0]})", chromium) from None
        try:
            page = Page(browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1))
            page.page.set_default_timeout(timeout_s * 1000)  # SwiftShader on a busy CPU can be slow to start
            page.page.goto(url, wait_until="domcontentloaded")
            page.wait_started()
            yield page
        finally:
            browser.close()
