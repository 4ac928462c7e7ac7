"""scripts/endpoint_test.py against moto's SageMaker (and botocore's Stubber where moto cannot fail)."""

import itertools
import json
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
import requests
from botocore.stub import Stubber
from moto import mock_aws

from pipeline.aws import RETRIES
from scripts import endpoint_test

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipeline.yml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
ENDPOINT = "iris-classifier-qa"  # project iris-classifier in pipeline.yml, environment qa
REAL_CASES = sorted((REPO / "model" / "endpoint-tests").glob("*.json"))


@pytest.fixture(scope="module")
def session():
    """One boto3 session for the module: its clients share loaded service models (seconds saved)."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def create_endpoint(session, name: str) -> None:
    """A model, endpoint config and endpoint in moto (moto's endpoint is InService at once)."""
    sagemaker = session.client("sagemaker")
    sagemaker.create_model(
        ModelName="iris",
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/sagemaker",
        PrimaryContainer={"Image": "sklearn:1.2-1"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="iris",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "iris", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName="iris")


def queue_answers(*bodies: object) -> None:
    """Queue invoke_endpoint answers in moto, one per distinct request, in the order of the calls."""
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={
            "account_id": ACCOUNT,
            "region": REGION,
            "results": [
                {
                    "Body": json.dumps(body),
                    "ContentType": "application/json",
                    "InvokedProductionVariant": "AllTraffic",
                    "CustomAttributes": "",
                }
                for body in bodies
            ],
        },
    )
    assert response.status_code == 201


def write_case(folder: Path, name: str, body: str, expected: object, **extra: object) -> None:
    """One payload file in a test folder."""
    folder.mkdir(exist_ok=True)
    case = {
        "description": name,
        "content_type": "text/csv",
        "accept": "application/json",
        "body": body,
        "expected": expected,
        **extra,
    }
    (folder / name).write_text(json.dumps(case))


@pytest.fixture
def stubbed(monkeypatch, session):
    """The script's clients come from the shared session; put a stubbed client here to use it instead."""
    by_service = {}
    monkeypatch.setattr(
        endpoint_test,
        "client",
        lambda service, region=None: (
            by_service.get(service) or session.client(service, region_name=region, config=RETRIES)
        ),
    )
    return by_service


@pytest.fixture
def aws(aws_env, monkeypatch, session, stubbed):
    """moto with the QA endpoint in service; no CodeBuild or ENDPOINT_ENV from the outside."""
    monkeypatch.delenv("CODEBUILD_BUILD_ARN", raising=False)
    monkeypatch.delenv("ENDPOINT_ENV", raising=False)
    with mock_aws():
        create_endpoint(session, ENDPOINT)
        yield


@pytest.fixture
def run(tmp_path):
    """Call main() with the repo's config and reports in tmp_path; returns the exit code."""

    def call(*args: str) -> int:
        return endpoint_test.main(
            [
                "--config",
                str(CONFIG),
                "--junit-xml",
                str(tmp_path / "reports" / "endpoint-tests.xml"),
                "--exports-file",
                str(tmp_path / "exports.env"),
                *args,
            ]
        )

    return call


def junit(tmp_path: Path) -> ET.Element:
    """The one testsuite of the written report."""
    suites = ET.parse(tmp_path / "reports" / "endpoint-tests.xml").getroot()
    assert suites.tag == "testsuites"
    (suite,) = suites.findall("testsuite")
    return suite


def exports(tmp_path: Path) -> str:
    """The exports file's text."""
    return (tmp_path / "exports.env").read_text()


def test_every_real_case_passes(aws, run, tmp_path, capsys):
    queue_answers(*(json.loads(path.read_text())["expected"] for path in REAL_CASES))

    assert run("--environment", "qa") == 0

    out = capsys.readouterr().out
    for path in REAL_CASES:
        assert f"PASS  {path.name}  " in out
    assert f"{ENDPOINT}: {len(REAL_CASES)}/{len(REAL_CASES)} passed, slowest " in out
    suite = junit(tmp_path)
    assert suite.get("name") == ENDPOINT
    assert (suite.get("tests"), suite.get("failures")) == (str(len(REAL_CASES)), "0")
    assert [case.get("name") for case in suite.findall("testcase")] == [p.name for p in REAL_CASES]
    assert all(float(case.get("time")) >= 0 for case in suite.findall("testcase"))
    assert suite.findall("testcase/failure") == []
    assert f"export TEST_SUMMARY='{len(REAL_CASES)}/{len(REAL_CASES)} passed, slowest " in exports(tmp_path)
    assert "export TEST_REPORT_URL=''\n" in exports(tmp_path)
    assert "export TEST_BUILD_ID=''\n" in exports(tmp_path)


def test_wrong_prediction_fails_naming_file_and_body(aws, run, tmp_path, capsys):
    payloads = tmp_path / "cases"
    write_case(payloads, "a-setosa.json", "5.1,3.5,1.4,0.2", {"predictions": ["setosa"]})
    write_case(payloads, "b-virginica.json", "7.7,3.0,6.1,2.3", {"predictions": ["virginica"]})
    queue_answers({"predictions": ["setosa"]}, {"predictions": ["versicolor"]})

    assert run("--environment", "qa", "--payloads-dir", str(payloads)) == 1

    captured = capsys.readouterr()
    assert "PASS  a-setosa.json" in captured.out
    fail_line = next(line for line in captured.out.splitlines() if line.startswith("FAIL"))
    assert "b-virginica.json" in fail_line
    assert '{"predictions": ["versicolor"]}' in fail_line
    assert captured.err.strip().splitlines()[-1] == "endpoint-test: FAILED: 1 of 2 cases failed: b-virginica.json"
    suite = junit(tmp_path)
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    (failure,) = suite.findall("testcase/failure")
    assert "versicolor" in failure.get("message")
    assert "TEST_SUMMARY='1/2 passed," in exports(tmp_path)


def test_text_answer_compares_with_a_string_expectation(aws, run, tmp_path):
    payloads = tmp_path / "cases"
    write_case(payloads, "text.json", "5.1,3.5,1.4,0.2", "setosa")
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={"results": [{"Body": "setosa\n", "ContentType": "text/plain"}]},
    )
    assert response.status_code == 201

    assert run("--environment", "qa", "--payloads-dir", str(payloads)) == 0


