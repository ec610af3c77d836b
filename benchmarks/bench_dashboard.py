"""Time to a ready dashboard page on a large study, in headless chromium.

Writes a study of ``-n`` synthetic trials through ``db.Store`` (the way a search records them:
``start_trial`` then ``finish_trial`` with a ``TrialResult``'s columns and metrics), starts
``python -m nas dashboard`` on it as a subprocess on a free loopback port, and loads the page in
headless chromium (Selenium, Debian's chromium-driver). Ready means: every Dash callback has
answered, the scatter holds one point per COMPLETE trial and has drawn its legend, the
hypervolume curve (the tab open first) is drawn and the study summary is there. The server reads
and analyses the study before it prints its URL, as ``python -m nas dashboard`` does. First
visits: ``--cold`` loads, each in a new browser with an empty profile (nothing cached, nothing
compiled); then ``--reloads`` more loads in one browser, which caches the scripts and, from
the third load on, their compiled code. It then opens the lazy tabs (the trial table, design
EDFs, importance) one after another and times each until it is drawn, and prints the
server-side parts measured in-process, including what a refresh costs after a running search
recorded one more trial.

The trials: architectures drawn with ``space.sample_random`` from ``--space`` (default
``hybrid_conv_attn``, 12 mixer patterns), their full-model cost from the analytic cost model;
the accuracy a smooth function of log MACs plus a per-pattern offset and binomial-sized noise,
its binomial standard error on 2,000 validation images, a 3-epoch curve; about 86% COMPLETE,
the rest FAIL, DUPLICATE, INFEASIBLE and PRUNED, as in a real search. The database is kept
under ``--out`` and reused when it already holds the study (``--fresh`` rebuilds it).

Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_dashboard.py                       # 10,000 trials
    .venv/bin/python benchmarks/bench_dashboard.py -n 2000 --reloads 5
    .venv/bin/python benchmarks/bench_dashboard.py --screenshot docs/dashboard.png
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import Store  # noqa: E402
from nas.results import DEFAULT_OBJECTIVES, TrialResult, objective_names  # noqa: E402

_STATES = [("COMPLETE", 0.86), ("FAIL", 0.04), ("DUPLICATE", 0.05), ("INFEASIBLE", 0.03),
           ("PRUNED", 0.02)]
_MIXER_EFFECT = {"identity": -0.03, "pooling": -0.01, "sepconv": 0.01, "attention": 0.02,
                 "ufo": 0.015, "random": -0.02, "convmixer": 0.0}


def _result(rng: random.Random, macs: int, params: int, acts: int, mixers: list[str]
            ) -> TrialResult:
    quality = 0.52 + 0.07 * math.log10(macs / 1e8) + sum(_MIXER_EFFECT.get(m, 0.0)
                                                         for m in mixers) / 2
    p = min(0.97, max(0.1, quality + rng.gauss(0, 0.012)))
    se = math.sqrt(p * (1 - p) / 2000)
    test = min(0.99, max(0.05, p + rng.gauss(0, se)))
    curve, loss = [], 2.3
    for e in range(1, 4):
        loss *= rng.uniform(0.55, 0.75)
        curve.append({"epoch": e, "epochs": 3, "train_loss": loss,
                      "train_accuracy": p * (0.6 + 0.13 * e), "seconds": rng.uniform(3, 9),
                      "val_accuracy": p * (0.8 + 0.066 * e) if e < 3 else p,
                      "val_loss": loss * 1.1})
    seconds = sum(c["seconds"] for c in curve)
    return TrialResult(
        accuracy=p, accuracy_se=se, test_accuracy=test, macs=macs, params=params, acts=acts,
        proxy_macs=macs // 180, proxy_params=params // 60, accuracy_std=None, binomial_se=se,
        test_accuracy_se=se, accuracies=(p,), test_accuracies=(test,), repeats=1,
        val_loss=curve[-1]["val_loss"], num_val=2000, num_test=2000,
        final_train_loss=curve[-1]["train_loss"], train_loss_sum=sum(c["train_loss"]
                                                                      for c in curve),
        steps=282, train_seconds=seconds, eval_seconds=0.8, count_seconds=0.2,
        images_per_second=6000 * 3 / seconds, total_seconds=seconds + 1.0, device="cpu",
        curve=[curve])


def make_study(url: str, study: str, n: int, *, space_name: str = "hybrid_conv_attn",
               seed: int = 0) -> None:
    """Record ``n`` synthetic trials (see the module docstring) in a new study."""
    from nas.models import analytic_cost, arch_hash, to_dict
    from search_spaces import load_space

    space = load_space(space_name)
    rng = random.Random(seed)
    states, weights = zip(*_STATES)
    with Store(url) as store:
        rec = store.get_or_create_study(
            study, space=space.name, space_hash=space.hash,
            objectives=objective_names(DEFAULT_OBJECTIVES),
            config={"epochs": 3, "batch_size": 64, "dataset": "clutter", "synthetic": True})
        for i in range(n):
            arch, params = space.sample_random(seed * 1_000_003 + i, feasible=False)
            cost = analytic_cost(arch)
            trial = store.start_trial(rec.id, key=f"synthetic:{i}", arch_hash=arch_hash(arch),
                                      arch=to_dict(arch), params=params)
            state = rng.choices(states, weights)[0]
            if state == "COMPLETE":
                r = _result(rng, cost.macs, cost.params, cost.acts,
                            [s.mixer for s in arch.stages])
                store.finish_trial(trial.id, state=state, metrics=r.metrics(), **r.columns())
            elif state == "FAIL":
                store.finish_trial(trial.id, state=state,
                                   error="RuntimeError: training diverged: non-finite loss in "
                                         f"epoch {rng.randint(1, 3)}")
            elif state == "PRUNED":
                store.finish_trial(trial.id, state=state, macs=cost.macs,
                                   params_count=cost.params,
                                   metrics={"pruned_at_epoch": 1,
                                            "pruned_val_accuracy": rng.uniform(0.3, 0.5)})
            else:
                store.finish_trial(trial.id, state=state,
                                   error="duplicate of an earlier trial" if state == "DUPLICATE"
                                   else f"max_macs exceeded: {cost.macs / 1e9:.2f} G")


def start_dashboard(url: str, *, refresh_s: float = 5.0) -> tuple[subprocess.Popen, str]:
    """``python -m nas dashboard`` on a free loopback port; (process, page URL) once it serves."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "nas", "dashboard", "--db", url, "--port",
                             "0", "--refresh", str(refresh_s)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=env)  # stderr: ours
    line = proc.stdout.readline()
    if " on http://" not in line:
        proc.kill()
        raise RuntimeError(f"the dashboard did not start: {line!r} (its error is above)")
    return proc, line.split(" on ", 1)[1].split()[0]


