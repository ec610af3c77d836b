"""The dashboard in a real browser: ``python -m nas dashboard`` as a subprocess on a free
loopback port, Debian's headless chromium driven by Selenium (chromium-driver); then the HTML
report of a hostile study opened in the same browser from a file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from db import Store
from nas._figures import PLOTLY_JS
from nas.models import to_dict
from search_spaces import load_space

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script>"
HOSTILE_MIXER = "<b>b</b><img src=x onerror=alert(2)>"  # Plotly renders <b>
#: the hostile study's one run, cell by cell, as the dashboard and the report show it
RUN_CELLS_JS = "return [...document.querySelectorAll('#runs-table td')].map(e => e.textContent)"


def _check_run_cells(cells: list[str]) -> None:
    """The hostile study's one run: started and wall time vary, the rest is exact text."""
    assert len(cells) == 8 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", cells[2]) \
        and re.fullmatch(r"\d+\.\d s", cells[3]), cells
    assert cells[:2] + cells[4:] == [
        "#1", "failed", "h:1", "3",
        "run_search.py --study '<script>alert(1)</script>' --db 'postgresql://u:***@h/db'",
        HOSTILE_MIXER], cells
OBJECTIVES = ("accuracy:max", "macs:min")
#: (accuracy, MACs in G) of the COMPLETE trials of study 'search'; trial 3 is the best
SEARCH = [(0.60, 0.4), (0.65, 0.9), (0.62, 1.3), (0.71, 2.0), (0.55, 0.3), (0.68, 1.1)]


def _curve(acc: float) -> list[list[dict]]:
    return [[{"epoch": e, "epochs": 2, "train_loss": 2.0 / e, "train_accuracy": acc - 0.1 / e,
              "seconds": 3.0, "val_accuracy": acc - 0.05 * (2 - e), "val_loss": 1.5 / e}
             for e in (1, 2)]]


def _complete(store: Store, study_id: int, i: int, acc: float, gmacs: float,
              arch: dict, params: dict, run_id: int | None = None) -> None:
    t = store.start_trial(study_id, key=f"k{i}", arch_hash=f"{i:016x}", arch=arch,
                          params=params, run_id=run_id)
    store.finish_trial(t.id, state="COMPLETE", accuracy=acc, accuracy_se=0.004,
                       test_accuracy=acc - 0.01, macs=int(gmacs * 1e9), params_count=5_000_000,
                       metrics={"curve": _curve(acc), "acts": 10**6, "repeats": 1,
                                "device": "cpu", "train_seconds": 6.0})


def _fill(url: str) -> None:
    """The hostile study first (so 'search', created last, is shown first)."""
    space = load_space("tiny")
    archs = [(to_dict(a), p) for a, p in (space.sample_random(i) for i in range(9))]
    with Store(url) as w:
        bad = w.get_or_create_study(HOSTILE, space="tiny", space_hash="h",
                                    objectives=OBJECTIVES, config={})
        run = w.begin_run(bad.id, config={}, argv=["run_search.py", "--study", HOSTILE,
                                                   "--db", "postgresql://u:secret@h/db"],
                          versions={}, host="h", pid=1)
        for i, (acc, g) in enumerate([(0.6, 0.5), (0.7, 1.0), (0.65, 2.0)]):
            arch = {**archs[i][0], "stages": [dict(s) for s in archs[i][0]["stages"]]}
            arch["stages"][0]["mixer"] = HOSTILE_MIXER
            _complete(w, bad.id, i, acc, g, arch, archs[i][1], run.id)
        w.end_run(run.id, "failed", HOSTILE_MIXER)
        s = w.get_or_create_study("search", space="tiny", space_hash="h",
                                  objectives=OBJECTIVES, config={})
        for i, (acc, g) in enumerate(SEARCH):
            _complete(w, s.id, i, acc, g, *archs[i])
        failed = w.start_trial(s.id, key="fail", arch_hash="f" * 16, arch=archs[6][0],
                               params=archs[6][1])
        w.finish_trial(failed.id, state="FAIL", error="RuntimeError: <b>boom</b> & more")
        pruned = w.start_trial(s.id, key="pruned", arch_hash="e" * 16, arch=archs[7][0],
                               params=archs[7][1])
        w.finish_trial(pruned.id, state="PRUNED", macs=10**9,
                       metrics={"pruned_at_epoch": 1, "curve": _curve(0.4)})
        w.start_trial(s.id, key="running", arch_hash="d" * 16, arch=archs[8][0],
                      params=archs[8][1])


