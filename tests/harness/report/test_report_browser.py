"""Open a generated report in headless Chromium and fail on console errors or failed loads.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (fds 3/4, NUL-
delimited JSON), so no websocket library or network port is needed. Skipped only when Chromium
is not installed.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.report.publish import build_site
from harness.report.build import build_report
from harness.specs import load_spec
from tests.harness.report_frames import frame_for_spec

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe", "--allow-file-access-from-files", "--window-size=1280,2000"]
SCREENSHOT_DIR = Path(os.environ.get("FERBENCH_SCREENSHOTS", "/tmp/ferbench-report-screenshots"))


class Browser:
    """A tiny DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, user_data_dir: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():  # chromium reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)  # the pipes may sit on fds 3/4 already
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=child_fds, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._cond:
                        self._replies[msg["id"]] = msg
                        self._cond.notify_all()
                else:
                    self.events.put(msg)

    def call(self, method: str, params: dict | None = None, *, session: bool = False, timeout: float = 30) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: msg["id"] in self._replies, timeout):
                raise TimeoutError(f"no reply to {method}")
            reply = self._replies.pop(msg["id"])
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def drain(self) -> list[dict]:
        out = []
        while not self.events.empty():
            out.append(self.events.get())
        return out

    def open(self, url: str, timeout: float = 30) -> list[dict]:
        """Navigate, wait for the load event and a quiet moment; return the problems seen."""
        self.drain()
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = time.time() + timeout
        events, loaded = [], False
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=0.3)
            except queue.Empty:
                if loaded:
                    break
                continue
            events.append(ev)
            loaded = loaded or ev.get("method") == "Page.loadEventFired"
        assert loaded, f"{url} did not finish loading"
        self.seen = events
        return [p for p in map(problem, events) if p]

    def requested(self) -> list[str]:
        """The URLs the last page asked for (documents, images, stylesheets, scripts, fetches)."""
        return [e["params"]["request"]["url"] for e in self.seen if e.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        return res["result"].get("value")

    def screenshot(self, path: Path) -> None:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": min(height, 6000), "deviceScaleFactor": 1, "mobile": False},
                  session=True)
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        path.write_bytes(base64.b64decode(data))
        self.call("Emulation.clearDeviceMetricsOverride", session=True)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)


def problem(ev: dict) -> str | None:
    """A console error, an uncaught exception or a failed resource load, as text; else None."""
    m, p = ev.get("method"), ev.get("params", {})
    if m == "Runtime.exceptionThrown":
        return f"exception: {p['exceptionDetails'].get('text')}"
    if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
        return f"console.{p['type']}: {[a.get('value') for a in p.get('args', [])]}"
    if m == "Log.entryAdded" and p["entry"].get("level") == "error":
        return f"log error: {p['entry'].get('text')} {p['entry'].get('url', '')}"
    if m == "Network.loadingFailed" and not p.get("canceled"):
        return f"load failed: {p.get('errorText')} ({p.get('type')})"
    if m == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
        return f"HTTP {p['response']['status']}: {p['response'].get('url')}"
    return None


