"""Settings checks and the resume rule, before anything starts (nas/_preflight.py)."""

from __future__ import annotations

import dataclasses

import pytest

from nas._preflight import (
    SEED_MAX,
    STUDY_NAME_MAX,
    check_resume,
    check_settings,
    check_study_name,
    meaning_changes,
)
from nas.errors import ConfigError
from nas.search import SearchConfig

BASE = SearchConfig(space="tiny")


@pytest.mark.parametrize("field, value, message", [
    ("budget", 0, "--budget must be an integer in 1..1000000; got 0"),
    ("epochs", -1, "--epochs must be an integer in 1..10000; got -1"),
    ("repeats", 0, "--repeats must be an integer in 1..100"),
    ("batch_size", 0, "--batch-size must be an integer >= 1; got 0"),
    ("seed", -1, f"--seed must be an integer in 0..{SEED_MAX}; got -1"),
    ("seed", 2**32, f"--seed must be an integer in 0..{SEED_MAX}"),
    ("max_concurrent", 0, "--max-concurrent must be an integer >= 1; got 0"),
    ("max_concurrent", -1, "--max-concurrent must be an integer >= 1; got -1"),
    ("lr", float("nan"), "--lr must be a finite number > 0"),
    ("lr", 0.0, "--lr must be a finite number > 0"),
    ("budget", True, "--budget must be an integer"),
    ("study", " x", "--study must be 1..100 characters"),
    ("study", "", "--study must be 1..100 characters"),
    ("study", "a/b", "--study must be 1..100 characters"),
    ("study", "x" * 300, "... (300 characters)"),
])
def test_bad_settings_are_one_line_config_errors(field, value, message):
    with pytest.raises(ConfigError) as info:
        check_settings(dataclasses.replace(BASE, **{field: value}))
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_good_settings_pass():
    check_settings(BASE)
    check_settings(dataclasses.replace(BASE, seed=SEED_MAX, max_concurrent=1, study="a.b-c_1"))
    assert check_study_name("x" * STUDY_NAME_MAX) == "x" * STUDY_NAME_MAX


STORED = {"epochs": 3, "batch_size": 64, "lr": 2e-3, "repeats": 1, "dataset": "clutter",
          "dataset_hash": None, "dataset_sizes": [6000, 2000, 2000], "dataset_resolution": 32,
          "proxy": {"resolution": 32, "width_mult": 0.25}, "seed": 0, "sampler": "nsga2",
          "budget": 20}


def test_sampler_seed_and_budget_may_change():
    new = {**STORED, "seed": 7, "sampler": "tpe", "budget": 200, "max_concurrent": 1}
    assert meaning_changes(STORED, new) == []
    assert check_resume("s", STORED, new, allow_change=False) == []


def test_a_changed_epoch_count_is_refused_naming_the_difference():
    new = {**STORED, "epochs": 1, "proxy": {"resolution": 16, "width_mult": 0.25}}
    with pytest.raises(ConfigError) as info:
        check_resume("s", STORED, new, allow_change=False)
    text = str(info.value)
    assert "study 's'" in text and "--epochs 3 -> 1" in text and "--allow-change" in text, text
    assert "re-run with the study's settings (add --epochs 3), use another" in text, text
    assert "'resolution': 16" in text and "\n" not in text, text
    assert check_resume("s", STORED, new, allow_change=True) == meaning_changes(STORED, new)


def test_keys_an_older_study_lacks_are_not_compared():
    old = {k: v for k, v in STORED.items() if k not in ("dataset_sizes", "proxy")}
    assert meaning_changes(old, {**STORED, "dataset_sizes": [1, 2, 3]}) == []
    assert meaning_changes(STORED, {**STORED, "dataset_sizes": (6000, 2000, 2000)}) == []


