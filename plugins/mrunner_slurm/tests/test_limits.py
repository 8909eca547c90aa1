"""Reading a site's job limits from what sacctmgr, scontrol and squeue print (the remote command's output as
the loopback cluster and sites without accounting print it), and the one-line refusal."""

from __future__ import annotations

import pytest
from mrunner_slurm.limits import Limits, parse, refuse_beyond

from mrunner.errors import Refused

CONFIG = "AccountingStorageEnforce = associations,limits,qos\nClusterName = site\nMaxArraySize = 1501\n"

#: `squeue ... -o '%u|%a|%q|%t' | sort | uniq -c`: alice's 3 jobs in physics/normal (one running), 2 in
#: chem/long, and bob's 4 in physics/normal
QUEUE = """      2 alice|physics|normal|PD
      1 alice|physics|normal|R
      2 alice|chem|long|PD
      4 bob|physics|normal|R"""


def output(associations: str, qos: str, config: str = CONFIG, queued: str = QUEUE, groups: str = "") -> str:
    """As the remote command prints it: the user, then `sacctmgr show user withassoc` (default account first
    on every line), `show qos`, the config lines, the queue counted per user, account, QOS and state, and
    `show assoc accounts=...` (the accounts' own associations carry their Grp limits)."""
    return "\n@@\n".join(["alice", associations, qos, config, queued, groups]) + "\n"


def test_the_default_accounts_association_of_this_cluster_and_its_default_qos_bind():
    text = output(
        "physics|site|physics||100|50|normal|normal,long\nphysics|site|chem||7|7||normal\n"
        "physics|other|physics||1|1||normal\n"
        "physics|site|physics|gpu|2|2||normal",  # a partition's own association does not bind the others
        "normal|80|||\nlong|5|5||",
    )
    phrase = "MaxSubmitJobsPerUser=80 jobs queued or running of yours in QOS normal"
    running = {"AssocMaxJobsLimit": 50}
    assert parse(text) == Limits(80, 50, 1501, 3, phrase, running)  # the QOS leaves fewer than the association
    assert parse(text, account="chem", qos="long") == Limits(
        5,
        5,
        1501,
        2,
        "MaxSubmitJobsPerUser=5 jobs queued or running of yours in QOS long",
        {"AssocMaxJobsLimit": 7, "QOSMaxJobsPerUserLimit": 5},
    )


def test_account_and_qos_wide_limits_count_every_users_jobs_and_the_one_leaving_fewest_binds():
    qos = "normal|80|3|10|8"  # MaxSubmitPU 80, MaxJobsPU 3, GrpSubmit 10, GrpJobs 8
    groups = "site|physics|||12|6\nsite|physics|bob||1|1"  # the account's own line binds, not bob's
    text = output("physics|site|physics||100|50|normal|normal", qos, groups=groups)
    found = parse(text)
    # account: 12 - 7 (alice's 3 and bob's 4) = 5; QOS-wide: 10 - 7 = 3; alice's own: 100 - 3, 80 - 3
    assert (found.max_submit_jobs, found.jobs_in_queue, found.allowance) == (10, 7, 3)
    assert found.submit_limit == "GrpSubmitJobs=10 jobs queued or running in QOS normal (all its users' jobs count)"
    assert found.running == {
        "AssocMaxJobsLimit": 50,
        "AssocGrpJobsLimit": 6,
        "QOSMaxJobsPerUserLimit": 3,
        "QOSGrpJobsLimit": 8,
    }
    assert found.max_jobs == 3
    with pytest.raises(Refused, match=r"at most GrpSubmitJobs=10 jobs queued or running in QOS normal \(all its"):
        refuse_beyond(found, 4, "site")


def test_limits_count_only_where_enforced_and_nothing_is_known_without_accounting():
    unenforced = output("physics|site|physics||100|50|normal|normal", "", config=CONFIG.replace(",limits", ""))
    assert parse(unenforced).max_submit_jobs is None and parse(unenforced).max_array_size == 1501
    assert parse(unenforced).running == {}
    none = output("", "", config="ClusterName = site\nMaxArraySize = 1001\n", queued="")
    assert parse(none) == Limits(None, None, 1001, None) and parse(none).allowance is None


def test_a_submission_beyond_the_allowance_left_is_refused_in_one_line_naming_the_limit_and_the_option():
    limits = Limits(max_submit_jobs=20, max_jobs=16, max_array_size=1001, jobs_in_queue=4)
    refuse_beyond(limits, 16, "site")  # fits exactly
    with pytest.raises(Refused) as refused:
        refuse_beyond(limits, 50, "login.site (user alice)")
    message = str(refused.value)
    assert "\n" not in message
    assert "MaxSubmitJobs=20" in message and "4 of them queued" in message and "needs 50" in message
    assert "points_per_task: 4" in message  # ceil(50 / 16): what makes it fit now


def test_a_task_held_back_by_a_running_jobs_limit_is_queued_in_words_never_can_never_run():
    from mrunner_slurm.jobs import pending_reason

    from mrunner.records import CANNOT_RUN

    said = pending_reason("AssocMaxJobsLimit", {"AssocMaxJobsLimit": 16})
    assert said.startswith("queued: the site's limit of 16 running jobs (MaxJobs of your association")
    assert CANNOT_RUN not in said
    assert "limit of 2 running jobs" in pending_reason("QOSMaxJobsPerUserLimit", {"QOSMaxJobsPerUserLimit": 2})
    assert pending_reason("QOSGrpJobsLimit").startswith("queued: the site's limit on running jobs")
    assert CANNOT_RUN in pending_reason("PartitionNodeLimit")


def test_a_refusal_suggests_a_points_per_task_with_which_the_resource_classes_fit():
    limits = Limits(max_submit_jobs=6, max_jobs=None, max_array_size=1001, jobs_in_queue=0)
    with pytest.raises(Refused, match=r"points_per_task: 3, or auto"):  # 2 would leave 8 part-full tasks
        refuse_beyond(limits, 8, "site", 2, classes=[3, 3, 3, 3])
    with pytest.raises(Refused, match=r"its 7 resource classes need a job each at least") as refused:
        refuse_beyond(limits, 7, "site", 1, classes=[1] * 7)
    assert "points_per_task" not in str(refused.value)


def test_each_partitions_time_limit_is_read_and_a_task_beyond_it_is_refused_naming_the_key():
    from mrunner_slurm.limits import refuse_overtime

    text = output("", "") + "@@\n@@\ndebug*|infinite\nshort|5:00\nday|1-00:00:00\n"
    found = parse(text)
    assert found.max_times == {"debug": "infinite", "short": "5:00", "day": "1-00:00:00"}
    assert found.default_partition == "debug"
    refuse_overtime(found, [({"partition": "short", "time": "0:05:00"}, 1), ({"time": "unlimited"}, 4)], "site")
    refuse_overtime(found, [({"partition": "short", "time": 2, "sbatch_options": ["--time=4"]}, 3)], "site")
    with pytest.raises(Refused, match=r"at most 1440 minutes per job \(MaxTime=1-00:00:00\), and time=1-01:00:00"):
        refuse_overtime(found, [({"partition": "day", "time": "1-01:00:00"}, 1)], "site")
    with pytest.raises(Refused, match="a task of 3 points of time=2, one after another, asks for 6: set the context "):
        refuse_overtime(found, [({"partition": "short", "time": 2}, 3)], "site")
    with pytest.raises(
        Refused, match="a task of 4 points of time=3, 2 at once, asks for 6: .*points_per_task to at most 2 "
    ):
        refuse_overtime(found, [({"partition": "short", "time": 3, "points_at_once": 2}, 4)], "site")
