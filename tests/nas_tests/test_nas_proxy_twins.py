"""Proxy twins in the results: trials whose different full architectures trained the same proxy
are named as such in the pareto table and files, the report, the dashboard and the model card."""

from __future__ import annotations

import csv
import json

import pytest

from db import Store
from nas import analysis as A
from nas._model_card import CardInfo, front_position, render_card
from nas._snapshot import load_snapshot
from nas.cli import main
from nas.models import analytic_cost, arch_hash, from_dict, to_dict
from search_spaces import load_space
from search_spaces._sampling import every_choice

OBJ = ("accuracy:max", "macs:min")
CHECKS = {"standalone": 0.0, "torchscript": 0.0,  # what an export verified (not run here)
          "onnx": {"opset": 18, "onnxruntime": "-", "max_abs_diff": 0.0}}


def _twins_and_others(space):
    """Two architectures of ``space`` with one proxy (the cheaper first), and four others with
    proxies of their own."""
    by_proxy: dict[str, list] = {}
    for arch, params in every_choice(space.sample):
        by_proxy.setdefault(arch_hash(space.proxy(arch, 10)), []).append((arch, params))
    twins = next(v for v in by_proxy.values() if len(v) == 2)
    twins.sort(key=lambda ap: analytic_cost(ap[0]).macs)
    others = [v[0] for v in by_proxy.values() if v is not twins][:4]
    return twins, others


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny study recorded as a search records it: proxy_arch in every row, and the twins
    with one accuracy (one proxy, one seed: the same training). The cheap twin has the best
    accuracy, so it is on the front, and its expensive twin is not."""
    space = load_space("tiny")
    url = f"sqlite:///{tmp_path_factory.mktemp('twins')}/nas.db"
    store = Store(url, decode_arch=from_dict)
    rec = store.get_or_create_study("t", space=space.name, space_hash=space.hash,
                                    objectives=OBJ, config={"seed": 0})
    (cheap, p1), (dear, p2) = twins = _twins_and_others(space)[0]
    rows = [(cheap, p1, 0.61), (dear, p2, 0.61)]
    rows += [(a, p, 0.40 + 0.01 * i) for i, (a, p) in enumerate(_twins_and_others(space)[1])]
    for i, (arch, params, acc) in enumerate(rows):
        t = store.start_trial(rec.id, key=f"k{i}", arch_hash=arch_hash(arch),
                              arch=to_dict(arch), params=params)
        cost = analytic_cost(arch)
        store.finish_trial(t.id, state="COMPLETE", accuracy=acc, accuracy_se=0.01,
                           macs=cost.macs, params_count=cost.params,
                           metrics={"proxy_arch": to_dict(space.proxy(arch, 10)),
                                    "num_val": 2000})
    assert twins[0][0] != twins[1][0]
    return url, store


def test_twins_are_grouped_by_the_proxy_they_trained(study) -> None:
    _, store = study
    trials = store.trials("t")
    assert A.proxy_twins(trials) == {0: (1,), 1: (0,)}
    front = A.noisy_front(trials, OBJ).members
    assert 0 in [m.trial.number for m in front] and 1 not in [m.trial.number for m in front]
    (note,) = A.twin_notes((m.trial for m in front), A.proxy_twins(trials),
                           {t.number: t for t in trials})
    assert note.startswith("#0 (") and "trained the same proxy as #1 (" in note
    assert "acc 0.6100" in note and "only their costs differ" in note


def test_a_trial_that_did_not_complete_has_no_twin(study) -> None:
    import dataclasses

    _, store = study
    trials = [dataclasses.replace(t, state="PRUNED") if t.number == 1 else t
              for t in store.trials("t")]
    assert A.proxy_twins(trials) == {}


def test_pareto_names_them_in_the_table_and_the_files(study, tmp_path, capsys) -> None:
    url, _ = study
    out = tmp_path / "out"
    assert main(["pareto", "--db", url, "--study", "t", "--out", str(out)]) == 0
    text = " ".join(capsys.readouterr().out.split())  # rich wraps lines
    assert "note: #0 (" in text and "trained the same proxy as #1 (" in text
    front = {int(r["trial"]): r for r in csv.DictReader(open(out / "front.csv"))}
    assert front[0]["same_proxy_as"] == "1"
    assert all(r["same_proxy_as"] == "" for n, r in front.items() if n != 0)
    doc = json.loads((out / "front.json").read_text())
    assert {r["trial"]: r["same_proxy_as"] for r in doc["studies"][0]["front"]}[0] == [1]
    every = {int(r["trial"]): r["same_proxy_as"] for r in csv.DictReader(open(out / "trials.csv"))}
    assert every[0] == "1" and every[1] == "0" and {every[n] for n in every if n > 1} == {""}


def test_the_report_and_the_dashboard_say_so(study) -> None:
    from nas._dashboard import _trial_panel
    from nas._report import render_report

    url, store = study
    snap = load_snapshot(store, "t")
    html = render_report(snap, url)
    assert "certain; same proxy as #1</td>" in html
    assert "trained the same proxy as #1 (" in html

    def texts(node) -> list[str]:
        kids = getattr(node, "children", node)
        found = [node.children] if getattr(node, "id", None) == "trial-twins" else []
        for kid in kids if isinstance(kids, list) else []:
            found += texts(kid)
        return found

    (shown,) = texts(_trial_panel(snap, 1, url))
    assert shown.startswith("#1 (") and "trained the same proxy as #0 (" in shown
    assert texts(_trial_panel(snap, 2, url)) == []


def test_the_model_card_says_its_accuracy_does_not_tell_the_twins_apart(study) -> None:
    _, store = study
    trials = store.trials("t")
    study_rec = store.get_study("t")
    for t, twin in ((trials[0], 1), (trials[2], None)):
        pos = front_position(t, trials, study_rec.objectives)
        assert pos.same_proxy == (() if twin is None else (twin,))
        card = render_card(CardInfo(
            name="m", how="--trial", spec=t.spec, cost=analytic_cost(t.spec), searched=t.spec,
            files={}, checks=CHECKS, seed=0, versions={}, trial=t, study=study_rec,
            position=pos))
        said = "It trained the same proxy as trial(s) #1:" in card
        assert said == (twin is not None), card
