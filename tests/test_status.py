"""`make status`: the latest runs, the newest run action by action, a pending approval, endpoints.

CodePipeline, SageMaker and CloudFormation are botocore Stubbers on real clients (moto has no
get_pipeline_state; conftest's stub_aws), so each test pins the exact calls made, in order, and
every line printed.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.aws import AwsError
from pipeline.config import load_config
from pipeline.status import action_runs, commit_message, latest_executions, show_status

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
ACCOUNT = "111122223333"
PIPELINE = "iris-classifier"
URL = f"https://{REGION}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{PIPELINE}/view?region={REGION}"
NEWEST = "3f2a9c1d-1111-4000-8000-000000000001"
OLDER = "9b8c7d6e-2222-4000-8000-000000000002"
SHA = "3f2a9c1e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a"
OLD_SHA = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"
JOB = "iris-classifier-3f2a9c1-20240501T120000"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
STAGES = {
    "Source": ["GitHub"],
    "LintAndTrain": ["Lint", "Train"],
    "QA": ["DeployQaEndpoint", "TestQAEndpoint"],
    "Approve": ["ApproveForProduction"],
    "Production": ["DeployProdEndpoint", "SmokeTestProdEndpoint"],
}
CATEGORY = {"GitHub": "Source", "Lint": "Build", "Train": "Build", "ApproveForProduction": "Approval"}


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "pipeline.yml")


@pytest.fixture
def aws(stub_aws):
    """Stubbed codepipeline, sagemaker and cloudformation clients, all answered or the test fails."""
    stubbed = stub_aws("codepipeline", "sagemaker", "cloudformation")
    return SimpleNamespace(
        cp=stubbed["codepipeline"], sm=stubbed["sagemaker"], cfn=stubbed["cloudformation"], session=stubbed.session
    )


def _status(config, aws, width: int = 80) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = show_status(config, aws.session, echo=lines.append, width=width)
    return code, lines


def _assert_fits(lines: list[str], width: int = 80) -> None:
    """Every line fits the terminal, except the console link, which must stay clickable."""
    too_wide = [line for line in lines if len(line) > width and line != URL]
    assert too_wide == []


# --- canned AWS answers ----------------------------------------------------------------------


def _execution(execution_id: str, status: str, start: datetime, sha: str, summary: str) -> dict:
    return {
        "pipelineExecutionId": execution_id,
        "status": status,
        "startTime": start,
        "lastUpdateTime": start + timedelta(minutes=20),
        "sourceRevisions": [{"actionName": "GitHub", "revisionId": sha, "revisionSummary": summary}],
    }


def _expect_executions(aws, executions: list[dict]) -> None:
    aws.cp.add_response(
        "list_pipeline_executions",
        {"pipelineExecutionSummaries": executions},
        {"pipelineName": PIPELINE, "maxResults": 5},
    )


def _state(reached: dict[str, str], actions: dict[str, dict]) -> dict:
    """get_pipeline_state: `reached` maps stage -> execution id of its latest execution,
    `actions` maps action -> its latestExecution."""
    stages = []
    for stage, names in STAGES.items():
        entry = {"stageName": stage, "actionStates": []}
        if stage in reached:
            entry["latestExecution"] = {"pipelineExecutionId": reached[stage], "status": "Succeeded"}
        for name in names:
            action = {"actionName": name}
            if name in actions:
                action["latestExecution"] = actions[name]
            entry["actionStates"].append(action)
        stages.append(entry)
    return {"pipelineName": PIPELINE, "pipelineVersion": 3, "stageStates": stages}


def _detail(stage: str, action: str, status: str, start: datetime, minutes: float, **extra) -> dict:
    detail = {
        "pipelineExecutionId": NEWEST,
        "actionExecutionId": f"{action}-1",
        "stageName": stage,
        "actionName": action,
        "startTime": start,
        "lastUpdateTime": start + timedelta(minutes=minutes),
        "status": status,
        "input": {
            "actionTypeId": {
                "category": CATEGORY.get(action, "Deploy"),
                "owner": "AWS",
                "provider": "x",
                "version": "1",
            }
        },
    }
    detail.update(extra)
    return detail


def _expect_run(aws, state: dict, details: list[dict]) -> None:
    aws.cp.add_response("get_pipeline_state", state, {"name": PIPELINE})
    aws.cp.add_response(
        "list_action_executions",
        {"actionExecutionDetails": details},
        {"pipelineName": PIPELINE, "filter": {"pipelineExecutionId": NEWEST}},
    )


def _expect_endpoint(
    aws, env: str, status: str, outputs: dict | None = None, failure: str | None = None, stack_status="UPDATE_COMPLETE"
) -> None:
    name = f"{PIPELINE}-{env}"
    endpoint = {
        "EndpointName": name,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}",
        "EndpointConfigName": f"{name}-config",
        "EndpointStatus": status,
        "CreationTime": T0 - timedelta(days=3),
        "LastModifiedTime": T0 + timedelta(minutes=35),
    }
    if failure:
        endpoint["FailureReason"] = failure
    aws.sm.add_response("describe_endpoint", endpoint, {"EndpointName": name})
    _expect_stack(aws, f"{PIPELINE}-endpoint-{env}", stack_status, outputs)


def _expect_stack(aws, stack: str, status: str | None, outputs: dict | None = None) -> None:
    """describe_stacks of `stack`: in `status`, or (None) it does not exist."""
    if status is None:
        message = f"Stack with id {stack} does not exist"
        aws.cfn.add_client_error(
            "describe_stacks", "ValidationError", message, 400, expected_params={"StackName": stack}
        )
        return
    answer = {
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/5b2c6f00",
        "StackName": stack,
        "CreationTime": T0 - timedelta(days=3),
        "StackStatus": status,
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in (outputs or {}).items()],
    }
    aws.cfn.add_response("describe_stacks", {"Stacks": [answer]}, {"StackName": stack})


def _expect_failed_create(aws, stack: str, logical_id: str, reason: str) -> None:
    """The events of a stack whose one create failed (newest first): its reason is the oldest failure."""
    events = [
        (stack, "ROLLBACK_COMPLETE", 9, None),
        (logical_id, "DELETE_COMPLETE", 8, None),
        (stack, "ROLLBACK_IN_PROGRESS", 6, "The following resource(s) failed to create: [" + logical_id + "]."),
        (logical_id, "CREATE_FAILED", 5, reason),
        (logical_id, "CREATE_IN_PROGRESS", 1, None),
        (stack, "CREATE_IN_PROGRESS", 0, "User Initiated"),
    ]
    aws.cfn.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                {
                    "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/5b2c6f00",
                    "EventId": f"{lid}-{status}",
                    "StackName": stack,
                    "LogicalResourceId": lid,
                    "ResourceStatus": status,
                    "Timestamp": T0 + timedelta(minutes=minutes),
                    **({"ResourceStatusReason": text} if text else {}),
                }
                for lid, status, minutes, text in events
            ]
        },
        {"StackName": stack},
    )


def _expect_not_deployed(aws, env: str, stack_status: str | None = None) -> None:
    """No endpoint; its stack does not exist, or is in `stack_status`."""
    aws.sm.add_client_error(
        "describe_endpoint",
        "ValidationException",
        f'Could not find endpoint "{PIPELINE}-{env}".',
        400,
        expected_params={"EndpointName": f"{PIPELINE}-{env}"},
    )
    _expect_stack(aws, f"{PIPELINE}-endpoint-{env}", stack_status)


def _expect_no_endpoints(aws) -> None:
    _expect_not_deployed(aws, "qa")
    _expect_not_deployed(aws, "prod")


NO_ENDPOINTS = [
    "",
    "endpoints",
    "  qa    iris-classifier-qa  not deployed yet",
    "  prod  iris-classifier-prod  not deployed yet",
]


# --- the newest run failed -------------------------------------------------------------------

TRAIN_ERROR = (
    f"Training job {JOB} finished but missed the quality gate: validation:accuracy = 0.81, "
    "threshold 0.9 (maximize). Nothing was deployed."
)


def _expect_failed_run(aws) -> None:
    github_summary = json.dumps(
        {"ProviderType": "GitHub", "CommitMessage": "Scale features before training\n\nLonger body text."}
    )
    _expect_executions(
        aws,
        [
            _execution(NEWEST, "Failed", T0, SHA, github_summary),
            _execution(
                OLDER,
                "Succeeded",
                datetime(2024, 4, 30, 11, 5, tzinfo=timezone(timedelta(hours=2))),
                OLD_SHA,
                "Add the first model with a deliberately long commit subject that cannot fit an 80 column line",
            ),
        ],
    )
    state = _state(
        # QA, Approve and Production last ran for the older execution: their states are not this run's.
        {"Source": NEWEST, "LintAndTrain": NEWEST, "QA": OLDER, "Approve": OLDER, "Production": OLDER},
        {
            "GitHub": {"status": "Succeeded"},
            "Lint": {"status": "Succeeded"},
            "Train": {"status": "Failed", "errorDetails": {"code": "JobFailed", "message": "Build failed"}},
            "DeployQaEndpoint": {"status": "Succeeded"},
            "TestQAEndpoint": {"status": "Succeeded"},
            "ApproveForProduction": {"status": "Succeeded", "summary": "ok"},
            "DeployProdEndpoint": {"status": "Succeeded"},
            "SmokeTestProdEndpoint": {"status": "Succeeded"},
        },
    )
    details = [
        _detail("Source", "GitHub", "Succeeded", T0 + timedelta(seconds=3), 0.1),
        _detail("LintAndTrain", "Lint", "Succeeded", T0 + timedelta(seconds=12), 3.5),
        _detail(
            "LintAndTrain",
            "Train",
            "Failed",
            T0 + timedelta(seconds=12),
            20,
            output={"executionResult": {"externalExecutionId": "train:1", "externalExecutionSummary": TRAIN_ERROR}},
        ),
    ]
    _expect_run(aws, state, details)


def test_a_failed_action_shows_its_error_and_later_stages_not_started(config, aws):
    _expect_failed_run(aws)
    _expect_no_endpoints(aws)

    code, lines = _status(config, aws)

    assert code == 0
    assert lines == [
        "pipeline iris-classifier (us-east-1)",
        "  RUN       STATUS      STARTED (UTC)     COMMIT",
        "  3f2a9c1d  Failed      2024-05-01 12:00  3f2a9c1 Scale features before training",
        "  9b8c7d6e  Succeeded   2024-04-30 09:05  0c1d2e3 Add the first model with a de…",
        "",
        "run 3f2a9c1d: Failed",
        "  STAGE / ACTION            STATUS       START     END",
        "  Source",
        "    GitHub                  Succeeded    12:00:03  12:00:09",
        "  LintAndTrain",
        "    Lint                    Succeeded    12:00:12  12:03:42",
        "    Train                   Failed       12:00:12  12:20:12",
        "      error: Training job iris-classifier-3f2a9c1-20240501T120000 finished but",
        "      missed the quality gate: validation:accuracy = 0.81, threshold 0.9",
        "      (maximize). Nothing was deployed.",
        "  QA",
        "    DeployQaEndpoint        not started  —         —",
        "    TestQAEndpoint          not started  —         —",
        "  Approve",
        "    ApproveForProduction    not started  —         —",
        "  Production",
        "    DeployProdEndpoint      not started  —         —",
        "    SmokeTestProdEndpoint   not started  —         —",
        *NO_ENDPOINTS,
    ]
    _assert_fits(lines)


def test_a_narrow_terminal_gets_no_line_wider_than_it(config, aws):
    _expect_failed_run(aws)
    _expect_no_endpoints(aws)

    code, lines = _status(config, aws, width=60)

    assert code == 0
    assert "  3f2a9c1d  Failed      2024-05-01 12:00  3f2a9c1 Scale fea…" in lines
    _assert_fits(lines, width=60)


# --- waiting for approval --------------------------------------------------------------------

APPROVAL_DATA = (
    f"Model {JOB}: validation:accuracy = 0.97. QA endpoint tests: 5 passed, 0 failed. "
    f"Commit {SHA}: Scale features before training"
)


def test_a_pending_approval_says_so_with_the_console_link(config, aws):
    _expect_executions(aws, [_execution(NEWEST, "InProgress", T0, SHA, "Scale features before training")])
    state = _state(
        {"Source": NEWEST, "LintAndTrain": NEWEST, "QA": NEWEST, "Approve": NEWEST, "Production": OLDER},
        {
            "ApproveForProduction": {
                "status": "InProgress",
                "token": "0f1e2d3c-approval-token",
                "lastStatusChange": T0,
            },
            "DeployProdEndpoint": {"status": "Succeeded"},
        },
    )
    approve_at = T0 + timedelta(minutes=41)
    details = [
        _detail("Source", "GitHub", "Succeeded", T0 + timedelta(seconds=3), 0.1),
        _detail("LintAndTrain", "Lint", "Succeeded", T0 + timedelta(seconds=12), 3.5),
        _detail("LintAndTrain", "Train", "Succeeded", T0 + timedelta(seconds=12), 22),
        _detail("QA", "DeployQaEndpoint", "Succeeded", T0 + timedelta(minutes=22, seconds=20), 12),
        _detail("QA", "TestQAEndpoint", "Succeeded", T0 + timedelta(minutes=34, seconds=30), 6),
        _detail(
            "Approve",
            "ApproveForProduction",
            "InProgress",
            approve_at,
            0,
            input={
                "actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
                "resolvedConfiguration": {"CustomData": APPROVAL_DATA},
            },
        ),
    ]
    _expect_run(aws, state, details)
    _expect_no_endpoints(aws)

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[lines.index("run 3f2a9c1d: InProgress") :] == [
        "run 3f2a9c1d: InProgress",
        "  STAGE / ACTION            STATUS       START     END",
        "  Source",
        "    GitHub                  Succeeded    12:00:03  12:00:09",
        "  LintAndTrain",
        "    Lint                    Succeeded    12:00:12  12:03:42",
        "    Train                   Succeeded    12:00:12  12:22:12",
        "  QA",
        "    DeployQaEndpoint        Succeeded    12:22:20  12:34:20",
        "    TestQAEndpoint          Succeeded    12:34:30  12:40:30",
        "  Approve",
        "    ApproveForProduction    InProgress   12:41:00",
        "  Production",
        "    DeployProdEndpoint      not started  —         —",
        "    SmokeTestProdEndpoint   not started  —         —",
        "",
        "APPROVAL PENDING: ApproveForProduction (run 3f2a9c1d), since 12:41 UTC",
        "  approve or reject it in the console (Review on the Approve stage):",
        URL,
        "  Model iris-classifier-3f2a9c1-20240501T120000: validation:accuracy = 0.97. QA",
        "  endpoint tests: 5 passed, 0 failed. Commit",
        "  3f2a9c1e5b7d9f1a3c5e7b9d1f3a5c7e9b1d3f5a: Scale features before training",
        *NO_ENDPOINTS,
    ]
    _assert_fits(lines)


# --- endpoints -------------------------------------------------------------------------------


def test_endpoints_show_status_and_model_and_one_not_deployed_yet(config, aws):
    _expect_executions(aws, [])
    _expect_endpoint(
        aws,
        "qa",
        "InService",
        {
            "ModelVersion": JOB,
            "ModelDataUrl": f"s3://iris-classifier-models-{ACCOUNT}/models/{JOB}/output/model.tar.gz",
            "EndpointName": f"{PIPELINE}-qa",
        },
    )
    _expect_not_deployed(aws, "prod")

    code, lines = _status(config, aws)

    assert code == 0
    assert lines == [
        "pipeline iris-classifier (us-east-1)",
        "  no executions yet",
        "  (push a commit; a PENDING GitHub connection blocks the first run)",
        "",
        "endpoints",
        "  qa    iris-classifier-qa  InService, updated 2024-05-01 12:35 UTC",
        "        model iris-classifier-3f2a9c1-20240501T120000",
        "        data  s3://iris-classifier-models-111122223333/models/iris-classifier-3…",
        "  prod  iris-classifier-prod  not deployed yet",
    ]
    _assert_fits(lines)


def test_a_failed_endpoint_shows_its_failure_reason(config, aws):
    _expect_executions(aws, [])
    _expect_endpoint(aws, "qa", "InService", {"ModelVersion": JOB})
    _expect_endpoint(
        aws,
        "prod",
        "Failed",
        {"ModelVersion": JOB},
        failure="The primary container for production variant AllTraffic did not pass the ping health check.",
    )

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[-4:] == [
        "  prod  iris-classifier-prod  Failed, updated 2024-05-01 12:35 UTC",
        "        failure: The primary container for production variant AllTraffic did not",
        "        pass the ping health check.",
        "        model iris-classifier-3f2a9c1-20240501T120000",
    ]
    _assert_fits(lines)


def test_an_endpoint_serving_another_config_than_its_stack_shows_the_mismatch(config, aws):
    """SageMaker rolled the update back: InService on the old config, the stack's outputs on the new."""
    _expect_executions(aws, [])
    _expect_endpoint(aws, "qa", "InService", {"ModelVersion": JOB, "EndpointConfigName": f"{PIPELINE}-qa-config"})
    _expect_endpoint(aws, "prod", "InService", {"ModelVersion": JOB, "EndpointConfigName": "EndpointConfig-new"})

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[-6:] == [
        "  qa    iris-classifier-qa  InService, updated 2024-05-01 12:35 UTC",
        "        model iris-classifier-3f2a9c1-20240501T120000",
        "  prod  iris-classifier-prod  InService, updated 2024-05-01 12:35 UTC",
        "        MISMATCH: serves config iris-classifier-prod-config, not",
        "        EndpointConfig-new (model iris-classifier-3f2a9c1-20240501T120000) that",
        "        its stack deployed: SageMaker rolled the update back",
    ]
    _assert_fits(lines)