def _driver(temp: str):
    """Headless Chromium; its own temporary files (the singleton socket's folder, which a
    browser that chromedriver ends leaves behind) go to ``temp``, a short path: a socket's
    path must stay under 108 bytes."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        reason = ("Debian's chromium and chromium-driver are not installed (make setup installs "
                  "them when root: apt-get install chromium chromium-driver)")
        if os.environ.get("NAS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser required (NAS_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts,
                            service=Service(driver, env={**os.environ, "TMPDIR": temp}))


def _wait(driver, js: str, ok, what: str, *args, timeout: float = 60.0):
    t0, v = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        v = driver.execute_script(js, *args)
        if ok(v):
            return v
        time.sleep(0.05)
    raise AssertionError(f"{what}: not seen within {timeout} s (last value {v!r})")


#: the trial numbers of the drawn points (SVG) of the scatter's trial traces (not the rings
#: around front members), read from each point's data
POINTS_JS = """
const out = [];
for (const p of document.querySelectorAll('#pareto .scatterlayer path.point')) {
  const trace = p.closest('g.trace').__data__[0].trace;
  if (trace.meta === 'trials') out.push(trace.customdata[p.__data__.i][0]);
}
return out;
"""
#: the drawn trial points, in the order of POINTS_JS
POINT_ELEMENTS_JS = """
return [...document.querySelectorAll('#pareto .scatterlayer path.point')].filter(
  p => p.closest('g.trace').__data__[0].trace.meta === 'trials');
"""
TEXT_JS = "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;"
BUSY_JS = "return !!document.querySelector('[data-dash-is-loading=\"true\"]');"


def _start(url: str, log: Path) -> tuple[subprocess.Popen, str]:
    """The dashboard on a free port; its stderr goes to ``log`` (a pipe nobody reads could
    fill and stall it)."""
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--db", url,
                                 "--port", "0", "--refresh", "0.5"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    line = proc.stdout.readline()
    if " on http://127.0.0.1:" not in line:
        proc.kill()
        proc.wait()
        raise AssertionError(f"dashboard did not start: {line!r} {log.read_text()[-2000:]}")
    return proc, line.split(" on ", 1)[1].split()[0]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@contextlib.contextmanager
def _dashboard(url: str, tmp_path: Path):
    """The test studies written to ``url``, the dashboard serving them and a browser: (driver,
    page URL); afterwards, the server's stderr must hold no traceback."""
    _fill(url)
    log = tmp_path / "dashboard.log"
    with contextlib.ExitStack() as stack:
        temp = tempfile.mkdtemp(prefix="nas-chromium-")
        stack.callback(shutil.rmtree, temp, ignore_errors=True)
        driver = _driver(temp)
        stack.callback(driver.quit)
        proc, page = _start(url, log)
        stack.callback(_stop, proc)
        yield driver, page
    err = log.read_text()
    assert "Traceback" not in err, err[-3000:]


