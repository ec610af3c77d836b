"""``python -m nas pareto`` on a real SQLite database: table, CSV, JSON, PNGs, several studies,
and one-line errors."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from db import Store
from nas import analysis as A
from nas.cli import main
from nas.models import analytic_cost, arch_hash, from_dict, to_dict
from search_spaces import load_space

HOSTILE = "[red]x[/red]<script>alert(1)</script>"
ROOT = Path(__file__).resolve().parents[2]


def _fill(store: Store, name: str, seed: int, sampler: str, n: int = 14) -> None:
    space = load_space("tiny")
    study = store.get_or_create_study(name, space=space.name, space_hash=space.hash,
                                      objectives=("accuracy:max", "macs:min"),
                                      config={"sampler": sampler, "seed": seed})
    rng = np.random.default_rng(seed)
    for i in range(n):
        spec, params = space.sample_random(seed * 100 + i)
        rec = store.start_trial(study.id, key=f"t{i}", arch_hash=arch_hash(spec),
                                arch=to_dict(spec), params=params)
        state = "PRUNED" if i % 7 == 6 else "COMPLETE"
        acc = float(np.clip(0.4 + 0.1 * np.log10(analytic_cost(spec).macs / 1e6)
                            + rng.normal(0, 0.02), 0, 1))
        if state == "PRUNED":
            store.finish_trial(rec.id, state=state, metrics={"pruned_val_accuracy": 0.99})
            continue
        store.finish_trial(rec.id, state=state, accuracy=acc, accuracy_se=0.01,
                           macs=analytic_cost(spec).macs, params_count=analytic_cost(spec).params,
                           metrics={"num_val": 2000})


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("pareto")
    url = f"sqlite:///{path}/nas.db"
    store = Store(url, decode_arch=from_dict)
    _fill(store, "a0", 0, "nsga2")
    _fill(store, "a1", 1, "nsga2")
    _fill(store, "b0", 2, "random")
    _fill(store, HOSTILE, 3, "random", n=3)
    return url, store


def test_table_csv_json_and_plots_match_the_analysis(db, tmp_path, capsys) -> None:
    url, store = db
    out = tmp_path / "out"
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    trials = store.trials("a0")
    nf = A.noisy_front(trials, ("accuracy:max", "macs:min"))
    knee = A.knee_point(trials, ("accuracy:max", "macs:min"))
    assert f"{len(nf.members)} of {len(A.evaluated(trials, ('accuracy:max', 'macs:min')))} " \
           "completed trials" in text
    rows = list(csv.DictReader(open(out / "front.csv")))
    assert [int(r["trial"]) for r in rows] == [m.trial.number for m in nf.members]
    assert [r["noise"] for r in rows] == ["certain" if m.certain else "within_noise"
                                          for m in nf.members]
    assert [r["knee"] == "True" for r in rows] == [m.trial.id == knee.id for m in nf.members]
    doc = json.loads((out / "front.json").read_text())
    (s,) = doc["studies"]
    assert s["certain"] == [t.number for t in nf.certain]
    assert s["within_noise"] == [t.number for t in nf.within_noise]
    assert s["states"] == {"COMPLETE": 12, "PRUNED": 2} and s["knee"] == knee.number
    assert s["completed"] == 12  # the trials the front is chosen from
    assert 0 < s["hypervolume_fraction"] <= 1
    pruned = {t.number for t in trials if t.state == "PRUNED"}
    assert not pruned & {r["trial"] for r in s["front"]}, "a pruned trial entered the front"
    for png in ("pareto.png", "hypervolume.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    every = list(csv.DictReader(open(out / "trials.csv")))  # every trial, for pandas or R
    assert [int(r["trial"]) for r in every] == sorted(t.number for t in trials)
    assert {int(r["trial"]) for r in every if r["on_front"] == "True"} == \
        {m.trial.number for m in nf.members}
    by = {int(r["trial"]): r for r in every}
    for t in trials:
        r = by[t.number]
        assert r["state"] == t.state and r["arch_hash"] == t.arch_hash
        assert r["accuracy"] == ("" if t.accuracy is None else str(t.accuracy))
        for k, v in t.params.items():
            assert r[k] == str(v), (k, r)
        assert r["mixer_pattern"] == "/".join(s["mixer"] for s in t.arch["stages"])


def test_several_studies_share_one_reference_point_and_group_by(db, tmp_path, capsys) -> None:
    url, store = db
    out = tmp_path / "cmp"
    assert main(["pareto", "--db", url, "--study", "a0", "--study", "a1", "--study", "b0",
                 "--group-by", "sampler", "--out", str(out)]) == 0
    doc = json.loads((out / "front.json").read_text())
    assert [s["name"] for s in doc["studies"]] == ["a0", "a1", "b0"]
    sets = [A.evaluated(store.trials(n), ("accuracy:max", "macs:min")) for n in ("a0", "a1", "b0")]
    assert doc["reference_point"] == pytest.approx(A.reference_point(*sets).tolist())
    assert (out / "hypervolume.png").stat().st_size > 10_000
    assert "completed different numbers" not in capsys.readouterr().out  # 12 each
    assert main(["pareto", "--db", url, "--study", "a0", "--study", HOSTILE]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "note: the studies completed different numbers of trials (a0: 12, " in text, text


def test_a_study_without_evaluated_trials_does_not_blank_its_group(tmp_path) -> None:
    """``--group-by`` averaged each group's curves over the shortest: a study stopped before
    its first trial (an empty curve) left its group's line empty, with the others in it."""
    from nas._pareto import group_curves, load_fronts, trial_rows

    url = f"sqlite:///{tmp_path / 'nas.db'}"
    store = Store(url, decode_arch=from_dict)
    _fill(store, "a0", 0, "nsga2")
    _fill(store, "a1", 1, "nsga2", n=10)
    _fill(store, "b0", 2, "random")
    store.get_or_create_study("empty", space="tiny", space_hash="h",
                              objectives=("accuracy:max", "macs:min"),
                              config={"sampler": "nsga2", "seed": 9})
    b0 = store.get_study("b0")  # and a pruned trial's costs in trials.csv's rows
    t = store.start_trial(b0.id, key="p", arch_hash="p" * 16, arch=store.trials("b0")[0].arch,
                          params={})
    store.finish_trial(t.id, state="PRUNED", metrics={"pruned_costs": {"macs": 2.9e7}})
    fronts = load_fronts(store, ["a0", "a1", "b0", "empty"])
    (row,) = [r for r in trial_rows(fronts) if r["study"] == "b0" and r["trial"] == t.number]
    assert (row["state"], row["macs"], row["on_front"]) == ("PRUNED", 29_000_000, False), row
    box = A.data_box(*(f.ev for f in fronts))
    curves = {f.name: A.hypervolume_curve(f.trials, f.ev.objectives, box=box) for f in fronts}
    (label, nsga2), (label_b, random) = group_curves(fronts, curves, "sampler")
    assert label == "sampler=nsga2: mean of 2 (1 without evaluated trials left out)", label
    assert label_b == "sampler=random: mean of 1" and len(random["x"]) == len(curves["b0"][1])
    assert len(nsga2["x"]) == min(len(curves["a0"][1]), len(curves["a1"][1])) > 0
    only = group_curves(fronts[3:], curves, "sampler")
    assert only == [("sampler=nsga2: no evaluated trials", None)]
    out = tmp_path / "grouped"
    assert main(["pareto", "--db", url, "--study", "a0", "--study", "empty",
                 "--group-by", "sampler", "--out", str(out)]) == 0
    assert (out / "hypervolume.png").stat().st_size > 10_000
    store.close()


