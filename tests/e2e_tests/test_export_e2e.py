"""End to end: a real (small) search, then ``python -m nas export`` of its knee; every exported
file reproduces the model, the model card's numbers are the database's, and an interrupted
export leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import timm
import torch
import yaml
from nas_tests._export_checks import card_int, card_value, check_runtimes

from db import Store
from nas.analysis import evaluated, knee_point, non_dominated_sort, pareto_front
from nas.cli import main
from nas.export import select_trial
from nas.models import analytic_cost, arch_hash, build_model, from_dict
from nas.search import SearchConfig, run_search

ROOT = Path(__file__).resolve().parents[2]
# one xdist worker runs them all: each worker would run the module's search and export again
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("export_e2e")]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A 3-trial search of ``tiny`` (1 epoch on digits, in this process): (db url, study)."""
    runs = tmp_path_factory.mktemp("runs")
    url = f"sqlite:///{runs}/nas.db"
    cfg = SearchConfig(space="tiny", budget=3, epochs=1, db_url=url, runs_dir=str(runs), seed=1,
                       dataset="digits", executor="local")
    summary = run_search(cfg, log=lambda line: None)
    assert summary.completed == 3, summary
    return url, summary.study


@pytest.fixture(scope="module")
def knee(searched, tmp_path_factory):
    """The study's knee exported at the search's own resolution (64 px, 1000 classes)."""
    url, study = searched
    with Store(url, decode_arch=from_dict) as store:
        objectives = store.get_study(study).objectives
        trials = store.trials(study)
    trial = knee_point(trials, objectives)
    out = tmp_path_factory.mktemp("exports") / "knee"
    code = main(["export", "--db", url, "--study", study, "--pick", "knee", "--img-size", "64",
                 "--out", str(out)])
    assert code == 0
    return out, trial, trials, objectives


def test_the_knee_is_exported_and_every_file_reproduces_it(knee, tmp_path):
    out, trial, _, _ = knee
    name = f"tiny_trial{trial.number}"
    spec = from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert spec == trial.spec and arch_hash(spec) == trial.arch_hash, "not the knee's architecture"
    check_runtimes(out, name, tmp_path)
    # exporting registered the name in this process too
    model = timm.create_model(name, pretrained=False, num_classes=5)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_exports_on_nas_export_path_are_timm_models_after_importing_the_package(knee, tmp_path):
    """A new process that imports only the package (not the export's model.py) creates the
    export by name, with its weights, when $NAS_EXPORT_PATH names the folder of exports."""
    out, trial, _, _ = knee
    name = f"tiny_trial{trial.number}"
    (tmp_path / "junk").mkdir()  # a folder that is no export: a warning, never an error
    code = textwrap.dedent(f"""
        import warnings, torch, timm
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import nas.models
        assert any("holds no export" in str(w.message) for w in caught), caught
        m = timm.create_model({name!r}, pretrained=False,
                              checkpoint_path={str(out / "model.safetensors")!r}).eval()
        x = torch.load({str(tmp_path / "x.pt")!r})
        torch.save(m(x), {str(tmp_path / "y.pt")!r})
    """)
    x = torch.randn(2, 3, 64, 64)
    torch.save(x, tmp_path / "x.pt")
    env = {**os.environ, "NAS_EXPORT_PATH": os.pathsep.join([str(out.parent),
                                                             str(tmp_path / "junk")])}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    from safetensors.torch import load_file

    model = build_model(from_dict(yaml.safe_load((out / "config.yaml").read_text()))).eval()
    model.load_state_dict(load_file(out / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "y.pt"), model(x))