# --- nothing to show, or AWS says no ---------------------------------------------------------


def test_no_executions_yet_points_at_the_github_connection(config, aws):
    _expect_executions(aws, [])
    _expect_no_endpoints(aws)

    code, lines = _status(config, aws)

    assert code == 0
    assert lines == [
        "pipeline iris-classifier (us-east-1)",
        "  no executions yet",
        "  (push a commit; a PENDING GitHub connection blocks the first run)",
        *NO_ENDPOINTS,
    ]


def _expect_no_pipeline(aws) -> None:
    aws.cp.add_client_error(
        "list_pipeline_executions",
        "PipelineNotFoundException",
        f"Account '{ACCOUNT}' does not have a pipeline with name '{PIPELINE}'",
        400,
        expected_params={"pipelineName": PIPELINE, "maxResults": 5},
    )


def test_pipeline_not_found_says_deploy_it_first(config, aws):
    _expect_no_pipeline(aws)
    _expect_stack(aws, "iris-classifier-pipeline", None)
    lines: list[str] = []

    with pytest.raises(AwsError) as exc:
        show_status(config, aws.session, echo=lines.append)

    assert str(exc.value) == (
        "pipeline iris-classifier not found in us-east-1: the pipeline stack iris-classifier-pipeline "
        "is not deployed (run make deploy)"
    )
    assert lines == []