def test_latency_over_budget_fails(aws, run, tmp_path, capsys, monkeypatch):
    payloads = tmp_path / "cases"
    write_case(payloads, "slow.json", "5.1,3.5,1.4,0.2", {"predictions": ["setosa"]})
    queue_answers({"predictions": ["setosa"]})
    # Every reading of the clock is 2.5 s after the last: each call measures 2500 ms.
    monkeypatch.setattr(endpoint_test, "perf_counter", itertools.count(0.0, 2.5).__next__)

    assert run("--environment", "qa", "--payloads-dir", str(payloads), "--latency-budget-ms", "1000") == 1

    captured = capsys.readouterr()
    assert "FAIL  slow.json  2500 ms  took 2500 ms, over the 1000 ms budget" in captured.out
    assert captured.err.strip().splitlines()[-1] == "endpoint-test: FAILED: 1 of 1 cases failed: slow.json"
    assert junit(tmp_path).findall("testcase")[0].get("time") == "2.500"
    assert "TEST_SUMMARY='0/1 passed, slowest 2500 ms (budget 1000 ms)'" in exports(tmp_path)


def test_invoke_error_is_a_failed_case(aws, run, tmp_path, capsys, session, stubbed):
    # moto's invoke_endpoint always answers, so a ModelError comes from the Stubber.
    payloads = tmp_path / "cases"
    write_case(payloads, "broken.json", "5.1,3.5", {"predictions": ["setosa"]})
    runtime = session.client("sagemaker-runtime")
    stubber = Stubber(runtime)
    stubber.add_client_error(
        "invoke_endpoint",
        service_error_code="ModelError",
        http_status_code=424,
        service_message="Received server error (500) from primary: row 1: expected 4 features",
    )
    stubbed["sagemaker-runtime"] = runtime

    with stubber:
        assert run("--environment", "qa", "--payloads-dir", str(payloads)) == 1

    captured = capsys.readouterr()
    assert "FAIL  broken.json" in captured.out
    assert "invoke failed: InvokeEndpoint: ModelError: Received server error (500)" in captured.out
    assert captured.err.strip().splitlines()[-1] == "endpoint-test: FAILED: 1 of 1 cases failed: broken.json"
    assert junit(tmp_path).get("failures") == "1"


