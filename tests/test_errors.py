"""Every failure is one line: every exception class boto3, botocore and s3transfer define, raised in
every command and stage script, ends as one line and a non-zero exit; and, end to end, the failures
met against real AWS APIs (an upload AWS refuses, a proxy's page instead of AWS's reply, a model
container's HTML error page) do too.

The classes are found by walking the installed packages, so a class a botocore upgrade adds is
covered without a change here. The end-to-end tests point AWS_ENDPOINT_URL at a local HTTP server
that answers as a proxy or AWS would, so botocore's real parsers and s3transfer's real upload run.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import shlex
import string
import threading
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import botocore
import pytest
import s3transfer
from boto3.exceptions import ResourceNotExistsError, S3UploadFailedError
from botocore.eventstream import ChecksumMismatch
from botocore.exceptions import ClientError, EventStreamError, WaiterError
from botocore.parsers import ResponseParserError
from s3transfer.exceptions import RetriesExceededError as TransferRetriesExceededError

from pipeline import cli
from pipeline.aws import (
    MESSAGE_CHARS,
    RETRIES,
    AwsError,
    aws_errors,
    client,
    error_line,
    readable,
    refuse_unreadable_replies,
)
from pipeline.config import PipelineConfig
from scripts import endpoint_test, train
from scripts.common import one_line_errors

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "pipeline.yml"  # project iris-classifier, region us-east-1, environments qa and prod
COMMIT = "3f2a9c1d0e5b6a7980112233445566778899aabb"


# --- every exception class of the SDK ------------------------------------------------------------


def sdk_exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in an importable module of boto3, botocore and s3transfer
    (the modules that need an extra that is not installed, awscrt or docutils, are skipped)."""
    found: dict[str, type[BaseException]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the vendored requests warn that they are deprecated
        for package in (boto3, botocore, s3transfer):
            for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=lambda name: None):
                try:
                    module = importlib.import_module(info.name)
                except ImportError:
                    continue
                for value in vars(module).values():
                    exception = isinstance(value, type) and issubclass(value, BaseException)
                    if exception and value.__module__ == module.__name__:
                        found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


SDK_EXCEPTIONS = sdk_exception_classes()


def marker(name: str) -> str:
    """The value given to a constructor argument: recognisable, on two lines, with markup."""
    return f"{name}-value\n  <p>continued</p>"


# Constructors that need more than a message or the fields their `fmt` names, and why.
SPECIAL: dict[type[BaseException], Callable[[], BaseException]] = {
    # error_response is the parsed error reply, a dict
    ClientError: lambda: ClientError({"Error": {"Code": "AccessDenied", "Message": marker("message")}}, "PutObject"),
    EventStreamError: lambda: EventStreamError(
        {"Error": {"Code": "ServiceUnavailable", "Message": marker("message")}}, "SubscribeToShard"
    ),
    # formats both checksums as hexadecimal numbers
    ChecksumMismatch: lambda: ChecksumMismatch(expected=1, calculated=2),
    # lists the available resources one per line (a string would be listed character by character)
    ResourceNotExistsError: lambda: ResourceNotExistsError(marker("service_name"), ["Bucket", "Object"], False),
}


def build(cls: type[BaseException]) -> BaseException:
    """An instance of `cls`: its `fmt` fields (botocore's errors) and required arguments get
    marker values, a class without either a message."""
    if cls in SPECIAL:
        return SPECIAL[cls]()
    fields = {field for _, field, _, _ in string.Formatter().parse(getattr(cls, "fmt", "") or "") if field}
    kwargs = {field: marker(field) for field in fields}
    try:
        parameters = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # Exception's own __init__: takes a message
        return cls(marker("message"))
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        kwargs = {name: value for name, value in kwargs.items() if name in {p.name for p in parameters}}
    required = [p for p in parameters if p.kind not in variadic and p.default is inspect.Parameter.empty]
    for parameter in required:
        kwargs.setdefault(parameter.name, marker(parameter.name))
    takes_message = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    if not kwargs and takes_message:
        return cls(marker("message"))
    return cls(**kwargs)