BUCKET_FAILURE = (
    'Resource handler returned message: "Access Denied (Service: S3, Status Code: 403)" '
    "(HandlerErrorCode: AccessDenied)"
)


def test_a_pipeline_stack_whose_first_create_rolled_back_is_shown_as_such_with_its_reason(config, aws):
    _expect_no_pipeline(aws)
    _expect_stack(aws, "iris-classifier-pipeline", "ROLLBACK_COMPLETE")
    _expect_failed_create(aws, "iris-classifier-pipeline", "ModelBucket", BUCKET_FAILURE)

    with pytest.raises(AwsError) as exc:
        show_status(config, aws.session, echo=pytest.fail)

    assert str(exc.value) == (
        "pipeline iris-classifier not found in us-east-1: the pipeline stack iris-classifier-pipeline is "
        f"ROLLBACK_COMPLETE: its first create failed (ModelBucket: {BUCKET_FAILURE}) and was rolled back, so it "
        "holds nothing; make deploy deletes it and creates it again"
    )


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (
            "CREATE_IN_PROGRESS",
            "the pipeline stack iris-classifier-pipeline is CREATE_IN_PROGRESS: an operation is running; run make "
            "status again when it ends",
        ),
        (
            "REVIEW_IN_PROGRESS",
            "the pipeline stack iris-classifier-pipeline is REVIEW_IN_PROGRESS: a create change set was never "
            "executed; run make deploy",
        ),
        (
            "DELETE_FAILED",
            "stack iris-classifier-pipeline is DELETE_FAILED: a delete failed part way; finish it: `aws cloudformation "
            "delete-stack --stack-name iris-classifier-pipeline --region us-east-1` (add --retain-resources "
            "LOGICAL_ID ... for what cannot be deleted), then make deploy",
        ),
    ],
)
def test_a_pipeline_stack_that_is_there_without_its_pipeline_says_its_state_and_what_to_do(config, aws, status, says):
    _expect_no_pipeline(aws)
    _expect_stack(aws, "iris-classifier-pipeline", status)

    with pytest.raises(AwsError) as exc:
        show_status(config, aws.session, echo=pytest.fail)

    assert str(exc.value) == "pipeline iris-classifier not found in us-east-1: " + says