@pytest.mark.parametrize("field, value, message", [
    ("cpus_per_trial", 0.0, "--cpus-per-trial must be a finite number > 0; got 0.0"),
    ("gpus_per_trial", -0.5, "--gpus-per-trial must be a finite number >= 0; got -0.5"),
    ("gpus_per_trial", float("inf"), "--gpus-per-trial must be a finite number"),
    ("ray_address", " ", "--ray-address must be HOST:PORT"),
    ("ray_address", "127.0.0.1:99999", "--ray-address must be HOST:PORT of a running Ray "
     "cluster's head (port 1-65535; ray://HOST:PORT for Ray Client, or auto); got "
     "'127.0.0.1:99999'"),
    ("ray_address", "notahost", "--ray-address must be HOST:PORT"),
    ("ray_address", "localhost:²", "--ray-address must be HOST:PORT"),  # (was a traceback)
    ("ray_address", "http://[::1", "--ray-address must be HOST:PORT"),
    ("ray_address", "http://head:6379", "--ray-address must be HOST:PORT"),
])
def test_bad_placement_is_refused(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_settings(dataclasses.replace(BASE, **{field: value}))


def test_the_local_executor_refuses_more_than_one_trial_at_a_time():
    """--executor local --max-concurrent 5 ran one trial at a time, saying nothing."""
    local = dataclasses.replace(BASE, executor="local")
    with pytest.raises(ConfigError, match=r"^--executor local runs one trial at a time, in this "
                                          r"process; --max-concurrent 5 needs --executor ray"):
        check_settings(dataclasses.replace(local, max_concurrent=5))
    check_settings(dataclasses.replace(local, max_concurrent=1))
    check_settings(local)


@pytest.mark.parametrize("resources, cpus, gpus, most, expected", [
    ({"CPU": 2}, None, None, None, ({"cpu": 1.0, "gpu": 0.0}, 2, "1 CPU")),
    ({"CPU": 2}, None, None, 1, ({"cpu": 1.0, "gpu": 0.0}, 1, "1 CPU")),
    ({"CPU": 16, "GPU": 1}, None, None, None, ({"cpu": 16.0, "gpu": 1.0}, 1, "16 CPU + 1 GPU")),
    ({"CPU": 16, "GPU": 1}, None, 0.5, None, ({"cpu": 8.0, "gpu": 0.5}, 2, "8 CPU + 0.5 GPU")),
    ({"CPU": 16, "GPU": 4}, 2, 0.25, None, ({"cpu": 2.0, "gpu": 0.25}, 8, "2 CPU + 0.25 GPU")),
    ({"CPU": 16, "GPU": 2}, None, 0, None, ({"cpu": 1.0, "gpu": 0.0}, 16, "1 CPU")),
])
def test_placement_shares_the_cluster(resources, cpus, gpus, most, expected):
    from nas.search import placement

    assert placement(resources, cpus, gpus, most) == expected


def test_placement_beyond_the_cluster_is_refused():
    from nas.search import placement

    with pytest.raises(ConfigError, match="--gpus-per-trial 1 but the Ray cluster has 0 GPU") \
            as e:
        placement({"CPU": 2}, None, 1, None)
    assert str(e.value).endswith("; allowed: 0, or leave it out: trials then train on CPU")
    with pytest.raises(ConfigError, match="has 2 GPU.*; allowed: 0 or a fraction up to the GPU"):
        placement({"CPU": 8, "GPU": 2}, None, 3, None)
    with pytest.raises(ConfigError, match="--cpus-per-trial 4 but the Ray cluster has 2 CPU"):
        placement({"CPU": 2}, 4, None, None)


@pytest.mark.parametrize("resources, gpus, hinted", [
    ({"CPU": 16, "GPU": 1}, None, True),  # the default: a whole GPU per trial
    ({"CPU": 16, "GPU": 1}, 1, False),  # asked for on purpose
    ({"CPU": 16, "GPU": 1}, 0.25, False),
    ({"CPU": 2}, None, False),  # no GPU
])
def test_a_whole_gpu_per_trial_by_default_gets_a_hint(resources, gpus, hinted):
    from nas.search import placement, placement_hint

    per_trial, _, _ = placement(resources, None, gpus, None)
    hint = placement_hint(gpus, per_trial)
    assert (hint is not None) == hinted
    if hinted:
        assert hint.startswith("hint: ") and "--gpus-per-trial 0.0625" in hint


@pytest.mark.parametrize("address, endpoint", [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    (" head.example:1 ", ("head.example", 1)),
    ("ray://10.0.0.1:10001", ("10.0.0.1", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("auto", None),
])
def test_a_ray_address_is_read_as_host_and_port(address, endpoint):
    from nas._preflight import ray_endpoint

    assert ray_endpoint(address) == endpoint


def test_joining_an_address_where_nothing_answers_fails_at_once_in_one_line(tmp_path):
    # ray.init would retry such an address for minutes and not return on Ctrl-C; and the
    # refusal comes before the study exists (it would otherwise fix the study's settings). A
    # process of its own: in this one the test session's Ray may be up, which a search uses.
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from db import Store

    with socket.socket() as s:  # a loopback port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{tmp_path}/nas.db"
    Store(url)  # an existing database: the refused run must add nothing to it
    root = Path(__file__).resolve().parents[2]
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "run_search.py", "--space", "tiny", "--db", url,
                           "--runs-dir", str(tmp_path), "--ray-address", f"127.0.0.1:{port}"],
                          cwd=root, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"error: cannot join the Ray cluster at --ray-address "
                               f"127.0.0.1:{port}: nothing answers at 127.0.0.1 port {port}")
    assert Store(url).list_studies() == []
    assert took < 60, took  # imports included; the probe itself has CONNECT_TIMEOUT_S


def test_probing_an_address_where_nothing_answers_takes_no_time():
    import socket
    import time

    from nas.search import _probe_head

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match="nothing answers at 127.0.0.1 port"):
        _probe_head(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 5


def test_auto_is_probed_where_ray_would_go_before_the_study_exists(monkeypatch):
    # "auto" went straight to ray.init, which failed only after the study and a run were made
    import socket
    import subprocess

    from nas.search import _probe_head

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # where ray.init("auto") would go (Ray turns a loopback host into this node's address)
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match=rf"^cannot join the Ray cluster at --ray-address auto: "
                                          rf"nothing answers at \S+ port {port} "):
        _probe_head("auto")
    monkeypatch.delenv("RAY_ADDRESS")
    gcs = subprocess.run(["pgrep", "-f", "gcs_server"], capture_output=True).stdout.strip()
    if gcs:  # this session's own Ray (or another) is up: "auto" would join it, as Ray does
        return
    with pytest.raises(ConfigError, match=r"^cannot join the Ray cluster at --ray-address auto: "
                                          r"Could not find any running Ray instance on this "
                                          r"machine .*start one with `ray start --head`"):
        _probe_head("auto")


