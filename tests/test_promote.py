"""`make promote` / `make rollback`: decide (a table), rollback_target (a table), and the flows
against botocore Stubbers (SageMaker's registry, CloudFormation) pinning every call's parameters."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline import deploy
from pipeline.aws import AwsError
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.promote import (
    Move,
    Step,
    Version,
    decide,
    endpoint_deployment,
    promote,
    rollback_target,
    run_values,
    supplied_values,
)
from pipeline.stacks.endpoint import EndpointStack
from pipeline.synth import synthesize

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
GROUP = "iris-classifier"
STACK = "iris-classifier-endpoint-prod"
STACK_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/5b2c6f00-0000-4000-8000-000000000001"
PIPELINE_STACK = "iris-classifier-pipeline"
CS = "sagemaker-cd-20240501120000"
CS_ID = f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:changeSet/{CS}/7d3e8a00-0000-4000-8000-000000000004"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
BUCKET = "iris-classifier-models-111122223333"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/iris-classifier-sagemaker"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-0000-4000-8000-000000000002"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PIPELINE_OUTPUTS = {"SageMakerExecutionRoleArn": ROLE, "ArtifactKeyArn": KEY, "ModelBucketName": BUCKET}


def _arn(number: int) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{GROUP}/{number}"


def _job(number: int) -> str:
    return f"iris-classifier-train-{number:04d}"


# --- deciding ------------------------------------------------------------------------------------

BASE = dict(number=7, model_version="job-7", env="prod", force=False, reason=None)


@pytest.mark.parametrize(
    ("given", "step", "say"),
    [
        (dict(status="Approved", serving="job-6"), Step.DEPLOY, "promoting version 7 (job-7) to prod"),
        (
            dict(status="Approved", serving="job-7"),
            Step.NOTHING,
            "version 7 (job-7) already serves in prod: nothing to change",
        ),
        (  # already serving wins over not approved: nothing would change
            dict(status="Rejected", serving="job-7"),
            Step.NOTHING,
            "version 7 (job-7) already serves in prod: nothing to change",
        ),
        (
            dict(status="PendingManualApproval", serving="job-6"),
            Step.REFUSE,
            "version 7 is PendingManualApproval, not Approved: approve it first, or promote with --force --reason TEXT",
        ),
        (
            dict(status="Rejected", serving="job-6", force=True, reason="hotfix for INC-42"),
            Step.DEPLOY_FORCED,
            "promoting version 7 (Rejected, forced: hotfix for INC-42) to prod",
        ),
        (
            dict(status="Rejected", serving="job-6", force=True, reason="  "),
            Step.REFUSE,
            "--force needs --reason TEXT: the reason is recorded on the version",
        ),
        (  # --force on an Approved version: a plain promote (nothing to record)
            dict(status="Approved", serving="job-6", force=True, reason="why not"),
            Step.DEPLOY,
            "promoting version 7 (job-7) to prod",
        ),
        (
            dict(status="Approved", serving=None),
            Step.REFUSE,
            "prod has no endpoint serving a model yet: the pipeline deploys the first one, promote replaces it",
        ),
    ],
)
def test_decide_picks_the_move_from_the_version_the_model_serving_and_the_flags(given, step, say):
    assert decide(**(BASE | given)) == Move(step, say)


def _v(number: int, status: str) -> Version:
    return Version(number, _arn(number), status, _job(number), f"s3://{BUCKET}/m/{number}.tar.gz", IMAGE, "s3://b/c")


VERSIONS = [_v(5, "Approved"), _v(4, "Rejected"), _v(3, "Approved"), _v(2, "Approved"), _v(6, "Approved")]


@pytest.mark.parametrize(
    ("serving", "expected"),
    [
        (_job(5), 3),  # 4 is Rejected: skipped
        (_job(6), 5),
        (_job(3), 2),
        (_job(2), "no Approved version older than version 2 (serving in prod): nothing to roll back to"),
        ("job-x", "the model serving in prod (job-x) is no version of the registry: nothing to roll back from"),
        (None, "prod has no endpoint serving a model: nothing to roll back"),
    ],
)
def test_rollback_goes_to_the_newest_approved_version_older_than_the_one_serving(serving, expected):
    target = rollback_target(VERSIONS, serving, "prod")
    assert (target.number if isinstance(target, Version) else target) == expected


# --- the flows -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(deploy, "change_set_name", lambda: CS)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def aws(stub_aws):
    stubbed = stub_aws("sagemaker", "cloudformation")
    stubbed.sm, stubbed.cfn = stubbed.stubs.values()
    stubbed.polls = []
    return stubbed


def _package(number: int, status: str) -> dict:
    return {
        "ModelPackageName": GROUP,
        "ModelPackageGroupName": GROUP,
        "ModelPackageVersion": number,
        "ModelPackageArn": _arn(number),
        "CreationTime": T0 - timedelta(days=10 - number),
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": status,
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/iris-classifier/models/{number}.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "CustomerMetadataProperties": {
            "commit": "0123abc",
            "training-job": _job(number),
            "model-version": _job(number),
            "metric-name": "validation:accuracy",
            "metric-value": "0.97",
            "data-version": "v1",
            "source-dir": f"s3://{BUCKET}/iris-classifier/code/{number}/sourcedir.tar.gz",
        },
    }


def _expect_serving(aws, number: int | None, status: str = "UPDATE_COMPLETE") -> None:
    outputs = [] if number is None else [{"OutputKey": "ModelVersion", "OutputValue": _job(number)}]
    answer = {"StackName": STACK, "CreationTime": T0, "StackStatus": status, "Outputs": outputs}
    answer |= {"StackId": STACK_ID, "EnableTerminationProtection": False}
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer]}, {"StackName": STACK})


def _expect_registry(aws, *packages: dict, described: tuple[int, ...] | None = None, page_size: int = 100) -> None:
    """ListModelPackages (in pages of `page_size`), then DescribeModelPackage of the `described` versions (all)."""
    summaries = [
        {
            "ModelPackageName": GROUP,
            "ModelPackageGroupName": GROUP,
            "ModelPackageVersion": p["ModelPackageVersion"],
            "ModelPackageArn": p["ModelPackageArn"],
            "CreationTime": p["CreationTime"],
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": p["ModelApprovalStatus"],
        }
        for p in packages
    ]
    params = {"ModelPackageGroupName": GROUP, "ModelPackageType": "VERSIONED"}
    params |= {"SortBy": "CreationTime", "SortOrder": "Descending"}
    for start in range(0, len(summaries), page_size):
        page = {"ModelPackageSummaryList": summaries[start : start + page_size]}
        more = start + page_size < len(summaries)
        page |= {"NextToken": f"page-{start + page_size}"} if more else {}
        aws.sm.add_response("list_model_packages", page, params | ({"NextToken": f"page-{start}"} if start else {}))
    for p in packages:
        if described is None or p["ModelPackageVersion"] in described:
            aws.sm.add_response("describe_model_package", p, {"ModelPackageName": p["ModelPackageArn"]})


def _expect_pipeline_outputs(aws) -> None:
    answer = {
        "StackName": PIPELINE_STACK,
        "CreationTime": T0,
        "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in PIPELINE_OUTPUTS.items()],
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer]}, {"StackName": PIPELINE_STACK})


def _parameters(number: int) -> list[dict[str, str]]:
    values = {
        "ModelDataUrl": f"s3://{BUCKET}/iris-classifier/models/{number}.tar.gz",
        "ImageUri": IMAGE,
        "SourceDir": f"s3://{BUCKET}/iris-classifier/code/{number}/sourcedir.tar.gz",
        "ModelVersion": _job(number),
        "ExecutionRoleArn": ROLE,
        "KmsKeyArn": KEY,
        "DataCaptureS3Uri": f"s3://{BUCKET}/iris-classifier/data-capture/prod/",
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(values.items())]


def _event(logical_id: str, status: str, seconds: float, reason: str | None = None) -> dict:
    event = {
        "StackId": STACK_ID,
        "EventId": f"{logical_id}-{status}-{seconds}",
        "StackName": STACK,
        "LogicalResourceId": logical_id,
        "ResourceStatus": status,
        "Timestamp": T0 + timedelta(seconds=seconds),
    }
    return event | ({"ResourceStatusReason": reason} if reason else {})


def _expect_update(aws, config, number: int, verb: str, final: str, *events: dict) -> None:
    """The endpoint stack's update through a change set, executed, followed to `final`."""
    body = endpoint_deployment(config, config.environments[-1], {}, "").template_body
    _expect_serving(aws, 6 if verb == "promote" else 5)  # deploy_stack's own look at the stack
    params = {
        "StackName": STACK,
        "ChangeSetName": CS,
        "ChangeSetType": "UPDATE",
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": "team", "Value": "ml-platform"}, {"Key": "sagemaker-cd:project", "Value": "iris-classifier"}],
        "Description": f"make {verb} of version {number} to prod",
        "Parameters": _parameters(number),
        "TemplateBody": body,
    }
    aws.cfn.add_response("create_change_set", {"Id": CS_ID, "StackId": STACK_ID}, params)
    change = {"Action": "Modify", "LogicalResourceId": "Endpoint", "ResourceType": "AWS::SageMaker::Endpoint"}
    described = {"ChangeSetName": CS, "StackName": STACK, "CreationTime": T0, "Status": "CREATE_COMPLETE"}
    for page in (described, described | {"Changes": [{"Type": "Resource", "ResourceChange": change}]}):
        aws.cfn.add_response("describe_change_set", page, {"ChangeSetName": CS, "StackName": STACK})
    aws.cfn.add_response("execute_change_set", {}, {"ChangeSetName": CS, "StackName": STACK, "ClientRequestToken": CS})
    answer = {"StackName": STACK, "CreationTime": T0, "StackStatus": final, "StackId": STACK_ID}
    # Not protected, as the pipeline deploys it: promote leaves it so (no UpdateTerminationProtection).
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer | {"EnableTerminationProtection": False}]})
    newest_first = sorted(events, key=lambda e: e["Timestamp"], reverse=True)
    aws.cfn.add_response("describe_stack_events", {"StackEvents": newest_first}, {"StackName": STACK})