def test_an_endpoint_whose_first_deploy_rolled_back_says_so_why_and_what_the_next_run_does(config, aws):
    _expect_executions(aws, [])
    _expect_not_deployed(aws, "qa", "ROLLBACK_COMPLETE")
    reason = "Image iris:broken does not exist or is not accessible."
    _expect_failed_create(aws, "iris-classifier-endpoint-qa", "Endpoint", reason)
    _expect_not_deployed(aws, "prod")

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[5:] == [
        "  qa    iris-classifier-qa  not deployed: its first deploy failed",
        "        failure: Endpoint: Image iris:broken does not exist or is not",
        "        accessible.",
        "        stack iris-classifier-endpoint-qa is ROLLBACK_COMPLETE: the next run's",
        "        PrepareStack checks that it holds nothing, deletes it and deploys again",
        "  prod  iris-classifier-prod  not deployed yet",
    ]
    _assert_fits(lines)


def test_an_endpoint_being_created_says_so(config, aws):
    _expect_executions(aws, [])
    _expect_not_deployed(aws, "qa", "CREATE_IN_PROGRESS")
    _expect_not_deployed(aws, "prod")

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[-2:] == [
        "  qa    iris-classifier-qa  being deployed (stack CREATE_IN_PROGRESS)",
        "  prod  iris-classifier-prod  not deployed yet",
    ]


