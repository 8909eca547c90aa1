"""Reading a site's job limits from what sacctmgr, scontrol and squeue print (the remote command's output as
the loopback cluster and sites without accounting print it), and the one-line refusal."""

from __future__ import annotations

import pytest
from mrunner_slurm.limits import Limits, parse, refuse_beyond

from mrunner.errors import Refused

CONFIG = "AccountingStorageEnforce = associations,limits,qos\nClusterName = site\nMaxArraySize = 1501\n"


def output(associations: str, qos: str, config: str = CONFIG, queued: str = "3") -> str:
    """As the remote command prints it: the user, then `sacctmgr show user withassoc` (default account first
    on every line), `show qos`, the config lines and the count of queued jobs."""
    return "\n@@\n".join(["alice", associations, qos, config, queued]) + "\n"


def test_the_default_accounts_association_of_this_cluster_and_its_default_qos_bind():
    text = output(
        "physics|site|physics||100|50|normal|normal,long\nphysics|site|chem||7|7||normal\n"
        "physics|other|physics||1|1||normal\n"
        "physics|site|physics|gpu|2|2||normal",  # a partition's own association does not bind the others
        "normal|80|\nlong|5|5",
    )
    assert parse(text) == Limits(max_submit_jobs=80, max_jobs=50, max_array_size=1501, jobs_in_queue=3)
    assert parse(text, account="chem", qos="long") == Limits(5, 5, 1501, 3)


def test_limits_count_only_where_enforced_and_nothing_is_known_without_accounting():
    unenforced = output("physics|site|physics||100|50|normal|normal", "", config=CONFIG.replace(",limits", ""))
    assert parse(unenforced).max_submit_jobs is None and parse(unenforced).max_array_size == 1501
    none = output("", "", config="ClusterName = site\nMaxArraySize = 1001\n", queued="0")
    assert parse(none) == Limits(None, None, 1001, 0) and parse(none).allowance is None


def test_a_submission_beyond_the_allowance_left_is_refused_in_one_line_naming_the_limit_and_the_option():
    limits = Limits(max_submit_jobs=20, max_jobs=16, max_array_size=1001, jobs_in_queue=4)
    refuse_beyond(limits, 16, "site")  # fits exactly
    with pytest.raises(Refused) as refused:
        refuse_beyond(limits, 50, "login.site (user alice)")
    message = str(refused.value)
    assert "\n" not in message
    assert "MaxSubmitJobs=20" in message and "4 of them queued" in message and "needs 50" in message
    assert "points_per_task: 4" in message  # ceil(50 / 16): what makes it fit now
