"""The endpoint test: send every payload case to a deployed endpoint and check answer and latency.

Runs in CodeBuild after each environment's endpoint deploy (qa, then prod in the sample) as
`python -m scripts.endpoint_test`, with ENDPOINT_ENV set on the action, and from a laptop with the
same arguments. Each case is one JSON file in `endpoint_tests.payloads_dir`:

    {"description": "...", "content_type": "text/csv", "accept": "application/json",
     "body": "5.1,3.5,1.4,0.2", "expected": {"predictions": ["setosa"]}}

First it checks that the endpoint serves what this run deployed (the endpoint stack's outputs,
and the version this run trained): SageMaker may roll an update back and leave the endpoint
InService on the old config. It waits, with a bound, for an endpoint still updating.

An asynchronous environment (`asynchronous:` in pipeline.yml) is tested through Asynchronous
Inference: each case's body is put under the environment's input prefix in the model bucket
(MODEL_BUCKET, ASYNC_INPUT_PREFIX: set by the pipeline), the endpoint is invoked with
InvokeEndpointAsync, and the answer (or failure) SageMaker writes to the model bucket is awaited
for `asynchronous.result_timeout_s`, which is then also the case's time budget; it is judged as a
real-time answer is.

It writes a JUnit XML report (CodeBuild shows it as a test report) and an exports file with
TEST_SUMMARY, TEST_REPORT_URL and TEST_BUILD_ID, whether the cases pass or fail; it exits 0 only if all pass.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

from botocore.exceptions import ClientError, EndpointConnectionError

from pipeline import payloads
from pipeline.aws import client, codebuild_build_id, codebuild_report_console_url, error_line, is_aws_error
from pipeline.branches import load_run_config
from pipeline.payloads import Case
from scripts.common import StageFailure, config_with_environment, one_line_errors, write_exports
from scripts.registry import APPROVED, is_version_arn, set_status, version_of

# What a failure message quotes of a response body: enough to see it, not a whole batch.
SHOWN_BODY_CHARS = 300


@dataclass(frozen=True)
class Outcome:
    """What one invocation did: the body that came back (None on an error), its latency, why it failed."""

    case: Case
    latency_ms: float
    body: str | None
    failure: str | None

    @property
    def passed(self) -> bool:
        """True when the answer matched and came within the budget."""
        return self.failure is None


# --- cases ----------------------------------------------------------------------------------------


def load_cases(folder: Path) -> list[Case]:
    """Every *.json case in the folder, in file-name order (pipeline.payloads reads and checks them)."""
    try:
        return payloads.load_cases(folder)
    except payloads.PayloadError as exc:
        raise StageFailure(str(exc)) from None


# --- the endpoint -------------------------------------------------------------------------------


def describe_endpoint(sagemaker, endpoint_name: str) -> dict:
    """DescribeEndpoint; a missing endpoint is one line naming it and the region."""
    try:
        return sagemaker.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ValidationException":
            raise StageFailure(
                f"endpoint '{endpoint_name}' not found in {sagemaker.meta.region_name} "
                f"({exc.response['Error'].get('Message', '')})"
            ) from None
        raise


def check_endpoint(sagemaker, endpoint_name: str) -> None:
    """Fail clearly unless the endpoint exists and is InService (status and FailureReason if not)."""
    endpoint = describe_endpoint(sagemaker, endpoint_name)
    status = endpoint["EndpointStatus"]
    if status != "InService":
        reason = endpoint.get("FailureReason")
        raise StageFailure(f"endpoint '{endpoint_name}' is {status}, not InService" + (f": {reason}" if reason else ""))


# EndpointStatus values (botocore's sagemaker model) that settle by themselves: wait for them.
SETTLING_STATUSES = ("Creating", "Updating", "SystemUpdating", "RollingBack")
# Within the endpoint-test project's 20-minute CodeBuild timeout (BuildStep's default), leaving
# time for the install and the cases themselves.
SERVES_WAIT_MINUTES = 12
SERVES_POLL_SECONDS = 30.0


@dataclass(frozen=True)
class Deployed:
    """What this run deployed: the endpoint stack's outputs after DeployEndpoint (EndpointConfigName,
    ModelName, ModelVersion) and the training job this run trained (None from a laptop)."""

    config_name: str
    model_name: str
    version: str
    trained: str | None = None


def _rollback_reason(endpoint: dict) -> str:
    reason = endpoint.get("FailureReason")
    if reason:
        return f"SageMaker rolled the update back ({reason})"
    rollback = (endpoint.get("LastDeploymentConfig") or {}).get("AutoRollbackConfiguration", {}).get("Alarms")
    if rollback:
        names = ", ".join(a.get("AlarmName", "?") for a in rollback)
        return f"SageMaker rolled the update back (the deployment's rollback alarms: {names})"
    return "SageMaker rolled the update back or another deploy replaced it"


def settled_endpoint(
    sagemaker,
    endpoint_name: str,
    wait_minutes: float = SERVES_WAIT_MINUTES,
    poll_seconds: float = SERVES_POLL_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """DescribeEndpoint once the endpoint is no longer Creating/Updating/... and has no pending
    deployment; fails when that takes over `wait_minutes` (naming the status) or the endpoint is missing."""
    started = clock()
    while True:
        endpoint = describe_endpoint(sagemaker, endpoint_name)
        status = endpoint["EndpointStatus"]
        if status not in SETTLING_STATUSES and not endpoint.get("PendingDeploymentSummary"):
            return endpoint
        if clock() - started >= wait_minutes * 60:
            raise StageFailure(f"endpoint '{endpoint_name}' is still {status} after {wait_minutes:g} minutes")
        print(f"endpoint {endpoint_name} is {status}: waiting", flush=True)
        sleep(poll_seconds)


def check_serves(sagemaker, endpoint_name: str, deployed: Deployed, **wait) -> None:
    """Fail in one line unless the endpoint is InService on the config and model this run deployed
    (the stack's outputs), and the stack holds the version this run trained: SageMaker can roll an
    update back and leave the endpoint InService on the old config while CloudFormation reports
    success. `wait`: settled_endpoint's bound, poll and clock."""
    endpoint = settled_endpoint(sagemaker, endpoint_name, **wait)
    status = endpoint["EndpointStatus"]
    if status != "InService":
        reason = endpoint.get("FailureReason")
        raise StageFailure(f"endpoint '{endpoint_name}' is {status}, not InService" + (f": {reason}" if reason else ""))
    if deployed.trained is not None and deployed.version != deployed.trained:
        raise StageFailure(
            f"stack of {endpoint_name} holds model version {deployed.version}, not {deployed.trained} that this run "
            "trained: another run deployed after this one, or the deploy did not take this run's parameters"
        )
    live_config = endpoint["EndpointConfigName"]
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=live_config)["ProductionVariants"]
    live_models = sorted({v["ModelName"] for v in variants})
    if live_config != deployed.config_name or live_models != [deployed.model_name]:
        raise StageFailure(
            f"{endpoint_name} serves model {', '.join(live_models)} (config {live_config}), not "
            f"{deployed.model_name} (config {deployed.config_name}, version {deployed.version}) that this run "
            f"deployed: {_rollback_reason(endpoint)}"
        )
    print(f"{endpoint_name} serves model {deployed.model_name} (config {live_config}), version {deployed.version}")