def _promote(config, aws, **kwargs) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = promote(config, aws.session, to="prod", echo=lines.append, sleep=aws.polls.append, yes=True, **kwargs)
    return code, lines


def _refused(config, aws, **kwargs) -> str:
    """The one line a refused promote or rollback raises; it has printed nothing."""
    lines: list[str] = []
    with pytest.raises(AwsError) as exc:
        promote(config, aws.session, to="prod", echo=lines.append, yes=True, **kwargs)
    assert lines == []
    return str(exc.value)


def test_promote_updates_the_endpoint_stack_in_place_with_the_versions_and_the_pipelines_parameters(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "Approved"), _package(6, "Approved"), described=(7,))
    _expect_pipeline_outputs(aws)
    _expect_update(
        aws, config, 7, "promote", "UPDATE_COMPLETE", _event("Endpoint", "UPDATE_COMPLETE", 5),
        _event(STACK, "UPDATE_COMPLETE", 6),
    )  # fmt: skip

    code, lines = _promote(config, aws, number=7)

    assert code == 0
    assert lines[0] == f"promoting version 7 ({_job(7)}) to prod"
    assert f"stack {STACK}: UPDATE_COMPLETE in 0m01s" in lines
    assert lines[-1] == f"prod now serves version 7 ({_job(7)})"
    assert "UpdateModelPackage" not in aws.calls  # an Approved version is not written to
    assert "UpdateTerminationProtection" not in aws.calls  # the stack stays as the pipeline made it