def test_a_bad_lease_limit_is_refused_before_the_study_exists(tmp_path, monkeypatch):
    from db import Store
    from nas.search import SearchConfig, run_search

    monkeypatch.setenv("NAS_LEASE_STALE_S", "abc")
    url = f"sqlite:///{tmp_path}/nas.db"
    Store(url)
    with pytest.raises(ConfigError, match=r"^\$NAS_LEASE_STALE_S must be a number of seconds"):
        run_search(SearchConfig(space="tiny", db_url=url, runs_dir=str(tmp_path)),
                   log=lambda line: None)
    assert Store(url).list_studies() == []


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf"])
def test_a_bad_outage_wait_is_refused_before_the_study_exists(tmp_path, monkeypatch, raw):
    from db import Store
    from nas.search import SearchConfig, run_search

    monkeypatch.setenv("NAS_DB_OUTAGE_S", raw)
    url = f"sqlite:///{tmp_path}/nas.db"
    Store(url)
    with pytest.raises(ConfigError, match=r"^\$NAS_DB_OUTAGE_S must be a number of seconds "
                                          rf">= 0 .*; got '{raw}'$"):
        run_search(SearchConfig(space="tiny", db_url=url, runs_dir=str(tmp_path)),
                   log=lambda line: None)
    assert Store(url).list_studies() == []