def invoke(runtime, endpoint_name: str, case: Case) -> tuple[str | None, float, str | None]:
    """Send one case: (response body or None, latency in ms, invoke error or None)."""
    started = perf_counter()
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType=case.content_type,
            Accept=case.accept,
            Body=case.payload,
        )
        body = response["Body"].read().decode("utf-8", errors="replace")
        error = None
    except Exception as exc:  # any AWS failure (a ModelError, a reply that does not parse, ...) fails this case
        if not is_aws_error(exc):
            raise
        body, error = None, error_line(exc)
    return body, (perf_counter() - started) * 1000.0, error


class LocalRuntime:
    """An invoker for an endpoint served on this machine (`make local`): `invoke_endpoint` as the
    sagemaker-runtime client's, over plain HTTP to URL/invocations. A reply other than 200 is raised
    as SageMaker raises it, a ModelError ClientError quoting the status and body; a refused
    connection as botocore's EndpointConnectionError. So the cases are judged by the same code."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def invoke_endpoint(self, EndpointName: str, ContentType: str, Accept: str, Body: bytes) -> dict:
        """POST the body to /invocations with Content-Type and Accept; {'Body': readable} on 200."""
        from urllib.error import HTTPError, URLError
        from urllib.request import Request, urlopen

        url = f"{self.url}/invocations"
        request = Request(url, data=Body, method="POST", headers={"Content-Type": ContentType, "Accept": Accept})
        try:
            with urlopen(request, timeout=self.timeout_s) as response:
                return {"Body": io.BytesIO(response.read()), "ContentType": response.headers.get("Content-Type")}
        except HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")
            message = f'Received client error ({exc.code}) from {EndpointName} with message "{text}"'
            error = {"Error": {"Code": "ModelError", "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 424}}
            raise ClientError(error, "InvokeEndpoint") from None
        except (URLError, OSError):
            raise EndpointConnectionError(endpoint_url=url) from None


# How often an asynchronous case's output and failure locations are looked at.
ASYNC_POLL_SECONDS = 5.0


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def async_move(answered: bool, failed: bool, waited_s: float, timeout_s: float) -> str:
    """What to do next about one asynchronous request: `answer` (its output is there), `failure`
    (its failure is there), `timeout` (neither, and the wait is over) or `wait`."""
    if answered:
        return "answer"
    if failed:
        return "failure"
    return "timeout" if waited_s >= timeout_s else "wait"


def _client_error(code: str, message: str, operation: str = "InvokeEndpointAsync") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class AsyncRuntime:
    """An invoker for an asynchronous endpoint: `invoke_endpoint` as the sagemaker-runtime client's,
    over S3 and InvokeEndpointAsync. The answer comes back as the body; a failure SageMaker wrote is
    raised as a ModelError quoting it, no answer within the timeout as a ClientError saying so. So
    the cases are judged by the same code."""

    def __init__(
        self,
        runtime: Any,
        s3: Any,
        input_uri: str,
        timeout_s: int,
        poll_seconds: float = ASYNC_POLL_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime, self.s3 = runtime, s3
        self.bucket, prefix = s3_location(input_uri.rstrip("/") + "/")
        # A folder per test run: requests of two runs never share a key.
        self.prefix = f"{prefix}{uuid.uuid4().hex}/"
        self.timeout_s, self.poll_seconds, self.sleep, self.clock = timeout_s, poll_seconds, sleep, clock
        self.sent = 0

    def _read(self, uri: str | None) -> bytes | None:
        """The object at `uri`, or None while it is not there."""
        if not uri:
            return None
        bucket, key = s3_location(uri)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise

    def invoke_endpoint(self, EndpointName: str, ContentType: str, Accept: str, Body: bytes) -> dict:
        """Put the body in S3, invoke the endpoint with it, and wait for the answer or the failure."""
        self.sent += 1
        key = f"{self.prefix}request-{self.sent}"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=Body, ContentType=ContentType)
        response = self.runtime.invoke_endpoint_async(
            EndpointName=EndpointName,
            ContentType=ContentType,
            Accept=Accept,
            InputLocation=f"s3://{self.bucket}/{key}",
            InvocationTimeoutSeconds=self.timeout_s,
        )
        output, failure = response.get("OutputLocation"), response.get("FailureLocation")
        started = self.clock()
        while True:
            answer, error = self._read(output), self._read(failure)
            move = async_move(answer is not None, error is not None, self.clock() - started, self.timeout_s)
            if move == "answer":
                return {"Body": io.BytesIO(answer or b"")}
            if move == "failure":
                text = (error or b"").decode("utf-8", errors="replace").strip()
                raise _client_error("ModelError", f"SageMaker wrote a failure to {failure}: {text}")
            if move == "timeout":
                raise _client_error(
                    "Timeout", f"no answer at {output} nor failure at {failure} after {self.timeout_s} s"
                )
            self.sleep(self.poll_seconds)


def matches(expected: Any, body: str, tolerance: float = 0.0) -> bool:
    """The body equals `expected` as JSON (each number within `tolerance` of the expected one), or
    (for a string `expected`) as stripped text."""
    try:
        if close(json.loads(body), expected, tolerance):
            return True
    except ValueError:
        pass
    return isinstance(expected, str) and body.strip() == expected.strip()


def close(got: Any, expected: Any, tolerance: float) -> bool:
    """JSON values equal but for numbers, which may differ by at most `tolerance` (0: equal)."""
    number = (int, float)
    if isinstance(expected, number) and not isinstance(expected, bool):
        return isinstance(got, number) and not isinstance(got, bool) and abs(got - expected) <= tolerance
    if isinstance(expected, list):
        return (
            isinstance(got, list)
            and len(got) == len(expected)
            and all(close(g, e, tolerance) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(close(got[key], expected[key], tolerance) for key in expected)
        )
    return bool(got == expected and type(got) is type(expected))


def _shown(body: str) -> str:
    body = body.strip()
    return body if len(body) <= SHOWN_BODY_CHARS else body[:SHOWN_BODY_CHARS] + "..."


def judge(case: Case, body: str | None, latency_ms: float, error: str | None, budget_ms: int) -> Outcome:
    """Hold one invocation to its case: the right answer, within the latency budget."""
    problems = []
    if error is not None:
        problems.append(f"invoke failed: {error}")
    elif body is None or not matches(case.expected, body, case.tolerance):
        within = f" (numbers within {case.tolerance:g})" if case.tolerance else ""
        problems.append(f"expected {json.dumps(case.expected)}{within}, got {_shown(body or '')!r}")
    if latency_ms > budget_ms:
        problems.append(f"took {latency_ms:.0f} ms, over the {budget_ms} ms budget")
    return Outcome(case, latency_ms, body, "; ".join(problems) or None)


def run_cases(runtime, endpoint_name: str, cases: list[Case], budget_ms: int) -> list[Outcome]:
    """Invoke every case in order, printing one PASS/FAIL line each."""
    outcomes = []
    for case in cases:
        outcome = judge(case, *invoke(runtime, endpoint_name, case), budget_ms)
        line = f"{'PASS' if outcome.passed else 'FAIL'}  {case.name}  {outcome.latency_ms:.0f} ms"
        print(line + (f"  {outcome.failure}" if outcome.failure else ""), flush=True)
        outcomes.append(outcome)
    return outcomes


# --- reports ------------------------------------------------------------------------------------


def summary(outcomes: list[Outcome], budget_ms: int) -> str:
    """One short line, e.g. '4/4 passed, slowest 120 ms (budget 1000 ms)'."""
    passed = sum(o.passed for o in outcomes)
    slowest = max(o.latency_ms for o in outcomes)
    return f"{passed}/{len(outcomes)} passed, slowest {slowest:.0f} ms (budget {budget_ms} ms)"


# Characters XML 1.0 cannot hold (ElementTree writes them anyway, and the report no longer parses).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """`text` with the characters an XML report cannot hold (a binary reply's NULs, say) made U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def junit_xml(endpoint_name: str, outcomes: list[Outcome]) -> ET.ElementTree:
    """A JUnit report: one testsuite named after the endpoint, one testcase per payload file."""
    failures = [o for o in outcomes if not o.passed]
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=endpoint_name,
        tests=str(len(outcomes)),
        failures=str(len(failures)),
        errors="0",
        time=f"{sum(o.latency_ms for o in outcomes) / 1000:.3f}",
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite, "testcase", classname=endpoint_name, name=outcome.case.name, time=f"{outcome.latency_ms / 1000:.3f}"
        )
        if not outcome.passed:
            failure = ET.SubElement(case, "failure", message=outcome.failure or "")
            failure.text = "response body: " + (xml_text(outcome.body) if outcome.body is not None else "(none)")
        if outcome.case.description:
            ET.SubElement(case, "system-out").text = outcome.case.description
    ET.indent(suites)
    return ET.ElementTree(suites)


