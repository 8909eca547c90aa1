"""The Slurm backend against the real loopback cluster (tests/services/slurm): submissions go over SSH as
mrtest through the real command line (or the dispatch API), and every check reads real outcomes back from
the cluster: files the experiments wrote, Slurm's own job listing, logs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from mrunner.testing import wait_for, write_context
from tests.leaks import CmdlineWatch
from tests.renderings import one, renderings

WRITER = """
import json, os, sys
import mrunner  # not installed on the cluster: mrunner ships its experiment side with the sweep
from mrunner.client import experiment_info
config = experiment_info()
result = {"parameters": mrunner.get_configuration(), "argv": sys.argv[1:], "attempt": config["attempt"],
          "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "weird": os.environ.get("WEIRD"),
          "prefix": sys.prefix, "storage": os.environ["STORAGE_DIR"], "mrunner": mrunner.__file__}
print("experiment", config["index"], "says hello", flush=True)
with open(os.path.join(os.environ["MRUNNER_EXPERIMENT_DIR"], "result.json"), "w", encoding="utf-8") as out:
    json.dump(result, out)
code = int(config["parameters"].get("exit", 0))
if code and not os.path.exists(os.path.join(os.environ["STORAGE_DIR"], "heal")):
    sys.exit(code)
"""


class Cluster:
    def __init__(self, service: dict, storage: str) -> None:
        self.service = service
        self.storage = storage

    def ssh(self, command: str, check: bool = True) -> str:
        result = subprocess.run(
            ["ssh", "-F", self.service["ssh_config"], self.service["alias"], command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode:
            raise AssertionError(f"{command}: {result.stderr}")
        return result.stdout

    def read(self, path: str) -> str:
        return self.ssh(f"cat {path}")


@pytest.fixture
def cluster(slurm_service: dict, tmp_path: Path, mrunner_home: Path) -> Cluster:
    """A context `test-slurm` whose storage_dir is this test's own folder on the cluster."""
    storage = f"{slurm_service['storage_dir']}/test-{uuid.uuid4().hex[:10]}"
    write_context(mrunner_home, "test-slurm", slurm_context(slurm_service, storage))
    (tmp_path / "train.py").write_text(WRITER)
    yield Cluster(slurm_service, storage)


def transport_key() -> dict[str, str]:
    """``MRUNNER_TEST_SSH=paramiko`` runs these tests with the paramiko transport (default: the context's
    default, OpenSSH here); the shared suite runs over both by itself."""
    chosen = os.environ.get("MRUNNER_TEST_SSH")
    return {"ssh": chosen} if chosen else {}


def slurm_context(service: dict, storage: str, **extra) -> dict:
    """The keys of a Slurm context on the loopback cluster whose storage_dir is ``storage``."""
    return {
        "backend": "slurm",
        "slurm_url": service["alias"],
        "ssh_config": service["ssh_config"],
        "storage_dir": storage,
        "partition": service["partition"],
        **transport_key(),
        **extra,
    }