DOM_PROBE = """JSON.stringify({
  tables: document.querySelectorAll('table').length,
  paperTables: document.querySelectorAll('table.paper-table').length,
  paperRows: Array.from(document.querySelectorAll('table.paper-table tbody tr')).length,
  figures: document.querySelectorAll('figure img').length,
  brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
  banner: !!document.querySelector('.synthetic-banner'),
  verdicts: document.querySelectorAll('td[class*="v-"]').length,
  external: Array.from(document.querySelectorAll('[src],[href]')).map(e => e.getAttribute('src') || e.getAttribute('href')).filter(u => /^(https?:)?\\/\\//.test(u)),
  text: document.body.innerText.length
})"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    specs = [load_spec("apvit_tab5"), load_spec("apvit_tab13"), load_spec("apvit_fig5")]
    frame = pd.concat([frame_for_spec(s, synthetic=s.id == "apvit_fig5", n_samples=200,
                                      failed={("MAX / SUM", "rafdb", 2): "RuntimeError: <boom> & co"}
                                      if s.id == "apvit_tab5" else None) for s in specs], ignore_index=True)
    bench = pd.DataFrame({"name": ["apvit", "apvit_baseline"], "machine": ["cpu", "cpu"], "median_ms": [40.0, 51.0],
                          "iqr_ms": [1.0, 2.0], "rounds": [10, 10], "batch": [1, 1], "gflops": [12.67, 15.3]})
    out = tmp_path_factory.mktemp("report")
    build_report(frame, specs, out, benchmarks=bench)
    return out


def test_index_renders_without_errors(browser, report_dir):
    problems = browser.open((report_dir / "index.html").as_uri())
    assert problems == []
    dom = json.loads(browser.evaluate(DOM_PROBE))
    assert dom["brokenImages"] == [] and dom["external"] == []
    assert dom["banner"], "synthetic results must raise the banner"
    assert dom["tables"] >= 5 and dom["figures"] >= 1  # overview, datasets, packages, ledger, notes; latency
    text = browser.evaluate("document.body.innerText")
    for needle in ("Failure ledger (1)", "Methods notes", "Holm", "Kendall", "<boom> & co", "apvit_fig5"):
        assert needle in text
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SCREENSHOT_DIR / "index.png")


@pytest.mark.parametrize("table_id,rows,figures", [("apvit_tab5", 6, 2), ("apvit_tab13", 7, 3), ("apvit_fig5", 25, 3)])
def test_table_page_renders_table_and_figures(browser, report_dir, table_id, rows, figures):
    problems = browser.open((report_dir / f"{table_id}.html").as_uri())
    assert problems == []
    dom = json.loads(browser.evaluate(DOM_PROBE))
    assert dom["paperTables"] == 1 and dom["paperRows"] == rows
    assert dom["figures"] >= figures and dom["brokenImages"] == [] and dom["external"] == []
    assert dom["verdicts"] > 0
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SCREENSHOT_DIR / f"{table_id}.png")


def test_the_probe_catches_errors(browser, tmp_path):
    """The checks above would fail on a broken page: missing image and a console error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
    problems = browser.open(bad.as_uri())
    assert any("console.error" in p for p in problems), problems
    assert any("load failed" in p for p in problems), problems
    assert json.loads(browser.evaluate(DOM_PROBE))["brokenImages"]


# --- the published site: methods compared, claims ledger, interactive tables ---------------------------

LINKS = """JSON.stringify(Array.from(document.querySelectorAll('a[href]')).map(a => a.href))"""
IDS = """JSON.stringify(Array.from(document.querySelectorAll('[id]')).map(e => e.id))"""


def _column(table: str, header: str) -> str:
    """JS: the visible cells' text of the column whose header starts with ``header``."""
    return f"""(() => {{
      const t = document.getElementById('{table}');
      const heads = Array.from(t.querySelectorAll('thead th'));
      const i = heads.findIndex(h => h.innerText.trim().startsWith('{header}') ||
                                     ((h.querySelector('input') || {{}}).placeholder || '').startsWith('{header}'));
      return JSON.stringify(Array.from(t.querySelectorAll('tbody tr')).map(r => r.cells[i].innerText.trim()));
    }})()"""


def _ready(browser: Browser, table: str, timeout: float = 20) -> None:
    """Wait until DataTables has built ``table`` (itables loads it asynchronously after the page)."""
    deadline = time.time() + timeout
    while not browser.evaluate(f"!!document.querySelector('#{table}.dataTable thead th')"):
        assert time.time() < deadline, f"#{table} never became a DataTable"
        time.sleep(0.2)


def _sort(table: str, header: str) -> str:
    """JS: click the ordering icon of a header (the title holds the column's filter box, so only the icon sorts)."""
    return f"{_header(table, header)}.querySelector('.dt-column-order').click()"


def _header(table: str, header: str) -> str:
    return f"""Array.from(document.getElementById('{table}').querySelectorAll('thead th'))
      .find(h => ((h.querySelector('input') || {{}}).placeholder || '').startsWith('{header}'))"""


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    specs = [load_spec("apvit_tab7"), load_spec("apvit_tab13")]
    frame = pd.concat([frame_for_spec(s, synthetic=True, n_samples=150) for s in specs], ignore_index=True)
    bench = pd.DataFrame({"name": ["APViT", "APViT", "TransFER"], "machine": ["cpu"] * 3, "kind": ["latency"] * 3,
                          "preset": ["paper"] * 3, "batch": [1, 32, 1], "threads": [2] * 3,
                          "model": ["apvit", "apvit", "transfer"], "overrides": ["{}"] * 3,
                          "family": ["apvit", "apvit", "transfer"], "is_baseline": [True, True, True],
                          "median_ms": [150.0, 5000.0, 230.0], "iqr_ms": [1.0, 9.0, 2.0], "rounds": [5] * 3,
                          "gflops": [12.67, 12.67, 15.3]})
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(out, frame, specs, benchmarks=bench, command="python -m harness publish --out site")
    return out


