"""Fixtures shared by the test modules."""

from __future__ import annotations

import os
from typing import Any

import boto3
import botocore.waiter
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from pipeline.aws import RETRIES


@pytest.fixture(autouse=True)
def main_pipeline(monkeypatch):
    """Every test acts on the main pipeline, even when the suite runs in a branch pipeline's Lint
    action (whose project sets PIPELINE_BRANCH; see pipeline.branches)."""
    monkeypatch.delenv("PIPELINE_BRANCH", raising=False)


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


class FakeSession:
    """Stands in for a boto3 Session: hands out the given clients by service name, and no other."""

    def __init__(self, clients: dict[str, Any]):
        self.clients = clients
        self.asked: list[str] = []

    def client(self, service: str, config=None) -> Any:
        """The client given for `service`; asking for any other service fails the test."""
        assert config is RETRIES, "clients are made with standard retries"
        self.asked.append(service)
        if service not in self.clients:
            pytest.fail(f"asked for a {service} client; only {', '.join(self.clients)} may be used")
        return self.clients[service]


class StubbedAws:
    """Botocore Stubbers on real clients, a FakeSession handing those clients out, the name of
    every call made (in order, across services) and the waiters' sleeps (recorded, not slept)."""

    def __init__(self, clients: dict[str, Any]):
        self.clients = clients
        self.stubs = {service: Stubber(made) for service, made in clients.items()}
        self.session = FakeSession(clients)
        self.calls: list[str] = []
        self.waits: list[float] = []

    def __getitem__(self, service: str) -> Stubber:
        return self.stubs[service]

    def _record(self, model, **_) -> None:
        self.calls.append(model.name)

    def start(self) -> None:
        """Activate the stubs and the call recording."""
        for service, stub in self.stubs.items():
            self.clients[service].meta.events.register("before-parameter-build", self._record)
            stub.activate()

    def stop(self) -> None:
        """Deactivate them; every answer queued must have been asked for."""
        for service, stub in self.stubs.items():
            stub.deactivate()
            self.clients[service].meta.events.unregister("before-parameter-build", self._record)
        for stub in self.stubs.values():
            stub.assert_no_pending_responses()


@pytest.fixture(scope="session")
def real_clients(real_session):
    """Real clients of real_session, made once per service (speed); the tests stub them."""
    made: dict[str, Any] = {}

    def get(service: str) -> Any:
        if service not in made:
            made[service] = real_session.client(service)
        return made[service]

    return get


@pytest.fixture
def stub_aws(aws_env, real_clients, monkeypatch):
    """stub_aws("cloudformation", "s3", ...) -> StubbedAws; the test fails if a queued answer is unused."""
    made: list[StubbedAws] = []

    def make(*services: str) -> StubbedAws:
        aws = StubbedAws({service: real_clients(service) for service in services})
        monkeypatch.setattr(botocore.waiter.time, "sleep", aws.waits.append)
        aws.start()
        made.append(aws)
        return aws

    yield make
    for aws in made:
        aws.stop()


@pytest.fixture
def unreachable_session(aws_env, real_session):
    """A FakeSession whose CloudFormation client calls a port nothing listens on, once (no retries),
    so the connection is refused at once."""
    cfn = real_session.client(
        "cloudformation", endpoint_url="http://127.0.0.1:9", config=Config(retries={"total_max_attempts": 1})
    )
    return FakeSession({"cloudformation": cfn})
