"""The headless browser that the end-to-end test opens the HTML report with (tests/headless_browser.py)
sees what a reader sees: rendered text, decoded images, pixels, and a data: iframe's content; and it
tells a page that rendered from one that did not.

The report itself (``snakemake --report`` on the tiny DAG, opened in the browser) is checked in
tests/test_pipeline_e2e.py, which has the results. Without a browser (Debian's ``chromium``, which
``make test`` installs where it runs as root) these tests are skipped with the reason.
"""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from headless_browser import Browser, changed_fraction, find_browser, png_size

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH: `apt-get install chromium` "
                                                        "(make test installs it where it runs as root)")


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_browser_renders_tables_images_and_iframes_and_tells_them_from_a_blank_page(tmp_path):
    picture = base64.b64encode(png_bytes(321, 123)).decode()
    inner = base64.b64encode(b"<html><body><table><tr><td>mAP 42.00</td></tr></table></body></html>").decode()
    page_file = tmp_path / "page.html"
    page_file.write_text(
        "<html><body><table><tr><th>model</th><th>mAP</th></tr><tr><td>rgb</td><td>30.35</td></tr></table>"
        f'<img id="good" src="data:image/png;base64,{picture}">'
        '<img id="broken" src="data:image/png;base64,AAAA">'
        f'<iframe src="data:text/html;base64,{inner}"></iframe></body></html>')
    with Browser(BROWSER, width=800, height=600) as page:
        page.navigate("about:blank")
        blank = page.screenshot(tmp_path / "blank.png")
        blank_again = page.screenshot(tmp_path / "blank_again.png")
        page.navigate(page_file.as_uri())
        assert "rgb\t30.35" in page.evaluate("document.body.innerText")
        assert page.evaluate("[document.images[0].naturalWidth, document.images[0].naturalHeight]") == [321, 123]
        assert page.evaluate("document.getElementById('broken').naturalWidth") == 0
        (frame,) = page.child_frames()
        assert page.evaluate("document.body.innerText", page.frame_context(frame["id"])) == "mAP 42.00"
        shot = page.screenshot(tmp_path / "page.png")
    assert png_size(shot) == (800, 600)
    assert changed_fraction(blank_again, blank) == 0.0
    assert changed_fraction(shot, blank) > 0.05          # the red picture alone covers 8 % of the page
