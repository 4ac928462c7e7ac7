"""Branch pipelines' names: readable where they can be, within every limit for any branch name."""

from __future__ import annotations

import pytest

from pipeline.names import (
    BRANCH_PREFIX_MAX,
    LONGEST_ENVIRONMENT,
    Names,
    branch_names,
    branch_prefix,
    branch_problem,
    problem,
)

LONGEST_PROJECT = "p" + "x" * 37 + "z"  # 39: the longest project name the config accepts
NASTY = [
    "main",
    "feature-x",
    "feature/x",
    "Feature-X",
    "feature/X.2",
    "release/v1.2.3",
    "user/jane.doe/fix_BUG-42",
    "-leading-and-trailing-",
    "é/ü/日本語",
    "___",
    "a" * 250,
    "feature/" + "deep/" * 40 + "branch",
    "x.lock.y",
    "UPPER",
]


@pytest.mark.parametrize(
    ("project", "branch", "prefix"),
    [
        ("fraud", "feature-x", "fraud-feature-x-"),
        ("fraud", "feature/X.2", "fraud-feature-x-2-"),
        ("fraud", "user/jane.doe/fix_BUG-42", "fraud-user-jane-doe-fix-bug-42-"),
        ("fraud", "é/日本語", "fraud-"),  # nothing readable is left: PROJECT-HASH
        ("fraud", "a" * 100, "fraud-" + "a" * (BRANCH_PREFIX_MAX - len("fraud") - 8) + "-"),
        ("fraud-model", "feat--x", "fraud-model-feat-x-"),  # a run of hyphens is one hyphen
        (LONGEST_PROJECT[:32], "feature-x", LONGEST_PROJECT[:32] + "-"),  # no room for a slug
        (LONGEST_PROJECT[:31], "feature-x", LONGEST_PROJECT[:31] + "-"),
        (LONGEST_PROJECT[:30], "feature-x", LONGEST_PROJECT[:30] + "-f-"),  # room for one letter
        (LONGEST_PROJECT[:29], "x-feature", LONGEST_PROJECT[:29] + "-x-"),  # a cut never ends in a hyphen
    ],
)
def test_branch_prefix_reads_as_the_project_and_the_branch(project: str, branch: str, prefix: str) -> None:
    name = branch_prefix(project, branch)
    assert name.startswith(prefix)
    assert len(name) == len(prefix) + 6
    assert all(c in "0123456789abcdef" for c in name[-6:])


@pytest.mark.parametrize(
    "project", ["ab", "fraud", "fraud-detection-model", LONGEST_PROJECT[:31], LONGEST_PROJECT[:32]]
)
@pytest.mark.parametrize("branch", NASTY)
def test_every_name_of_a_branch_pipeline_fits_every_limit(project: str, branch: str) -> None:
    names = branch_names(project, branch)
    assert problem(Names(project)) is None  # a project the config accepts ...
    assert problem(names, (LONGEST_ENVIRONMENT, "qa")) is None  # ... makes branch names that fit
    assert len(names.project) <= BRANCH_PREFIX_MAX
    assert "--" not in names.project
    assert names.project[0].isalpha() and names.project[-1].isalnum()
    assert names.project.startswith(project + "-")  # the shared key's log-group grant covers it


def test_a_project_name_too_long_for_branch_pipelines_is_one_line() -> None:
    assert branch_problem(LONGEST_PROJECT[:32]) is None
    reason = branch_problem(LONGEST_PROJECT)
    assert reason == (
        f"branch pipelines need a project name of at most 32 characters ('{LONGEST_PROJECT}' is 39): "
        "their names are PROJECT-BRANCH-HASH within 39"
    )
    with pytest.raises(ValueError, match="at most 32"):
        branch_prefix(LONGEST_PROJECT, "x")


def test_branches_that_slug_alike_get_different_names() -> None:
    prefixes = {branch_prefix("fraud", branch) for branch in ("feature/x", "feature-x", "Feature-X", "feature.x")}
    assert len(prefixes) == 4
    long = {branch_prefix("fraud", "a" * 200 + tail) for tail in ("1", "2")}
    assert len(long) == 2


def test_the_same_branch_always_gets_the_same_names() -> None:
    assert branch_prefix("fraud", "feature/x") == branch_prefix("fraud", "feature/x")


@pytest.mark.parametrize("branch", ["qa", "prod", "endpoint-qa", "pipeline", "lint", "train", "approvals"])
def test_no_branch_spells_a_name_of_the_main_pipeline(branch: str) -> None:
    main, ours = Names("fraud"), branch_names("fraud", branch)
    envs = ["qa", "prod", branch]
    theirs = {main.pipeline, main.pipeline_stack, main.approval_topic, main.notification_topic}
    theirs |= {main.endpoint(e) for e in envs} | {main.endpoint_stack(e) for e in envs}
    theirs |= {main.codebuild_project(s) for s in ("lint", "train", "endpoint-test", branch)}
    mine = {
        ours.pipeline,
        ours.pipeline_stack,
        *(ours.endpoint(e) for e in envs),
        *(ours.endpoint_stack(e) for e in envs),
    }
    mine |= {ours.codebuild_project(s) for s in ("lint", "train", "endpoint-test")}
    assert not theirs & mine