@pytest.mark.parametrize("page", ["index.html", "claims.html", "apvit_tab7.html", "apvit_tab13.html"])
def test_site_pages_load_nothing_outside_and_every_link_resolves(browser, site_dir, page):
    problems = browser.open((site_dir / page).as_uri())
    assert problems == []
    root = site_dir.as_uri() + "/"
    outside = [u for u in browser.requested() if not (u.startswith(root) or u.startswith(("blob:", "data:")))]
    assert outside == []
    ids = set(json.loads(browser.evaluate(IDS)))
    links = json.loads(browser.evaluate(LINKS))
    assert links
    for url in links:
        assert url.startswith(root), f"{page}: link outside the site: {url}"
        path, _, frag = url[len(root):].partition("#")
        assert (site_dir / path).is_file(), f"{page}: {url} does not resolve"
        if frag and path == page:
            assert frag in ids, f"{page}: no element #{frag}"
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    browser.screenshot(SCREENSHOT_DIR / f"site-{page}.png")


def test_methods_table_lists_both_methods_and_sorts_and_filters(browser, site_dir):
    assert browser.open((site_dir / "index.html").as_uri()) == []
    _ready(browser, "methods_table")
    assert json.loads(browser.evaluate(_column("methods_table", "Method"))) == ["APViT", "APViT", "TransFER", "TransFER"]
    paper = json.loads(browser.evaluate(_column("methods_table", "Paper")))
    assert sorted(paper) == sorted(["91.98", "66.91", "90.91", "66.23"])
    lat = json.loads(browser.evaluate(_column("methods_table", "Latency b1")))
    assert lat == ["150.0", "150.0", "230.0", "230.0"]
    assert json.loads(browser.evaluate(_column("methods_table", "GFLOPs (paper)"))) == ["12.67", "12.67", "15.30", "15.30"]
    # Sort: a click on a header sorts ascending, a second click descending.
    browser.evaluate(_sort("methods_table", "Paper"))
    asc = [float(x) for x in json.loads(browser.evaluate(_column("methods_table", "Paper")))]
    assert asc == sorted(asc)
    browser.evaluate(_sort("methods_table", "Paper"))
    desc = [float(x) for x in json.loads(browser.evaluate(_column("methods_table", "Paper")))]
    assert desc == sorted(asc, reverse=True)
    # Filter: the search box over all columns, then one column's box.
    browser.evaluate("""(() => { const i = document.querySelector('#methods_table_wrapper .dt-search input');
                         i.value = 'TransFER'; i.dispatchEvent(new Event('input')); })()""")
    assert json.loads(browser.evaluate(_column("methods_table", "Method"))) == ["TransFER", "TransFER"]
    browser.evaluate(f"""(() => {{ const i = {_header('methods_table', 'Dataset')}.querySelector('input');
                         i.value = 'AffectNet'; i.dispatchEvent(new Event('change')); }})()""")
    assert json.loads(browser.evaluate(_column("methods_table", "Dataset"))) == ["AffectNet"]


def test_claims_ledger_filters_by_verdict_and_links_to_tables(browser, site_dir):
    assert browser.open((site_dir / "claims.html").as_uri()) == []
    _ready(browser, "claims_table")
    verdicts = json.loads(browser.evaluate(_column("claims_table", "Verdict")))
    assert len(verdicts) == 7  # Table 7: 2 rows x 2 datasets; Table 13: 3 rows; reference rows are not claims
    text = browser.evaluate("document.body.innerText")
    assert "APViT: 7 claims" in text
    target = next(v for v in verdicts if v)
    name = target.split(" (")[0]
    browser.evaluate(f"""(() => {{ const i = {_header('claims_table', 'Verdict')}.querySelector('input');
                         i.value = '{name}'; i.dispatchEvent(new Event('change')); }})()""")
    shown = json.loads(browser.evaluate(_column("claims_table", "Verdict")))
    assert shown and all(v.startswith(name) for v in shown)
    assert len(shown) == sum(v.startswith(name) for v in verdicts)
    tables = json.loads(browser.evaluate(_column("claims_table", "Table")))
    assert all(t.startswith("Table ") for t in tables)