def test_endpoint_not_in_service_fails_with_status_and_reason(aws, run, tmp_path, capsys, session, stubbed):
    sagemaker = session.client("sagemaker")
    stubber = Stubber(sagemaker)
    now = datetime.now(timezone.utc)
    stubber.add_response(
        "describe_endpoint",
        {
            "EndpointName": ENDPOINT,
            "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
            "EndpointStatus": "Failed",
            "FailureReason": "The primary container did not pass the ping health check.",
            "CreationTime": now,
            "LastModifiedTime": now,
        },
        {"EndpointName": ENDPOINT},
    )
    stubbed["sagemaker"] = sagemaker

    with stubber:
        assert run("--environment", "qa") == 1

    err = capsys.readouterr().err
    assert err == (
        f"endpoint-test: FAILED: endpoint '{ENDPOINT}' is Failed, not InService: "
        "The primary container did not pass the ping health check.\n"
    )
    assert "TEST_SUMMARY='not run: endpoint " in exports(tmp_path)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "bad.json: not valid JSON (line 1"),
        ('{"content_type": "text/csv", "expected": "setosa"}', "bad.json: missing key(s) body"),
        (
            '{"content_type": "text/csv", "body": [5.1, 3.5, 1.4, 0.2], "expected": "setosa"}',
            "bad.json: body must be a string, got list",
        ),
        (
            '{"content_type": "text/csv", "body": "1", "expect": "setosa", "expected": "x"}',
            "bad.json: unknown key(s) expect",
        ),
    ],
    ids=["not-json", "missing-body", "body-not-a-string", "unknown-key"],
)
def test_malformed_payload_file_fails_naming_it(aws, run, tmp_path, capsys, text, problem):
    payloads = tmp_path / "cases"
    write_case(payloads, "good.json", "5.1,3.5,1.4,0.2", {"predictions": ["setosa"]})
    (payloads / "bad.json").write_text(text)

    assert run("--environment", "qa", "--payloads-dir", str(payloads)) == 1

    err = capsys.readouterr().err
    assert err.startswith(f"endpoint-test: FAILED: {payloads / 'bad.json'}: ")
    assert problem in err
    assert len(err.splitlines()) == 1


def test_missing_endpoint_is_one_line(aws, run, capsys, monkeypatch):
    # ENDPOINT_ENV picks the environment; moto has no prod endpoint.
    monkeypatch.setenv("ENDPOINT_ENV", "prod")

    assert run() == 1

    captured = capsys.readouterr()
    assert captured.err.startswith("endpoint-test: FAILED: endpoint 'iris-classifier-prod' not found in us-east-1 (")
    assert len(captured.err.splitlines()) == 1
    assert "Traceback" not in captured.err + captured.out


def test_missing_endpoint_error_code(aws, session):
    sagemaker = session.client("sagemaker")
    with pytest.raises(endpoint_test.StageFailure, match="not found"):
        endpoint_test.check_endpoint(sagemaker, "nope")
    with pytest.raises(sagemaker.exceptions.ClientError) as exc:
        sagemaker.describe_endpoint(EndpointName="nope")
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_bad_config_prints_each_problem_and_returns_2(tmp_path, capsys):
    bad = tmp_path / "pipeline.yml"
    bad.write_text("project: Bad_Name\nregion: mars-1\n")

    assert endpoint_test.main(["--config", str(bad), "--environment", "qa"]) == 2

    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith(f"{bad}: project: ") for line in lines)
    assert any(line.startswith(f"{bad}: region: ") for line in lines)
    assert not any("Traceback" in line for line in lines)