def chromium(width: int = 1500, height: int = 1100):
    """Headless chromium driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--enable-unsafe-swiftshader",
                "--use-angle=swiftshader"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


#: JavaScript: the number of scatter points once the page is ready, else -1
READY_JS = """
const gd = document.querySelector('#pareto .js-plotly-plot');
if (!gd || !gd.data || !gd._fullLayout || !gd.querySelector('.legend')) return -1;
if (document.querySelector('[data-dash-is-loading="true"]')) return -1;
if (!document.querySelector('#study-summary')) return -1;
const hv = document.querySelector('#hv .js-plotly-plot');
if (!hv || !hv.data || !hv.data.length || !hv._fullLayout) return -1;
let n = 0;
for (const tr of gd.data) if (tr.meta === 'trials') n += tr.x.length;
return n;
"""


def wait_for(driver, js: str, ok, timeout: float = 120.0, *args):
    t0 = time.perf_counter()
    while True:
        v = driver.execute_script(js, *args)
        if ok(v):
            return v, time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"not ready after {timeout} s (last: {v!r})")
        time.sleep(0.02)


def time_to_ready(driver, page: str, expected: int) -> tuple[float, float]:
    """(seconds from ``driver.get`` to ready, milliseconds from the page's navigation start)."""
    driver.get("about:blank")  # not timed: the previous page's teardown
    t0 = time.perf_counter()
    driver.get(page)
    wait_for(driver, READY_JS, lambda v: v == expected)
    wall = time.perf_counter() - t0
    return wall, driver.execute_script("return performance.now()")


_TAB_JS = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd.data || !gd.data.length || !gd._fullLayout) return false;
return !document.querySelector('[data-dash-is-loading="true"]');
"""


def time_tab(driver, label: str, graph: str) -> float:
    from selenium.webdriver.common.by import By

    t0 = time.perf_counter()
    driver.find_element(By.XPATH, f"//*[normalize-space(text())='{label}']").click()
    wait_for(driver, _TAB_JS, bool, 600.0, graph)
    return time.perf_counter() - t0


def time_grid(driver) -> float:
    """Open the Trials tab: until the table shows rows (it is built when opened)."""
    from selenium.webdriver.common.by import By

    t0 = time.perf_counter()
    driver.find_element(By.XPATH, "//*[normalize-space(text())='Trials']").click()
    wait_for(driver, "return !!document.querySelector('#grid .ag-row') && "
                     "!document.querySelector('[data-dash-is-loading=\"true\"]')", bool, 600.0)
    return time.perf_counter() - t0


def server_parts(url: str, study: str) -> dict[str, float]:
    """Seconds of each server-side step, measured in this process (the last: bringing the
    snapshot up to date after a search recorded one more trial, on a copy of the database)."""
    import shutil
    import tempfile

    from nas._figures import pareto_figure
    from nas._snapshot import load_snapshot

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "nas.db"
        for suffix in ("", "-wal"):  # the database and what it has not checkpointed yet
            if Path(url.removeprefix("sqlite:///") + suffix).exists():
                shutil.copy(url.removeprefix("sqlite:///") + suffix, f"{copy}{suffix}")
        with Store(f"sqlite:///{copy}", read_only=True) as store:
            snap = load_snapshot(store, study)
            with Store(f"sqlite:///{copy}") as writer:
                last = snap.trials[-1]
                t = writer.start_trial(last.study_id, key="one-more", arch_hash=last.arch_hash,
                                       arch=last.arch, params=last.params)
                writer.finish_trial(t.id, state="COMPLETE", accuracy=0.7, accuracy_se=0.01,
                                    macs=last.macs or 10**9, metrics=last.metrics)
            t0 = time.perf_counter()
            new = snap.refreshed(store)
            _ = (new.noisy, new.rows, pareto_figure(new))  # what a refresh computes
            catch_up = time.perf_counter() - t0
    with Store(url, read_only=True) as store:
        t = time.perf_counter()
        snap = load_snapshot(store, study)
        out["read trials"] = time.perf_counter() - t
        for name, step in (("noisy front", lambda: snap.noisy),
                           ("scatter figure", lambda: pareto_figure(snap)),
                           ("table rows", lambda: snap.rows),
                           ("hypervolume curve", lambda: snap.hypervolume),
                           ("EDF (first choice)", lambda: snap.edf(snap.choices[0])),
                           (f"importance ({snap.importance_evaluator})", lambda: snap.importance)):
            t = time.perf_counter()
            step()
            out[name] = time.perf_counter() - t
    out["one new trial: catch up, front, figure, rows"] = catch_up
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000, help="trials in the study")
    ap.add_argument("--space", default="hybrid_conv_attn")
    ap.add_argument("--out", default="runs/bench_dashboard", help="where the database is kept")
    ap.add_argument("--fresh", action="store_true", help="rebuild the database")
    ap.add_argument("--cold", type=int, default=3,
                    help="first visits, each in a new browser (empty profile)")
    ap.add_argument("--reloads", type=int, default=3, help="loads in one browser after them")
    ap.add_argument("--screenshot", default=None, help="save a PNG of the page with a trial open")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"nas-{args.space}-{args.n}.db"
    url, study = f"sqlite:///{path.resolve()}", f"synthetic-{args.n}"
    if args.fresh and path.exists():
        path.unlink()
    if not path.exists():
        t = time.perf_counter()
        make_study(url, study, args.n, space_name=args.space)
        print(f"wrote {args.n} trials to {path} in {time.perf_counter() - t:.1f} s")
    with Store(url, read_only=True) as store:
        complete = store.count(study, "COMPLETE")
    print(f"study {study}: {args.n} trials, {complete} COMPLETE")

    proc, page = start_dashboard(url)
    page = f"{page}?study={study}"
    try:
        cold = []
        for _ in range(args.cold):
            driver = chromium()
            try:
                cold.append(time_to_ready(driver, page, complete)[0])
            finally:
                driver.quit()
        if cold:
            print(f"time to ready, first visit (new browser), {len(cold)} times: "
                  + ", ".join(f"{w:.2f}" for w in cold)
                  + f" s (median {sorted(cold)[len(cold) // 2]:.2f} s)")
    except BaseException:
        proc.terminate()
        raise
    driver = chromium()
    try:
        warm = [time_to_ready(driver, page, complete) for _ in range(args.reloads)]
        if warm:
            walls = sorted(w for w, _ in warm)
            print(f"time to ready, {len(warm)} more loads: "
                  + ", ".join(f"{w:.2f}" for w, _ in warm)
                  + f" s (median {walls[len(walls) // 2]:.2f} s)")
        print(f"tab Trials: {time_grid(driver):.2f} s to rows shown")
        for label, graph in (("Design EDFs", "#edf"), ("Importance", "#importance")):
            print(f"tab {label}: {time_tab(driver, label, graph):.2f} s to drawn")
        if args.screenshot:
            screenshot(driver, page, complete, args.screenshot)
            print(f"screenshot: {args.screenshot}")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(timeout=30)
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}")
    for name, s in server_parts(url, study).items():
        print(f"  server, in-process: {name:<28} {s:.3f} s")
    return 0


_KNEE_JS = """
const gd = document.querySelector('#pareto .js-plotly-plot');
const [macs, acc] = arguments;
const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, box = gd.getBoundingClientRect();
return [xa._offset + xa.c2p(macs) - box.width / 2, ya._offset + ya.c2p(acc) - box.height / 2];
"""


def screenshot(driver, page: str, expected: int, path: str) -> None:
    """The page with the knee trial clicked in the scatter (its panel open)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    time_to_ready(driver, page, expected)
    knee = int(driver.find_element(By.ID, "study-summary").text.split("knee #")[1].split()[0])
    macs, acc = driver.execute_script("""
for (const tr of document.querySelector('#pareto .js-plotly-plot').data)
  if (tr.meta === 'trials')
    for (let i = 0; i < tr.x.length; i++)
      if (tr.customdata[i][0] === arguments[0]) return [tr.x[i], tr.y[i]];""", knee)
    dx, dy = driver.execute_script(_KNEE_JS, macs, acc)
    graph = driver.find_element(By.CSS_SELECTOR, "#pareto .js-plotly-plot")
    ActionChains(driver).move_to_element_with_offset(graph, int(dx), int(dy)).click().perform()
    wait_for(driver, "const e = document.querySelector('#trial-title'); "
             "return e && e.textContent", lambda v: bool(v) and f"#{knee} " in v)
    time.sleep(1.0)  # let the curve draw
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(path)


if __name__ == "__main__":
    sys.exit(main())
