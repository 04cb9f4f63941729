"""The report in a real browser: headless Chromium (Debian's `chromium`) driven over the
DevTools protocol on a pipe (no port, no extra package). It opens report.html at desktop
and at phone width (390 px, emulated, so the page is laid out at that width), checks that
it renders with its sections and charts, that nothing overflows the phone's width and the
chart's measurement period is on screen, that the browser logged no console message,
exception or failed request, writes the screenshots in docs/img/, and reads the
report.pdf that `write_report` prints back with pypdf: A4 pages, page numbers, the
running header, every section heading of the HTML, table headers repeated on each page
a table runs onto. `UTFALL_DOCS_IMG=1` writes the screenshots into docs/img.

Skipped, with the reason, where no Chromium binary is found."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import select
import shutil
import time
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.test_report import sample_report, with_contract
from utfall.report import write_report

#: `UTFALL_DOCS_IMG=1` writes the screenshots into docs/img (for the README); otherwise they
#: go to a temporary folder, so running the suite leaves the checkout unchanged.
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def chromium_binary() -> str | None:
    env = os.environ.get("UTFALL_BROWSER")  # conftest turns the pipeline's PDF off, not this
    if env:
        return shutil.which(env)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium found (install Debian's chromium package, or set UTFALL_BROWSER)",
)


class Browser:
    """Chromium with --remote-debugging-pipe: commands on fd 3, answers on fd 4, each a JSON
    message ended by NUL. Events that arrive while waiting are kept in `events`."""

    def __init__(self, binary: str, workdir: Path) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # move the child's ends above 10 so dup2 onto 3 and 4 cannot clobber them
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(res_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(res_w)
        self.log = open(workdir / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        devnull = os.open(os.devnull, os.O_RDWR)
        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            f"--user-data-dir={workdir / 'profile'}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.pid = os.posix_spawn(
            binary,
            argv,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, self.log.fileno(), 2),
                (os.POSIX_SPAWN_DUP2, child_in, 3),
                (os.POSIX_SPAWN_DUP2, child_out, 4),
            ],
        )
        for fd in (child_in, child_out, devnull):
            os.close(fd)
        self.w = cmd_w
        self.r = res_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> Any:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            got = self._read(deadline)
            if got.get("id") == self.next_id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.events.append(got)

    def wait_for(self, event: str, session: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for e in self.events[seen:]:
                if e.get("method") == event and e.get("sessionId") == session:
                    return
            seen = len(self.events)
            self.events.append(self._read(deadline))

    def open(self, url: str, width: int, height: int, mobile: bool) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        s = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=s)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
            session=s,
        )
        self.send("Page.navigate", {"url": url}, session=s)
        self.wait_for("Page.loadEventFired", s)
        return s

    def evaluate(self, expression: str, session: str) -> Any:
        got = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, session
        )
        if "exceptionDetails" in got:
            raise RuntimeError(got["exceptionDetails"])
        return got["result"]["value"]

    def screenshot(self, path: Path, session: str, clip: dict | None = None) -> None:
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params.update(clip={**clip, "scale": 1}, captureBeyondViewport=True)
        data = self.send("Page.captureScreenshot", params, session)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def problems(self, since: int = 0) -> list[str]:
        """Console messages, uncaught exceptions, log errors, failed or outside requests
        among the events since index `since`."""
        out = []
        for e in self.events[since:]:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled":
                text = " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                out.append(f"console.{p['type']}: {text}")
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(f"log {p['entry']['level']}: {p['entry']['text']}")
            elif m == "Network.loadingFailed":
                out.append(f"request failed: {p.get('errorText')}")
            elif m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                if not url.startswith(("file:", "about:", "data:")):
                    out.append(f"network request: {url}")
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        os.close(self.w)
        os.close(self.r)
        self.log.close()


LAYOUT = """(() => {
  const vw = window.innerWidth;
  const inside = el => { const r = el.getBoundingClientRect();
                         return r.width > 0 && r.left >= -1 && r.right <= vw + 1; };
  const labels = [...document.querySelectorAll('svg.chart text')]
                 .filter(t => t.textContent === 'measurement');
  return {
    width: vw,
    scrollWidth: document.documentElement.scrollWidth,
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent.trim()),
    charts: document.querySelectorAll('svg.chart').length,
    chartsDrawn: [...document.querySelectorAll('svg.chart')].filter(s =>
                 s.getBoundingClientRect().height > 50 && s.querySelector('polyline, circle')
                 ).length,
    chartsInside: [...document.querySelectorAll('svg.chart')].every(inside),
    measurementLabels: labels.length,
    measurementInside: labels.every(inside),
    tableBoxesInside: [...document.querySelectorAll('div.scroll')]
                      .filter(el => el.parentElement.closest('.scroll') === null).every(inside),
    firstChart: (() => { const r = document.querySelector('figure').getBoundingClientRect();
                         return {x: 0, y: r.top + window.scrollY - 8, width: vw,
                                 height: r.height + 16}; })(),
  };
})()"""


class Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.inside = tag == "h2"
        if self.inside:
            self.found.append("")

    def handle_endtag(self, tag: str) -> None:
        self.inside = False if tag == "h2" else self.inside

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.found[-1] += data


@pytest.fixture(scope="module")
def written(example_plan, tmp_path_factory):
    """A report with a small unit (suppression shown) written with Chromium enabled."""
    out = tmp_path_factory.mktemp("browser-report")
    plan = with_contract(
        example_plan,
        agreed_on="2024-11-15",
        agreement_text="Demokommun pays Hälsopartner AB 600 000 SEK, and up to 1 400 000 SEK "
        "in proportion to the reduction of short-term sick days achieved, in full at 12 %.",
    )
    report = sample_report(plan, small={"HEMTJ-03": 3})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UTFALL_CHROMIUM", CHROMIUM or "off")
        paths = write_report(report, out / "report", run_id="browser-test")
    return report, paths


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(CHROMIUM, tmp_path_factory.mktemp("chromium"))
    yield b
    b.close()


@pytest.fixture
def img_dir(tmp_path) -> Path:
    return DOCS_IMG if os.environ.get("UTFALL_DOCS_IMG") == "1" else tmp_path


def test_report_renders_at_desktop_and_phone_width(written, browser, img_dir):
    report, paths = written
    url = paths["report.html"].resolve().as_uri()
    html = paths["report.html"].read_text(encoding="utf-8")
    parser = Headings()
    parser.feed(html)
    expected = [h.strip() for h in parser.found]
    assert "Population flow" in expected and "Validator's decision" in expected
    desktop = browser.open(url, 1280, 1800, mobile=False)
    d = browser.evaluate(LAYOUT, desktop)
    assert d["headings"] == expected
    assert d["charts"] == d["chartsDrawn"] >= 3  # two outcomes and the event studies
    assert d["scrollWidth"] <= d["width"]
    browser.screenshot(img_dir / "report.png", desktop)
    phone = browser.open(url, 390, 844, mobile=True)
    p = browser.evaluate(LAYOUT, phone)
    assert p["width"] == 390 and p["headings"] == expected
    assert p["scrollWidth"] <= 390, "the page scrolls sideways at 390 px"
    assert p["chartsInside"] and p["tableBoxesInside"]
    assert p["measurementLabels"] == len(report["outcomes"]) and p["measurementInside"]
    browser.screenshot(img_dir / "report-390.png", phone)
    browser.screenshot(img_dir / "report-390-chart.png", phone, clip=p["firstChart"])
    assert browser.problems() == []
    for name in ("report.png", "report-390.png", "report-390-chart.png"):
        assert (img_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


PRINT_OVERFLOW = """(() => {
  const vw = window.innerWidth, bad = [];
  for (const el of document.querySelectorAll('table, svg, dl, p, li, figure, code')) {
    const r = el.getBoundingClientRect();
    if (r.right > vw + 1) bad.push(el.tagName + ': ' + el.textContent.slice(0, 50));
  }
  return {scrollWidth: document.documentElement.scrollWidth, width: vw, bad: bad};
})()"""


def test_print_layout_fits_an_a4_page(written, browser):
    """In print media at an A4 page's content width (210 mm - 2 x 14 mm = 688 px) nothing
    runs off the page: no clipped table, chart or legend in report.pdf."""
    _, paths = written
    s = browser.open(paths["report.html"].resolve().as_uri(), 688, 1000, mobile=False)
    browser.send("Emulation.setEmulatedMedia", {"media": "print"}, s)
    got = browser.evaluate(PRINT_OVERFLOW, s)
    assert got["bad"] == [] and got["scrollWidth"] <= got["width"]
    assert browser.problems() == []


def test_problem_detector_catches_console_errors_and_requests(browser, tmp_path):
    """The check above can fail: a page with a console error and a network fetch."""
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><title>bad</title><script>console.error('boom')</script>"
        '<link rel="stylesheet" href="http://127.0.0.1:9/x.css">',
        encoding="utf-8",
    )
    before = len(browser.events)
    browser.open(page.as_uri(), 800, 600, mobile=False)
    found = browser.problems(since=before)
    del browser.events[before:]
    assert "console.error: boom" in found
    assert any("127.0.0.1:9" in f for f in found)


def test_pdf_has_a4_pages_numbers_header_and_every_section(written):
    from pypdf import PdfReader

    report, paths = written
    manifest = json.loads(paths["manifest.json"].read_text(encoding="utf-8"))
    assert manifest["pdf"]["written"], manifest["pdf"]
    pdf = PdfReader(paths["report.pdf"])
    n = len(pdf.pages)
    assert n > 3
    # NFKC: the PDF's fonts set ligatures ("ﬂ" for "fl")
    pages = [unicodedata.normalize("NFKC", p.extract_text()) for p in pdf.pages]
    for i, (page, text) in enumerate(zip(pdf.pages, pages, strict=True), 1):
        w, h = float(page.mediabox.width), float(page.mediabox.height)
        assert abs(w - 595.3) < 2 and abs(h - 841.9) < 2, "not A4"
        assert f"Page {i} of {n}" in text
        assert report["contract"]["id"] in text and manifest["report_hash"][:23] in text
    flat = re.sub(r"\s+", " ", " ".join(pages))
    parser = Headings()
    parser.feed(paths["report.html"].read_text(encoding="utf-8"))
    for heading in parser.found:
        assert re.sub(r"\s+", " ", heading.strip()) in flat, heading
    # the run's time is in the printed header (not in report.html)
    assert manifest["generated_at"] in flat and "browser-test" in flat
    # every page holding per-unit rows repeats the table's header
    row = re.compile(r"^(HEMTJ|FSK|SKOLA|ADM|TEKN)-\d\d (treated|comparison)\b", re.M)
    unit_pages = [t for t in pages if row.search(t)]
    assert len(unit_pages) >= 2
    assert all("Employees (smallest" in t for t in unit_pages)
    assert "in proportion to the reduction of short-term sick days" in flat


def test_pdf_is_not_written_without_chromium(written, tmp_path, monkeypatch):
    report, _ = written
    monkeypatch.setenv("UTFALL_CHROMIUM", str(tmp_path / "missing"))
    paths = write_report(report, tmp_path / "r")
    assert "report.pdf" not in paths and not (tmp_path / "r" / "report.pdf").exists()
    assert json.loads(paths["manifest.json"].read_text())["pdf"]["reason"].startswith(
        "chromium not found"
    )
