"""Real headless Chromium (Debian's /usr/bin/chromium, driven by playwright) against what a
person opens in a browser: the nightly HTML reports and outputs/index.html straight from disk
with no network, and a real JupyterLab on loopback.

Without Chromium these tests skip (``sudo apt install chromium``); CI installs it and sets
PITOOLS_REQUIRE_BROWSER=1 (.ci/run), where a missing browser is a failure, not a skip.
Screenshots are kept in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import nbformat
import pytest

from conftest import ROOT, free_port, running_lab

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
TUNE = "notebooks/tune.ipynb"  # the widget notebook a person opens by day
REPORTS = ["01_data", "02_regime", "03_research", "04_signals", "05_report"]
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# the flags of the issue; playwright adds --headless and the fresh --user-data-dir itself
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]
AS_ROOT = os.geteuid() == 0  # CI containers run as root; the lab refuses that unless told
# schemes that never leave the machine; anything else (http, https, ws, …) is networking
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


def _unavailable(reason: str):
    """Skip on a person's machine, fail in CI: a browser test that silently skips in CI
    tests nothing."""
    if os.environ.get("PITOOLS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (PITOOLS_REQUIRE_BROWSER=1: the browser tests must run here)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM}: `sudo apt install chromium` to run the browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the `playwright` package is missing: `pip install -e .[dev]`")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_path, tmp_path_factory):
    """One headless Chromium for the module, on a fresh profile (no cookies, cache or
    settings from a person's browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_path, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def offline(browser):
    """No network for this test: every request that is not local is aborted as if the
    cable were pulled, and recorded — the reports must not even try (a CDN, a font)."""
    attempted: list[str] = []

    def handler(route, request):
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
        else:
            attempted.append(request.url)
            route.abort("internetdisconnected")

    browser.route("**/*", handler)
    try:
        yield attempted
    finally:
        browser.unroute("**/*", handler)


@contextlib.contextmanager
def _watched_page(browser):
    """A new tab that records uncaught script errors, console errors and failed loads."""
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: problems.append(f"requestfailed: {r.url} {r.failure}"))
    try:
        yield page, problems
    finally:
        page.close()


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000, f"{path} is {path.stat().st_size} bytes: a blank page?"
    return path


def _plotly_outputs(ipynb: Path) -> int:
    nb = nbformat.read(str(ipynb), as_version=4)
    return sum(PLOTLY_MIME in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


# what plotly drew, per chart div: the main SVG, and per trace group whether it holds a
# path with real geometry. Some traces are legend entries only (02_regime's regime markers
# have no point on the plot), so a chart needs one drawn group, not all of them.
_DRAWN = """() => [...document.querySelectorAll('.plotly-graph-div')].map(d => ({
    svg: d.querySelectorAll('.plot-container svg.main-svg').length,
    traces: [...d.querySelectorAll('.plot-container g.trace')].map(
        g => [...g.querySelectorAll('path')].some(p => (p.getAttribute('d') || '').length > 10)),
    data: (d.data || []).length,
    text: d.textContent.slice(0, 200),
}))"""


# ---------------------------------------------------------------- the reports, from disk

@pytest.mark.parametrize("name", REPORTS)
def test_a_report_from_disk_draws_its_charts_with_no_network(browser, offline, tiny_night, name):
    _, outputs, night = tiny_night
    run = outputs / night
    # as many charts as the executed notebook has plotly outputs (02 and 03 must have some)
    expected = _plotly_outputs(run / f"{name}.ipynb")
    if name in ("02_regime", "03_research"):
        assert expected >= 1, f"{name}.ipynb has no plotly output to render"
    with _watched_page(browser) as (page, problems):
        page.goto((run / f"{name}.html").as_uri(), wait_until="load")
        if expected:
            page.wait_for_selector(".plotly-graph-div svg.main-svg")
            # newPlot runs in the scripts of the page; wait until every chart has its SVG
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-graph-div')]"
                ".every(d => d.querySelector('.plot-container svg.main-svg'))")
        assert page.evaluate("typeof window.Plotly") == "object"  # plotly.js came from outputs/assets/
        charts = page.evaluate(_DRAWN)
        assert len(charts) == expected, charts
        for chart in charts:
            assert chart["svg"] >= 1 and "did not load" not in chart["text"], chart
            assert any(chart["traces"]), f"the chart drew no data: {chart}"
            assert len(chart["traces"]) == chart["data"], chart  # plotly made a group for every trace
        # the banner links back to the index of runs
        assert page.locator('.pitools-banner a[href="../index.html"]').count() == 1
        assert page.title() == name
        if name == "05_report":  # tables only: they are on the page
            assert page.locator("table").count() >= 1
        _screenshot(page, f"report-{name}")
        assert problems == []
    assert offline == [], f"the report tried the network: {offline}"