def write_junit(path: Path, endpoint_name: str, outcomes: list[Outcome]) -> None:
    """Write the JUnit report, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(endpoint_name, outcomes).write(path, encoding="utf-8", xml_declaration=True)


def build_id(build_arn: str | None) -> str:
    """This build's id, URL-encoded (the approval link in the pipeline is built around it), or ''."""
    return codebuild_build_id(build_arn)


def report_url(build_arn: str | None) -> str:
    """The CodeBuild console page of this build's test reports, or '' outside CodeBuild."""
    # arn:PARTITION:codebuild:REGION:ACCOUNT:build/PROJECT:UUID
    parts = (build_arn or "").split(":", 5)
    if len(parts) != 6 or parts[2] != "codebuild" or not parts[5].startswith("build/"):
        return ""
    region, account, build_id = parts[3], parts[4], parts[5][len("build/") :]
    project = build_id.split(":", 1)[0]
    return codebuild_report_console_url(region, account, project, build_id)


# --- command ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The endpoint test's arguments; everything but the environment defaults from the config."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.endpoint_test",
        description="Send the endpoint test cases to a deployed endpoint and check answers and latency.",
    )
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--environment",
        default=os.environ.get("ENDPOINT_ENV") or None,
        help="an environment of pipeline.yml, e.g. qa (env ENDPOINT_ENV)",
    )
    parser.add_argument("--endpoint-name", help="default: the environment's endpoint, PROJECT-ENV")
    parser.add_argument("--payloads-dir", help="folder of *.json cases (default: endpoint_tests.payloads_dir)")
    parser.add_argument(
        "--latency-budget-ms",
        type=int,
        help="each call must answer within this (default: endpoint_tests.latency_budget_ms)",
    )
    parser.add_argument("--region", help="default: the config's region")
    parser.add_argument(
        "--url",
        help="test a model served on this machine at URL (make local: http://127.0.0.1:PORT) instead of "
        "a SageMaker endpoint; no AWS call, no --environment",
    )
    parser.add_argument(
        "--junit-xml",
        default="build/reports/endpoint-tests.xml",
        help="JUnit report (default: build/reports/endpoint-tests.xml)",
    )
    env = os.environ.get
    parser.add_argument(
        "--deployed-config",
        default=env("DEPLOYED_ENDPOINT_CONFIG") or None,
        help="the endpoint config the deploy left in the stack's outputs (env DEPLOYED_ENDPOINT_CONFIG); "
        "with --deployed-model and --deployed-version, checks the endpoint serves it before testing",
    )
    parser.add_argument(
        "--deployed-model", default=env("DEPLOYED_MODEL_NAME") or None, help="its model (env DEPLOYED_MODEL_NAME)"
    )
    parser.add_argument(
        "--deployed-version",
        default=env("DEPLOYED_MODEL_VERSION") or None,
        help="its model version, a training job (env DEPLOYED_MODEL_VERSION)",
    )
    parser.add_argument(
        "--trained-version",
        default=env("TRAINED_MODEL_VERSION") or None,
        help="the training job this run trained (env TRAINED_MODEL_VERSION, optional)",
    )
    parser.add_argument(
        "--approve-model-package",
        default=env("APPROVE_MODEL_PACKAGE_ARN") or None,
        help="the registry version this run deployed, set Approved when every case passes (env "
        "APPROVE_MODEL_PACKAGE_ARN: the pipeline sets it on the last environment's test only)",
    )
    parser.add_argument(
        "--async-input-uri",
        default=async_uri_from_env(),
        help="an asynchronous environment's: s3:// prefix its test requests are put under "
        "(default: s3://$MODEL_BUCKET/$ASYNC_INPUT_PREFIX)",
    )
    parser.add_argument(
        "--exports-file",
        default="build/endpoint-test-exports.env",
        help="TEST_SUMMARY, TEST_REPORT_URL, TEST_BUILD_ID for the buildspec (default: build/endpoint-test-exports.env)",
    )
    return parser