def test_out_expands_a_quoted_tilde_as_the_report_does(db, tmp_path, monkeypatch,
                                                       capsys) -> None:
    """``--out '~/p'`` (quoted, so the shell left it) made a folder named ``~`` here."""
    url, _ = db
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["pareto", "--db", url, "--study", "a0", "--out", "~/p"]) == 0
    assert (tmp_path / "home" / "p" / "front.csv").is_file() and not (tmp_path / "~").exists()
    capsys.readouterr()


def test_a_given_box_makes_hypervolumes_comparable_between_commands(db, tmp_path,
                                                                    capsys) -> None:
    """Under the data rule a study's hypervolume depends on what else the command read; under
    --reference it is the study's alone: the same number in any company, as front.json and the
    table say, and the fraction of the box it names (checked against the analysis module)."""
    url, store = db
    objs = ("accuracy:max", "macs:min")

    def hv(*argv: str, out: Path | None = None) -> dict[str, float]:
        extra = ["--out", str(out)] if out else []
        assert main(["pareto", "--db", url, *argv, *extra]) == 0, capsys.readouterr().err
        capsys.readouterr()
        if out is None:
            return {}
        return {s["name"]: s["hypervolume_fraction"]
                for s in json.loads((out / "front.json").read_text())["studies"]}

    alone = hv("--study", "a0", out=tmp_path / "alone")
    shared = hv("--study", "a0", "--study", "b0", out=tmp_path / "shared")
    assert alone["a0"] != pytest.approx(shared["a0"]), "the data rule should differ here"
    macs = max(t.macs for t in store.trials("b0") if t.macs) * 0.8  # some trials outside
    box = ["--reference", f"accuracy=0.2,macs={macs!r}"]
    fixed_alone = hv("--study", "a0", *box, out=tmp_path / "fa")
    fixed_shared = hv("--study", "a0", "--study", "b0", *box, out=tmp_path / "fs")
    assert fixed_alone["a0"] == pytest.approx(fixed_shared["a0"], abs=0, rel=1e-12)
    ev = A.evaluated(store.trials("a0"), objs)
    inside = ev.losses[np.all(ev.losses < [-0.2, macs], axis=1)]
    expected = A.hypervolume(inside, np.array([-0.2, macs])) / ((1 - 0.2) * macs)
    assert fixed_alone["a0"] == pytest.approx(expected, rel=1e-12) and 0 < expected < 1
    doc = json.loads((tmp_path / "fs" / "front.json").read_text())
    assert doc["box"] == {"accuracy": {"ideal": 1.0, "reference": 0.2},
                          "macs": {"ideal": 0.0, "reference": macs}}
    assert doc["reference_point"] == [-0.2, macs] and doc["ideal_point"] == [-1.0, 0.0]
    assert doc["reference_rule"] == f"given: accuracy 1 -> 0.2, macs 0 -> {macs:.12g}"
    # the table says which box, and which front members fall outside it
    assert main(["pareto", "--db", url, "--study", "b0", *box]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"hypervolume {fixed_shared['b0']:.4f} of the box" in text
    assert "hypervolume box (given): accuracy 1 -> 0.2, macs 0 -> " in text
    nf = A.noisy_front(store.trials("b0"), objs)
    outside = [m.trial.number for m in nf.members if m.trial.macs >= macs]
    assert outside and (f"note: {len(outside)} of the {len(nf.members)} front members of 'b0' "
                        "are outside the reference and add nothing (trials "
                        + ", ".join(map(str, outside)) + ")") in text, text
    # an ideal short of the best trial: said, and the fraction may pass 1
    assert main(["pareto", "--db", url, "--study", "b0", *box, "--ideal", "accuracy=0.3"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "better than the ideal in some objective and count as at the ideal there" in text
    assert float(text.split("hypervolume ")[1].split()[0]) <= 1


def test_report_takes_the_same_box(db, tmp_path, capsys) -> None:
    url, store = db
    box = ["--reference", "accuracy=0.2,macs=3e8"]
    out = tmp_path / "a0.html"
    assert main(["pareto", "--db", url, "--study", "a0", *box, "--out", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    fraction = json.loads((tmp_path / "p" / "front.json").read_text())["studies"][0][
        "hypervolume_fraction"]
    assert main(["report", "--db", url, "--study", "a0", "-o", str(out), *box]) == 0
    html = out.read_text()
    assert (f"{fraction:.4f} of the box from the ideal point to the reference point (given: "
            "accuracy 1 -&gt; 0.2, macs 0 -&gt; 300000000)") in html
    assert main(["report", "--db", url, "--study", "a0", "-o", str(out), "--reference",
                 "accuracy=0.2"]) == 2
    assert "missing: macs" in capsys.readouterr().err


def test_hostile_study_name_is_printed_as_text(db, capsys) -> None:
    url, _ = db
    assert main(["pareto", "--db", url, "--study", HOSTILE]) == 0
    text = capsys.readouterr().out.replace("\n", "")
    assert "[red]x[/red]" in text.replace(" ", ""), "rich markup in a name must stay text"


@pytest.mark.parametrize("argv, message", [
    (["--study", "nope"], "no study named 'nope'"),
    ([], "--study is needed"),
    (["--study", "a0", "--group-by", "colour"], "--group-by: 'colour' is not in"),
    (["--study", "a0", "--objectives", "acc:max"], "unknown metric 'acc'"),
    (["--study", "a0", "--objectives", "latency_ms:min,accuracy:max"],
     "no completed trial of study 'a0' recorded latency_ms; recorded: accuracy,"),
    (["--study", "a0", "--objectives", "zc_synflow:max,accuracy:max"],
     "no completed trial of study 'a0' recorded zc_synflow"),
    (["--study", "a0", "--z", "0"], "--z must be a finite number > 0"),
    (["--study", "a0", "--objectives", ""], "--objectives is empty"),
    (["--study", "a0", "--ideal", "accuracy=1"], "--ideal needs --reference"),
    (["--study", "a0", "--reference", "macs=1e6"],
     "--reference must give every objective (accuracy, macs); missing: accuracy"),
    (["--study", "a0", "--reference", "accuracy=0,macs=1e6,params=3"],
     "--reference: 'params' is not an objective here; the objectives are accuracy, macs"),
    (["--study", "a0", "--reference", "accuracy=0,macs"], "--reference: 'macs' is not NAME=VALUE"),
    (["--study", "a0", "--reference", "accuracy=0,macs=nan"],
     "macs=nan is not a finite decimal number; give one such as 0 or 3.4e9, items separated"),
    (["--study", "a0", "--reference", "accuracy=0;macs=1"], "accuracy=0;macs=1 is not a finite"),
    (["--study", "a0", "--reference", "accuracy=0,macs=1,"], "an empty item (a comma too many?)"),
    (["--study", "a0", "--reference", ""], "an empty item (a comma too many?)"),
    (["--study", "a0", "--reference", "accuracy=0,macs=3400000001", "--ideal",
      "macs=3400000002"], "macs=3400000001 must be worse than the ideal 3400000002 (macs:min)"),
    (["--study", "a0", "--reference", "accuracy=0,accuracy=0.1"], "accuracy is given twice"),
    (["--study", "a0", "--reference", "accuracy=1.5,macs=1e6"],
     "--reference accuracy=1.5 must be worse than the ideal 1 (accuracy:max)"),
    (["--study", "a0", "--reference", "accuracy=0,macs=1e6", "--ideal", "macs=2e6"],
     "--reference macs=1000000 must be worse than the ideal 2000000 (macs:min)"),
    (["--study", "a0", "--objectives", "accuracy:max,num_val:min,params:max",
      "--reference", "accuracy=0,num_val=9,params=0"],
     "--ideal is needed for params:max (it has no known best value)"),
])
def test_bad_input_is_one_line_and_exit_2(db, capsys, argv, message) -> None:
    url, _ = db
    assert main(["pareto", "--db", url, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_a_path_no_file_can_have_is_one_line_and_exit_2(db, tmp_path, capsys) -> None:
    """A name over 255 bytes, or a loop of links, anywhere a command takes a path: one line
    naming the path and the limit (pathlib raised OSError or RuntimeError: tracebacks)."""
    url, _ = db
    long, loop = str(tmp_path / ("x" * 300)), tmp_path / "it's a loop"  # (a quote: "%r")
    loop.symlink_to(tmp_path / "back")
    (tmp_path / "back").symlink_to(loop)
    for argv, what in ((["pareto", "--db", url, "--study", "a0", "--out", long], "too long"),
                       (["report", "--db", url, "--study", "a0", "-o", long + ".html"],
                        "too long"),
                       (["pareto", "--db", f"sqlite:///{long}.db"], "too long"),
                       (["studies", "--runs-dir", long], "too long"),
                       (["studies", "--runs-dir", str(loop)], "symbolic links"),
                       (["search", "--space", "tiny", "--runs-dir", str(loop / "r")],
                        "symbolic links")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: cannot use the path ") and what in err \
            and err.count("\n") == 1, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", loop.name], "nothing made"


def test_pareto_writes_nothing_to_the_database(db, tmp_path, capsys) -> None:
    url, _ = db
    path = url.removeprefix("sqlite:///")
    before = open(path, "rb").read()
    assert main(["pareto", "--db", url, "--study", "a0"]) == 0
    assert open(path, "rb").read() == before
    missing = tmp_path / "none" / "nas.db"
    assert main(["pareto", "--db", f"sqlite:///{missing}", "--study", "a0"]) == 2
    assert not missing.parent.exists(), "a reader must not create a database"
    capsys.readouterr()


def test_out_is_all_or_nothing_and_unwritable_places_are_one_line(db, tmp_path, capsys) -> None:
    url, _ = db
    out = tmp_path / "o"
    (out / "pareto.png").mkdir(parents=True)  # a directory where a file goes: refused up front
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(out)]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["pareto.png"], "nothing half-written"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(afile / "sub")]) == 2
    assert main(["pareto", "--db", url, "--study", "a0", "--z", "inf"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(e.startswith("error: ") for e in err), err
    assert "is a directory" in err[0] and "cannot write there" in err[1] and "finite" in err[2]


def test_out_replaces_an_earlier_out_but_no_other_file_unless_forced(db, tmp_path,
                                                                     capsys) -> None:
    """A folder of the user's own with a trials.csv was silently overwritten."""
    url, _ = db
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "trials.csv").write_text("my data\n")
    (mine / "notes.txt").write_text("mine too\n")
    argv = ["pareto", "--db", url, "--study", "a0", "--out", str(mine)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        f"error: --out {mine} already holds trials.csv, which pareto did not write; choose "
        "another --out, or pass --force to replace them\n"), captured
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "trials.csv"]
    assert (mine / "trials.csv").read_text() == "my data\n"
    assert main([*argv, "--force"]) == 0
    assert (mine / "trials.csv").read_text().startswith("study,trial,")
    assert main(argv) == 0, "an earlier --out is replaced without --force"
    assert (mine / "notes.txt").read_text() == "mine too\n"
    legacy = tmp_path / "legacy"  # written before the marker: known by its front.json
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(legacy)]) == 0
    (legacy / ".nas-pareto").unlink()
    assert main(["pareto", "--db", url, "--study", "a1", "--out", str(legacy)]) == 0
    assert '"name": "a1"' in (legacy / "front.json").read_text()
    linked = tmp_path / "linked"  # a marker that is a link is not pareto's, nor written through
    linked.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (linked / ".nas-pareto").symlink_to(victim)
    (linked / "front.csv").write_text("mine\n")
    argv = ["pareto", "--db", url, "--study", "a0", "--out", str(linked)]
    assert main(argv) == 2
    assert main([*argv, "--force"]) == 0
    assert victim.read_text() == "keep me\n" and not (linked / ".nas-pareto").is_symlink()
    capsys.readouterr()


def test_control_characters_in_an_error_are_shown_escaped(db, capsys) -> None:
    url, _ = db
    assert main(["pareto", "--db", url, "--study", "x\x1b[31mred"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "x\\x1b[31mred" in err and err.count("\n") == 1, repr(err)


def test_a_line_break_in_a_path_or_name_keeps_the_whole_message(db, tmp_path, capsys) -> None:
    """Only the first line was shown: ``error: --out /tmp/nl``, the reason cut off."""
    url, _ = db
    afile = tmp_path / "nl\nfile"
    afile.write_text("x")
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(afile)]) == 2
    assert main(["export", "--db", url, "--study", "a0", "--trial", "0", "--out",
                 str(afile)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("nl\\nfile" in e for e in err), err
    assert err[0].endswith("it is a file, not a folder") and "not a directory" in err[1], err


def test_control_characters_in_a_stored_study_name_never_reach_the_terminal(tmp_path,
                                                                           capsys) -> None:
    """A name the CLI refuses, written by another tool: the "--study is needed" line was cut at
    its line break, and the tables of `studies` and `pareto` wrote its escape sequence raw."""
    url = f"sqlite:///{tmp_path}/nas.db"
    ctl = "ctl\nx\x1b[31mred\x07"
    with Store(url, decode_arch=from_dict) as store:
        _fill(store, ctl, 0, "random", n=4)
        _fill(store, "zz", 1, "random", n=4)
    assert main(["pareto", "--db", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(ctl\\nx\\x1b[31mred\\x07, zz)" in err, repr(err)
    for argv in (["studies", "--db", url], ["pareto", "--db", url, "--study", ctl]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out and "ctl\\nx" in out, repr(out)


def test_a_database_without_studies_says_so(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path}/nas.db"
    Store(url).close()  # our tables, no study
    assert main(["pareto", "--db", url]) == 2
    assert "holds no studies yet; run a search first" in capsys.readouterr().err


def test_an_empty_or_file_out_is_refused_before_the_table(db, tmp_path, capsys) -> None:
    # --out "" wrote nothing with exit 0; --out FILE printed the whole table, then refused
    url, _ = db
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["pareto", "--db", url, "--study", "a0", "--out", ""]) == 2
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(afile)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "", captured.out
    err = captured.err.splitlines()
    assert err == ["error: --out must name a folder; got an empty string",
                   f"error: --out {afile}: cannot write there: it is a file, not a folder"], err
    assert afile.read_text() == "x"


@pytest.mark.parametrize("objectives", ["accuracy:max", "accuracy:max,params:max",
                                        "macs:min,params:min", "accuracy:max,macs:min,params:min"])
def test_out_writes_every_file_for_any_objective_set(db, tmp_path, capsys, objectives) -> None:
    # the plot needed exactly one objective to maximise and one to minimise, and its refusal
    # left front.csv and front.json unwritten too
    url, _ = db
    out = tmp_path / "any"
    assert main(["pareto", "--db", url, "--study", "a0", "--objectives", objectives,
                 "--out", str(out)]) == 0, capsys.readouterr().err
    doc = json.loads((out / "front.json").read_text())
    assert doc["studies"][0]["objectives"] == objectives.split(",")
    assert len(list(csv.DictReader(open(out / "front.csv")))) == len(doc["studies"][0]["front"])
    assert len(list(csv.DictReader(open(out / "trials.csv")))) == 14  # every trial of a0
    for png in ("pareto.png", "hypervolume.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png


def test_front_members_with_one_short_name_are_told_apart_by_hash(tmp_path, capsys) -> None:
    # two sepconv kernel sizes: the same "sepc/... d.. w.." name, different MACs, both on the front
    import dataclasses

    from nas.models import describe

    space = load_space("tiny")
    spec = next(a for a, _ in (space.sample_random(i) for i in range(200))
                if a.stages[0].mixer == "sepconv")
    k3, k5 = (dataclasses.replace(spec, stages=(dataclasses.replace(
        spec.stages[0], mixer_args=(("expansion_ratio", 2), ("kernel_size", k))),
        *spec.stages[1:])) for k in (3, 5))
    assert describe(k3) == describe(k5) and arch_hash(k3) != arch_hash(k5)
    url = f"sqlite:///{tmp_path}/nas.db"
    store = Store(url, decode_arch=from_dict)
    study = store.get_or_create_study("same", space="tiny", space_hash=space.hash,
                                      objectives=("accuracy:max", "macs:min"), config={})
    for i, (a, acc) in enumerate(((k3, 0.5), (k5, 0.6))):
        rec = store.start_trial(study.id, key=f"t{i}", arch_hash=arch_hash(a), arch=to_dict(a),
                                params={})
        store.finish_trial(rec.id, state="COMPLETE", accuracy=acc, accuracy_se=0.001,
                           macs=analytic_cost(a).macs, params_count=analytic_cost(a).params)
    assert main(["pareto", "--db", url, "--study", "same"]) == 0
    text = capsys.readouterr().out.replace("│", " ")
    text = " ".join(text.split())
    for a in (k3, k5):
        assert f"(arch {arch_hash(a)[:8]})" in text, text


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_unwritable_stdout_is_one_line_and_out_files_are_still_written(db, tmp_path,
                                                                          monkeypatch,
                                                                          capsys) -> None:
    """`... > /dev/full` (a full disk): a traceback from wherever the command printed, and
    pareto's table failing first left --out unwritten."""
    # buffered, as in a shell: a short output is written only at exit, which failed there (120)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "nas", "spaces", "list"], stdout=full,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120, env=env)
    assert (r.returncode, r.stderr) == (
        1, "error: cannot write to standard output: No space left on device\n"), r.stderr[-2000:]
    # started with its stdout closed (`>&-`, some supervisors): Python's stdout is None there
    r = subprocess.run([sys.executable, "-m", "nas", "spaces", "list"], stderr=subprocess.PIPE,
                       text=True, cwd=ROOT, timeout=120, env=env, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stderr[-2000:])

    class Full(io.StringIO):  # pareto in this process (a subprocess takes 11 s), stdout full
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    url, _ = db
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "stdout", Full())
    assert main(["pareto", "--db", url, "--study", "a0", "--out", str(out)]) == 1
    monkeypatch.undo()
    assert capsys.readouterr().err == \
        "error: cannot write to standard output: No space left on device\n"
    assert sorted(p.name for p in out.iterdir()) == [".nas-pareto", "front.csv", "front.json",
                                                     "hypervolume.png", "pareto.png", "trials.csv"]