def assert_useful_line(exc: BaseException, line: str) -> None:
    """One line, no markup, bounded; it carries every value the exception's text carries (or, when
    the exception has no text, its class name)."""
    assert line and "\n" not in line and line == line.strip()
    assert "<p>" not in line and "</p>" not in line
    assert len(line) <= 2 * MESSAGE_CHARS
    text = str(exc)
    values = set(re.findall(r"[A-Za-z_]+-value", text))
    if isinstance(exc, ClientError):
        values |= {exc.operation_name, exc.response["Error"]["Code"]}
    for value in values:
        assert value in line, f"{value} is in the exception's text but not in the line"
    if not text.strip():
        assert type(exc).__name__ in line


def test_the_walk_finds_the_exceptions_that_escaped_before():
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in SDK_EXCEPTIONS}

    assert {
        "boto3.exceptions.S3UploadFailedError",
        "boto3.exceptions.S3TransferFailedError",
        "boto3.exceptions.RetriesExceededError",
        "botocore.parsers.ResponseParserError",
        "botocore.exceptions.WaiterError",
        "botocore.exceptions.ClientError",
        "botocore.eventstream.ChecksumMismatch",
        "s3transfer.exceptions.S3UploadFailedError",
        "s3transfer.exceptions.RetriesExceededError",
    } <= names
    assert len(names) > 150


@pytest.mark.parametrize("cls", SDK_EXCEPTIONS, ids=lambda cls: f"{cls.__module__}.{cls.__qualname__}")
def test_every_sdk_exception_is_one_line_in_every_handler(cls, monkeypatch, capsys):
    line = error_line(build(cls))
    assert_useful_line(build(cls), line)

    def fail(*args, **kwargs):
        raise build(cls)

    # pipeline.aws.aws_errors, around every AWS step of deploy, destroy and status
    with pytest.raises(AwsError) as raised, aws_errors():
        fail()
    assert str(raised.value) == line

    # the command group, around every command
    monkeypatch.setattr(PipelineConfig, "model_json_schema", fail)
    assert cli.main(["schema"]) == 1
    assert capsys.readouterr() == ("", f"schema: {line}\n")

    # the stage scripts' wrapper
    assert one_line_errors("train")(fail)() == 1
    assert capsys.readouterr() == ("", f"train: FAILED: {line}\n")

    # one endpoint test case: the failure is the case's, the test goes on
    runtime = type("Runtime", (), {"invoke_endpoint": staticmethod(fail)})()
    case = endpoint_test.Case("a.json", "", "text/csv", "application/json", "1", [1])
    body, _, error = endpoint_test.invoke(runtime, "iris-classifier-qa", case)
    assert (body, error) == (None, line)


# What escaped before, raised in every command and in each stage script's main().
ESCAPED = [
    lambda: S3UploadFailedError("Failed to upload a to b/c: An error occurred (AccessDenied) when calling ..."),
    lambda: ResponseParserError("Unable to parse response (syntax error), invalid XML received:\nb'<p>Proxy</p>'"),
    lambda: TransferRetriesExceededError(ConnectionResetError("reset by peer")),
    lambda: WaiterError("StackDeleteComplete", "Max attempts exceeded", {}),
]
ENTRY_POINTS = {
    # command: the function it calls, patched to fail
    "synth": ("pipeline.synth.synthesize", ["synth", "--config", str(CONFIG)]),
    "deploy": ("pipeline.deploy.deploy_pipeline", ["deploy", "--config", str(CONFIG), "--yes"]),
    "destroy": ("pipeline.destroy.destroy", ["destroy", "--config", str(CONFIG), "--yes"]),
    "status": ("pipeline.status.show_status", ["status", "--config", str(CONFIG)]),
}


