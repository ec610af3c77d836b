"""The spaces CLI (in-process, through ``nas.cli.main``) and run_search's fail-fast on a bad
space (a real subprocess of the ``run_search.py`` entry point)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from nas.models.arch import arch_hash, from_dict
from search_spaces import list_spaces, load_space

from ._docs import shipped_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    bad = shipped_doc("tiny")
    bad["stages"][2]["mixer"] = ["sepconv", "atention"]
    bad_path = tmp_path_factory.mktemp("cli") / "bad.yaml"
    bad_path.write_text(yaml.safe_dump(bad, sort_keys=False))
    bad_cmd = [sys.executable, "run_search.py", "--space", str(bad_path), "--budget", "1",
               "--runs-dir", str(bad_path.parent / "runs")]
    proc = subprocess.Popen(bad_cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    commands = {
        "list": ["spaces", "list"],
        "show": ["spaces", "show", "hybrid_conv_attn", "--probe", "200"],
        "sample": ["spaces", "sample", "linear_attention", "-n", "5"],
        "unknown": ["spaces", "show", "no_such_space"],
    }
    out = {key: _main(argv) for key, argv in commands.items()}
    stdout, stderr = proc.communicate(timeout=240)
    out["bad"] = subprocess.CompletedProcess(bad_cmd, proc.returncode, stdout, stderr)
    out["bad_path"] = bad_path  # type: ignore[assignment]
    return out


def _main(argv: list[str]) -> subprocess.CompletedProcess:
    """``python -m nas ARGV`` in this process: exit code, stdout and stderr."""
    from nas.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, f"{r.args} exited {r.returncode}: {r.stderr[-2000:]}"


def test_list(runs: dict) -> None:
    r = runs["list"]
    _ok(r)
    names = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
    assert names == list_spaces(), f"expected {list_spaces()}, got {names}"
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+)\s+([\d,]+) configs  \S", line)
        assert m, f"unparsable line {line!r}"
        size = int(m.group(2).replace(",", ""))
        assert size == load_space(m.group(1)).size(), f"{line!r}: size differs from size()"
        full = load_space(m.group(1)).description.splitlines()[0]
        shown = line.split(" configs  ", 1)[1]
        assert shown == full or (shown.endswith("…") and len(shown) <= 90 and
                                 full.startswith(shown[:-1]) and
                                 full[len(shown) - 1] in " ,;:"), f"cut mid-word: {shown!r}"


def test_show(runs: dict) -> None:
    r = runs["show"]
    _ok(r)
    space = load_space("hybrid_conv_attn")
    size = re.search(r"configurations: ([\d,]+)", r.stdout)
    assert size and int(size.group(1).replace(",", "")) == space.size(), (
        f"expected {space.size():,} configurations in:\n{r.stdout}")
    shown = dict(re.findall(r"^  (\S+/?\S*)\s+(\[.*\])$", r.stdout, flags=re.M))
    assert set(shown) == set(space.parameters()), (
        f"expected parameters {sorted(space.parameters())}, shown {sorted(shown)}")
    macs = re.search(r"MACs at 224px .*: ([\d.]+) \.\. ([\d.]+) G", r.stdout)
    assert macs and 0 < float(macs.group(1)) < float(macs.group(2)) < 20, (
        f"MACs range missing or not sane in:\n{r.stdout}")
    assert "proxy: ProxySpec(width_mult=0.25" in r.stdout, f"proxy spec not shown:\n{r.stdout}"


def test_show_counts_the_feasible_configurations_of_a_small_space(tmp_path) -> None:
    from search_spaces._sampling import every_choice

    big = _main(["spaces", "show", "hybrid_conv_attn", "--probe", "200"])
    assert re.search(r"feasible under constraints: [\d.]+% of 200 random draws$", big.stdout,
                     flags=re.M), big.stdout
    small = _main(["spaces", "show", "linear_attention", "--probe", "50"])
    space = load_space("linear_attention")
    feasible = space.feasible_size()
    assert feasible == 756 and space.size() == 972  # pinned: a change in the counting shows
    assert feasible == sum(not space.violations(arch) for arch, _ in every_choice(space.sample))
    assert (f"feasible under constraints: {feasible:,} of {space.size():,} configurations "
            f"({feasible / space.size():.1%})") in small.stdout, small.stdout
    # choices that give the same model: every configuration meets the constraints, and half
    # of them repeat another's architecture (depth totals 4 and 5 both round to 1-1-1-1)
    doc = shipped_doc("tiny")
    doc["depth"] = {"total": [4, 5], "ratios": ["1:1:1:1"]}
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert load_space(str(path)).feasible_counts() == (72, 36)
    r = _main(["spaces", "show", str(path), "--probe", "20"])
    _ok(r)
    assert ("feasible under constraints: 72 of 72 configurations (100.0%), 36 distinct "
            "architectures") in r.stdout, r.stdout
    doc = shipped_doc("tiny")
    doc["constraints"] = {"max_macs": 1.0}  # nothing is that small
    path = tmp_path / "none.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = _main(["spaces", "show", str(path), "--probe", "20"])
    _ok(r)
    assert "feasible under constraints: 0 of 72 configurations (0.0%)" in r.stdout, r.stdout
    assert "no configuration meets the constraints: a search of this space is refused" \
        in r.stdout, r.stdout
    # too large to count: a share the draws miss is found by the local search, or said missing
    doc = shipped_doc("hybrid_conv_attn")
    for limit, line in (
            (3.65e8, "none of the 20 draws meets the constraints, but a local search found a "
                     "configuration that does (0.364 GMACs, 3.90 M params): a very small "
                     "feasible share"),
            (3.6e8, "none of the 20 draws meets the constraints, nor did a local search find "
                    "one (the nearest: max_macs: 0.364 GMACs > 0.36): a search of this space "
                    "is likely refused; loosen them")):
        doc["constraints"]["max_macs"] = limit
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        r = _main(["spaces", "show", str(path), "--probe", "20"])
        _ok(r)
        assert f"  {line}\n" in r.stdout, r.stdout


def test_every_choice_is_each_configuration_once() -> None:
    from search_spaces._sampling import every_choice

    for name in ("tiny", "convmixer", "linear_attention"):
        space = load_space(name)
        seen = [json.dumps(params, sort_keys=True) for _, params in every_choice(space.sample)]
        assert len(seen) == len(set(seen)) == space.size(), name
        hashes = {arch_hash(arch) for arch, _ in every_choice(space.sample)}
        assert len(hashes) == space.size(), name  # distinct answers, distinct architectures
    assert load_space("hybrid_conv_attn").feasible_size() is None  # too many to count


def test_sample(runs: dict) -> None:
    r = runs["sample"]
    _ok(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 5, f"expected 5 JSON lines, got {len(lines)}: {r.stdout}"
    space = load_space("linear_attention")
    for line in lines:
        rec = json.loads(line)
        arch = from_dict(rec["arch"])
        assert arch_hash(arch) == rec["hash"], f"hash {rec['hash']} != {arch_hash(arch)}"
        replay = space.sample(optuna.trial.FixedTrial(rec["params"]))
        assert arch_hash(replay) == rec["hash"], f"params {rec['params']} replay differently"
        assert space.violations(arch) == [], f"infeasible sample: {space.violations(arch)}"


def test_unknown_space_exits_2_with_one_line(runs: dict) -> None:
    r = runs["unknown"]
    assert r.returncode == 2, f"expected exit 2, got {r.returncode}: {r.stderr}"
    assert r.stdout == "", f"expected no output, got {r.stdout!r}"
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "unknown space 'no_such_space'; known: " in lines[0], (
        f"expected one line naming the space and the known ones, got {r.stderr!r}")


def test_run_search_with_a_bad_space_exits_2_naming_file_and_key(runs: dict) -> None:
    r = runs["bad"]
    assert r.returncode == 2, f"expected exit 2, got {r.returncode}: {r.stderr[-2000:]}"
    lines = r.stderr.splitlines()
    expected = f"error: {runs['bad_path']}: stages[2].mixer: must be one of "
    assert len(lines) == 1 and lines[0].startswith(expected), (
        f"expected one line starting {expected!r}, got {r.stderr!r}")
    assert "did you mean 'attention'" in lines[0], f"got {lines[0]!r}"
    assert not (runs["bad_path"].parent / "runs").exists(), "the run started before failing"


@pytest.mark.parametrize("n", ["0", "-1"])
def test_sample_refuses_a_count_below_one(n: str) -> None:
    r = _main(["spaces", "sample", "tiny", "-n", n])
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"error: -n must be an integer >= 1; got {n}", r.stderr


@pytest.mark.parametrize("argv, said", [
    (["sample", "tiny", "--seed", "-5"], "error: --seed must be in 0 .. 4294967295; got -5"),
    (["sample", "tiny", "--seed", str(2**64)],
     f"error: --seed must be in 0 .. 4294967295; got {2**64}"),
    (["show", "tiny", "--probe", "0"], "error: --probe must be an integer >= 1; got 0"),
])
def test_a_seed_or_probe_out_of_range_is_one_line(argv: list[str], said: str) -> None:
    r = _main(["spaces", *argv])  # --probe 0 was an IndexError traceback
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == said, r.stderr


def test_sample_into_a_pipe_that_closes_early_ends_quietly() -> None:
    # `spaces sample ... | head -c 100` ended in a BrokenPipeError traceback
    proc = subprocess.run(f"{sys.executable} -m nas spaces sample tiny -n 500 | head -c 100",
                          shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert len(proc.stdout) == 100
    assert proc.stderr == "", proc.stderr


def test_show_writes_a_files_own_text_as_escapes_never_to_the_terminal(tmp_path) -> None:
    """A space's name and description are the file's text: an escape sequence in them would
    drive the terminal (colours, a cleared screen, a retitled window) if printed raw."""
    doc = shipped_doc("tiny")
    doc["name"] = "red\x1b[31m"
    doc["description"] = "first line\x07\nsecond \x1b]0;title\x07 line"
    path = tmp_path / "esc.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    r = _main(["spaces", "show", str(path), "--probe", "5"])
    _ok(r)
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout, r.stdout[:300]
    head = r.stdout.splitlines()[:3]
    assert head == [f"space red\\x1b[31m ({path}), family metaformer", "  first line\\x07",
                    "  second \\x1b]0;title\\x07 line"], head