def test_the_version_already_serving_changes_nothing(config, aws):
    _expect_serving(aws, 7)
    _expect_registry(aws, _package(7, "Approved"))

    code, lines = _promote(config, aws, number=7)

    assert (code, lines) == (0, [f"version 7 ({_job(7)}) already serves in prod: nothing to change"])
    assert "CreateChangeSet" not in aws.calls


def test_a_version_not_approved_is_refused_in_one_line_without_force(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "PendingManualApproval"))

    assert _refused(config, aws, number=7) == (
        "version 7 is PendingManualApproval, not Approved: approve it first, or promote with --force --reason TEXT"
    )
    assert "CreateChangeSet" not in aws.calls


def test_a_forced_promote_records_its_reason_on_the_version_and_leaves_its_status(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "Rejected"))
    _expect_pipeline_outputs(aws)
    _expect_update(aws, config, 7, "promote", "UPDATE_COMPLETE", _event(STACK, "UPDATE_COMPLETE", 6))
    record = {"ModelPackageArn": _arn(7), "ApprovalDescription": "forced promote to prod: hotfix for INC-42"}
    aws.sm.add_response("update_model_package", {"ModelPackageArn": _arn(7)}, record)  # no ModelApprovalStatus

    code, lines = _promote(config, aws, number=7, force=True, reason="hotfix for INC-42")

    assert code == 0
    assert lines[0] == "promoting version 7 (Rejected, forced: hotfix for INC-42) to prod"
    assert lines[-2:] == [
        "recorded on version 7: forced promote to prod: hotfix for INC-42",
        f"prod now serves version 7 ({_job(7)})",
    ]