def async_uri_from_env() -> str | None:
    """s3://MODEL_BUCKET/ASYNC_INPUT_PREFIX when the pipeline set both, else None."""
    bucket, prefix = os.environ.get("MODEL_BUCKET"), os.environ.get("ASYNC_INPUT_PREFIX")
    return f"s3://{bucket}/{prefix}" if bucket and prefix else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the arguments (argparse does not check a default against choices)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.url is not None:
        if any((args.deployed_config, args.deployed_model, args.deployed_version)):
            parser.error("--url tests a local server: --deployed-config/-model/-version do not apply")
        if args.approve_model_package:
            parser.error("--url tests a local server: --approve-model-package does not apply")
    elif args.environment is None:
        parser.error("--environment is required (or set ENDPOINT_ENV to one of pipeline.yml's environments)")
    if args.latency_budget_ms is not None and args.latency_budget_ms < 1:
        parser.error("--latency-budget-ms must be at least 1")
    if args.approve_model_package and not is_version_arn(args.approve_model_package):
        parser.error(
            f"--approve-model-package '{args.approve_model_package}' is not the ARN of a model package version "
            "(arn:...:model-package/GROUP/N)"
        )
    deployed = (args.deployed_config, args.deployed_model, args.deployed_version)
    if any(deployed) and not all(deployed):
        parser.error("--deployed-config, --deployed-model and --deployed-version go together (give all or none)")
    return args


