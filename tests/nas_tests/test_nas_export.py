"""``python -m nas export`` and ``nas.export``: choosing the trial, refusing bad input in one line
with nothing written, exporting a preset whose files reproduce the model, timm registration.

The studies here are written with the real Store (SQLite) so that every state and tie exists;
tests/e2e_tests/test_export_e2e.py exports from a real search.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import yaml

from db import Store
from nas.cli import main
from nas.export import check_name, check_out_dir, default_name, pick_trial
from nas.models import arch_hash, from_dict, get_preset, register_timm, to_dict
from nas.models.presets import TIMM_NAMES
from nas_errors import ConfigError
from search_spaces import load_space

from ._export_checks import card_int, card_value, check_runtimes

ROOT = Path(__file__).resolve().parents[2]
OBJECTIVES = ("accuracy:max", "macs:min")

# number: (state, accuracy, macs, params, error)
TRIALS = {
    0: ("COMPLETE", 0.70, 2_000, 20, None),
    1: ("COMPLETE", 0.80, 5_000, 50, None),  # best overall
    2: ("FAIL", None, None, None, "training diverged: non-finite loss in epoch 1"),
    3: ("PRUNED", None, 3_000, 30, "pruned at epoch 1: val acc 0.5000 on front 2"),
    4: ("COMPLETE", 0.75, 3_000, 30, None),  # best within 4000 MACs, ties with #5 on accuracy
    5: ("COMPLETE", 0.75, 3_500, 35, None),
    6: ("DUPLICATE", None, None, None, "duplicate of completed trial #0"),
}


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> str:
    """A real SQLite results database with a study holding every state and an accuracy tie."""
    url = f"sqlite:///{tmp_path_factory.mktemp('db')}/nas.db"
    space = load_space("tiny")
    store = Store(url)
    study = store.get_or_create_study("s", space="tiny", space_hash=space.hash,
                                      objectives=OBJECTIVES, config={"epochs": 1})
    for n, (state, acc, macs, params, error) in TRIALS.items():
        arch, _ = space.sample_random(n)
        rec = store.start_trial(study.id, key=f"k{n}", arch_hash=arch_hash(arch),
                                arch=to_dict(arch), params={})
        store.finish_trial(rec.id, state=state, accuracy=acc,
                           accuracy_se=None if acc is None else 0.01, macs=macs,
                           params_count=params, metrics={"num_val": 2000}, error=error)
    tied = store.get_or_create_study("tied", space="tiny", space_hash=space.hash,
                                     objectives=OBJECTIVES, config={})
    for n in range(2):
        arch, _ = space.sample_random(10 + n)
        rec = store.start_trial(tied.id, key=f"k{n}", arch_hash=arch_hash(arch),
                                arch=to_dict(arch), params={})
        store.finish_trial(rec.id, state="COMPLETE", accuracy=0.9, accuracy_se=0.01,
                           macs=1_000, params_count=10)
    store.close()
    return url


def _trials(url: str, study: str = "s"):
    with Store(url) as store:
        return store.trials(study)


# --------------------------------------------------------------------------- picking


def test_pick_best_knee_and_numbered(study_db) -> None:
    trials = _trials(study_db)
    pick = lambda **kw: pick_trial(trials, OBJECTIVES, study="s", **kw).number  # noqa: E731
    assert pick(pick="best") == 1
    assert pick(pick="best", max_macs=4_000) == 4, "an accuracy tie goes to the cheaper trial"
    assert pick(trial=5) == 5
    from nas.analysis import knee_point

    assert pick(pick="knee") == knee_point(trials, OBJECTIVES).number
    # front (min MACs first): #0 (0.70, 2000), #4 (0.75, 3000), #1 (0.80, 5000); normalised
    # loss sums 1.0, 0.83, 1.0: the middle one is the knee
    assert pick(pick="knee") == 4
    assert pick(pick="knee", max_macs=2_500) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"trial": 9}, "study 's' has no trial #9; its trials: #0-#6"),
    ({"trial": 2}, "trial #2 of study 's' is FAIL (training diverged: non-finite loss in "
                   "epoch 1); only COMPLETE trials can be exported; completed trials: "
                   "#0, #1, #4, #5"),
    ({"trial": 3}, "trial #3 of study 's' is PRUNED (pruned at epoch 1"),
    ({"trial": 6}, "is DUPLICATE (duplicate of completed trial #0); only COMPLETE trials can be "
                   "exported; export the trial it repeats instead"),
    ({"pick": "best", "max_macs": 1_000}, "no completed trial of study 's' has MACs <= 1000; "
                                          "the cheapest is #0 with 2000"),
    ({"pick": "best", "trial": 1}, "give exactly one of --trial N and --pick knee|best"),
])
def test_pick_refusals_name_what_is_wrong(study_db, kwargs, message) -> None:
    with pytest.raises(ConfigError) as e:
        pick_trial(_trials(study_db), OBJECTIVES, study="s", **kwargs)
    assert message in str(e.value), f"expected {message!r} in: {e.value}"
    assert "\n" not in str(e.value)


def test_an_exact_tie_is_an_ambiguous_pick(study_db) -> None:
    with pytest.raises(ConfigError, match=r"--pick best is ambiguous in study 'tied': trials "
                                          r"#0, #1 tie at accuracy 0.9000, 1000 MACs and 10 "
                                          r"params; choose one with --trial N"):
        pick_trial(_trials(study_db, "tied"), OBJECTIVES, study="tied", pick="best")


def test_the_names_export_refuses_are_model_py_s_own() -> None:
    # model.py binds NAME as a module-level function: --name torch exported (exit 0) a file
    # whose torch.* calls then called the model's entry point
    import ast
    import builtins
    import keyword

    from nas._export_files import standalone_source
    from nas.export import reserved_names

    tree = ast.parse(standalone_source("x", {"img_size": 32}, "doc"))
    defined = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    assert {"torch", "nn", "build", "create_model", "NAME", "CONFIG", "_timm_entry"} <= defined
    assert reserved_names() == defined | set(keyword.kwlist) | set(dir(builtins))
    assert default_name("torch", 1) not in reserved_names()


def test_default_name_is_a_timm_style_identifier() -> None:
    assert default_name("tiny", 2) == "tiny_trial2"
    assert default_name("My-Study.v2", 13) == "my_study_v2_trial13"
    assert default_name("2024_run", 0) == "nas_2024_run_trial0"
    # names the CLI refuses, written by another tool: the default was "______etc_trial0", which
    # check_name refused, blaming a --name the user never gave
    for study, name in (("../../etc", "etc_trial0"), ("__init__", "init___trial0"),
                        ("ünï cödé", "n__c_d__trial0"), ("a\x1b[31m", "a__31m_trial0")):
        assert default_name(study, 0) == name and check_name(name) == name


# --------------------------------------------------------------------------- bad input, CLI


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(["export", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--study", "nope", "--trial", "1"], "no study named 'nope' in sqlite:///"),
    (["--study", "s", "--trial", "9"], "study 's' has no trial #9"),
    (["--study", "s", "--trial", "2"], "trial #2 of study 's' is FAIL"),
    (["--study", "s", "--trial", "3"], "trial #3 of study 's' is PRUNED"),
    (["--study", "tied", "--pick", "best"], "--pick best is ambiguous in study 'tied'"),
    (["--study", "s", "--trial", "1", "--max-macs", "4e9"], "--max-macs only applies to --pick"),
    (["--study", "s", "--pick", "best", "--max-macs", "-1"],
     "--max-macs must be a finite number > 0"),
    (["--study", "s", "--pick", "best", "--max-macs", "inf"],
     "--max-macs must be a finite number > 0; got inf"),
    (["--trial", "1"], "--trial needs --study; sqlite:///"),  # ... holds 's', 'tied'
    (["--pick", "knee"], "holds 's', 'tied'"),
    (["--preset", "caformer_s18", "--study", "s"], "--study is for --trial or --pick"),
    (["--preset", "cafromer_s18"], "unknown preset 'cafromer_s18'"),
    (["--preset", "caformer_s18", "--name", "Bad-Name"], "--name must be a lowercase Python"),
    (["--preset", "caformer_s18", "--name", "torch"], "--name 'torch' is taken: model.py "
                                                      "defines the model under its name"),
    (["--study", "s", "--trial", "1", "--name", "create_model"], "--name 'create_model' is "
                                                                 "taken"),
    (["--preset", "caformer_s18", "--name", "range"], "--name 'range' is taken"),
    (["--preset", "caformer_s18", "--name", "__init__"], "--name '__init__' is taken"),
    (["--preset", "caformer_s18", "--name", "resnet50"], "timm already has a model named "
                                                         "'resnet50'; choose another name"),
    (["--study", "s", "--trial", "1", "--name", "randformer_s12"],
     "'randformer_s12' is the name of a preset; choose another name"),
    (["--preset", "test_metaformer_tiny", "--img-size", "0"], "--img-size must be an integer"),
    (["--preset", "randformer_s12", "--img-size", "8192"],  # frozen matrices: 70 TB
     "--img-size 8192 and --num-classes 1,000: the model's weights alone need"),
    (["--preset", "test_metaformer_tiny", "--num-classes", "1000000000000"],  # the head
     "--img-size 224 and --num-classes 1,000,000,000,000: the model's weights alone need"),
    (["--pick", "knee", "--trial", "1"], "argument --trial: not allowed with argument --pick"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(study_db, tmp_path, capsys, argv,
                                                          message) -> None:
    out = tmp_path / "exports" / "x"
    code = None
    try:
        code, err = _cli(["--db", study_db, "--out", str(out), *argv], capsys)
    except SystemExit as e:  # argparse's own usage errors
        code, err = e.code, capsys.readouterr().err
    assert code == 2, f"expected exit 2, got {code}: {err}"
    assert message in err, f"expected {message!r} in: {err}"
    assert err.startswith("error: ") and err.count("\n") == 1, f"not one line: {err!r}"
    assert not (tmp_path / "exports").exists(), "nothing may be written on bad input"


_OOM = """
import resource, sys
import torch, timm  # their address space first
from nas.cli import main
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
resource.setrlimit(resource.RLIMIT_AS, ((vm + 256 * 1024) * 1024, resource.RLIM_INFINITY))
sys.exit(main(["export", "--preset", "test_metaformer_tiny", "--img-size", "2048",
               "--out", sys.argv[1]]))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_running_out_of_memory_is_one_line_and_leaves_nothing(tmp_path) -> None:
    """A real allocation failure: the export runs with 256 MB of address space to spare."""
    out = tmp_path / "exports" / "big"
    r = subprocess.run([sys.executable, "-c", _OOM, str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    assert r.stderr.startswith("error: --img-size 2048 and --num-classes 1,000: out of memory "
                               "while building or checking the model") and \
        r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "exports").exists(), list(tmp_path.rglob("*"))


def test_existing_out_is_refused_without_force_and_unrelated_dirs_even_with_it(
        tmp_path, capsys, monkeypatch) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    code, err = _cli(["--preset", "test_metaformer_tiny", "--out", str(taken)], capsys)
    assert (code, err.strip()) == (2, f"error: --out {taken} already exists; pass --force to "
                                      "replace it")
    code, err = _cli(["--preset", "test_metaformer_tiny", "--out", str(taken), "--force"],
                     capsys)
    assert code == 2 and "is not an export (no config.yaml and model.py)" in err, err
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    monkeypatch.setenv("HOME", str(tmp_path))  # a quoted '~/taken' (the shell left it) is
    #                                            the home folder's, as report's -o
    code, err = _cli(["--preset", "test_metaformer_tiny", "--out", "~/taken"], capsys)
    assert (code, err.strip()) == (2, f"error: --out {taken} already exists; pass --force to "
                                      "replace it")
    assert check_out_dir(tmp_path / "new", force=False) == tmp_path / "new"
    assert check_out_dir(tmp_path / "new" / "deeper" / "x", force=False) == \
        tmp_path / "new" / "deeper" / "x"
    (tmp_path / "a_file").write_text("")  # under a file: said before anything loads
    with pytest.raises(ConfigError, match=rf"^--out {tmp_path}/a_file/sub/x: cannot create its "
                                          rf"folder '{tmp_path}/a_file/sub': '{tmp_path}/a_file' "
                                          r"is a file, not a directory$"):
        check_out_dir(tmp_path / "a_file" / "sub" / "x", force=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_out_dir(empty, force=True) == empty
    empty.rmdir()
    _fake_export(empty, "")  # an earlier export, then a checkpoint of the user's in it
    (empty / "checkpoint-best.pth").write_text("")
    with pytest.raises(ConfigError, match=r"holds files an export does not write "
                                          r"\(checkpoint-best.pth\); move them away first"):
        check_out_dir(empty, force=True)


def _fake_export(d: Path, text: str) -> None:
    """A directory an export wrote, as far as ``check_out_dir`` looks: config.yaml and a
    model.py whose docstring says who wrote it."""
    d.mkdir()
    (d / "config.yaml").write_text(text)
    (d / "model.py").write_text('"""x: preset p, exported by metaformer-nas; needs only torch '
                                'and timm.\n"""\n')


def test_force_keeps_the_old_export_until_the_new_one_is_in_place(tmp_path) -> None:
    from nas.export import _move_into_place

    old, new = tmp_path / "out", tmp_path / ".out.partial-1"
    for d, text in ((old, "old"), (new, "new")):
        _fake_export(d, text)
    _move_into_place(new, old, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"], list(tmp_path.iterdir())
    assert (old / "config.yaml").read_text() == "new"


def test_force_replaces_only_what_an_export_wrote(tmp_path) -> None:
    """File names alone do not make an export: a project of the user's with a config.yaml,
    model.py and README.md of its own is refused (their model.py does not say who wrote it)."""
    mine = tmp_path / "myproj"
    mine.mkdir()
    for name in ("config.yaml", "model.py", "README.md"):
        (mine / name).write_text(f"my own {name}\n")
    with pytest.raises(ConfigError, match=r"is not an export \(its model.py does not say "
                                          r"'exported by metaformer-nas'\)"):
        check_out_dir(mine, force=True)
    _fake_export(tmp_path / "earlier", "old")
    (tmp_path / "earlier" / "model.onnx.data").write_bytes(b"")  # weights past ONNX's 2 GB
    assert check_out_dir(tmp_path / "earlier", force=True) == tmp_path / "earlier"


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_an_out_that_appears_while_exporting_is_left_as_it_is(tmp_path, force) -> None:
    """Something written at --out after the export's first check (another export, another
    program) is not replaced: checked again at the move, refused in one line, kept whole."""
    from nas.export import export, select_preset

    out = tmp_path / "out"
    if force:
        _fake_export(out, "an earlier export")

    def appear() -> None:  # just before the move into place
        if force:
            (out / "model.py").write_text("# the user's own, written meanwhile\n")
        else:
            out.mkdir()
        (out / "precious.txt").write_text("my thesis")

    with pytest.raises(ConfigError, match="appeared while the export ran|is not an export"):
        export(select_preset("test_metaformer_tiny"), out, img_size=32, force=force,
               before_commit=appear)
    assert (out / "precious.txt").read_text() == "my thesis"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "temporary dirs left"


def test_names_that_do_not_fit_are_refused_before_anything_runs(tmp_path) -> None:
    for n in (238, 300):  # 238 + 18 > 255: no room for '.NAME.partial-XXXXXXXX' beside it
        with pytest.raises(ConfigError, match=rf"its last part is {n} bytes long; at most 237"):
            check_out_dir(tmp_path / ("a" * n), force=False)
    assert check_out_dir(tmp_path / ("a" * 237), force=False) == tmp_path / ("a" * 237)


def test_a_disk_without_room_is_refused_before_writing(tmp_path) -> None:
    from types import SimpleNamespace

    from nas.export import _check_disk, _disk_full

    with pytest.raises(ConfigError, match=r"the export needs about [\d,]+ MB .* MB free; "
                                          "nothing was written"):
        _check_disk(tmp_path / "x", SimpleNamespace(params=10**15))
    _check_disk(tmp_path / "x", SimpleNamespace(params=1000))
    assert _disk_full(OSError(28, "No space left on device"))
    assert _disk_full(RuntimeError("Error while serializing: IoError(Os { code: 28, kind: "
                                   "StorageFull, message: \"No space left on device\" })"))
    assert not _disk_full(OSError(13, "Permission denied"))


def test_a_study_name_with_backslashes_and_escapes_makes_a_valid_model_py() -> None:
    from nas._export_files import standalone_source
    from nas.export import _model_py_doc
    from nas_errors import printable

    origin = f"trial #0 of study '{printable(chr(27) + 'C:' + chr(92) + 'xruns' + chr(92) + 'N')}'"
    source = standalone_source("x", {"img_size": 32}, _model_py_doc("x", origin))
    first = ast.get_docstring(ast.parse(source)).splitlines()[0]  # (a SyntaxError before)
    assert first == ("x: trial #0 of study '" + chr(92) + "x1bC:" + chr(92) + "xruns" + chr(92)
                     + "N', exported by metaformer-nas; needs only torch and timm."), first


def test_missing_sqlite_database_is_refused_not_created(tmp_path, capsys) -> None:
    db = tmp_path / "none.db"
    code, err = _cli(["--db", f"sqlite:///{db}", "--study", "s", "--pick", "knee", "--out",
                      str(tmp_path / "x")], capsys)
    assert code == 2 and f"--db sqlite:///{db}: no such SQLite file" in err, err
    assert not db.exists()
    runs = tmp_path / "runs"  # the default database's folder was created by the refusal
    code, err = _cli(["--runs-dir", str(runs), "--study", "s", "--trial", "0", "--out",
                      str(tmp_path / "x")], capsys)
    assert code == 2 and "no such SQLite file" in err and not runs.exists(), err


def test_bad_input_is_refused_before_torch_is_imported(tmp_path) -> None:
    (tmp_path / "x").mkdir()
    code = ("import sys; from nas.cli import main; "
            f"rc = main(['export', '--preset', 'caformer_s18', '--out', {str(tmp_path / 'x')!r}])"
            "; print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["2", "False"], (proc.stdout, proc.stderr)
    assert "already exists; pass --force" in proc.stderr


# --------------------------------------------------------------------------- a preset


@pytest.fixture(scope="module")
def preset_export(tmp_path_factory):
    """``python -m nas export --preset test_randformer_tiny`` (RandFormer-shaped, a preset timm
    lacks) at its own 32 px with 10 classes, with --force over an empty directory."""
    out = tmp_path_factory.mktemp("exports") / "rand"
    out.mkdir()
    code = main(["export", "--preset", "test_randformer_tiny", "--num-classes", "10",
                 "--img-size", "32", "--out", str(out), "--force"])
    assert code == 0
    return out


def test_preset_export_files_reproduce_the_model(preset_export, tmp_path) -> None:
    out = preset_export
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.yaml", "model.py", "model.safetensors", "model.torchscript.pt", "model.onnx",
         "README.md"])
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary dirs left"
    assert from_dict(yaml.safe_load((out / "config.yaml").read_text())) == get_preset(
        "test_randformer_tiny", num_classes=10, img_size=32)
    check_runtimes(out, "test_randformer_tiny", tmp_path)


def test_preset_card_states_its_numbers(preset_export) -> None:
    card = (preset_export / "README.md").read_text()
    spec = get_preset("test_randformer_tiny", num_classes=10, img_size=32)
    from nas.models import analytic_cost, build_model

    cost = analytic_cost(spec)
    assert card_int(card, "params (exported)") == cost.params == sum(
        p.numel() for p in build_model(spec, device="meta").parameters())
    assert card_int(card, "MACs (exported, batch 1)") == cost.macs
    assert card_value(card, "classes") == "10"
    assert "The preset `test_randformer_tiny`" in card and "no proxy accuracy" in card
    assert "--model test_randformer_tiny --num-classes 10 --img-size 32" in card
    # a preset under its own name is already a timm model in the project: not register_timm
    assert 'timm.create_model(\"test_randformer_tiny\", num_classes=10, img_size=32)' in card
    assert "register_timm" not in card
    assert (f"`python -m nas export --preset test_randformer_tiny --num-classes 10 --img-size 32 "
            f"--out {preset_export} --force`") in card, "the card quotes the command as given"


# --------------------------------------------------------------------------- timm


@pytest.mark.parametrize("name", ["identityformer_s12", "randformer_s12", "test_metaformer_tiny"])
def test_presets_timm_lacks_are_timm_models(name) -> None:
    assert name not in TIMM_NAMES and timm.is_model(name)
    model = timm.create_model(name, pretrained=False, num_classes=7, img_size=64,
                              drop_path_rate=0.1, device="meta")
    assert model.num_classes == 7 and model.pretrained_cfg["input_size"] == (3, 64, 64)
    with torch.device("meta"):
        assert model.eval()(torch.empty(2, 3, 64, 64)).shape == (2, 7)


def test_timm_registration_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model("randformer_s12", pretrained=True)
    with pytest.raises(ConfigError, match=r"unsupported model argument\(s\) \['global_pool'\]"):
        timm.create_model("randformer_s12", global_pool="max")
    with pytest.raises(ConfigError, match="timm already has a model named 'resnet50'"):
        register_timm("resnet50", get_preset("test_metaformer_tiny"))
    name = register_timm("nas_test_hybrid", get_preset("test_metaformer_tiny"))
    assert name in timm.list_models("nas_test_*")
    model = timm.create_model("nas_test_hybrid", pretrained=False, num_classes=3)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)  # stages 3-4: attention and UFO


def test_a_mixer_registered_at_run_time_is_refused_by_name(tmp_path) -> None:
    import dataclasses

    from torch import nn

    from nas.export import Selection, export
    from nas.models import MIXERS
    from nas.models.mixers import register_mixer

    # a default that is no JSON value (a class): fine in this process, timm's included
    @register_mixer(layout="nchw", kind="local", cost=lambda dim, grid: (0, 0, 0),
                    defaults={"act": nn.GELU})
    def my_mixer(dim: int, grid: tuple[int, int], act: type = nn.GELU) -> nn.Module:
        return act()

    try:
        base = get_preset("test_metaformer_tiny")
        first = dataclasses.replace(base.stages[0], mixer="my_mixer", mixer_args={})
        spec = dataclasses.replace(base, stages=(first, *base.stages[1:]))
        with pytest.raises(ConfigError, match="token mixer 'my_mixer' is registered in this "
                                              "process but not in nas/models/portable.py"):
            export(Selection(name="with_my_mixer", spec=spec, how="test"), tmp_path / "x",
                   img_size=32, num_classes=10)
        register_timm("with_my_mixer_in_timm", spec)  # its entry carries no CONFIG
        assert timm.create_model("with_my_mixer_in_timm", num_classes=10)(
            torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    finally:
        MIXERS.remove("my_mixer")
    assert not list(tmp_path.iterdir()), "nothing may be written"


@pytest.mark.parametrize("config", ["family: [1]\n", "stages: 5\n", "stages: [1, 2]\n",
                                    "- 1\n", "widths: {a: 1}\n"])
@pytest.mark.parametrize("name", ["caformer_s18", "test_metaformer_tiny", "some_export"])
def test_an_export_whose_config_is_no_architecture_is_skipped_with_a_warning(
        tmp_path, config: str, name: str) -> None:
    """Importing nas.models never fails because of $NAS_EXPORT_PATH: a config.yaml of the
    wrong shape (a preset's name checked its architecture and raised TypeError) is a
    warning naming the folder."""
    from nas.models._timm import register_exports

    (tmp_path / "model.py").write_text(f"NAME = {name!r}\n")
    (tmp_path / "config.yaml").write_text(config)
    with pytest.warns(UserWarning, match=rf"NAS_EXPORT_PATH: export '{tmp_path}' not "
                                         r"registered: "):
        assert register_exports(str(tmp_path)) == []


def test_a_bad_export_path_entry_is_one_warning_line(tmp_path) -> None:
    # Python's own warning display added the file, line number and source line: 3 lines
    env = {**os.environ, "NAS_EXPORT_PATH": str(tmp_path / "nothing-here")}
    r = subprocess.run([sys.executable, "-m", "nas", "export", "--preset", "nosuch", "--out",
                        str(tmp_path / "x")], cwd=ROOT, capture_output=True, text=True,
                       env=env, timeout=300)
    lines = r.stderr.splitlines()
    assert r.returncode == 2 and len(lines) == 2, r.stderr
    assert lines[0] == f"warning: NAS_EXPORT_PATH: '{tmp_path / 'nothing-here'}' holds no export"
    assert lines[1].startswith("error: unknown preset 'nosuch'; known: "), lines


@pytest.mark.parametrize("sig, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_signal_a_library_swallowed_still_stops_the_export(tmp_path, capsys, monkeypatch,
                                                                   sig, code) -> None:
    """A Ctrl-C (or SIGTERM) whose exception a step of the export caught and dropped, as a
    library may: the export still ends with the signal's exit code and writes nothing (make
    test once saw an export stopped mid-way by SIGINT finish and exit 0)."""
    import signal

    from nas import _export_files

    signum = getattr(signal, sig)
    checked = _export_files.check_standalone

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), signum)  # the CLI's handler raises here ...
            for _ in range(100):  # (delivered at the next bytecodes)
                pass
        except KeyboardInterrupt:  # ... and a library drops it
            pass
        return checked(*args, **kwargs)

    monkeypatch.setattr(_export_files, "check_standalone", swallowing)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (as in a terminal)
    try:
        out = tmp_path / "exports" / "x"
        rc = main(["export", "--preset", "test_metaformer_tiny", "--img-size", "32",
                   "--out", str(out)])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "not restored"
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert rc == code, err
    assert err == f"error: interrupted; nothing was written to {out}\n", err
    assert not out.exists() and not list((tmp_path / "exports").glob(".x.partial-*"))