@pytest.mark.parametrize(
    ("stack_status", "notes"),
    [
        ("UPDATE_IN_PROGRESS", ["        stack UPDATE_IN_PROGRESS: the model above may be about to change"]),
        (
            "UPDATE_ROLLBACK_COMPLETE",
            ["        stack UPDATE_ROLLBACK_COMPLETE: the last deploy failed and rolled back"],
        ),
        (
            "UPDATE_ROLLBACK_FAILED",
            [
                "        stack iris-classifier-endpoint-prod is UPDATE_ROLLBACK_FAILED: an update",
                "        failed and so did its rollback; run `aws cloudformation",
                "        continue-update-rollback --stack-name iris-classifier-endpoint-prod",
                "        --region us-east-1` (add --resources-to-skip LOGICAL_ID ... for",
                "        resources that cannot roll back) and wait for UPDATE_ROLLBACK_COMPLETE,",
                "        then release the pipeline again (Release change) or push a commit",
            ],
        ),
    ],
)
def test_a_live_endpoints_stack_status_says_what_it_means(config, aws, stack_status, notes):
    _expect_executions(aws, [])
    _expect_not_deployed(aws, "qa")
    _expect_endpoint(aws, "prod", "InService", {"ModelVersion": JOB}, stack_status=stack_status)

    code, lines = _status(config, aws)

    assert code == 0
    assert lines[-len(notes) - 2 :] == [
        "  prod  iris-classifier-prod  InService, updated 2024-05-01 12:35 UTC",
        f"        model {JOB}",
        *notes,
    ]
    _assert_fits(lines)