def deployed_from(args: argparse.Namespace) -> Deployed | None:
    """What the run deployed, from the arguments; None when not given (a laptop run without them)."""
    if not args.deployed_config:
        return None
    return Deployed(args.deployed_config, args.deployed_model, args.deployed_version, args.trained_version or None)


def finish(
    args: argparse.Namespace, endpoint_name: str, outcomes: list[Outcome], budget_ms: int, exported: dict
) -> int:
    """Write the JUnit report and the exports, print the summary; fail naming every failed case."""
    line = summary(outcomes, budget_ms)
    write_junit(Path(args.junit_xml), endpoint_name, outcomes)
    write_exports(args.exports_file, {"TEST_SUMMARY": line, **exported})
    print(f"{endpoint_name}: {line}")
    failed = [o.case.name for o in outcomes if not o.passed]
    if failed:
        raise StageFailure(f"{len(failed)} of {len(outcomes)} cases failed: {', '.join(failed)}")
    return 0


def test_local(args: argparse.Namespace) -> int:
    """The same cases, budget and reports against a model served on this machine (`--url`)."""
    config = load_run_config(args.config)
    endpoint_name = args.endpoint_name or f"{config.project}-local"
    payloads_dir = Path(args.payloads_dir or Path(args.config).resolve().parent / config.endpoint_tests.payloads_dir)
    budget_ms = args.latency_budget_ms or config.endpoint_tests.latency_budget_ms
    exported = {"TEST_REPORT_URL": "", "TEST_BUILD_ID": ""}
    cases = load_cases(payloads_dir)
    print(
        f"testing {args.url} ({endpoint_name}) with {len(cases)} case(s) from {payloads_dir}, budget {budget_ms} ms per call"
    )
    outcomes = run_cases(LocalRuntime(args.url), endpoint_name, cases, budget_ms)
    return finish(args, endpoint_name, outcomes, budget_ms, exported)