def test_a_stop_signal_during_the_move_into_place_waits_for_it(tmp_path, capsys,
                                                                monkeypatch) -> None:
    """A SIGHUP (a closed terminal) while the files move into --out, replacing an earlier export
    with --force: held until the move is done, so neither export is lost half-way; then the
    command stops with 129 and says the export is in place (it said nothing was written)."""
    import signal

    import nas.export

    moved = nas.export._move_into_place

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGHUP)  # the CLI's handler records it ...
        for _ in range(100):  # (delivered at the next bytecodes)
            pass
        return moved(*args, **kwargs)  # ... and it is raised once this returned

    monkeypatch.setattr(nas.export, "_move_into_place", signalled)
    out = tmp_path / "out"
    _fake_export(out, "the earlier export")
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        rc = main(["export", "--preset", "test_metaformer_tiny", "--img-size", "32",
                   "--out", str(out), "--force"])
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL, "not restored"
    finally:
        signal.signal(signal.SIGHUP, previous)
    err = capsys.readouterr().err
    assert (rc, err) == (129, f"error: interrupted once the export was in place; {out} holds "
                              "it whole\n"), err
    assert "test_metaformer_tiny" in (out / "config.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a moved-aside export was left"


def test_the_card_lists_the_onnx_weights_file_when_there_is_one() -> None:
    from types import SimpleNamespace

    from nas._model_card import _files_section

    checks = {"standalone": 0.0, "torchscript": 0.0,
              "onnx": {"opset": 18, "onnxruntime": "1", "max_abs_diff": 0.0}}
    info = SimpleNamespace(checks=checks, spec=SimpleNamespace(in_chans=3, img_size=32),
                           files={"model.onnx": 10, "model.onnx.data": 2_200_000_000},
                           versions={}, command="")
    rows = [line for line in _files_section(info) if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows][-3:] == ["model.onnx", "model.onnx.data", "README.md"]
    assert "| 2,200,000,000 |" in rows[-2]
    info.files.pop("model.onnx.data")
    assert "model.onnx.data" not in "\n".join(_files_section(info))


def test_an_export_of_a_name_another_export_took_warns_and_timm_keeps_the_first(tmp_path
                                                                                 ) -> None:
    """Two exports may share a name (two databases' study 'tiny', trial 3): the first keeps it
    in timm's registry and the second says so, both as a model.py imported and through
    $NAS_EXPORT_PATH (where the second silently replaced the first); the same architecture
    again is no conflict."""
    import importlib.util
    import warnings

    from nas._export_files import standalone_source
    from nas.models import build_model, runtime_config
    from nas.models._timm import register_exports

    first = get_preset("test_metaformer_tiny", num_classes=10, img_size=32)
    second = get_preset("test_randformer_tiny", num_classes=10, img_size=32)

    def n_params(model) -> int:
        return sum(p.numel() for p in model.parameters())

    def folder(where: str, name: str, spec) -> Path:
        d = tmp_path / where
        d.mkdir()
        (d / "model.py").write_text(standalone_source(name, runtime_config(spec), "doc"))
        (d / "config.yaml").write_text(yaml.safe_dump(to_dict(spec), sort_keys=False))
        return d

    def load(d: Path):
        spec = importlib.util.spec_from_file_location(f"export_{d.name}", d / "model.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import does (timm's register_model reads it)
        spec.loader.exec_module(module)
        return module

    assert n_params(build_model(first)) != n_params(build_model(second))
    name = "twice_named_model_py"
    a = load(folder("a", name, first))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(folder("a_again", name, first))  # the same architecture: nothing to say
    with pytest.warns(UserWarning, match=rf"timm already has a model '{name}' from another "
                                         r"export, another architecture or size"):
        b = load(folder("b", name, second))
    assert n_params(timm.create_model(name)) == n_params(a.create_model())
    assert n_params(b.create_model()) == n_params(build_model(second))

    name = "twice_named_on_the_path"
    dirs = [folder("p1", name, first), folder("p2", name, second), folder("p3", name, first)]
    with pytest.warns(UserWarning) as caught:
        found = register_exports(os.pathsep.join(map(str, dirs)))
    assert [str(w.message) for w in caught] == [
        f"NAS_EXPORT_PATH: export '{dirs[1]}' not registered: its name '{name}' is already "
        f"export '{dirs[0]}''s, another architecture or size (export one of them again with "
        "another --name)"]
    assert found == [name, name]  # p1's, and p3's (the same architecture)
    assert n_params(timm.create_model(name)) == n_params(build_model(first))

    # across the two ways: a model.py imported after the path registered its name ...
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(folder("p1_imported", name, first))  # p1's own model.py: the same architecture
    with pytest.warns(UserWarning, match=rf"timm already has a model '{name}' from another "
                                         r"export, another architecture or size"):
        c = load(folder("c", name, second))
    assert n_params(timm.create_model(name)) == n_params(build_model(first))
    assert n_params(c.create_model()) == n_params(build_model(second))

    # ... and the path after a model.py took the name
    name = "imported_then_on_the_path"
    d = load(folder("d", name, first))
    same, other = folder("d_on_path", name, first), folder("e_on_path", name, second)
    with pytest.warns(UserWarning) as caught:
        assert register_exports(str(other)) == []
    assert [str(w.message) for w in caught] == [
        f"NAS_EXPORT_PATH: export '{other}' not registered: timm already has a model named "
        f"'{name}' from an export's model.py, another architecture or size (export it again with "
        "another --name)"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert register_exports(str(same)) == []  # timm has it already, from its model.py
    assert n_params(timm.create_model(name)) == n_params(d.create_model())

    # a preset exported under its own name (at other sizes) is that name's model already: the
    # path skips it silently; another architecture under a preset's name still warns
    preset = folder("preset_own_name", "test_metaformer_tiny", first)
    timm_own = folder("timm_own_name", "caformer_s18",  # timm's own entry has this name
                      get_preset("caformer_s18", num_classes=10, img_size=64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert register_exports(os.pathsep.join((str(preset), str(timm_own)))) == []
    impostor = folder("preset_impostor", "test_metaformer_tiny", second)
    with pytest.warns(UserWarning, match="'test_metaformer_tiny' is the name of a preset"):
        assert register_exports(str(impostor)) == []


def test_an_export_under_a_name_the_path_gave_another_architecture_warns(tmp_path) -> None:
    """NAS_EXPORT_PATH registered 'clashing_export' as one architecture in this process; an
    export of another under that name says so when it is made, not only once both are on the
    path; the same architecture at the same size is no clash."""
    from nas._export_files import standalone_source
    from nas.export import Selection, export
    from nas.models import runtime_config, with_overrides
    from nas.models._timm import path_export_clash, register_exports

    first = get_preset("test_metaformer_tiny", num_classes=10, img_size=32)
    second = get_preset("test_randformer_tiny", num_classes=10, img_size=32)
    d = tmp_path / "on_path"
    d.mkdir()
    (d / "model.py").write_text(standalone_source("clashing_export", runtime_config(first), "x"))
    (d / "config.yaml").write_text(yaml.safe_dump(to_dict(first), sort_keys=False))
    assert register_exports(str(d)) == ["clashing_export"]
    with pytest.warns(UserWarning, match=rf"NAS_EXPORT_PATH has an export named "
                                         rf"'clashing_export' in '{d}', another "
                                         r"architecture or size"):
        export(Selection(name="clashing_export", spec=second, how="test"), tmp_path / "b",
               img_size=32, num_classes=10)
    # the check export() makes, without a second export's 8 s: the same architecture at the
    # same size is no clash, at another size it is (timm.create_model(name) makes the first's)
    assert path_export_clash("clashing_export", first) is None
    assert path_export_clash("clashing_export", with_overrides(first, num_classes=5)) == str(d)