def test_rollback_deploys_the_newest_approved_version_before_the_one_serving(config, aws):
    _expect_serving(aws, 5)
    _expect_registry(aws, _package(5, "Approved"), _package(4, "Rejected"), _package(3, "Approved"), page_size=2)
    _expect_pipeline_outputs(aws)
    _expect_update(aws, config, 3, "rollback", "UPDATE_COMPLETE", _event(STACK, "UPDATE_COMPLETE", 6))

    code, lines = _promote(config, aws)

    assert code == 0
    assert lines[:2] == [
        f"rolling back prod to version 3 ({_job(3)}), the newest Approved before",
        f"promoting version 3 ({_job(3)}) to prod",
    ]
    assert lines[-1] == f"prod now serves version 3 ({_job(3)})"


def test_a_rollback_with_nothing_older_approved_is_one_line(config, aws):
    _expect_serving(aws, 5)
    _expect_registry(aws, _package(5, "Approved"), _package(4, "Rejected"))

    assert (
        _refused(config, aws) == "no Approved version older than version 5 (serving in prod): nothing to roll back to"
    )


def test_an_update_that_rolls_back_says_the_old_model_still_serves(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "Approved"))
    _expect_pipeline_outputs(aws)
    failed = 'Resource handler returned message: "Endpoint iris-classifier-prod failed: health check"'
    _expect_update(
        aws, config, 7, "promote", "UPDATE_ROLLBACK_COMPLETE",
        _event("Endpoint", "UPDATE_FAILED", 5, failed), _event(STACK, "UPDATE_ROLLBACK_COMPLETE", 30),
    )  # fmt: skip

    with pytest.raises(AwsError) as exc:
        _promote(config, aws, number=7)

    assert str(exc.value) == (
        f"stack {STACK} failed (UPDATE_ROLLBACK_COMPLETE): Endpoint: {failed}; prod still serves {_job(6)}"
    )


def test_a_failed_change_set_says_the_old_model_still_serves(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "Approved"))
    _expect_pipeline_outputs(aws)
    _expect_serving(aws, 6)
    aws.cfn.add_client_error("create_change_set", "ValidationError", "Parameter ImageUri failed to satisfy", 400)

    with pytest.raises(AwsError) as exc:
        _promote(config, aws, number=7)

    assert str(exc.value).endswith(f"; prod still serves {_job(6)}")
    assert "ValidationError" in str(exc.value)


def test_the_endpoint_template_is_the_one_the_pipeline_deploys(config):
    deployment = endpoint_deployment(config, config.environments[-1], {"ModelVersion": "j"}, "why")
    assert json.loads(deployment.template_body) == synthesize(config).templates["endpoint-prod.json"]
    assert (deployment.name, deployment.parameters) == (STACK, (("ModelVersion", "j"),))