def test_the_local_executor_names_this_machine_when_placement_does_not_fit():
    from nas.search import placement

    with pytest.raises(ConfigError, match="--gpus-per-trial 0.5 but this machine has 0 GPU"):
        placement({"CPU": 2, "GPU": 0}, 2, 0.5, 1, what="this machine")
    with pytest.raises(ConfigError, match="--cpus-per-trial 64 but this machine has 2 CPU"):
        placement({"CPU": 2}, 64, 0.0, 1, what="this machine")


@pytest.mark.parametrize("reply, said", [
    (b"HTTP/1.0 400 Bad request\r\n\r\n", "b'HTTP/1.0 '"),  # a web server
    (None, "nothing within the timeout"),  # a server that never answers
    (b"", "it closed the connection"),
])
def test_joining_a_port_where_something_else_answers_fails_in_one_line(monkeypatch, reply, said):
    # ray.init would wait minutes on a server that is not a Ray head: a gRPC (HTTP/2) opening
    # is tried first, and only a SETTINGS frame back counts as a Ray head
    import socket
    import threading
    import time

    import nas.search
    from nas.search import _probe_head

    monkeypatch.setattr(nas.search, "CONNECT_TIMEOUT_S", 0.5)
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if reply is None:
                time.sleep(1.5)
            elif reply:
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ConfigError) as info:
            _probe_head(f"127.0.0.1:{port}")
    finally:
        thread.join(5)
        server.close()
    text = str(info.value)
    assert text.startswith(f"cannot join the Ray cluster at --ray-address 127.0.0.1:{port}: "
                           f"127.0.0.1 port {port} answers, but not as a Ray head"), text
    assert said in text and "\n" not in text, text


