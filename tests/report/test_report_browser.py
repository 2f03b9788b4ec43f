"""Open report.html in headless Chromium and check that every figure renders."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed")]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

# Test-only probe appended to a copy of the page: records each image's decoded size.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images).map(function (im) {
    return {alt: im.alt, w: im.naturalWidth, h: im.naturalHeight, complete: im.complete}; });
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(imgs);
  document.body.appendChild(pre);
});
</script>"""


def _chromium(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(dir=tmp)
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=120)


def test_every_figure_renders_in_chromium(full_report, tmp_path):
    page = tmp_path / "probe.html"
    page.write_text(full_report.html.read_text().replace("</body>", PROBE + "</body>"))
    out = _chromium(["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], tmp_path)
    match = re.search(r"<pre id=\"probe\">(.*?)</pre>", out.stdout, re.S)
    assert match, out.stderr[-2000:]
    images = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(images) == 18  # Figs. 2-15b, with 3 seeds Fig. 16, the Plasticity section 17-18, with --compare 19
    for im in images:
        assert im["complete"] and im["w"] > 300 and im["h"] > 200, im


def test_screenshot_is_not_blank(full_report, tmp_path):
    shot = tmp_path / "report.png"
    _chromium([f"--screenshot={shot}", "--window-size=1280,2000", full_report.html.as_uri()], tmp_path)
    assert shot.is_file() and shot.stat().st_size > 50_000