# ---------------------------------------------------------------- outputs/index.html

def test_the_index_lists_the_run_and_every_link_works(browser, offline, tiny_night):
    _, outputs, night = tiny_night
    index = outputs / "index.html"
    with _watched_page(browser) as (page, problems):
        page.goto(index.as_uri(), wait_until="load")
        assert page.title() == "pitools · nightly runs"
        rows = page.locator("#runs tr").filter(has=page.locator("td"))
        assert rows.count() == 1
        row = rows.first
        assert night in row.locator("td").nth(0).inner_text()
        assert row.locator("td").nth(1).inner_text().strip() == "ok"
        for name in REPORTS:  # every notebook, with its status, linked to its report
            link = row.locator(f'a[href="{night}/{name}.html"]')
            assert link.count() == 1 and link.inner_text().split() == [name, "ok"]

        # every link that leaves the page resolves to a file that opens in the browser
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
        outside = [h for h in hrefs if not h.startswith("#")]
        assert len(outside) == len(REPORTS) + 2, hrefs  # the reports, the log file, run.json
        with _watched_page(browser) as (other, other_problems):
            for href in outside:
                url = urljoin(page.url, href)
                assert urlparse(url).scheme == "file" and Path(unquote(urlparse(url).path)).is_file(), href
                response = other.goto(url, wait_until="load")
                assert response is not None and response.ok, href
                if href.endswith(".html"):
                    assert other.title() == Path(href).stem, href
                elif href.endswith(".json"):
                    assert json.loads(other.inner_text("body"))["status"] == "ok"
                else:
                    assert f"nightly {night}: ok" in other.inner_text("body")
            assert other_problems == []

        # the log link opens the CSS-only modal (:target) with the log's tail; close hides it
        modal = page.locator("#log-0")
        assert not modal.is_visible()
        page.click('a[href="#log-0"]')
        modal.wait_for(state="visible")
        assert "pitools.box.nightly: 05_report: ok" in modal.inner_text()  # the log's last lines
        modal.locator('a[href="#"]').click()
        modal.wait_for(state="hidden")

        # a report link navigates there, and its banner leads back to the index
        page.click(f'a[href="{night}/03_research.html"]')
        page.wait_for_url("**/03_research.html")
        back = page.locator('.pitools-banner a[href="../index.html"]')
        assert back.count() == 1
        back.click()
        page.wait_for_url("**/index.html")
        assert page.url == index.as_uri()
        _screenshot(page, "index")
        assert problems == []
    assert offline == [], f"the index tried the network: {offline}"


# ---------------------------------------------------------------- a real JupyterLab

