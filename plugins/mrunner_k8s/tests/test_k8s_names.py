import re

from mrunner_k8s import names

RFC1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_rfc1123_lowercases_replaces_and_trims():
    assert names.rfc1123("Exp_0003") == "exp-0003"
    assert names.rfc1123("--a..b__c--") == "a-b-c"
    assert names.rfc1123("___") == "x"
    assert len(names.rfc1123("a" * 100)) == 63


def test_namespace_is_valid_and_distinct_when_changed():
    assert names.namespace("vision") == "vision"
    first, second = names.namespace("My_Project"), names.namespace("my-project!")
    assert RFC1123.match(first) and RFC1123.match(second)
    assert first != second != "my-project"
    assert len(names.namespace("P" * 200)) <= 63


def test_job_name_keeps_identity_when_the_experiment_name_is_long():
    sweep = "brave-turing-3f2a9c"
    long_name = "a-very-long-experiment-name-" * 5
    first = names.job(sweep, 7, 0, long_name)
    retry = names.job(sweep, 7, 1, long_name)
    other = names.job(sweep, 17, 0, long_name)
    for name in (first, retry, other):
        assert RFC1123.match(name) and len(name) <= 63
    assert first.startswith("brave-turing-3f2a9c-7-") and retry.startswith("brave-turing-3f2a9c-7-r1-")
    assert len({first, retry, other}) == 3
    assert names.job(sweep, 7, 0, long_name) == first  # deterministic: a repeat finds the same Job
    assert names.job(sweep, 2, 0, "Exp_0003.train") == "brave-turing-3f2a9c-2-exp-0003-train"


def test_label_values_and_image_repository():
    assert names.label_value("my project/x") == "my-project-x"
    assert names.label_value("-_x_-") == "x"
    assert names.image_repository("https://gcr.io/my-project/", "My Proj") == "gcr.io/my-project/my-proj"
    assert names.image_repository("127.0.0.1:5000", "demo") == "127.0.0.1:5000/demo"
