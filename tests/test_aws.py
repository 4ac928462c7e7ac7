"""pipeline/aws.py: one line for every AWS error, and the console links users click."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from pipeline.aws import (
    AwsError,
    aws_errors,
    codebuild_report_console_url,
    connections_console_url,
    error_line,
    pipeline_console_url,
    training_job_console_url,
)


def _client_error(code: str | None, message: str | None) -> ClientError:
    error = {key: value for key, value in (("Code", code), ("Message", message)) if value is not None}
    return ClientError({"Error": error}, "DescribeStacks")


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            _client_error("AccessDenied", "not authorized\n  to perform"),
            "DescribeStacks: AccessDenied: not authorized to perform",
        ),
        (_client_error("Throttling", ""), "DescribeStacks: Throttling"),
        (_client_error(None, None), "DescribeStacks: Error"),
        (
            NoCredentialsError(),
            "no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        ),
        (NoRegionError(), "no AWS region configured (pass --region or set AWS_REGION)"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"),
            'Could not connect to the endpoint URL: "http://127.0.0.1:9/"',
        ),
        (ValueError("two\nlines"), "ValueError: two lines"),
    ],
    ids=["client-error", "no-message", "no-code", "no-credentials", "no-region", "no-network", "other"],
)
def test_every_error_is_one_line(exc, line):
    assert error_line(exc) == line


def test_aws_errors_raises_the_one_line_as_an_aws_error():
    with pytest.raises(AwsError) as raised, aws_errors():
        raise _client_error("ValidationError", "Stack with id x does not exist")

    assert str(raised.value) == "DescribeStacks: ValidationError: Stack with id x does not exist"


def test_aws_errors_lets_other_exceptions_through():
    with pytest.raises(KeyError), aws_errors():
        raise KeyError("a bug, not an AWS failure")


def test_console_urls():
    region, console = "eu-west-1", "https://eu-west-1.console.aws.amazon.com"

    assert pipeline_console_url(region, "iris") == (
        f"{console}/codesuite/codepipeline/pipelines/iris/view?region={region}"
    )
    assert connections_console_url(region) == f"{console}/codesuite/settings/connections?region={region}"
    assert training_job_console_url(region, "iris-3f2a9c1-20240501T120000") == (
        f"{console}/sagemaker/home?region={region}#/jobs/iris-3f2a9c1-20240501T120000"
    )
    assert codebuild_report_console_url(region, "111122223333", "p", "p:u-1") == (
        f"{console}/codesuite/codebuild/111122223333/projects/p/build/p%3Au-1/reports?region={region}"
    )