def _status(url: str, token: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def _display_name(kernel: str) -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().get_kernel_spec(kernel).display_name


def _write_settings(folder: Path, plugin: str, values: dict) -> None:
    path = folder / f"{plugin}.jupyterlab-settings"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


@contextlib.contextmanager
def _lab(cfg, tmp: Path):
    """Start the server from cfg.argv/cfg.env; yield its base URL once /api answers; stop
    it and its kernels (their process group) after: SIGTERM, then SIGKILL."""
    settings = tmp / "lab-settings"
    # opening a notebook records kernel metadata, which makes it dirty: with autosave off the
    # repository's notebook cannot be rewritten; no news/update checks (toasts, network)
    _write_settings(settings, "@jupyterlab/docmanager-extension/plugin", {"autosave": False})
    _write_settings(settings, "@jupyterlab/apputils-extension/notification",
                    {"fetchNews": "false", "checkForUpdates": False})
    # nothing written under ~ (runtime files, settings, workspaces, the notebook-signing key);
    # the pitools kernelspec is in sys.prefix, which JUPYTER_DATA_DIR does not hide
    env = {**cfg.env, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"), "JUPYTER_DATA_DIR": str(tmp / "jupyter-data")}
    log_path = tmp / "lab.log"
    with running_lab(cfg, env, log_path) as (_, port):
        yield f"http://127.0.0.1:{port}", log_path


def test_jupyterlab_needs_the_token_and_opens_the_tune_notebook_with_its_kernel(browser, tmp_path):
    from playwright.sync_api import expect

    from pitools.config import load_profile
    from pitools.box.lab import lab_config

    notebook = ROOT / TUNE
    assert notebook.is_file(), f"{TUNE} is not in the repository yet"
    before = hashlib.sha256(notebook.read_bytes()).hexdigest()
    profile = load_profile("ci").replace(data_dir=str(tmp_path / "data"))
    cfg = lab_config(profile, ip="127.0.0.1", port=free_port(), allow_root=AS_ROOT, open_browser=False)
    token = cfg.token_file.read_text().strip()
    browser.clear_cookies()
    with _lab(cfg, tmp_path) as (base, log_path):
        page = browser.new_page()
        try:
            # (1) the API without the token: 403, from the browser and from plain urllib
            assert page.request.get(f"{base}/api/contents").status == 403
            assert _status(f"{base}/api/contents") == 403
            assert _status(f"{base}/api/contents", token) == 200

            # (2) the UI without the token: redirected to the login form
            page.goto(f"{base}/lab")
            page.wait_for_url("**/login**")
            assert urlparse(page.url).path == "/login"
            page.locator("input[type=password]").wait_for(state="visible")
            assert page.locator(".jp-NotebookPanel").count() == 0

            # (3) with the token: the notebook opens in the `pitools` kernel, which starts and
            # goes idle. The execution indicator says "idle" already while the panel still has
            # no kernel, so wait on the status bar's "<kernel> | <state>" instead.
            page.goto(f"{base}/lab/tree/{TUNE}?token={token}")
            page.locator(".jp-NotebookPanel").first.wait_for(state="visible", timeout=90_000)
            kernel_status = page.locator(f'.jp-StatusBar-TextItem[title="Change kernel for {Path(TUNE).name}"]')
            expect(kernel_status).to_have_text(f"{_display_name('pitools')} | Idle", timeout=90_000)
            expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
                "data-status", "idle")
            sessions = page.request.get(f"{base}/api/sessions", headers={"Authorization": f"token {token}"})
            assert sessions.status == 200
            mine = [s for s in sessions.json() if s["path"] == TUNE]
            assert len(mine) == 1, sessions.json()
            assert mine[0]["kernel"]["name"] == "pitools"
            assert mine[0]["kernel"]["execution_state"] == "idle"
            _screenshot(page, "lab-tune")
        except Exception:
            print(log_path.read_text()[-5000:])  # the server's side, shown with the failure
            raise
        finally:
            page.close()
    assert hashlib.sha256(notebook.read_bytes()).hexdigest() == before  # opened, not rewritten


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_the_lab_serves_the_nightly_reports_behind_its_login_with_their_charts(browser, tiny_night, tmp_path):
    """/pitools/box/reports/ (pitools/box/lab_reports.py): Jupyter's /files/ sandboxes HTML, so a
    report there cannot fetch the shared plotly.js with the login cookie; this one can."""
    from pitools.config import load_profile
    from pitools.box.lab import lab_config

    data, outputs, night = tiny_night
    profile = load_profile("ci").replace(data_dir=str(tmp_path / "data"))
    cfg = lab_config(profile, ip="127.0.0.1", port=free_port(), root=data, allow_root=AS_ROOT, open_browser=False)
    token = cfg.token_file.read_text().strip()
    browser.clear_cookies()
    with _lab(cfg, tmp_path) as (base, log_path):
        report = f"{base}/pitools/box/reports/{night}/02_regime.html"
        # not logged in: sent to the login page, never the report
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as refused:
            opener.open(report, timeout=10)
        assert refused.value.code == 302 and "/login" in refused.value.headers["Location"]
        with urllib.request.urlopen(urllib.request.Request(report, headers={"Authorization": f"token {token}"}),
                                    timeout=10) as resp:
            assert resp.status == 200 and "sandbox" not in resp.headers["Content-Security-Policy"]
        page = browser.new_page()
        try:
            page.goto(f"{base}/lab?token={token}")  # logs in: the cookie is what a person has
            page.goto(f"{base}/pitools/box/reports/")
            page.locator("#runs").wait_for()
            assert night in page.locator("#runs").inner_text()
            page.click(f'a[href="{night}/02_regime.html"]')
            page.wait_for_selector(".plotly-graph-div svg.main-svg")
            assert page.evaluate("typeof window.Plotly") == "object"
            _screenshot(page, "lab-report")
        except Exception:
            print(log_path.read_text()[-5000:])
            raise
        finally:
            page.close()