def test_access_denied_is_one_line(config, aws):
    aws.cp.add_client_error(
        "list_pipeline_executions",
        "AccessDeniedException",
        f"User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform:\n"
        f"codepipeline:ListPipelineExecutions on resource: arn:aws:codepipeline:{REGION}:{ACCOUNT}:{PIPELINE}",
        400,
        expected_params={"pipelineName": PIPELINE, "maxResults": 5},
    )

    with pytest.raises(AwsError) as exc:
        show_status(config, aws.session, echo=pytest.fail)

    assert str(exc.value) == (
        f"ListPipelineExecutions: AccessDeniedException: User: arn:aws:iam::{ACCOUNT}:user/dev is not "
        f"authorized to perform: codepipeline:ListPipelineExecutions on resource: "
        f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:{PIPELINE}"
    )


# --- the pieces ------------------------------------------------------------------------------


def test_commit_message_reads_plain_and_github_json_summaries():
    assert commit_message("Fix the thing\n\nbecause") == "Fix the thing"
    assert commit_message('{"ProviderType":"GitHub","CommitMessage":"Tune C\\nbody"}') == "Tune C"
    assert commit_message("{not json") == "{not json"
    assert commit_message(None) == ""


def test_a_failed_action_missing_from_the_action_list_takes_its_error_from_the_state():
    state = {
        "stageStates": [
            {
                "stageName": "LintAndTrain",
                "latestExecution": {"pipelineExecutionId": NEWEST, "status": "Failed"},
                "actionStates": [
                    {
                        "actionName": "Lint",
                        "latestExecution": {
                            "status": "Failed",
                            "lastStatusChange": T0,
                            "errorDetails": {"code": "JobFailed", "message": "cfn-lint: E3012 in endpoint.json"},
                        },
                    }
                ],
            }
        ]
    }

    runs = action_runs(state, [], NEWEST)

    assert [(r.action, r.status, r.end, r.error) for r in runs] == [
        ("Lint", "Failed", T0, "cfn-lint: E3012 in endpoint.json")
    ]