def test_environment_is_required(monkeypatch, capsys):
    monkeypatch.delenv("ENDPOINT_ENV", raising=False)
    with pytest.raises(SystemExit) as exc:
        endpoint_test.main(["--config", str(CONFIG)])
    assert exc.value.code == 2
    assert "--environment is required" in capsys.readouterr().err


def test_an_environment_not_in_the_config_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("ENDPOINT_ENV", "staging")
    assert endpoint_test.main(["--config", str(CONFIG)]) == 2
    assert capsys.readouterr().err == (f"endpoint-test: environment 'staging' is not in {CONFIG} (it has: qa, prod)\n")


def test_report_url_from_the_codebuild_build_arn():
    arn = f"arn:aws:codebuild:eu-west-1:{ACCOUNT}:build/iris-classifier-endpoint-test:0b9f6a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    assert endpoint_test.report_url(arn) == (
        f"https://eu-west-1.console.aws.amazon.com/codesuite/codebuild/{ACCOUNT}/projects/"
        "iris-classifier-endpoint-test/build/iris-classifier-endpoint-test%3A0b9f6a1e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
        "/reports?region=eu-west-1"
    )
    assert endpoint_test.report_url(None) == ""
    assert endpoint_test.report_url("not-an-arn") == ""


def test_report_url_lands_in_the_exports(aws, run, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEBUILD_BUILD_ARN", f"arn:aws:codebuild:{REGION}:{ACCOUNT}:build/p:u-1")
    payloads = tmp_path / "cases"
    write_case(payloads, "one.json", "5.1,3.5,1.4,0.2", {"predictions": ["setosa"]})
    queue_answers({"predictions": ["setosa"]})

    assert run("--environment", "qa", "--payloads-dir", str(payloads)) == 0

    assert (
        f"export TEST_REPORT_URL='https://{REGION}.console.aws.amazon.com/codesuite/codebuild/{ACCOUNT}"
        f"/projects/p/build/p%3Au-1/reports?region={REGION}'"
    ) in exports(tmp_path)
    # The pipeline builds the approval link around the encoded build id.
    assert "export TEST_BUILD_ID=p%3Au-1\n" in exports(tmp_path)


# --- what the endpoint serves (rollback detection) ----------------------------------------------

NEW = endpoint_test.Deployed("EndpointConfig-new", "Model-new", "iris-classifier-bbbbbbb-20260102T000000")
OLD_CONFIG, OLD_MODEL = "EndpointConfig-old", "Model-old"


def described(status: str, config: str, **extra: object) -> dict:
    """A DescribeEndpoint answer for the Stubber."""
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT}",
        "EndpointConfigName": config,
        "EndpointStatus": status,
        "CreationTime": now,
        "LastModifiedTime": now,
        **extra,
    }


def config_of(stubber: Stubber, config: str, model: str) -> None:
    """Queue a DescribeEndpointConfig answer: `config` serves `model`."""
    stubber.add_response(
        "describe_endpoint_config",
        {
            "EndpointConfigName": config,
            "EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/{config.lower()}",
            "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": model}],
            "CreationTime": datetime(2026, 1, 2, tzinfo=timezone.utc),
        },
        {"EndpointConfigName": config},
    )


@pytest.fixture
def sagemaker_stub(aws_env, session):
    """A SageMaker client answered by the Stubber."""
    sagemaker = session.client("sagemaker")
    with Stubber(sagemaker) as stubber:
        yield sagemaker, stubber
        stubber.assert_no_pending_responses()


class Clock:
    """Simulated time: sleeping moves it on."""

    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_serving_what_this_run_deployed_passes(sagemaker_stub, capsys):
    sagemaker, stubber = sagemaker_stub
    stubber.add_response("describe_endpoint", described("InService", NEW.config_name), {"EndpointName": ENDPOINT})
    config_of(stubber, NEW.config_name, NEW.model_name)
    endpoint_test.check_serves(sagemaker, ENDPOINT, NEW)
    assert capsys.readouterr().out == (
        f"{ENDPOINT} serves model Model-new (config EndpointConfig-new), version {NEW.version}\n"
    )