def test_dashboard_and_report_in_headless_chromium(tmp_path: Path) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    with _dashboard(url, tmp_path) as (driver, page):
        # ---- the page loads, one point per completed trial, everything from this server
        driver.get(page)
        numbers = _wait(driver, POINTS_JS, lambda v: len(v) >= len(SEARCH), "scatter points")
        assert sorted(numbers) == list(range(len(SEARCH))), (
            f"expected one point per COMPLETE trial {list(range(len(SEARCH)))}, got {numbers}")
        assert driver.execute_script(TEXT_JS, "#study-title") == "search"
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        foreign = [r for r in resources if not r.startswith(page)]
        assert not foreign, f"resources from elsewhere than {page}: {foreign}"
        plotly = [r for r in resources if "plotly" in r.rsplit("/", 1)[-1]]
        assert plotly == [f"{page.split('?')[0].rstrip('/')}/_nas/{PLOTLY_JS.name}"], (
            f"plotly.js must be our partial bundle, once: {plotly}")
        _wait(driver, "return document.querySelectorAll('#hv .scatterlayer .trace').length",
              lambda v: v == 1, "the hypervolume curve (the tab open first)")

        # ---- hover shows the architecture; a click opens the trial
        best = SEARCH.index(max(SEARCH))
        point = driver.execute_script(POINT_ELEMENTS_JS)[numbers.index(best)]
        ActionChains(driver).move_to_element(point).perform()
        hover = _wait(driver, TEXT_JS, lambda v: bool(v), "hover label",
                      "#pareto .hoverlayer .hovertext")
        assert hover.startswith(f"#{best}") and "depths" in hover and "widths" in hover, hover
        ActionChains(driver).move_to_element(point).click().perform()
        title = _wait(driver, TEXT_JS, lambda v: bool(v), "trial panel", "#trial-title")
        assert title.startswith(f"Trial #{best} · COMPLETE"), title
        command = driver.execute_script(TEXT_JS, "#export-command")
        assert command == (f"python -m nas export --db {url} --study search --trial {best} "
                           f"--out exports/search-{best}"), command
        _wait(driver, "return document.querySelectorAll('#trial-curve .scatterlayer .trace')"
                      ".length", lambda v: v == 3, "the trial's curve (loss, train, val acc)")

        # ---- the importance tab draws with our bundle (a dot plot: it has no bar traces)
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Importance']").click()
        _wait(driver, "return document.querySelectorAll('#importance .scatterlayer .point')"
                      ".length", lambda v: v >= 1, "the importance dots")

        # ---- the table (built when its tab opens) opens a trial too, shows an error as text
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Trials']").click()
        _wait(driver, "return document.querySelectorAll('#grid .ag-row').length",
              lambda v: v == len(SEARCH) + 3, "the table's rows (every trial)")
        cell = driver.find_element(By.CSS_SELECTOR,
                                   f"#grid .ag-row[row-id='{len(SEARCH)}'] .ag-cell")
        cell.click()
        _wait(driver, TEXT_JS, lambda v: v and v.startswith(f"Trial #{len(SEARCH)} · FAIL"),
              "the failed trial's panel", "#trial-title")
        assert driver.execute_script(TEXT_JS, "#trial pre.error") == \
            "RuntimeError: <b>boom</b> & more"

        # ---- a search writes a trial: it appears without a reload
        with Store(url) as w:
            first = w.trials("search")[0]
            _complete(w, first.study_id, 99, 0.74, 3.0, first.arch, first.params)
        numbers = _wait(driver, POINTS_JS, lambda v: len(v) == len(SEARCH) + 1,
                        "the new trial's point")
        assert max(numbers) == len(SEARCH) + 3, numbers  # after FAIL, PRUNED and RUNNING

        # ---- a hostile study name (and architecture field) shows as text
        links = driver.find_elements(By.CSS_SELECTOR, "#studies a")
        [link] = [a for a in links if a.text == HOSTILE]
        link.click()
        _wait(driver, TEXT_JS, lambda v: v == HOSTILE, "the hostile study's title",
              "#study-title")
        _wait(driver, POINTS_JS, lambda v: len(v) == 3, "the hostile study's points")
        _wait(driver, BUSY_JS, lambda v: not v, "callbacks to finish")
        gtitle = driver.execute_script(TEXT_JS, "#pareto .gtitle")
        assert gtitle.startswith(HOSTILE + " · Pareto front"), gtitle
        legend = driver.execute_script(
            "return [...document.querySelectorAll('#pareto .legendtext')].map(e => e.textContent)")
        assert any(t.startswith(HOSTILE_MIXER + "/") for t in legend), legend
        # its runs tab: the command as typed (password masked) and the message, as text
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Runs']").click()
        _check_run_cells(_wait(driver, RUN_CELLS_JS, lambda v: len(v or []) == 8,
                               "the runs table"))
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert  # an injected script would have opened one

        # ---- the report of the hostile study, offline and escaped
        out = tmp_path / "report.html"
        r = subprocess.run([sys.executable, "-m", "nas", "report", "--db", url, "--study",
                            HOSTILE, "-o", str(out)], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        driver.get(out.as_uri())
        _wait(driver, POINTS_JS, lambda v: sorted(v or []) == [0, 1, 2], "report points")
        assert driver.execute_script(TEXT_JS, "#study-title") == HOSTILE
        assert driver.execute_script(TEXT_JS, "#pareto .gtitle").startswith(HOSTILE)
        _check_run_cells(driver.execute_script(RUN_CELLS_JS.replace("#runs-table", "#runs")))
        resources = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == [], f"the report loaded {resources}"
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert


def test_dashboard_on_postgresql_in_headless_chromium(pg_database_url: str,
                                                      tmp_path: Path) -> None:
    """The same page over a real PostgreSQL server (read-only connection): every completed
    trial drawn, a click opening its trial, the table filled."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with _dashboard(pg_database_url, tmp_path) as (driver, page):
        driver.get(page)
        numbers = _wait(driver, POINTS_JS, lambda v: len(v) >= len(SEARCH), "scatter points")
        assert sorted(numbers) == list(range(len(SEARCH))), numbers
        best = SEARCH.index(max(SEARCH))
        point = driver.execute_script(POINT_ELEMENTS_JS)[numbers.index(best)]
        ActionChains(driver).move_to_element(point).click().perform()
        title = _wait(driver, TEXT_JS, lambda v: bool(v), "trial panel", "#trial-title")
        assert title.startswith(f"Trial #{best} · COMPLETE"), title
        driver.find_element(By.XPATH, "//*[normalize-space(text())='Trials']").click()
        _wait(driver, "return document.querySelectorAll('#grid .ag-row').length",
              lambda v: v == len(SEARCH) + 3, "the table's rows (every trial)")
        assert "postgresql" in driver.execute_script(TEXT_JS, ".header")