@pytest.mark.parametrize("command", ENTRY_POINTS)
@pytest.mark.parametrize("make", ESCAPED, ids=["S3UploadFailedError", "ResponseParserError", "s3transfer", "waiter"])
def test_each_command_prints_one_line(aws_env, monkeypatch, capsys, command, make):
    target, argv = ENTRY_POINTS[command]

    def fail(*args, **kwargs):
        raise make()

    monkeypatch.setattr(target, fail)

    assert cli.main(argv) == 1

    assert capsys.readouterr() == ("", f"{command}: {error_line(make())}\n")


@pytest.mark.parametrize("make", ESCAPED, ids=["S3UploadFailedError", "ResponseParserError", "s3transfer", "waiter"])
def test_each_stage_script_prints_one_line(aws_env, monkeypatch, tmp_path, capsys, make):
    def fail(*args, **kwargs):
        raise make()

    monkeypatch.setattr(train, "client", fail)
    monkeypatch.setattr(endpoint_test, "client", fail)
    line = error_line(make())

    assert (
        train.main(
            ["--config", str(CONFIG), "--output-dir", str(tmp_path), "--model-bucket", "b"]
            + ["--role-arn", "arn:aws:iam::111122223333:role/r", "--commit", COMMIT]
        )
        == 1
    )
    assert capsys.readouterr() == ("", f"train: FAILED: {line}\n")

    exports = tmp_path / "exports.env"
    assert endpoint_test.main(["--config", str(CONFIG), "--environment", "qa", "--exports-file", str(exports)]) == 1
    assert capsys.readouterr() == ("", f"endpoint-test: FAILED: {line}\n")
    assert f"export TEST_SUMMARY={shlex.quote('not run: ' + line)}\n" in exports.read_text()


# --- the lines themselves ----------------------------------------------------------------------