def test_rolled_back_endpoint_fails_naming_both_models_and_the_reason(sagemaker_stub):
    """Auto-rollback leaves the endpoint InService on the old config while the stack says the new one."""
    sagemaker, stubber = sagemaker_stub
    rollback = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "iris-5xx"}]}}
    stubber.add_response(
        "describe_endpoint",
        described("InService", OLD_CONFIG, LastDeploymentConfig=rollback),
        {"EndpointName": ENDPOINT},
    )
    config_of(stubber, OLD_CONFIG, OLD_MODEL)
    with pytest.raises(endpoint_test.StageFailure) as exc:
        endpoint_test.check_serves(sagemaker, ENDPOINT, NEW)
    assert str(exc.value) == (
        f"{ENDPOINT} serves model Model-old (config EndpointConfig-old), not Model-new (config EndpointConfig-new, "
        f"version {NEW.version}) that this run deployed: SageMaker rolled the update back (the deployment's "
        "rollback alarms: iris-5xx)"
    )


def test_rolled_back_endpoint_quotes_sagemakers_failure_reason(aws, run, tmp_path, capsys, session, stubbed):
    sagemaker = session.client("sagemaker")
    stubber = Stubber(sagemaker)
    reason = "Alarm iris-5xx went into ALARM; rolled back to the previous configuration."
    stubber.add_response(
        "describe_endpoint", described("InService", OLD_CONFIG, FailureReason=reason), {"EndpointName": ENDPOINT}
    )
    config_of(stubber, OLD_CONFIG, OLD_MODEL)
    stubbed["sagemaker"] = sagemaker
    deployed = ["--deployed-config", NEW.config_name, "--deployed-model", NEW.model_name]
    with stubber:
        code = run(
            "--environment", "qa", *deployed, "--deployed-version", NEW.version, "--trained-version", NEW.version
        )
    assert code == 1
    assert capsys.readouterr().err == (
        f"endpoint-test: FAILED: {ENDPOINT} serves model Model-old (config EndpointConfig-old), not Model-new "
        f"(config EndpointConfig-new, version {NEW.version}) that this run deployed: SageMaker rolled the update "
        f"back ({reason})\n"
    )
    assert "TEST_SUMMARY='not run: " in exports(tmp_path)


def test_updating_endpoint_is_waited_for_then_checked(sagemaker_stub, capsys):
    sagemaker, stubber = sagemaker_stub
    pending = {"EndpointConfigName": NEW.config_name, "StartTime": datetime(2026, 1, 2, tzinfo=timezone.utc)}
    stubber.add_response("describe_endpoint", described("Updating", OLD_CONFIG), {"EndpointName": ENDPOINT})
    stubber.add_response(
        "describe_endpoint",
        described("InService", OLD_CONFIG, PendingDeploymentSummary=pending),
        {"EndpointName": ENDPOINT},
    )
    stubber.add_response("describe_endpoint", described("InService", NEW.config_name), {"EndpointName": ENDPOINT})
    config_of(stubber, NEW.config_name, NEW.model_name)
    clock = Clock()
    endpoint_test.check_serves(sagemaker, ENDPOINT, NEW, poll_seconds=30, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.now == 60
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"endpoint {ENDPOINT} is Updating: waiting",
        f"endpoint {ENDPOINT} is InService: waiting",
        f"{ENDPOINT} serves model Model-new (config EndpointConfig-new), version {NEW.version}",
    ]


def test_an_endpoint_updating_past_the_bound_fails(sagemaker_stub):
    sagemaker, stubber = sagemaker_stub
    for _ in range(3):
        stubber.add_response("describe_endpoint", described("Updating", OLD_CONFIG), {"EndpointName": ENDPOINT})
    clock = Clock()
    with pytest.raises(endpoint_test.StageFailure, match=f"endpoint '{ENDPOINT}' is still Updating after 1 minutes"):
        endpoint_test.check_serves(
            sagemaker, ENDPOINT, NEW, wait_minutes=1, poll_seconds=30, sleep=clock.sleep, clock=lambda: clock.now
        )


