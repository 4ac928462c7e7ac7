"""What every stage script shares: boto3 clients with standard retries, one-line failures, exports."""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from pipeline.config import ConfigError

RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})


class StageFailure(Exception):
    """The stage failed for a reason the user should read in one line (exit code 1)."""


def client(service: str, region: str | None = None):
    """A boto3 client with botocore's standard retry mode; made when called, never at import."""
    return boto3.session.Session(region_name=region).client(service, config=RETRY_CONFIG)


def aws_error_line(exc: Exception) -> str:
    """One readable line for an AWS/botocore error."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{exc.operation_name} failed: {err.get('Code', 'Error')}: {err.get('Message', '')}".rstrip(": ")
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (set AWS_PROFILE, or run inside CodeBuild)"
    if isinstance(exc, NoRegionError):
        return "no AWS region configured (pass --region or set AWS_REGION)"
    return str(exc)


def one_line_errors(name: str) -> Callable:
    """Wrap a script's main(): failures print `NAME: FAILED: reason` on stderr and return 1, a bad
    config prints one line per problem and returns 2; never a traceback."""

    def wrap(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(*args, **kwargs) -> int:
            try:
                return main(*args, **kwargs)
            except ConfigError as exc:
                for line in exc.problems:
                    print(line, file=sys.stderr)
                return 2
            except StageFailure as exc:
                print(f"{name}: FAILED: {exc}", file=sys.stderr)
            except (ClientError, BotoCoreError) as exc:
                print(f"{name}: FAILED: {aws_error_line(exc)}", file=sys.stderr)
            return 1

        return run

    return wrap


def write_exports(path: str | Path, values: dict[str, str]) -> None:
    """Write `export K='v'` lines that a buildspec sources so CodeBuild can export them as action variables."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in values.items()))