@one_line_errors("endpoint-test")
def main(argv: list[str] | None = None) -> int:
    """Run the endpoint test; 0 when every case passes, 1 on any failure, 2 on a bad config."""
    args = parse_args(argv)
    if args.url is not None:
        return test_local(args)
    config = config_with_environment("endpoint-test", args.config, args.environment)
    endpoint_name = args.endpoint_name or config.names.endpoint(args.environment)
    # payloads_dir in the config is relative to the repo (the config's folder); the flag, to the cwd.
    payloads_dir = Path(args.payloads_dir or Path(args.config).resolve().parent / config.endpoint_tests.payloads_dir)
    budget_ms = args.latency_budget_ms or config.endpoint_tests.latency_budget_ms
    region = args.region or config.region
    asynchronous = config.environment(args.environment).asynchronous
    if asynchronous is not None:
        # An answer may wait in the queue, or for an instance to start: the budget is the wait.
        budget_ms = args.latency_budget_ms or asynchronous.result_timeout_s * 1000

    report = report_url(os.environ.get("CODEBUILD_BUILD_ARN"))
    exported = {"TEST_REPORT_URL": report, "TEST_BUILD_ID": build_id(os.environ.get("CODEBUILD_BUILD_ARN"))}
    try:
        if asynchronous is not None and not args.async_input_uri:
            raise StageFailure(
                f"environment '{args.environment}' is asynchronous: give --async-input-uri s3://BUCKET/PREFIX/ "
                "(in the pipeline: MODEL_BUCKET and ASYNC_INPUT_PREFIX)"
            )
        cases = load_cases(payloads_dir)
        deployed = deployed_from(args)
        if deployed is None:
            check_endpoint(client("sagemaker", region), endpoint_name)
        else:
            check_serves(client("sagemaker", region), endpoint_name, deployed)
    except Exception as exc:
        if not isinstance(exc, StageFailure) and not is_aws_error(exc):
            raise
        # The exports still say why, for whatever reads TEST_SUMMARY after a failed test.
        reason = str(exc) if isinstance(exc, StageFailure) else error_line(exc)
        write_exports(args.exports_file, {"TEST_SUMMARY": f"not run: {reason}", **exported})
        raise
    print(
        f"testing endpoint {endpoint_name} ({args.environment}, {region}) with {len(cases)} case(s) "
        f"from {payloads_dir}, budget {budget_ms} ms per call"
        + ("" if deployed else " (which model it serves is not checked: no --deployed-config/-model/-version)"),
        flush=True,
    )
    runtime = client("sagemaker-runtime", region)
    if asynchronous is not None:
        runtime = AsyncRuntime(runtime, client("s3", region), args.async_input_uri, timeout_s=budget_ms // 1000 or 1)
    outcomes = run_cases(runtime, endpoint_name, cases, budget_ms)
    finish(args, endpoint_name, outcomes, budget_ms, exported)
    if args.approve_model_package:
        approve(client("sagemaker", region), args.approve_model_package, args.environment, endpoint_name)
    return 0


def approve(sagemaker, arn: str, environment: str, endpoint_name: str) -> None:
    """Record on the registry version that the last environment serves it and its tests passed."""
    reason = f"deployed to {environment} ({endpoint_name}) and its endpoint tests passed"
    build = os.environ.get("CODEBUILD_BUILD_ID")
    set_status(sagemaker, arn, APPROVED, reason + (f" (build {build})" if build else ""))
    print(f"model package version {version_of(arn)} Approved: {reason}")


if __name__ == "__main__":
    sys.exit(main())
