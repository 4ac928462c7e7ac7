"""What only the stage scripts share: their failure type, one-line failures and exit codes, exports.

Clients, retries and the one-line rendering of AWS errors live in pipeline.aws, with the rest of
the AWS plumbing.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.aws import error_line, is_failure
from pipeline.branches import load_run_config
from pipeline.config import ConfigError, PipelineConfig


class StageFailure(Exception):
    """The stage failed for a reason the user should read in one line (exit code 1)."""


def config_with_environment(script: str, config_path: str, environment: str) -> PipelineConfig:
    """The config, refused in one line (ConfigError) unless `environment` is one of its environments."""
    config = load_run_config(config_path)
    if environment not in config.environment_names:
        known = ", ".join(config.environment_names)
        raise ConfigError([f"{script}: environment '{environment}' is not in {config_path} (it has: {known})"])
    return config


def one_line_errors(name: str) -> Callable:
    """Wrap a script's main(): failures print `NAME: FAILED: reason` on stderr and return 1, a bad
    config prints one line per problem and returns 2; never a traceback for a failure of AWS (any
    error boto3, botocore or s3transfer raise) or of the file system (see pipeline.aws.is_failure)."""

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
            except Exception as exc:
                if not is_failure(exc):
                    raise
                print(f"{name}: FAILED: {error_line(exc)}", file=sys.stderr)
            return 1

        return run

    return wrap


def write_exports(path: str | Path, values: dict[str, str]) -> None:
    """Write `export K='v'` lines that a buildspec sources so CodeBuild can export them as action variables."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {key}={shlex.quote(str(value))}\n" for key, value in values.items()))