@pytest.mark.parametrize("path", ["pipeline.yml", "examples/async-sklearn/pipeline.yml"])
def test_the_parameters_are_exactly_those_each_endpoint_template_declares(path):
    config = load_config(REPO / path)
    templates = synthesize(config).templates
    outputs = {key: f"<{key}>" for key in templates["pipeline.json"]["Outputs"]}
    for env in config.environments:
        stack = EndpointStack(config, env)
        values = run_values(config, env, _v(7, "Approved")) | supplied_values(stack, env, outputs, PIPELINE_STACK)
        assert sorted(values) == sorted(templates[stack.file_name]["Parameters"]), env.name


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--version", "7", "--to", "prod", "--force"],
            "promote: --force needs --reason TEXT (it is recorded on the version)",
        ),
        (
            ["--version", "7", "--to", "staging"],
            "promote: --to staging: no such environment (pipeline.yml has qa, prod)",
        ),
    ],
)
def test_the_command_line_refuses_in_one_line_before_any_aws_call(aws_env, capsys, argv, line):
    assert main(["promote", "--config", str(REPO / "pipeline.yml"), *argv]) in (1, 2)
    assert capsys.readouterr().err.splitlines() == [line]


def test_the_version_is_a_whole_number_from_one(capsys):
    assert main(["promote", "--version", "0", "--to", "prod"]) == 2
    assert "--version: 0 is not in the range x>=1" in capsys.readouterr().err


def test_a_version_not_in_the_group_is_one_line(config, aws):
    _expect_serving(aws, 6)
    _expect_registry(aws, _package(7, "Approved"), _package(6, "Approved"), described=())

    assert _refused(config, aws, number=9) == f"no version 9 in model package group {GROUP}"


def _overrides(template: dict, stack_name: str) -> dict[str, str]:
    """The deploy action's ParameterOverrides for `stack_name`, each expression resolved to the name of
    the pipeline stack output with that very value (`<OutputKey>`)."""
    by_value = {json.dumps(o["Value"], sort_keys=True): f"<{key}>" for key, o in template["Outputs"].items()}

    def resolve(expression) -> str:
        if isinstance(expression, dict) and "Fn::Sub" in expression:
            text, names = expression["Fn::Sub"]
            for name, value in names.items():
                text = text.replace("${" + name + "}", resolve(value))
            return text
        return by_value[json.dumps(expression, sort_keys=True)]

    for stage in template["Resources"]["Pipeline"]["Properties"]["Stages"]:
        for action in stage["Actions"]:
            configuration = action.get("Configuration", {})
            if configuration.get("StackName") == stack_name and "ParameterOverrides" in configuration:
                return json.loads(resolve(configuration["ParameterOverrides"]))
    raise AssertionError(f"no deploy action for {stack_name}")


@pytest.mark.parametrize("path", ["pipeline.yml", "examples/async-sklearn/pipeline.yml"])
def test_the_pipeline_supplied_parameters_are_those_the_deploy_action_passes_in_every_environment(path):
    config = load_config(REPO / path)
    template = synthesize(config).templates["pipeline.json"]
    outputs = {key: f"<{key}>" for key in template["Outputs"]}
    for env in config.environments:
        stack = config.names.endpoint_stack(env.name)
        supplied = supplied_values(EndpointStack(config, env), env, outputs, PIPELINE_STACK)
        assert supplied == _overrides(template, stack), env.name


def test_an_environment_on_another_processor_than_the_last_serves_with_its_own_image():
    config = load_config(REPO / "examples/pytorch/pipeline.yml")  # qa on a CPU, prod (last) on a GPU
    qa, prod = config.environments
    assert (qa.processor, prod.processor) == ("cpu", "gpu")
    version = replace(_v(7, "Approved"), image=config.serving_image(prod))
    assert run_values(config, prod, version)["ImageUri"] == version.image
    assert run_values(config, qa, version)["ImageUri"] == config.serving_image(qa) != version.image