def test_a_client_error_is_operation_code_message_with_markup_stripped():
    exc = ClientError(
        {
            "Error": {"Code": "403", "Message": "<html><head><title>Blocked</title><style>p {}</style></head>\n"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "ListPipelineExecutions",
    )

    assert error_line(exc) == "ListPipelineExecutions: HTTP 403: Blocked"


def test_a_client_error_without_an_aws_code_names_the_http_status():
    exc = ClientError(
        {"Error": {"Code": "Unknown", "Message": "Unknown"}, "ResponseMetadata": {"HTTPStatusCode": 502}},
        "DescribeStacks",
    )

    assert error_line(exc) == "DescribeStacks: HTTP 502"


def test_retries_exceeded_names_the_last_error():
    exc = TransferRetriesExceededError(ConnectionResetError(104, "Connection reset by peer"))

    assert error_line(exc) == (
        "RetriesExceededError: Max Retries Exceeded (last error: ConnectionResetError: [Errno 104] Connection reset by peer)"
    )


def test_readable_strips_a_page_but_not_angle_brackets_in_plain_text():
    page = (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n'
        "<script>var x = 1;</script><h1>Internal&nbsp;Server Error</h1>\n<p>Try again &amp; again.</p>\n"
    )

    assert readable(page) == "500 Internal Server Error Internal Server Error Try again & again."
    assert readable("Value <none> for\n\tparameter x < 3") == "Value <none> for parameter x < 3"


def test_readable_cuts_a_long_message_in_the_middle_keeping_its_end():
    message = "Received server error (500): " + "Traceback line\n" * 1000 + "See https://console/logs for more."

    line = readable(message)

    assert len(line) <= MESSAGE_CHARS
    assert line.startswith("Received server error (500): Traceback line")
    assert line.endswith("See https://console/logs for more.")
    assert " … " in line


def test_control_characters_do_not_reach_the_line():
    assert readable("bad\x00byte\x1b[31m red") == "bad byte [31m red"


def test_an_os_error_in_a_command_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")

    assert cli.main(["synth", "--config", str(CONFIG), "--out", str(blocker / "templates")]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"synth: cannot write the templates to {blocker / 'templates'} (Not a directory)\n"


def test_a_bug_is_not_hidden(monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("a bug in our code, not an AWS failure")

    monkeypatch.setattr(PipelineConfig, "model_json_schema", bug)

    with pytest.raises(KeyError):
        cli.main(["schema"])


# --- end to end: a local server answers in AWS's place ------------------------------------------

PROXY_PAGE = (
    b"<html><head><meta charset=utf-8><title>Access denied</title></head>\n"
    b"<body><h1>Access denied</h1><br>\n<p>Access to this site is blocked by your organisation's proxy.</p>"
    b"</body></html>\n"
)
XHTML_PAGE = (
    b'<?xml version="1.0"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Sign in</title></head>'
    b"<body><p>Sign in to the network to continue.</p></body></html>\n"
)
Answer = tuple[int, dict[str, str], bytes]


class FakeAws(ThreadingHTTPServer):
    """Answers every request with what `answer(method, path, headers, body)` returns; records the requests."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer: Callable[[str, str, dict, bytes], Answer] = lambda *request: (200, {}, b"")
        self.requests: list[tuple[str, str, dict]] = []

    @property
    def url(self) -> str:
        """The server's URL, for AWS_ENDPOINT_URL."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAws
    # HTTP/1.1 answers S3's `Expect: 100-continue` at once (botocore waits a second for it otherwise).
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = dict(self.headers.items())
        self.server.requests.append((self.command, self.path, headers))
        status, reply_headers, reply = self.server.answer(self.command, self.path, headers, body)
        self.send_response(status)
        for name, value in reply_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _reply

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class names it so
        pass


@pytest.fixture
def fake_aws(aws_env, monkeypatch):
    """A FakeAws that every boto3 client of the test calls (AWS_ENDPOINT_URL), stopped afterwards."""
    server = FakeAws()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.delenv("CODEBUILD_BUILD_ARN", raising=False)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shared_session():
    """One boto3 session for the stage scripts' clients, so each service model loads once (the
    scripts make a session per client; SageMaker's model alone takes a fifth of a second)."""
    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def script_clients(fake_aws, shared_session, monkeypatch):
    """The stage scripts' clients come from shared_session, made as pipeline.aws.client makes them."""

    def made(service: str, region: str | None = None):
        refuse_unreadable_replies(shared_session)
        return shared_session.client(service, region_name=region, config=RETRIES)

    monkeypatch.setattr(train, "client", made)
    monkeypatch.setattr(endpoint_test, "client", made)


def page(status: int, body: bytes, content_type: str = "text/html; charset=utf-8") -> Callable[..., Answer]:
    """An answer: this page, whatever was asked."""
    return lambda *request: (status, {"Content-Type": content_type}, body)


def one_line_on_stderr(capsys) -> str:
    """The one line the command printed on stderr (nothing on stdout)."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), captured.err
    return captured.err.rstrip("\n")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            page(200, PROXY_PAGE),
            "status: ListPipelineExecutions: ResponseParserError: Unable to parse response "
            "(HTTP 200, text/html; charset=utf-8), invalid JSON received; the reply: Access denied Access denied "
            "Access to this site is blocked by your organisation's proxy.",
        ),
        (
            page(403, PROXY_PAGE),
            "status: ListPipelineExecutions: HTTP 403: Access denied Access denied "
            "Access to this site is blocked by your organisation's proxy.",
        ),
        (
            page(200, b"Bad Gateway\n", "text/plain"),
            "status: ListPipelineExecutions: ResponseParserError: Unable to parse response "
            "(HTTP 200, text/plain), invalid JSON received; the reply: Bad Gateway",
        ),
    ],
    ids=["proxy-page", "proxy-page-403", "plain-text"],
)
def test_status_behind_a_proxy_is_one_line(fake_aws, capsys, answer, expected):
    fake_aws.answer = answer

    assert cli.main(["status", "--config", str(CONFIG)]) == 1

    assert one_line_on_stderr(capsys) == expected


def test_deploy_with_a_reply_botocore_cannot_parse_is_one_line(fake_aws, capsys):
    fake_aws.answer = page(200, PROXY_PAGE)

    assert cli.main(["deploy", "--config", str(CONFIG), "--yes"]) == 1

    assert one_line_on_stderr(capsys) == (
        "deploy: DescribeStacks: ResponseParserError: Unable to parse response (not well-formed (invalid token): "
        "line 1, column 26), invalid XML received. Further retries may succeed; the reply: Access denied "
        "Access denied Access to this site is blocked by your organisation's proxy."
    )


def test_destroy_when_botocore_trips_over_a_page_is_one_line(fake_aws, capsys):
    # Well-formed XHTML parses as XML; botocore's parser then raises a KeyError of its own.
    fake_aws.answer = page(200, XHTML_PAGE, "application/xhtml+xml")

    assert cli.main(["destroy", "--config", str(CONFIG), "--yes"]) == 1

    assert one_line_on_stderr(capsys) == "destroy: DescribeStacks: KeyError: 'DescribeStacksResult'"


S3_ERROR = "<?xml version='1.0' encoding='UTF-8'?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, "AccessDenied", "Access Denied"),
        (404, "NoSuchBucket", "The specified bucket does not exist"),
        (
            403,
            "AccessDenied",
            "User: arn:aws:sts::111122223333:assumed-role/train/x is not authorized to perform: "
            "kms:GenerateDataKey on resource: arn:aws:kms:us-east-1:111122223333:key/1 because no identity-based "
            "policy allows the kms:GenerateDataKey action",
        ),
    ],
    ids=["forbidden-bucket", "wrong-bucket", "no-kms-permission"],
)
def test_train_upload_refused_is_one_line(
    fake_aws, script_clients, tmp_path, monkeypatch, capsys, status, code, message
):
    """What `make train` printed as 52 lines ending in boto3's S3UploadFailedError."""
    fake_aws.answer = page(status, S3_ERROR.format(code=code, message=message).encode(), "application/xml")
    # A relative folder: the line's length (and so where a long message is cut) must not depend on
    # where pytest puts tmp_path.
    monkeypatch.chdir(tmp_path)
    out = Path("out")

    rc = train.main(
        ["--config", str(CONFIG), "--output-dir", str(out), "--model-bucket", "model-bucket"]
        + ["--role-arn", "arn:aws:iam::111122223333:role/sagemaker", "--commit", COMMIT, "--poll-seconds", "1"]
    )

    assert rc == 1
    key = f"model-bucket/iris-classifier/code/{COMMIT}/sourcedir.tar.gz"
    assert one_line_on_stderr(capsys) == (
        f"train: FAILED: Failed to upload {out / 'sourcedir.tar.gz'} to {key}: "
        f"An error occurred ({code}) when calling the PutObject operation: {message}"
    )
    assert [method for method, _, _ in fake_aws.requests] == ["PUT"]


FLASK_500 = (
    '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<title>500 Internal Server Error</title>\n'
    "<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete "
    "your request. Either the server is overloaded or there is an error in the application.</p>\n"
)
LOGS = (
    "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1"
    "#logEventViewer:group=/aws/sagemaker/Endpoints/iris-classifier-qa"
)


def sagemaker_with_a_failing_model(method: str, path: str, headers: dict, body: bytes) -> Answer:
    """DescribeEndpoint: InService; InvokeEndpoint: the ModelError SageMaker returns when the model
    container answers with its web framework's HTML error page."""
    if path.startswith("/endpoints/"):
        error = {
            "ErrorCode": "INTERNAL_FAILURE_FROM_MODEL",
            "OriginalStatusCode": 500,
            "OriginalMessage": FLASK_500,
            "Message": f'Received server error (500) from primary with message "{FLASK_500}". '
            f"See {LOGS} in account 123456789012 for more information.",
        }
        return (
            424,
            {"x-amzn-ErrorType": "ModelError:http://internal.amazon.com/coral/com.amazon.sagemaker/"},
            json.dumps(error).encode(),
        )
    if headers.get("X-Amz-Target") != "SageMaker.DescribeEndpoint":
        return 400, {}, b"not a call the endpoint test makes"
    endpoint = {
        "EndpointName": "iris-classifier-qa",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/iris-classifier-qa",
        "EndpointStatus": "InService",
        "CreationTime": 1700000000,
        "LastModifiedTime": 1700000000,
    }
    return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(endpoint).encode()


def test_endpoint_test_model_error_with_an_html_page_is_one_line(fake_aws, script_clients, tmp_path, capsys):
    fake_aws.answer = sagemaker_with_a_failing_model
    cases = tmp_path / "cases"
    cases.mkdir()
    (cases / "broken.json").write_text(
        json.dumps({"content_type": "text/csv", "body": "5.1,3.5", "expected": {"predictions": ["setosa"]}})
    )
    report = tmp_path / "reports" / "endpoint-tests.xml"

    rc = endpoint_test.main(
        ["--config", str(CONFIG), "--environment", "qa", "--payloads-dir", str(cases)]
        + ["--junit-xml", str(report), "--exports-file", str(tmp_path / "exports.env")]
    )

    assert rc == 1
    captured = capsys.readouterr()
    assert captured.err == "endpoint-test: FAILED: 1 of 1 cases failed: broken.json\n"
    (fail,) = [line for line in captured.out.splitlines() if line.startswith("FAIL")]
    failure = (
        "invoke failed: InvokeEndpoint: ModelError: Received server error (500) from primary with message "
        '" 500 Internal Server Error Internal Server Error The server encountered an internal error and was '
        "unable to complete your request. Either the server is overloaded or there is an error in the "
        f'application. ". See {LOGS} in account 123456789012 for more information.'
    )
    assert re.fullmatch(r"FAIL  broken\.json  \d+ ms  (.*)", fail).group(1) == failure
    assert len(captured.out.splitlines()) == 3  # the header, the FAIL line, the summary
    (element,) = ET.parse(report).getroot().iter("failure")
    assert element.get("message") == failure


def test_the_junit_report_holds_a_binary_reply(tmp_path):
    case = endpoint_test.Case("bin.json", "", "text/csv", "application/json", "1", [1])
    outcome = endpoint_test.Outcome(case, 3.0, "\x00\x01PNG\x1a", "expected [1], got '\\x00\\x01PNG\\x1a'")
    path = tmp_path / "report.xml"

    endpoint_test.write_junit(path, "iris-classifier-qa", [outcome])

    (element,) = ET.parse(path).getroot().iter("failure")
    assert element.text == "response body: \ufffd\ufffdPNG\ufffd"


def test_a_stage_script_client_refuses_a_page_in_place_of_json(fake_aws):
    fake_aws.answer = page(200, PROXY_PAGE)
    codepipeline = client("codepipeline", "us-east-1")

    with pytest.raises(ResponseParserError, match=r"^Unable to parse response \(HTTP 200, text/html"):
        codepipeline.list_pipeline_executions(pipelineName="iris-classifier")


def test_a_model_answering_html_is_its_answer_not_an_error(fake_aws):
    # InvokeEndpoint's reply body is the model's own: whatever it is, the endpoint test compares it.
    fake_aws.answer = page(200, PROXY_PAGE)
    runtime = client("sagemaker-runtime", "us-east-1")

    response = runtime.invoke_endpoint(EndpointName="iris-classifier-qa", ContentType="text/csv", Body=b"1")

    assert response["Body"].read() == PROXY_PAGE


def test_a_stop_that_fails_is_reported_in_one_line_and_does_not_hide_the_interruption(capsys):
    def refuse(**request):
        raise ResponseParserError("Unable to parse response (syntax error), invalid XML received:\nb'<h1>Gateway</h1>'")

    sagemaker = type("SageMaker", (), {"stop_training_job": staticmethod(refuse)})()

    train.stop_job(sagemaker, "iris-classifier-3f2a9c1-20240501T120000")

    assert capsys.readouterr().err == (
        "could not stop training job iris-classifier-3f2a9c1-20240501T120000: ResponseParserError: "
        "Unable to parse response (syntax error), invalid XML received; the reply: Gateway\n"
    )