def test_an_empty_reply_reads_as_no_runs_not_a_key_error():
    """A JSON service's empty 200 (a proxy's) parses as {}: status shows no runs instead of a traceback."""

    class EmptyReplies:
        def list_pipeline_executions(self, **_):
            return {}

    assert latest_executions(EmptyReplies(), PIPELINE) == []


def _expect_no_branch_pipeline(aws, config, branch: str) -> tuple[str, str]:
    from pipeline.branches import for_branch

    names = for_branch(config, branch).names
    assert names.pipeline != config.names.pipeline and names.pipeline_stack != config.names.pipeline_stack
    aws.cp.add_client_error(
        "list_pipeline_executions",
        "PipelineNotFoundException",
        f"Account '{ACCOUNT}' does not have a pipeline with name '{names.pipeline}'",
        400,
        expected_params={"pipelineName": names.pipeline, "maxResults": 5},
    )
    return names.pipeline, names.pipeline_stack


def test_status_of_a_missing_branch_pipeline_names_the_branch_deploy_command(config, aws, monkeypatch, capsys):
    """`make status ARGS='--branch feature/x'` reads the branch's pipeline and stack, not the main one,
    and tells how to deploy that branch's pipeline, not the main one."""
    from pipeline import cli

    pipeline, stack = _expect_no_branch_pipeline(aws, config, "feature/x")
    _expect_stack(aws, stack, None)
    monkeypatch.setattr("pipeline.aws.session_for", lambda profile, region: aws.session)

    assert cli.main(["status", "--config", str(REPO / "pipeline.yml"), "--branch", "feature/x"]) == 1

    assert capsys.readouterr() == (
        "",
        f"status: pipeline {pipeline} not found in us-east-1: the pipeline stack {stack} is not deployed "
        "(run make deploy ARGS='--branch feature/x')\n",
    )


def test_a_branch_pipeline_stack_that_rolled_back_names_the_branch_deploy_command(config, aws):
    from pipeline.branches import for_branch

    pipeline, stack = _expect_no_branch_pipeline(aws, config, "feature/x")
    _expect_stack(aws, stack, "ROLLBACK_COMPLETE")
    _expect_failed_create(aws, stack, "ModelBucket", BUCKET_FAILURE)

    with pytest.raises(AwsError) as exc:
        show_status(for_branch(config, "feature/x"), aws.session, echo=pytest.fail, branch="feature/x")

    assert str(exc.value).endswith(
        "so it holds nothing; make deploy ARGS='--branch feature/x' deletes it and creates it again"
    )


def test_the_deploy_command_names_the_branch():
    from pipeline.status import deploy_command

    assert deploy_command(None) == "make deploy"
    assert deploy_command("feature/x") == "make deploy ARGS='--branch feature/x'"


@pytest.mark.parametrize("branch", ["feature/x", "it's", "a$b", 'say"hi"'])
def test_the_deploy_command_keeps_the_branch_one_word_through_both_shells(branch):
    """The shell splits the command line, then make hands ARGS to a shell again."""
    import shlex

    from pipeline.status import deploy_command

    make, target, assignment = shlex.split(deploy_command(branch))
    assert (make, target) == ("make", "deploy")
    assert shlex.split(assignment.removeprefix("ARGS=")) == ["--branch", branch]
