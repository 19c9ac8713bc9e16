"""A real headless browser (Debian's ``chromium``) driven through the DevTools protocol, for the tests
that open the HTML report.

The protocol runs over ``--remote-debugging-pipe`` (the browser reads JSON commands on its fd 3 and
writes replies and events on fd 4, each message ended by a NUL byte), so nothing but the standard
library is needed: no port, no websocket client.

    with Browser() as page:
        page.navigate(Path("results/report.html").resolve().as_uri())
        page.evaluate("document.title")
        page.screenshot(Path("shot.png"))

Run as a script, it renders a Snakemake report and writes screenshots of its pages:
``python tests/headless_browser.py results/report.html --out results/report_screenshots``.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser did not start, or a DevTools command failed or timed out."""


def find_browser() -> str | None:
    """The path of a Chromium-family browser on PATH (``CHROMIUM`` overrides), or None."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _high_fd(fd: int) -> int:
    """A duplicate of ``fd`` numbered 10 or more (so that fds 3 and 4 of the child can be set without
    clobbering it), closed on exec; ``fd`` itself is closed."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A headless Chromium with one page, ``width`` x ``height`` CSS pixels."""

    def __init__(self, executable: str | None = None, width: int = 1400, height: int = 950,
                 timeout: float = 30.0) -> None:
        self.executable = executable or find_browser()
        if not self.executable:
            raise BrowserError(f"no browser found (looked for {', '.join(BROWSERS)} on PATH)")
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    # -- process -------------------------------------------------------------------------------
    def __enter__(self) -> "Browser":
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())

        def child_fds() -> None:  # runs in the child between fork and exec
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        args = [self.executable, "--headless", "--remote-debugging-pipe", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                f"--user-data-dir={self._profile.name}", f"--window-size={self.width},{self.height}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(args + ["about:blank"], preexec_fn=child_fds, close_fds=False,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._write, self._read = to_browser_w, from_browser_r
        try:
            self._attach()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.process.poll() is None:
                try:
                    self.send("Browser.close", session=False, timeout=5)
                except BrowserError:
                    pass
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            for fd in (self._write, self._read):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._stderr.close()
            self._profile.cleanup()

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-2000:]

    # -- protocol ------------------------------------------------------------------------------
    def _message(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                why = "timed out" if left <= 0 else f"exited with {self.process.returncode}"
                raise BrowserError(f"browser {why} waiting for DevTools:\n{self.stderr_tail()}")
            ready, _, _ = select.select([self._read], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise BrowserError(f"browser closed the DevTools pipe:\n{self.stderr_tail()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool | str = True,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command (to the page's session unless ``session`` is False or another id) and
        return its result; events that arrive meanwhile are kept in :attr:`events`."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is True and self.session:
            message["sessionId"] = self.session
        elif isinstance(session, str):
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message(self.timeout if timeout is None else timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float | None = None) -> dict[str, Any]:
        """The first kept or next event named ``method`` (removed from :attr:`events`)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._message(max(deadline - time.monotonic(), 0.0)))

    def _attach(self) -> None:
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target_id = page["targetId"] if page else self.send(
            "Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True},
                                 session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    # -- page ----------------------------------------------------------------------------------
    def navigate(self, url: str) -> None:
        """Open ``url`` and wait for its load event."""
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, context_id: int | None = None) -> Any:
        """The value of a JavaScript expression (promises awaited) in the page or in an execution context."""
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        if context_id is not None:
            params["contextId"] = context_id
        result = self.send("Runtime.evaluate", params)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0, context_id: int | None = None) -> Any:
        """Poll ``expression`` until it is truthy; return its value (BrowserError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression, context_id)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            time.sleep(0.1)

    def frame_context(self, frame_id: str) -> int:
        """An execution context in the frame ``frame_id`` (also a cross-origin one, e.g. a data: iframe)."""
        return self.send("Page.createIsolatedWorld", {"frameId": frame_id, "worldName": "test"})["executionContextId"]

    def child_frames(self) -> list[dict[str, Any]]:
        """The page's child frames (``id``, ``url``) as the DevTools frame tree lists them."""
        tree = self.send("Page.getFrameTree")["frameTree"]
        return [child["frame"] for child in tree.get("childFrames", [])]

    def screenshot(self, path: Path) -> Path:
        """Write a PNG of the viewport to ``path``."""
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


# -- the Snakemake report ------------------------------------------------------------------------

def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG file's IHDR chunk."""
    header = Path(path).read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def changed_fraction(shot: Path, blank: Path, left: int = 0) -> float:
    """The fraction of pixels of ``shot`` that differ from ``blank`` (same size), e.g. a blank page's;
    only right of ``left`` pixels (to leave out a menu)."""
    from PIL import Image, ImageChops

    with Image.open(shot) as a, Image.open(blank) as b:
        box = (left, 0, a.width, a.height)
        diff = ImageChops.difference(a.convert("RGB").crop(box), b.convert("RGB").crop(box)).convert("L")
        histogram = diff.histogram()
    return 1.0 - histogram[0] / sum(histogram)


@dataclass
class ReportView:
    """What a browser showed of a Snakemake report: the text of its front page, its results (path ->
    name, MIME type, caption), the rendered text of each HTML result, the natural size of each image
    result as the browser decoded it, and the screenshots taken (with the fraction of the pixels right
    of the menu that differ from a blank page's)."""

    front_text: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    images: dict[str, tuple[int, int]] = field(default_factory=dict)
    screenshots: dict[str, Path] = field(default_factory=dict)
    changed: dict[str, float] = field(default_factory=dict)


def _show(page: Browser, path: str, content: str) -> None:
    """Open the result's category in the menu and show the result, as its eye button there does."""
    p = json.dumps(path)
    page.evaluate("app.setView({navbarMode: 'menu'}), true")  # as a reader goes back to the menu first
    page.wait_for("app.state.navbarMode === 'menu'")
    page.evaluate(f"app.showCategory(Object.keys(categories).find(c => Object.values(categories[c])"
                  f".some(paths => paths.includes({p})))), true")
    page.wait_for("app.state.navbarMode !== 'menu'")
    page.evaluate(f"app.setView({{content: {json.dumps(content)}, contentPath: results[{p}].data_uri, "
                  f"resultPath: {p}}}), true")


def _iframe_text(page: Browser, timeout: float = 10.0) -> str:
    """The rendered text (``innerText``) of the page's one iframe, once it has loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = [f for f in page.child_frames() if f.get("url", "").startswith("data:")]
        if frames:
            context = page.frame_context(frames[-1]["id"])
            text = page.evaluate("document.readyState === 'complete' && document.body ? document.body.innerText : ''",
                                 context)
            if text:
                return text
        time.sleep(0.1)
    return ""


def view_snakemake_report(html: Path, shots: Path, browser: str | None = None) -> ReportView:
    """Open a ``snakemake --report`` HTML file in a headless browser, show each of its results as its
    menu does, and record what was rendered; screenshots go to ``shots``."""
    view = ReportView()
    shots.mkdir(parents=True, exist_ok=True)
    with Browser(browser) as page:
        page.navigate("about:blank")
        blank = page.screenshot(shots / "blank.png")
        page.navigate(Path(html).resolve().as_uri())
        page.wait_for("typeof app !== 'undefined' && document.querySelector('#app').innerText.length > 0")
        page.evaluate("app.setView({navbarMode: 'menu', content: 'rulegraph'}), true")
        time.sleep(0.5)  # the rule graph is drawn by vega after React's render
        view.front_text = page.evaluate("document.body.innerText")
        view.screenshots["front"] = page.screenshot(shots / "00_front.png")
        view.results = page.evaluate("Object.fromEntries(Object.entries(results).map(([p, r]) => "
                                     "[p, {name: r.name, mime: r.mime_type, caption: r.caption}]))")
        for i, (path, result) in enumerate(sorted(view.results.items(), key=lambda kv: kv[1]["name"]), start=1):
            name = result["name"]
            if result["mime"] == "text/html":
                _show(page, path, "html")
                view.texts[path] = _iframe_text(page)
            elif result["mime"].startswith("image/"):
                _show(page, path, "img")
                size = page.wait_for(
                    f"(() => {{ const img = [...document.images].find(i => i.src === results[{json.dumps(path)}]"
                    f".data_uri); return img && img.complete ? [img.naturalWidth, img.naturalHeight] : null }})()")
                view.images[path] = (int(size[0]), int(size[1]))
            else:
                continue
            view.screenshots[name] = page.screenshot(shots / f"{i:02d}_{name}.png")
            menu = int(page.evaluate("Math.ceil(document.querySelector('nav').getBoundingClientRect().right)"))
            view.changed[name] = changed_fraction(view.screenshots[name], blank, left=menu)
        view.changed["front"] = changed_fraction(view.screenshots["front"], blank)
    return view


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("html", type=Path, help="a snakemake --report HTML file")
    parser.add_argument("--out", type=Path, required=True, help="folder of the screenshots")
    args = parser.parse_args()
    seen = view_snakemake_report(args.html, args.out)
    for key, shot in seen.screenshots.items():
        print(f"{shot}  ({100 * seen.changed[key]:.1f} % of the pixels right of the menu differ from a blank page)")
    for path, size in seen.images.items():
        print(f"{path}: rendered at its natural size {size[0]}x{size[1]}")
    for path, text in seen.texts.items():
        print(f"{path}: {len(text)} characters of rendered text")