def status(mrunner, sweep: str) -> dict:
    result = mrunner("status", sweep, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def single_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrunner: error: "), stderr
    return lines[0]


def result_of(cluster: Cluster, run: dict, project: str) -> dict:
    folder = f"{cluster.storage}/{project}/{run['sweep_id']}/{run['index']}-{run['name']}"
    return json.loads(cluster.read(f"{folder}/result.json"))


def test_a_grid_runs_as_one_array_and_every_experiment_gets_its_parameters(cluster, mrunner, tmp_path):
    result = mrunner("+context=test-slurm", "train.py", "-m", "lr=0.1,0.01", "seed=range(3)", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [r["state"] for r in runs] == ["completed"] * 6
    jobs = {r["backend_ref"].split("_")[0] for r in runs}
    assert len(jobs) == 1, "one job array for the whole sweep"
    assert [r["backend_ref"].split("_")[1] for r in runs] == [str(i) for i in range(6)]
    results = [result_of(cluster, r, document["sweep"]["project"]) for r in runs]
    assert [r["parameters"] for r in results] == [{"lr": lr, "seed": s} for lr in (0.1, 0.01) for s in range(3)]
    assert all(r["mrunner"].startswith(f"{cluster.storage}/.mrunner/client/") for r in results)
    logs = mrunner("logs", f"{sweep}/4")
    assert logs.returncode == 0 and "experiment 4 says hello" in logs.stdout
    # the code went into the content-addressed store and the code folder is assembled from it
    digest = document["sweep"]["snapshot_digest"]
    assert cluster.read(f"{cluster.storage}/.mrunner/code/{digest}/train.py") == WRITER
    sha = hashlib.sha256(WRITER.encode()).hexdigest()
    assert cluster.ssh(f"test -f {cluster.storage}/.mrunner/objects/{sha} && echo ok").strip() == "ok"


def test_a_second_dispatch_of_the_same_code_sends_no_file(cluster, mrunner):
    first = mrunner("+context=test-slurm", "train.py", "-m", "seed=1,2")
    assert first.returncode == 0, first.stderr
    assert "sent 1 of 1 files" in first.stderr
    second = mrunner("+context=test-slurm", "train.py", "-m", "seed=3,4")
    assert second.returncode == 0, second.stderr
    assert "sent" not in second.stderr


def test_code_folders_hold_exact_contents_and_modes_and_a_change_travels_as_a_delta(cluster, tmp_path, mrunner_home):
    from mrunner_slurm import deploy, transport

    from mrunner import snapshot
    from mrunner.reporter import Reporter

    project = tmp_path / "project"
    (project / "pkg" / "sub").mkdir(parents=True)
    for folder in ("pkg", "pkg/sub"):
        (project / folder / "__init__.py").write_text("")  # the same content twice: one object, two files
    (project / "pkg" / "model.py").write_text("DEPTH = 3\n")
    for i in range(40):  # enough files for the cluster side to write them on several threads
        (project / "pkg" / "sub" / f"layer_{i}.py").write_text(f"WIDTH = {i}\n")
    (project / "run.sh").write_text("#!/bin/sh\necho run\n")
    (project / "run.sh").chmod(0o755)
    (project / "same_as_run.sh").write_text("#!/bin/sh\necho run\n")  # an executable's content, not executable
    context = {"slurm_url": cluster.service["alias"], "ssh_config": cluster.service["ssh_config"], **transport_key()}

    def deploy_and_list() -> tuple[dict, dict[str, str]]:
        """Deploy the project; check the code folder holds exactly its files; return their modes there."""
        frozen = snapshot.take(project)
        facts = deploy.deploy(transport.connection(context), cluster.storage, frozen, Reporter(quiet=True))
        sums = cluster.ssh(f"cd {facts['code_dir']} && find . -type f -print0 | xargs -0 sha256sum")
        assert {line.split()[1][2:]: line.split()[0] for line in sums.splitlines()} == {
            path: sha for path, (sha, _) in frozen.files.items()
        }
        modes = cluster.ssh(f"cd {facts['code_dir']} && find . -type f -printf '%P %m\\n'")
        return facts, dict(line.split() for line in modes.splitlines())

    try:
        first, files = deploy_and_list()
        assert first["objects_sent"] == 43  # 45 files, 43 contents
        assert files["run.sh"] == "555" and files["same_as_run.sh"] == "444"  # read-only, executable kept
        assert files["pkg/model.py"] == "444"  # shared with the store, which nobody may edit
        folders = cluster.ssh(f"cd {first['code_dir']} && find . -type d -printf '%m\\n' | sort -u").split()
        assert folders == ["555"], "no file can be added to the code folder"
        (project / "pkg" / "model.py").write_text("DEPTH = 4\n")
        second, files = deploy_and_list()
        assert (second["objects_sent"], second["bytes_sent"] < 400) == (1, True)
        assert second["code_dir"] != first["code_dir"]
        assert cluster.read(f"{first['code_dir']}/pkg/model.py") == "DEPTH = 3\n"  # the first folder untouched
    finally:
        transport.close_all()


def test_the_connection_starts_from_the_context_file_before_hydra_is_imported(cluster, mrunner_home, tmp_path):
    """Backend.warm_up: the backend gets the context file's keys first and connects while Hydra loads."""
    code = textwrap.dedent("""
        import sys, threading
        from mrunner.commands.run import RunArguments, warm_up
        warm_up(RunArguments(target="train.py", context_name="test-slurm"))
        hydra_then = "hydra" in sys.modules
        for thread in threading.enumerate():
            if thread.name == "mrunner-slurm-connect":
                thread.join()
        from mrunner_slurm import transport
        print(hydra_then, [connection.target.alias for connection in transport._CACHE.values() if connection.alive])
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(None, 1) == ["False", f"['{cluster.service['alias']}']\n"]


def test_failures_report_exit_codes_and_resume_reruns_exactly_them(cluster, mrunner):
    result = mrunner("+context=test-slurm", "train.py", "-m", "exit=0,3", "--wait")
    assert result.returncode == 1, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["exit_code"]) for r in runs] == [("completed", 0), ("failed", 3)]
    cluster.ssh(f"touch {cluster.storage}/heal")
    resumed = mrunner("resume", sweep, "--wait")
    assert resumed.returncode == 0, resumed.stderr
    runs = status(mrunner, sweep)["experiments"]
    assert [(r["state"], r["attempt"]) for r in runs] == [("completed", 0), ("completed", 1)]
    assert runs[1]["backend_ref"].split("_")[0] != runs[0]["backend_ref"].split("_")[0]
    project = status(mrunner, sweep)["sweep"]["project"]
    assert result_of(cluster, runs[1], project)["attempt"] == 1


def test_an_attempt_whose_log_cannot_be_made_on_the_cluster_is_named_as_having_no_log(cluster, mrunner):
    """The sweep's log folder on the cluster's storage cannot be written (a read-only or foreign folder): the
    attempt fails before its script runs, and `logs` says it has no log in one line with the recorded end, as
    the local backend says it (``NoLog``), after what Slurm wrote about the task."""
    result = mrunner("+context=test-slurm", "train.py", "-m", "exit=3", "--wait")
    assert result.returncode == 1, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    project = status(mrunner, sweep)["sweep"]["project"]
    logs = f"{cluster.storage}/{project}/{sweep}/logs"
    cluster.ssh(f"touch {cluster.storage}/heal && chmod a-w {logs}")
    try:
        resumed = mrunner("resume", sweep, "--wait")
        assert resumed.returncode == 1, resumed.stderr
        shown = mrunner("logs", f"{sweep}/0")
    finally:
        cluster.ssh(f"chmod u+w {logs}")
    assert shown.returncode == 2, shown.stderr
    assert "has no log of attempt 1" in single_line(shown.stderr) and "Traceback" not in shown.stderr, shown.stderr
    assert "cannot set up the experiment: its log" in shown.stdout, shown.stdout


def test_cancel_stops_exactly_the_named_experiment_then_the_sweep(cluster, mrunner, tmp_path):
    (tmp_path / "sleepy.py").write_text("import time\nprint('start', flush=True)\ntime.sleep(120)\n")
    result = mrunner("+context=test-slurm", "sleepy.py", "-m", "seed=range(3)")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda runs: all(r["state"] == "running" for r in runs),
        timeout=60,
        every=0.5,
    )
    assert [r["state"] for r in runs] == ["running"] * 3
    assert mrunner("cancel", f"{sweep}/1").returncode == 0
    job = runs[0]["backend_ref"].split("_")[0]
    time.sleep(1)
    listing = cluster.ssh(f"squeue -h -r -j {job} -o '%i %T'")
    assert f"{job}_1 " not in listing and f"{job}_0 RUNNING" in listing and f"{job}_2 RUNNING" in listing
    assert [r["state"] for r in status(mrunner, sweep)["experiments"]] == ["running", "cancelled", "running"]
    assert mrunner("cancel", sweep).returncode == 0
    time.sleep(1)
    assert cluster.ssh(f"squeue -h -r -j {job} -t PENDING,RUNNING -o '%i'", check=False).strip() == ""
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda runs: all(r["state"] == "cancelled" for r in runs),
        timeout=10,
        every=0.5,
    )
    assert [r["state"] for r in runs] == ["cancelled"] * 3


def test_cancel_of_an_experiment_that_had_ended_keeps_its_real_end(cluster, mrunner, tmp_path):
    from mrunner.store import Store

    (tmp_path / "quick.py").write_text("import sys\nsys.exit(3)\n")
    result = mrunner("+context=test-slurm", "quick.py")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    [run] = Store().runs(sweep)  # the records as submitted, not refreshed from the cluster
    job = run.backend_ref.split("_")[0]
    cluster.ssh(f"while squeue -h -j {job} -o %i | grep -q .; do sleep 0.2; done")
    assert Store().runs(sweep)[0].state == "submitted"  # the records do not know yet that it ended
    cancelled = mrunner("cancel", sweep)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"cancelled 0 experiments of sweep {sweep} (1 had ended by itself first)"
    [run] = status(mrunner, sweep)["experiments"]
    assert (run["state"], run["exit_code"]) == ("failed", 3)


def test_logs_follow_streams_until_the_experiment_ends(cluster, mrunner, tmp_path):
    (tmp_path / "talk.py").write_text(
        "import time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(1)\n"
    )
    result = mrunner("+context=test-slurm", "talk.py")
    sweep = result.stdout.strip().splitlines()[-1]
    started = time.monotonic()
    followed = mrunner("logs", f"{sweep}/0", "-f", timeout=60)
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"line {i}" for i in range(4)]
    assert time.monotonic() - started < 30
    assert status(mrunner, sweep)["experiments"][0]["state"] == "completed"


@pytest.mark.parametrize("gpu,expected", [(1, {"0", "1"}), (2, {"0,1"})])
def test_a_gpu_request_becomes_gres_and_sets_cuda_visible_devices(cluster, mrunner, mrunner_home, gpu, expected):
    write_context(mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, gpu=gpu))
    result = mrunner("+context=test-slurm", "train.py", "--wait")
    assert result.returncode == 0, result.stderr
    assert " (1 experiment, 0-0) on " in result.stderr, result.stderr  # it said "1 experiments"
    sweep = result.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    run = document["experiments"][0]
    assert result_of(cluster, run, document["sweep"]["project"])["cuda"] in expected


@pytest.mark.parametrize(
    "keys,option,reason",
    [
        ({"gpu": 3}, "--gres=gpu:3", "Requested node configuration is not available"),
        ({"account": "limited"}, "--account=limited", "Invalid account"),  # an account the user is not in
        ({"nodes": 2}, "--nodes=2", "Requested node configuration is not available"),  # the partition has one
    ],
)
def test_a_context_slurm_refuses_shows_slurms_message_and_records_nothing(
    cluster, mrunner, mrunner_home, tmp_path, keys, option, reason
):
    """sbatch --test-only before the sweep is recorded (the backend's ``ready``): refused in one line with
    the option and Slurm's reason, the records never holding the sweep (``admit``, called only once it is
    recorded, never ran), nothing in the queue."""
    write_context(mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, **keys))
    traces = tmp_path / "traces"
    traces.mkdir()
    result = mrunner("+context=test-slurm", "train.py", "-m", "seed=1,2", env={"MRUNNER_TRACE_CALLS": str(traces)})
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert "refuses context test-slurm" in line and option in line, line
    assert reason in line and "nothing was submitted or recorded" in line, line
    assert json.loads(mrunner("status", "--json").stdout) == []
    called = set(os.listdir(traces))
    assert "Backend.ready" in called and "Backend.admit" not in called, called


def test_parameters_with_shell_syntax_and_unicode_arrive_exactly(cluster, mrunner, tmp_path):
    hostile = [
        'it\'s "quoted"',
        "a  b\tc",
        "$(touch /tmp/pwned)",
        "`id`",
        "line1\nline2",
        "zażółć 日本 ✓",
        "--x=$HOME;*",
    ]
    (tmp_path / "spec.py").write_text(
        "from mrunner import create_experiments\n"
        f"experiments_list = create_experiments('train.py', params_grid={{'text': {hostile!r}}},"
        f" script_args={hostile[:5]!r}, env={{'WEIRD': {hostile[4] + hostile[2]!r}}})\n"
    )
    result = mrunner("+context=test-slurm", "spec.py", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    for run, text in zip(document["experiments"], hostile):
        seen = result_of(cluster, run, document["sweep"]["project"])
        assert seen["parameters"] == {"text": text}
        assert seen["argv"] == hostile[:5]
        assert seen["weird"] == hostile[4] + hostile[2]
    assert cluster.ssh("test -e /tmp/pwned && echo yes || echo no").strip() == "no"


def test_a_sweep_larger_than_max_array_size_is_split_into_arrays(cluster, mrunner, small_max_array_size):
    result = mrunner("+context=test-slurm", "train.py", "-m", "seed=range(10)", "--wait")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    runs = document["experiments"]
    assert [r["state"] for r in runs] == ["completed"] * 10
    jobs = [r["backend_ref"].split("_")[0] for r in runs]
    assert len(set(jobs)) == 3, "10 experiments at MaxArraySize=4: arrays of 4, 4 and 2"
    assert max(int(r["backend_ref"].split("_")[1]) for r in runs) <= 3
    assert [result_of(cluster, r, document["sweep"]["project"])["parameters"]["seed"] for r in runs] == list(range(10))


@pytest.fixture
def small_max_array_size(slurm_service):
    start = Path(__file__).resolve().parents[3] / "tests" / "services" / "slurm" / "start.sh"
    subprocess.run([str(start)], env={**os.environ, "SLURM_MAX_ARRAY_SIZE": "4"}, check=True, capture_output=True)
    yield 4
    subprocess.run(
        [str(start)],
        env={**os.environ, "SLURM_MAX_ARRAY_SIZE": str(slurm_service["max_array_size"])},
        check=True,
        capture_output=True,
    )


def test_requirements_file_builds_a_virtualenv_once_and_reuses_it(cluster, mrunner, mrunner_home, tmp_path):
    (tmp_path / "requirements.txt").write_text("# nothing needed\n")
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(cluster.service, cluster.storage, requirements_file="requirements.txt"),
    )
    first = mrunner("+context=test-slurm", "train.py", "--wait")
    assert first.returncode == 0, first.stderr
    assert "virtualenv built" in first.stderr
    document = status(mrunner, first.stdout.strip().splitlines()[-1])
    prefix = result_of(cluster, document["experiments"][0], document["sweep"]["project"])["prefix"]
    assert prefix.startswith(f"{cluster.storage}/.mrunner/venvs/")
    second = mrunner("+context=test-slurm", "train.py", "seed=2", "--wait")
    assert second.returncode == 0, second.stderr
    assert "virtualenv built" not in second.stderr


def test_an_unknown_host_key_is_refused_with_its_fingerprint(cluster, mrunner, mrunner_home, tmp_path):
    (tmp_path / "empty_known_hosts").write_text("")
    config = Path(cluster.service["ssh_config"]).read_text()
    config = re.sub(r"UserKnownHostsFile .*", f"UserKnownHostsFile {tmp_path / 'empty_known_hosts'}", config)
    (tmp_path / "ssh_config").write_text(config)
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context({**cluster.service, "ssh_config": str(tmp_path / "ssh_config")}, cluster.storage),
    )
    result = mrunner("+context=test-slurm", "train.py")
    assert result.returncode == 3
    assert cluster.service["host_key_fingerprint"] in result.stderr
    assert "ssh-keyscan -p 2222 127.0.0.1" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "empty_known_hosts").read_text() == "", "never written on trust"


@pytest.mark.parametrize("ssh", ["openssh", "paramiko"])
def test_a_malformed_line_in_known_hosts_is_skipped_as_openssh_does(cluster, mrunner, mrunner_home, tmp_path, ssh):
    """A key pasted wrong (its type twice) above the cluster's own line: OpenSSH skips that line alone;
    paramiko's own loader raised InvalidHostKey out of the connection, a traceback."""
    known = Path(cluster.service["known_hosts"]).read_text()
    host, _, rest = known.splitlines()[0].partition(" ")
    (tmp_path / "known_hosts").write_text(f"{host} ssh-ed25519 {rest}\n{known}")
    config = Path(cluster.service["ssh_config"]).read_text()
    config = re.sub(r"UserKnownHostsFile .*", f"UserKnownHostsFile {tmp_path / 'known_hosts'}", config)
    (tmp_path / "ssh_config").write_text(config)
    service = {**cluster.service, "ssh_config": str(tmp_path / "ssh_config")}
    write_context(mrunner_home, "test-slurm", {**slurm_context(service, cluster.storage), "ssh": ssh})
    result = mrunner("+context=test-slurm", "train.py")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


def test_a_key_openssh_cannot_use_is_named_with_its_fix_not_as_a_login_to_make(
    cluster, mrunner, mrunner_home, tmp_path
):
    """OpenSSH ignores a key others may read, and a missing IdentityFile; the refusal that follows had read
    "needs an interactive login ... run `mrunner login`", which fails the same way."""
    key = tmp_path / "loose key"
    key.write_bytes(Path(cluster.service["key_file"]).read_bytes())
    key.chmod(0o644)
    config = Path(cluster.service["ssh_config"]).read_text()
    for identity, said in ((key, "chmod 600"), (tmp_path / "no-such-key", "does not exist")):
        (tmp_path / "ssh_config").write_text(re.sub(r"IdentityFile .*", f'IdentityFile "{identity}"', config))
        service = {**cluster.service, "ssh_config": str(tmp_path / "ssh_config")}
        write_context(mrunner_home, "test-slurm", {**slurm_context(service, cluster.storage), "ssh": "openssh"})
        result = mrunner("+context=test-slurm", "train.py")
        line = single_line(result.stderr)
        assert result.returncode == 3 and str(identity) in line and said in line, line
        assert "mrunner login" not in line, line


def test_paramiko_with_no_key_to_offer_names_the_missing_key_file_at_once(cluster, mrunner, mrunner_home, tmp_path):
    """No IdentityFile that exists and no agent: paramiko's "No authentication methods available" had been
    retried as a connection failure and ended "cannot reach ... after 4 tries"."""
    missing = tmp_path / "no-such-key"
    config = re.sub(r"IdentityFile .*", f"IdentityFile {missing}", Path(cluster.service["ssh_config"]).read_text())
    (tmp_path / "ssh_config").write_text(config)
    service = {**cluster.service, "ssh_config": str(tmp_path / "ssh_config")}
    write_context(mrunner_home, "test-slurm", {**slurm_context(service, cluster.storage), "ssh": "paramiko"})
    result = mrunner("+context=test-slurm", "train.py", env={"SSH_AUTH_SOCK": ""})
    line = single_line(result.stderr)
    assert result.returncode == 3 and str(missing) in line and "IdentityFile" in line, line
    assert "cannot reach" not in line, line


def test_an_unreachable_host_is_a_clear_error(cluster, mrunner, mrunner_home):
    write_context(
        mrunner_home, "test-slurm", slurm_context({**cluster.service, "alias": "mrtest@127.0.0.1:1"}, cluster.storage)
    )
    started = time.monotonic()
    result = mrunner("+context=test-slurm", "train.py")
    assert result.returncode == 3
    assert "cannot reach" in result.stderr and "127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


def test_an_upload_cut_off_halfway_leaves_no_trusted_object_and_a_retry_is_clean(cluster, mrunner, tmp_path):
    from mrunner_slurm import deploy, transport

    from mrunner import snapshot
    from mrunner.errors import BackendError
    from mrunner.reporter import Reporter

    for i in range(24):
        (tmp_path / f"blob{i}.bin").write_bytes(os.urandom(1_000_000))
    frozen = snapshot.take(tmp_path)
    context = {"slurm_url": cluster.service["alias"], "ssh_config": cluster.service["ssh_config"], **transport_key()}
    connection = transport.connection(context)
    real_stream = deploy.stream

    def cut(tree, sources, snapshot):  # the stream stops in the middle of an object, as when the link drops
        for number, chunk in enumerate(real_stream(tree, sources, snapshot)):
            if number == 18:  # a chunk per 1 MB blob: 18 MB of 24 MB (the cluster stores in 4 MiB batches)
                yield chunk[: len(chunk) // 2]
                return
            yield chunk

    deploy.stream = cut
    try:
        with pytest.raises(BackendError, match="cut off"):
            deploy.deploy(connection, cluster.storage, frozen, Reporter(quiet=True))
    finally:
        deploy.stream = real_stream
        transport.close_all()
    objects = f"{cluster.storage}/.mrunner/objects"
    check = cluster.ssh(
        f'cd {objects} && for f in *; do [ "$(sha256sum < "$f" | cut -c1-64)" = "$f" ] || echo BAD $f; done; ls | wc -l'
    )
    assert "BAD" not in check
    assert 0 < int(check.split()[-1]) < 24, "the objects before the cut were kept, not the one cut off"
    assert cluster.ssh(f"ls -A {cluster.storage}/.mrunner/code", check=False).strip() == ""  # nor a folder aside
    result = mrunner("+context=test-slurm", "train.py", "--wait")
    assert result.returncode == 0, result.stderr
    document = status(mrunner, result.stdout.strip().splitlines()[-1])
    assert document["experiments"][0]["state"] == "completed"
    code = f"{cluster.storage}/.mrunner/code/{document['sweep']['snapshot_digest']}"
    sums = cluster.ssh(f"cd {code} && sha256sum blob*.bin")
    for line in sums.splitlines():
        sha, name = line.split()
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == sha


def test_a_secret_reaches_the_experiment_and_nothing_else(cluster, mrunner, mrunner_home, tmp_path):
    token = f"FAKE-{uuid.uuid4().hex}-TOKEN"
    (tmp_path / "secret.py").write_text(
        "import hashlib, os, time\n"
        "seen = hashlib.sha256(os.environ['MY_FAKE_TOKEN'].encode()).hexdigest()\n"
        "open(os.path.join(os.environ['MRUNNER_EXPERIMENT_DIR'], 'seen'), 'w').write(seen)\n"
        "time.sleep(3)\n"
    )
    write_context(
        mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, secrets=["MY_FAKE_TOKEN"])
    )
    # The cluster is this machine: every process of the submission and of the job is in /proc.
    with CmdlineWatch(token, witness="secret.py") as arguments:
        result = mrunner("+context=test-slurm", "secret.py", env={"MY_FAKE_TOKEN": token})
        assert result.returncode == 0, result.stderr
        sweep = result.stdout.strip().splitlines()[-1]
        runs = wait_for(
            lambda: status(mrunner, sweep)["experiments"],
            lambda runs: runs[0]["state"] == "running",
            timeout=60,
            every=0.5,
        )
        job = runs[0]["backend_ref"].split("_")[0]
        while_running = cluster.ssh(
            f"scontrol show job {job}; scontrol show job -d {job}; squeue -a -o '%all'; "
            f"scontrol write batch_script {job} -"
        )
        runs = wait_for(
            lambda: status(mrunner, sweep)["experiments"],
            lambda runs: runs[0]["state"] == "completed",
            timeout=60,
            every=0.5,
        )
    assert runs[0]["state"] == "completed"
    assert arguments.witnessed, "the process scan never saw the experiment running"
    assert arguments.hits == [], f"the secret was in process arguments: {arguments.hits}"
    project = status(mrunner, sweep)["sweep"]["project"]
    folder = f"{cluster.storage}/{project}/{sweep}"
    assert (
        cluster.read(f"{folder}/{runs[0]['index']}-{runs[0]['name']}/seen")
        == hashlib.sha256(token.encode()).hexdigest()
    )
    assert cluster.ssh(f"stat -c %a {folder}/.secrets.env").strip() == "600"
    everything = cluster.ssh(f"grep -r -l -F --exclude=.secrets.env -- {token} {cluster.storage}; true")
    assert everything.strip() == "", f"the secret leaked into {everything}"
    assert token not in while_running
    assert token not in result.stdout + result.stderr + mrunner("logs", f"{sweep}/0").stdout
    for database in (mrunner_home / "data").rglob("*.db*"):
        assert token.encode() not in database.read_bytes()
    assert token not in cluster.ssh(
        "cat /tmp/mrunner-services/slurm/slurmctld.log /tmp/mrunner-services/slurm/jobcomp.txt", check=False
    )


def test_the_dry_run_shows_the_batch_script_the_submission_writes(cluster, mrunner, mrunner_home, tmp_path):
    """Backend.render: `--dry-run` prints the sbatch command and the batch script of the first job array,
    made by the code that submits; the real submission then writes exactly that script on the cluster (the
    sweep id aside) and submits that array. The secret is only sourced, never in the script; the dry run
    records and stores nothing."""
    token = f"FAKE-{uuid.uuid4().hex}-TOKEN"
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(
            cluster.service,
            cluster.storage,
            secrets=["MY_FAKE_TOKEN"],
            time=5,
            prolog_cmd=["export STAGE='set up'", 'test -n "$STAGE"'],
            array_parallelism=2,
        ),
    )
    args = ("+context=test-slurm", "train.py", "-m", f"lr={uuid.uuid4().int % 1000},0.01", "seed=1,2")
    dry = mrunner(*args, "--dry-run", env={"MY_FAKE_TOKEN": token})
    assert dry.returncode == 0, dry.stderr
    assert token not in dry.stdout + dry.stderr
    assert not (mrunner_home / "data").exists() or not any(p.is_file() for p in (mrunner_home / "data").rglob("*"))
    found = renderings(dry.stdout)
    command_title, command = one(found, "sbatch command of job array mrunner-<sweep id>-a0-0-3-4 ")
    script_title, script = one(found, "batch script ")
    path = re.fullmatch(r"batch script (.+) of job array mrunner-<sweep id>-a0-0-3-4 \(on .+\)", script_title)[1]
    assert path.startswith(f"{cluster.storage}/") and path.endswith("/slurm/mrunner-<sweep id>-a0-0-3-4.sh")
    assert command.startswith("sbatch --parsable --job-name=mrunner-<sweep id>-a0-0-3-4 --array=0-3%2 ")
    assert command.endswith(f" {path}") and "--time=5" in command
    assert "MY_FAKE_TOKEN" not in script and ".secrets.env" in script  # sourced at start, never written here

    real = mrunner(*args, "--wait", env={"MY_FAKE_TOKEN": token})
    assert real.returncode == 0, real.stderr
    sweep = real.stdout.strip().splitlines()[-1]
    assert cluster.read(path.replace("<sweep id>", sweep)) == script.replace("<sweep id>", sweep)
    runs = status(mrunner, sweep)["experiments"]
    assert [run["state"] for run in runs] == ["completed"] * 4
    job = runs[0]["backend_ref"].split("_")[0]
    shown = cluster.ssh(f"scontrol show job {job}")  # the array sbatch accepted: the rendered command's
    assert f"JobName=mrunner-{sweep}-a0-0-3-4" in shown and f"Command={path.replace('<sweep id>', sweep)}" in shown


def test_a_repeated_submission_of_the_same_attempt_finds_its_job(cluster, mrunner, tmp_path):
    """mrunner died after sbatch but before recording: submitting the same attempt again must not make a second job."""
    from mrunner import planning, snapshot, submission
    from mrunner.backend import SubmitOptions
    from mrunner.records import PLANNED, RunUpdate
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    (tmp_path / "sleepy.py").write_text("import time\ntime.sleep(5)\n")
    os.chdir(tmp_path)
    plan = planning.Plan(
        planning.Request(target=Path("sleepy.py"), overrides=["seed=1,2"], multirun=True, context_name="test-slurm")
    )
    store = Store()
    sweep, runs = submission.submit(plan, store, Reporter(quiet=True))
    first = [r.backend_ref for r in store.runs(sweep.id)]
    store.apply(sweep.id, [RunUpdate(r.index, PLANNED, backend_ref="") for r in runs], keep_terminal=False)
    again = store.runs(sweep.id)
    frozen = snapshot.load(sweep.snapshot_digest, root=Path(sweep.project_dir))
    submission.hand_over(sweep, again, frozen, store, Reporter(quiet=True), SubmitOptions())
    assert [r.backend_ref for r in store.runs(sweep.id)] == first
    job = first[0].split("_")[0]
    # one line per array job id: a running array task has its own squeue line, so lines are not jobs
    arrays = cluster.ssh(
        f"squeue -h --states=all -o '%F %j' -u mrtest | grep -F mrunner-{sweep.id} | cut -d' ' -f1 | sort -u"
    )
    assert arrays.split() == [job], "exactly one job array for the sweep"
    cluster.ssh(f"scancel {job}")


NEPTUNE_EXPERIMENT = """\
import mrunner

config = mrunner.get_configuration(with_neptune=True)
run = mrunner.neptune_run()
for step in range(3):
    run["train/score"].append(config.lr * step)
run.stop()
print("tracked", config.lr, flush=True)
"""


def test_neptune_offline_runs_on_the_cluster(slurm_service, mrunner, mrunner_home, tmp_path):
    """Neptune in offline mode, end to end on Slurm: a virtualenv built on the cluster from a requirements file
    holds neptune (kept in a storage_dir of its own, so later runs reuse it), mrunner's shipped experiment side
    starts the run, and each experiment's offline data names it and holds its tags, parameters and job id."""
    storage = f"{slurm_service['storage_dir']}/neptune-tests"  # the virtualenv stays for the next run
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context(
            slurm_service,
            storage,
            requirements_file="requirements.txt",
            neptune=True,
            neptune_mode="offline",
            tags=["slurm-neptune"],
            time=10,
        ),
    )
    (tmp_path / "requirements.txt").write_text("neptune==1.14.0.post2\n")
    (tmp_path / "tracked.py").write_text(NEPTUNE_EXPERIMENT)
    result = mrunner(
        "+context=test-slurm", "tracked.py", "-m", "lr=0.5,2", "--name", "Tracked Run", "--wait", timeout=900
    )
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[-1]
    document = status(mrunner, sweep)
    cluster = Cluster(slurm_service, storage)
    for run in document["experiments"]:
        assert run["state"] == "completed", mrunner("logs", f"{sweep}/{run['index']}").stdout[-2000:]
        folder = f"{storage}/{document['sweep']['project']}/{sweep}/{run['index']}-tracked-run"
        log = cluster.ssh(f"cat {folder}/.neptune/offline/*/data-1.log")
        ops = [json.loads(line)["obj"] for line in log.splitlines() if line.strip()]
        values = {tuple(op["path"]): op.get("value") for op in ops if op["type"].startswith("Assign")}
        assert values[("sys", "name")] == "tracked-run"
        assert values[("parameters", "lr")] == run["parameters"]["lr"]
        assert values[("mrunner", "backend")] == "slurm" and values[("mrunner", "sweep")] == sweep
        assert values[("mrunner", "scheduler")] == "slurm" and values[("mrunner", "job_id")] == run["backend_ref"]
        tags = {t for op in ops if op["type"] == "AddStrings" and op["path"] == ["sys", "tags"] for t in op["values"]}
        assert tags == {sweep, "slurm-neptune"}


ISOLATED = """
import json, os, sys, time
import helpers  # a module of the project, imported from the experiment's own folder
from mrunner.client import experiment_info
seed = experiment_info()["parameters"]["seed"]
seen = {"out_before": os.path.exists("out.txt"), "outputs_before": sorted(os.listdir("outputs")),
        "data": open("data/input.txt").read(), "helper": helpers.VALUE, "cwd": os.getcwd(),
        "env": {k: os.environ[k] for k in ("MRUNNER_EXPERIMENT_DIR", "MRUNNER_CHECKPOINT_DIR", "MRUNNER_ATTEMPT")}}
with open("out.txt", "w") as out:
    out.write(str(seed))
with open("outputs/result.txt", "w") as out:
    out.write(str(seed))
time.sleep(2)  # the other experiment of the sweep writes its own meanwhile
seen["out_after"] = open("out.txt").read()
seen["outputs_after"] = open("outputs/result.txt").read()
try:
    open("data/input.txt", "a").write("changed")
    seen["snapshot_written"] = True
except OSError:
    seen["snapshot_written"] = False
json.dump(seen, open("seen.json", "w"))
"""


def test_relative_writes_land_in_each_experiments_own_folder_and_the_project_stays_readable(cluster, mrunner, tmp_path):
    from mrunner.layout import Layout

    (tmp_path / "iso.py").write_text(ISOLATED)
    (tmp_path / "helpers.py").write_text("VALUE = 42\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("project data")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / ".gitkeep").write_text("")
    sweeps = []
    for seeds in ("1,2", "3"):
        result = mrunner("+context=test-slurm", "iso.py", "-m", f"seed={seeds}", "--wait")
        assert result.returncode == 0, result.stderr
        sweeps.append(status(mrunner, result.stdout.strip().splitlines()[-1]))
    assert sweeps[0]["sweep"]["snapshot_digest"] == sweeps[1]["sweep"]["snapshot_digest"]
    for document in sweeps:
        for run in document["experiments"]:
            where = Layout(cluster.storage, document["sweep"]["project"], run["sweep_id"], run["index"], run["name"])
            seen = json.loads(cluster.read(f"{where.experiment_dir}/seen.json"))
            seed = str(run["parameters"]["seed"])
            assert (seen["out_after"], seen["outputs_after"]) == (seed, seed)
            assert (seen["out_before"], seen["outputs_before"]) == (False, [])  # nothing of another sweep
            assert (seen["data"], seen["helper"]) == ("project data", 42)
            assert seen["cwd"] == where.experiment_dir
            assert seen["env"] == {
                "MRUNNER_EXPERIMENT_DIR": where.experiment_dir,
                "MRUNNER_CHECKPOINT_DIR": where.checkpoint_dir,
                "MRUNNER_ATTEMPT": "0",
            }
            assert seen["snapshot_written"] is False
            assert cluster.read(where.log_file(0)) == "" and cluster.read(where.exit_code_file(0)).strip() == "0"
    code = f"{cluster.storage}/.mrunner/code/{sweeps[0]['sweep']['snapshot_digest']}"
    assert cluster.ssh(f"cd {code} && find . | sort").split() == [
        ".",
        "./data",
        "./data/input.txt",
        "./helpers.py",
        "./iso.py",
        "./outputs",
        "./outputs/.gitkeep",
        "./train.py",
    ]
    assert cluster.read(f"{code}/data/input.txt") == "project data"


def test_an_experiment_of_a_large_project_costs_a_few_files(cluster, mrunner, tmp_path):
    """A 2,000-file project: each experiment's folder holds a link per top-level entry, not per file."""
    from mrunner.layout import Layout

    for folder, count in (("pkg", 1000), ("data", 998)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            (tmp_path / folder / f"f{i}.txt").write_text(f"{folder} {i}\n")
    (tmp_path / "count.py").write_text("print(open('data/f7.txt').read(), end='')\n")
    result = mrunner("+context=test-slurm", "count.py", "-m", "seed=1,2", "--wait", timeout=300)
    assert result.returncode == 0, result.stderr
    document = status(mrunner, result.stdout.strip().splitlines()[-1])
    for run in document["experiments"]:
        where = Layout(cluster.storage, document["sweep"]["project"], run["sweep_id"], run["index"], run["name"])
        assert cluster.read(where.log_file()) == "data 7\n"
        made = cluster.ssh(
            f"find {where.experiment_dir} {where.checkpoint_dir} {where.config_file} {where.log_file()} "
            f"{where.exit_code_file()} | wc -l"
        )
        # the folder, 4 links (count.py, data, pkg, train.py), the checkpoint folder, config, log, exit code
        assert int(made) == 9, made


RELAY = """
import pathlib, socket, sys, threading
pathlib.Path(__file__).with_name("relayed").write_text(" ".join(sys.argv[1:]))
connection = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def upstream():
    while data := sys.stdin.buffer.read1(65536):
        connection.sendall(data)
    connection.shutdown(socket.SHUT_WR)
threading.Thread(target=upstream, daemon=True).start()
while data := connection.recv(65536):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
"""


@pytest.mark.parametrize("transport", ["openssh", "paramiko"])
def test_an_alias_from_an_included_file_reached_through_a_proxy_command(
    cluster, mrunner, mrunner_home, tmp_path_factory, transport
):
    """As `ssh` reads it: the main file includes a folder of files by a glob relative to its ~/.ssh, one of
    them defines the alias, reached through a ProxyCommand (a relay that counts as the whole network path).
    OpenSSH reads ~/.ssh of the account, not of $HOME, so there the sandbox's file is given as ssh_config and
    includes by an absolute glob (paramiko follows $HOME, and relative includes are its reader's own)."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh" / "conf.d").mkdir(parents=True)
    (home / "relay.py").write_text(RELAY)
    service = cluster.service
    glob = "conf.d/*" if transport == "paramiko" else f"{home}/.ssh/conf.d/*"
    (home / ".ssh" / "config").write_text(f"Include {glob}\n")
    (home / ".ssh" / "conf.d" / "cluster").write_text(
        textwrap.dedent(f"""\
        Host included-cluster
            HostName {service["host"]}
            Port {service["port"]}
            User {service["user"]}
            IdentityFile {service["key_file"]}
            UserKnownHostsFile {service["known_hosts"]}
            IdentitiesOnly yes
            ProxyCommand {sys.executable} {home / "relay.py"} %h %p
        """)
    )
    config = None if transport == "paramiko" else str(home / ".ssh" / "config")
    write_context(
        mrunner_home,
        "test-slurm",
        slurm_context({**service, "alias": "included-cluster", "ssh_config": config}, cluster.storage, ssh=transport),
    )
    result = mrunner("+context=test-slurm", "train.py", "--wait", env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "on included-cluster" in result.stderr
    assert (home / "relayed").read_text() == f"{service['host']} {service['port']}"


@pytest.mark.parametrize(
    "keys, command",
    [
        ({"modules_to_load": ["no-such-module/1.0"]}, "module load no-such-module/1.0"),
        ({"venv": "/nonexistent/venv"}, ". /nonexistent/venv/bin/activate"),
        ({"conda": "no-such-env"}, "conda activate no-such-env"),
        (
            {"prolog_cmd": ["export READY=1", "test -d /nonexistent-dataset", "echo never"]},
            "test -d /nonexistent-dataset",
        ),
    ],
)
def test_a_failing_environment_set_up_fails_the_experiment_and_says_why_in_its_log(
    cluster, mrunner, mrunner_home, keys, command
):
    write_context(mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, **keys))
    result = mrunner("+context=test-slurm", "train.py", "--wait")
    assert result.returncode == 1, result.stderr
    sweep = result.stdout.strip().splitlines()[0]
    [run] = status(mrunner, sweep)["experiments"]
    assert (run["state"], run["exit_code"]) == ("failed", 97)
    log = mrunner("logs", f"{sweep}/0")
    assert log.returncode == 0, log.stderr
    assert "mrunner: the environment set-up failed (exit " in log.stdout and f") at: {command}\n" in log.stdout
    assert "says hello" not in log.stdout and "echo never" not in log.stdout.split("at: ")[-1]


def test_logs_show_what_slurm_wrote_about_the_task(cluster, mrunner, tmp_path):
    (tmp_path / "slow.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(300)\n")
    result = mrunner("+context=test-slurm", "slow.py")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[0]
    wait_for(
        lambda: status(mrunner, sweep)["experiments"], lambda runs: runs[0]["state"] == "running", timeout=60, every=0.5
    )
    wait_for(lambda: mrunner("logs", f"{sweep}/0").stdout, lambda shown: "started" in shown, timeout=30, every=0.5)
    assert mrunner("cancel", sweep).returncode == 0
    job = status(mrunner, sweep)["experiments"][0]["backend_ref"]
    # slurmstepd writes its notice as the step ends
    shown = wait_for(
        lambda: mrunner("logs", f"{sweep}/0").stdout, lambda shown: "CANCELLED" in shown, timeout=30, every=0.5
    )
    before, _, after = shown.partition(f"mrunner: what Slurm wrote about task {job} (")
    assert "started" in before
    assert f"/slurm/{job}.out):\n" in after and "CANCELLED" in after, shown


def test_a_request_that_can_never_run_says_so_in_the_table_and_the_wait_line(cluster, mrunner, mrunner_home):
    """A request Slurm accepted that can no longer run: the experiment's job asks for 2 nodes of a one-node
    partition (changed with ``scontrol update`` while held, as a site admin or the user may; asked at
    submission, it is refused before anything is recorded: the test above). The table, the wait's first line
    and ``status --wait`` name it instead of waiting for ever."""
    write_context(
        mrunner_home, "test-slurm", slurm_context(cluster.service, cluster.storage, sbatch_options=["--hold"])
    )
    result = mrunner("+context=test-slurm", "train.py")
    assert result.returncode == 0, result.stderr
    sweep = result.stdout.strip().splitlines()[0]
    job = status(mrunner, sweep)["experiments"][0]["backend_ref"].split("_")[0]
    cluster.ssh(f"scontrol update jobid={job} NumNodes=2 && scontrol release {job}")
    runs = wait_for(
        lambda: status(mrunner, sweep)["experiments"],
        lambda runs: (runs[0]["detail"] or "").startswith("PartitionNodeLimit"),
        timeout=60,
        every=0.5,
    )
    assert runs[0]["state"] == "pending", runs
    assert "can never run as asked (more nodes than the partition has or allows)" in runs[0]["detail"]
    table = mrunner("status", sweep)
    assert "1 experiment: 1 pending (PartitionNodeLimit: can never run as asked" in table.stdout
    assert "REASON" in table.stdout.splitlines()[3] and "PartitionNodeLimit" in table.stdout.splitlines()[4]
    from mrunner import following
    from mrunner.reporter import Reporter
    from mrunner.store import Store

    class Seen(Exception):
        pass

    class Watching(Reporter):  # what --wait prints without a terminal, stopped at its first line
        def step(self, message):
            raise Seen(message)

    store = Store()
    with pytest.raises(Seen) as line:
        following.wait(store.sweep(sweep), store, Watching())
    assert str(line.value).startswith(f"sweep {sweep}: 1 pending (PartitionNodeLimit: can never run as asked")

    waited = mrunner("status", sweep, "--wait", timeout=240)  # ends instead of waiting for ever
    assert waited.returncode != 0, waited.stderr
    last = waited.stderr.strip().splitlines()[-1]
    assert last.startswith("mrunner: error: experiment ") and "waits for ever: Partition" in last, last
    assert "can never run as asked (more nodes" in last
    assert mrunner("cancel", sweep).returncode == 0


def test_a_connection_dropped_in_the_middle_of_a_command_is_one_line(cluster):
    """The TCP connection to the real sshd is cut while a command runs: no `exit status -1`."""
    import threading

    from mrunner_slurm import ssh

    from mrunner.errors import BackendError

    opened = ssh.connect(ssh.resolve(cluster.service["alias"], cluster.service["ssh_config"]))
    # The command says it started on stderr, which the call's own drain thread collects: a second reader of
    # stdout would race finish() for the line and could leave the connection standing.
    call = opened.start("echo started >&2; sleep 30")

    def cut_once_started() -> None:
        deadline = time.monotonic() + 20
        while not call.errors.chunks and time.monotonic() < deadline:
            time.sleep(0.01)
        opened.client.get_transport().sock.close()

    threading.Thread(target=cut_once_started).start()
    with pytest.raises(BackendError) as raised:
        call.finish()
    target = opened.target
    assert str(raised.value) == (
        f"the SSH connection to {target.alias} ({target.host}:{target.port}) was lost in the middle of a command"
    )
    with pytest.raises(BackendError, match="was lost"):
        opened.run("true")
    opened.close()


def test_a_stream_that_ends_where_paramiko_would_re_key_completes(cluster):
    """A command whose output ends near 512 MiB, where paramiko starts a key re-exchange by default: the
    server's close arrived during it and paramiko's transport thread deadlocked (paramiko issue 822), so the
    call failed after 30 s with "Key-exchange timed out". The connection keeps serving commands after."""
    from mrunner_slurm import ssh

    opened = ssh.connect(ssh.resolve(cluster.service["alias"], cluster.service["ssh_config"]))
    size = 512 << 20
    call = opened.start(f"head -c {size} /dev/zero")
    call.channel.shutdown_write()
    received = 0
    while data := call.channel.recv(1 << 20):
        received += len(data)
    assert (received, call.channel.recv_exit_status()) == (size, 0)
    assert opened.run("echo still here").stdout == b"still here\n"
    opened.close()