def test_a_failed_endpoint_fails_with_its_reason(sagemaker_stub):
    sagemaker, stubber = sagemaker_stub
    stubber.add_response(
        "describe_endpoint",
        described("Failed", NEW.config_name, FailureReason="ping health check failed"),
        {"EndpointName": ENDPOINT},
    )
    with pytest.raises(endpoint_test.StageFailure) as exc:
        endpoint_test.check_serves(sagemaker, ENDPOINT, NEW)
    assert str(exc.value) == f"endpoint '{ENDPOINT}' is Failed, not InService: ping health check failed"


def test_a_stack_holding_another_runs_version_fails(sagemaker_stub):
    sagemaker, stubber = sagemaker_stub
    stubber.add_response("describe_endpoint", described("InService", NEW.config_name), {"EndpointName": ENDPOINT})
    trained = "iris-classifier-ccccccc-20260103T000000"
    deployed = endpoint_test.Deployed(NEW.config_name, NEW.model_name, NEW.version, trained)
    with pytest.raises(endpoint_test.StageFailure) as exc:
        endpoint_test.check_serves(sagemaker, ENDPOINT, deployed)
    assert str(exc.value).startswith(
        f"stack of {ENDPOINT} holds model version {NEW.version}, not {trained} that this run trained"
    )


def test_half_the_deployed_arguments_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        endpoint_test.main(["--environment", "qa", "--deployed-config", "EndpointConfig-new"])
    assert exc.value.code == 2
    assert "--deployed-config, --deployed-model and --deployed-version go together" in capsys.readouterr().err


def test_without_the_deployed_arguments_it_says_it_does_not_check(aws, run, capsys):
    queue_answers(*[json.loads(p.read_text())["expected"] for p in REAL_CASES])
    assert run("--environment", "qa") == 0
    assert "(which model it serves is not checked: no --deployed-config/-model/-version)" in capsys.readouterr().out


def test_serving_check_against_moto(aws, run, capsys, monkeypatch):
    """The environment variables the pipeline sets; moto's endpoint serves model iris of config iris."""
    queue_answers(*[json.loads(p.read_text())["expected"] for p in REAL_CASES])
    for name, value in {
        "DEPLOYED_ENDPOINT_CONFIG": "iris",
        "DEPLOYED_MODEL_NAME": "iris",
        "DEPLOYED_MODEL_VERSION": NEW.version,
        "TRAINED_MODEL_VERSION": NEW.version,
    }.items():
        monkeypatch.setenv(name, value)
    assert run("--environment", "qa") == 0
    assert f"{ENDPOINT} serves model iris (config iris), version {NEW.version}" in capsys.readouterr().out


def _pending_version(session) -> str:
    """A registry version as Train leaves it: PendingManualApproval."""
    sagemaker = session.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="iris-classifier")
    return sagemaker.create_model_package(
        ModelPackageGroupName="iris-classifier",
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}]},
        ModelApprovalStatus="PendingManualApproval",
    )["ModelPackageArn"]


def test_passing_tests_approve_the_registry_version_they_were_given(aws, run, session, capsys):
    arn = _pending_version(session)
    queue_answers(*(json.loads(path.read_text())["expected"] for path in REAL_CASES))

    assert run("--environment", "qa", "--approve-model-package", arn) == 0

    package = session.client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == f"deployed to qa ({ENDPOINT}) and its endpoint tests passed"
    assert "model package version 1 Approved" in capsys.readouterr().out


def test_failing_tests_leave_the_registry_version_pending(aws, run, session):
    arn = _pending_version(session)
    queue_answers(*({"wrong": True} for _ in REAL_CASES))

    assert run("--environment", "qa", "--approve-model-package", arn) == 1

    package = session.client("sagemaker").describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "PendingManualApproval"


def test_an_approve_argument_that_is_no_version_arn_is_refused_in_one_line(aws, run, capsys):
    with pytest.raises(SystemExit) as exc:
        run("--environment", "qa", "--approve-model-package", "iris-classifier")
    assert exc.value.code == 2
    assert "--approve-model-package 'iris-classifier' is not the ARN of a model package version" in (
        capsys.readouterr().err
    )
