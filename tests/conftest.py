"""Fixtures shared by the test modules."""

import os

import boto3
import pytest


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and an explicit region, so nothing can reach a real AWS account."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # Ignore the developer's ~/.aws files.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture(scope="session")
def real_session():
    """One boto3 session with fake keys for the whole run, so each service model loads once;
    tests wrap its clients in botocore's Stubber."""
    with pytest.MonkeyPatch.context() as env:
        # As aws_env: the developer's ~/.aws files and profile play no part.
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_CONFIG_FILE", os.devnull)
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        session.client("cloudformation")  # reads the (empty) config files while they are /dev/null
        yield session