@pytest.fixture
def http2_stub():
    """A port where a server answers the HTTP/2 opening with a SETTINGS frame, as a Ray head's
    gRPC server does, and then never answers a call."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    conns = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conns.append(conn)
            conn.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # an empty SETTINGS frame

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in conns:
        conn.close()


def test_a_server_that_speaks_http2_but_is_not_a_ray_head_is_refused_in_one_line(
        monkeypatch, capfd, http2_stub):
    # Ray's own client asking for the cluster id tells it from a head (ray.init would wait on
    # it for minutes)
    import time

    import nas.search
    from nas.search import _probe_head

    monkeypatch.setattr(nas.search, "GCS_CALL_TIMEOUT_S", 1.0)
    monkeypatch.delenv("RAY_USE_TLS", raising=False)
    port = http2_stub
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        _probe_head(f"127.0.0.1:{port}")
    took = time.monotonic() - start
    text = str(info.value)
    assert text.startswith(f"cannot join the Ray cluster at --ray-address 127.0.0.1:{port}: "
                           f"127.0.0.1 port {port} answers, but not as a Ray head (no answer "
                           f"to Ray's GCS call: "), text
    assert "\n" not in text and took < 10, (text, took)
    assert capfd.readouterr().err == ""  # Ray's client logs nothing of its own
    # a Ray Client address (ray://) is a proxy that serves no GCS: it is not asked
    _probe_head(f"ray://127.0.0.1:{port}")


def test_a_space_name_that_cannot_be_a_study_name_asks_for_study(tmp_path):
    from pathlib import Path

    from nas.errors import ConfigError
    from nas.search import SearchConfig, run_search

    text = (Path(__file__).resolve().parents[2] / "search_spaces" / "tiny.yaml").read_text()
    space = tmp_path / "odd.yaml"
    space.write_text(text.replace("name: tiny", "name: ../etc x", 1))
    with pytest.raises(ConfigError, match=r"^the study is named after the space, and space name "
                       r"'\.\./etc x' is not a valid study name; pass --study NAME \(must be"):
        run_search(SearchConfig(space=str(space), runs_dir=str(tmp_path / "runs")))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:",
                                 "sqlite:///file:x?mode=memory&uri=true"])
def test_an_in_memory_database_is_refused_before_any_training(tmp_path, url):
    # it trained the whole budget, then found no study: every result gone
    from nas.search import SearchConfig, run_search

    with pytest.raises(ConfigError, match=r"is an in-memory SQLite database: every result "
                                          r"would be lost when the run ends; give a file"):
        run_search(SearchConfig(space="tiny", db_url=url, runs_dir=str(tmp_path),
                                dataset="digits", executor="local"), log=lambda line: None)
    assert not (tmp_path / "cache").exists()  # refused before the dataset was even built


def test_constraints_that_admit_nothing_are_refused_before_the_study_exists(tmp_path, capsys):
    # it used to create the study and record 200 skipped proposals before giving up
    from pathlib import Path

    from nas.cli import main

    shipped = Path(__file__).resolve().parents[2] / "search_spaces"
    # a small space is counted: none of its configurations meets them
    text = (shipped / "tiny.yaml").read_text()
    space = tmp_path / "none.yaml"
    space.write_text(text.replace("constraints:\n", "constraints:\n  max_macs: 1000000\n", 1))
    rc = main(["search", "--space", str(space), "--budget", "2", "--executor", "local",
               "--runs-dir", str(tmp_path / "runs"), "--dataset", "digits"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and line == (
        f"error: {space}: constraints: none of the 72 configurations meets them; loosen the "
        "constraints (`python -m nas spaces show SPACE` gives its cost ranges)"), line
    assert not (tmp_path / "runs").exists()
    # a large one is judged on 1,000 seeded draws, each constraint's rejections named
    text = (shipped / "hybrid_conv_attn.yaml").read_text()
    assert "  max_macs: 8.0e+9\n" in text
    space = tmp_path / "none_large.yaml"
    space.write_text(text.replace("  max_macs: 8.0e+9\n", "  max_macs: 1000000\n", 1))
    rc = main(["search", "--space", str(space), "--budget", "2", "--executor", "local",
               "--runs-dir", str(tmp_path / "runs"), "--dataset", "digits"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and line.startswith(
        f"error: {space}: constraints: no feasible configuration in 1000 random draws "
        "(max_macs rejected 1000, e.g. "), line
    assert " GMACs > 0.001; conv_before_attention rejected " in line, line
    assert line.endswith(") nor in a local search from 20 more (the nearest: max_macs: 0.364 "
                         "GMACs > 0.001); loosen the constraints (`python -m nas spaces show "
                         "SPACE` gives its cost ranges and feasible share)"), line
    assert not (tmp_path / "runs").exists()


def test_a_small_space_with_few_feasible_architectures_is_counted_not_guessed(tmp_path):
    # a budget was checked against configurations, not distinct feasible architectures
    from pathlib import Path

    from search_spaces import load_space

    text = (Path(__file__).resolve().parents[2] / "search_spaces" / "tiny.yaml").read_text()
    space = tmp_path / "widths.yaml"
    assert '  multipliers: ["1:2:4:8"]\n' in text, text
    space.write_text(text.replace('  multipliers: ["1:2:4:8"]\n',
                                  '  multipliers: ["1:2:4:8", "2:4:8:16"]\n'))
    s = load_space(str(space))
    assert s.size() == 144 and s.feasible_size() == 108  # 16 x 2:4:8:16 is 32 x 1:2:4:8


def test_an_unknown_dataset_is_refused_before_the_database_exists(tmp_path, capsys):
    from nas.cli import main

    rc = main(["search", "--space", "tiny", "--dataset", "imagenet", "--executor", "local",
               "--runs-dir", str(tmp_path / "runs")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and line.startswith("error: unknown dataset 'imagenet'; known datasets: "), line
    assert not (tmp_path / "runs").exists()  # no database created for nothing


def test_a_stored_study_with_a_test_split_objective_is_refused_by_name(tmp_path):
    # made before the test split was refused as an objective: the message names the study's
    # stored objectives, not an --objectives the user never gave
    from db import Store
    from nas.search import _study_objectives

    store = Store(f"sqlite:///{tmp_path}/nas.db")
    store.get_or_create_study("old", space="tiny", space_hash="h",
                              objectives=("test_accuracy:max", "macs:min"), config={})
    with pytest.raises(ConfigError) as e:
        _study_objectives(store, "old", None)
    assert str(e.value) == (
        "study 'old' was created with objectives test_accuracy:max, macs:min: 'test_accuracy' "
        "is measured on the held-out test split, which a search never selects on; optimise "
        "accuracy (validation) and read test_accuracy in `python -m nas pareto`; start a new "
        "--study")


def test_a_typed_budget_is_judged_before_a_damaged_database_opens(tmp_path):
    # of two mistakes, the cheaper one is named first; an inherited budget needs the database
    from nas.errors import StorageError
    from nas.search import SearchConfig, run_search

    db = tmp_path / "nas.db"
    db.write_bytes(b"not a database" * 100)
    cfg = SearchConfig(space="tiny", budget=73, db_url=f"sqlite:///{db}",
                       runs_dir=str(tmp_path), executor="local", inherit=("epochs",))
    with pytest.raises(ConfigError, match=r"^--budget 73 exceeds the 72 configurations"):
        run_search(cfg, log=lambda line: None)
    with pytest.raises(StorageError):
        run_search(dataclasses.replace(cfg, inherit=("budget", "epochs")), log=lambda line: None)
    assert db.read_bytes() == b"not a database" * 100


def test_a_run_refused_because_the_study_is_busy_does_not_say_it_continues_it(tmp_path):
    # it printed "study ... continues with its earlier runs' settings" and then the refusal
    from db import Store, StudyBusyError
    from nas.search import SearchConfig, run_search
    from search_spaces import load_space

    url = f"sqlite:///{tmp_path}/nas.db"
    with Store(url) as store:
        study = store.get_or_create_study(
            "busy", space="tiny", space_hash=load_space("tiny").hash,
            objectives=["accuracy:max", "macs:min"],
            config={"epochs": 1, "dataset": "digits", "seed": 7, "budget": 1})
        store.begin_run(study.id, config={"epochs": 1, "dataset": "digits", "seed": 7},
                        argv=["run_search.py"], versions={}, host="another-machine", pid=1)
    said: list[str] = []
    with pytest.raises(StudyBusyError, match=r"^study 'busy' is being searched by run 1 "):
        run_search(SearchConfig(space="tiny", budget=2, db_url=url, study="busy",
                                runs_dir=str(tmp_path), executor="local",
                                inherit=("seed", "epochs", "dataset")), log=said.append)
    assert not any("continues" in line for line in said), said


@pytest.mark.parametrize("executor", ["ray", "local"])
def test_a_placement_this_machine_lacks_is_refused_before_anything_opens(tmp_path, executor):
    # it was checked once Ray ran, after "nothing to run" had ended a study whose budget was
    # met (exit 0, with the impossible request recorded as a completed run)
    from nas.search import SearchConfig, run_search

    url = f"sqlite:///{tmp_path}/runs/nas.db"
    with pytest.raises(ConfigError, match=r"^--gpus-per-trial 5 but this machine has 0 GPU"):
        run_search(SearchConfig(space="tiny", db_url=url, runs_dir=str(tmp_path / "runs"),
                                gpus_per_trial=5, executor=executor), log=lambda line: None)
    with pytest.raises(ConfigError, match=r"^--cpus-per-trial 4096 but this machine has "):
        run_search(SearchConfig(space="tiny", db_url=url, runs_dir=str(tmp_path / "runs"),
                                cpus_per_trial=4096, executor=executor), log=lambda line: None)
    assert not (tmp_path / "runs").exists()