def test_model_card_numbers_are_the_databases(knee):
    out, t, trials, objectives = knee
    card = (out / "README.md").read_text()
    assert card.startswith(f"# tiny_trial{t.number}\n")
    assert card_value(card, "trial").startswith(f"#{t.number} (COMPLETE)")
    assert card_value(card, "study").startswith("`tiny` in `sqlite:///")
    assert card_value(card, "search space").startswith("`tiny` (hash `")
    assert card_value(card, "chosen by") == "`--pick knee`"
    assert card_value(card, "proxy validation accuracy") == (
        f"{t.accuracy:.4f} ± {t.accuracy_se:.4f}")
    assert card_value(card, "proxy test accuracy") == (
        f"{t.test_accuracy:.4f} ± {t.metrics['test_accuracy_se']:.4f}")
    assert card_int(card, "MACs as searched") == t.macs
    assert card_int(card, "params as searched") == t.params_count
    # exported at the searched settings: the analytic cost is the recorded (traced) one
    assert card_int(card, "MACs (exported, batch 1)") == t.macs == analytic_cost(t.spec).macs
    assert card_int(card, "params (exported)") == t.params_count
    ev = evaluated(trials, objectives)
    rank = int(non_dominated_sort(ev.losses)[[x.number for x in ev.trials].index(t.number)]) + 1
    front = [x.number for x in pareto_front(ev)]
    assert rank == 1, "a knee is on the front"
    assert (f"On the Pareto front over `accuracy:max`, `macs:min`: member "
            f"{front.index(t.number) + 1} of {len(front)} (cheapest first), among {len(ev)} "
            "completed trials.") in card
    assert card_value(card, "epochs") == "`1`" and card_value(card, "dataset") == '`"digits"`'
    assert card_value(card, "objectives") == "accuracy:max, macs:min"


def test_best_within_a_macs_budget_on_the_real_study(searched):
    url, study = searched
    with Store(url) as store:
        done = store.trials(study, states=["COMPLETE"])
    budget = sorted(t.macs for t in done)[1]  # the two cheapest fit
    fits = [t for t in done if t.macs <= budget]
    expected = min(fits, key=lambda t: (-t.accuracy, t.macs, t.params_count))
    chosen = select_trial(url, study, pick="best", max_macs=budget)
    assert chosen.trial.number == expected.number, (chosen.trial.number, expected.number)
    assert chosen.how == f"--pick best --max-macs {budget:g}"


def test_bad_input_on_the_real_study_is_one_line(searched, knee, capsys, tmp_path):
    url, study = searched
    out, *_ = knee
    for argv, message in (
        (["--trial", "99", "--out", str(tmp_path / "a")], f"study '{study}' has no trial #99"),
        (["--pick", "best", "--max-macs", "1", "--out", str(tmp_path / "b")],
         "has MACs <= 1; the cheapest is #"),
        (["--pick", "knee", "--out", str(out)], "already exists; pass --force to replace it"),
        (["--pick", "knee", "--out", ""], "--out must name a directory"),
        (["--pick", "knee", "--out", "/proc/nas-export"], "cannot write in '/proc'"),
    ):
        code = main(["export", "--db", url, "--study", study, *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (argv, code, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # the database is only read: an empty file gets no tables
    empty = tmp_path / "empty.db"
    empty.touch()
    code = main(["export", "--db", f"sqlite:///{empty}", "--study", study, "--trial", "0",
                 "--out", str(tmp_path / "c")])
    assert code == 2 and empty.stat().st_size == 0, capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def _default_sigint() -> None:
    """Ctrl-C's default in the child: a test session started in the background (``make test
    &`` from a script) ignores SIGINT, and children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stopped_mid_export(url: str, study: str, out: Path) -> subprocess.Popen | None:
    """Start an export and freeze it (SIGSTOP) once its temporary directory holds the weights;
    the frozen process, or None where the export had already moved its files into place (it
    finished between the look and the stop: the race this test must not mistake for a result)."""
    proc = subprocess.Popen([sys.executable, "-m", "nas", "export", "--db", url, "--study",
                             study, "--pick", "best", "--img-size", "64", "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.parent.exists() and list(out.parent.glob(".x.partial-*/model.safetensors")):
                proc.send_signal(signal.SIGSTOP)
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the export never started writing (exit {proc.poll()})")
        # frozen with its temporary directory still there: the files are not in place yet, so
        # the process has code left to run, and a signal sent now is handled before it ends
        if list(out.parent.glob(".x.partial-*")) and not out.exists():
            return proc
        proc.send_signal(signal.SIGCONT)
        proc.communicate(timeout=120)
        return None
    except BaseException:
        proc.kill()
        raise


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["sigint", "sigterm"])
def test_an_interrupted_export_leaves_nothing(searched, tmp_path, sig, code):
    """Ctrl-C or SIGTERM while the files are being written and checked: no DIR, no temporary
    directory."""
    url, study = searched
    out = tmp_path / "exports" / "x"
    for _ in range(3):  # an export that won the race is removed and run again
        proc = _stopped_mid_export(url, study, out)
        if proc is not None:
            break
        shutil.rmtree(out.parent)
    else:
        pytest.fail("three exports finished before they could be stopped mid-way")
    try:
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == f"error: interrupted; nothing was written to {out}"
    assert not (tmp_path / "exports").exists(), "the export (or its created parent) was left"
