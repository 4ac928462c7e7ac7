"""Command-line interface: `python -m pipeline synth|schema|deploy` (the Makefile calls these)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import click

from pipeline.config import ConfigError, PipelineConfig, load_config


def _load(config_path: str, root: str | None = None, check_payloads: bool = False) -> PipelineConfig:
    try:
        return load_config(config_path, root, check_payloads=check_payloads)
    except ConfigError as exc:
        _refuse(exc.problems)


def _refuse(problems: list[str], config_path: str | None = None) -> NoReturn:
    """Print one line per config problem (prefixed with the config's name when given) and exit 2."""
    prefix = f"{_display_name(config_path)}: " if config_path else ""
    for line in problems:
        click.echo(prefix + line, err=True)
    raise SystemExit(2)


def _display_name(config_path: str) -> str:
    """The config as load_config names it in its problems: the bare name when in the current folder."""
    path = Path(config_path)
    return path.name if path.parent == Path(".") else str(path)


class _OneLineFailures(click.Group):
    """The command group: a failure of AWS or of the file system that escapes any command (the
    SDK's errors of every kind, see pipeline.aws.is_failure) is `COMMAND: reason` on stderr, exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own: usage errors, --help, Ctrl-C at a prompt
        except Exception as exc:
            from pipeline.aws import error_line, is_failure  # boto3 loads only when something failed

            if not is_failure(exc):
                raise
            click.echo(f"{ctx.invoked_subcommand or ctx.info_name}: {error_line(exc)}", err=True)
            raise SystemExit(1) from None


@click.group(cls=_OneLineFailures)
def cli() -> None:
    """sagemaker-cd: a CodePipeline that trains, tests and ships a SageMaker model."""


@cli.command()
@click.option("--config", "config_path", default="pipeline.yml", show_default=True, help="The pipeline config file")
@click.option("--out", default="build/templates", show_default=True, help="Folder the templates are written to")
@click.option(
    "--root", default=None, help="Repo folder the config's paths are relative to (default: the config's folder)"
)
@click.option(
    "--branch",
    default=None,
    envvar="PIPELINE_BRANCH",
    help="Write the templates of this branch's pipeline (a branch pipeline's Lint action sets PIPELINE_BRANCH)",
)
def synth(config_path: str, out: str, root: str | None, branch: str | None) -> None:
    """Validate the config and write every CloudFormation template (offline)."""
    from pipeline.branches import branch_problem_for
    from pipeline.regions import RegionError
    from pipeline.synth import synthesize, write_templates

    # Synth is where a commit's config is checked (the Lint action runs it): payloads included.
    config = _load(config_path, root, check_payloads=True)
    reason = branch_problem_for(config, branch) if branch else None
    if reason:
        _refuse([reason])
    try:
        synthesis = synthesize(config, branch)
    except RegionError as exc:
        _refuse(exc.problems, config_path)
    except (ValueError, TypeError, KeyError) as exc:
        # A config that validated always builds; if one does not, say so in one line, not a traceback.
        reason = " ".join(str(exc).split())
        click.echo(f"synth: cannot build the templates from {config_path}: {type(exc).__name__}: {reason}", err=True)
        raise SystemExit(1) from None
    try:
        paths = write_templates(synthesis, out)
    except OSError as exc:
        click.echo(f"synth: cannot write the templates to {out} ({exc.strerror or exc})", err=True)
        raise SystemExit(1) from None
    whose = f"{config.project} branch {branch}" if branch else config.project
    click.echo(f"{whose} ({config.region}): wrote {', '.join(str(p) for p in paths)}")
    for line in synthesis.stage_lines:
        click.echo(f"  {line}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of pipeline.yml (for editors)."""
    body = PipelineConfig.model_json_schema()
    body["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    body["title"] = "sagemaker-cd pipeline.yml"
    click.echo(json.dumps(body, indent=2, sort_keys=True))


def _region(config: PipelineConfig, region: str | None) -> str:
    """The config's region; --region may only confirm it (the templates and scripts are built for it)."""
    if region and region != config.region:
        click.echo(f"--region {region} differs from pipeline.yml's region {config.region}: change the config", err=True)
        raise SystemExit(2)
    return config.region


def aws_command(func: Callable[..., int]) -> Callable[..., None]:
    """A command that talks to AWS: --config, --profile, --region; the body gets (config, session,
    **its options) and returns an exit code; an AwsError becomes one line on stderr, exit 1."""

    @click.option("--config", "config_path", default="pipeline.yml", show_default=True, help="The pipeline config file")
    @click.option("--profile", default=None, help="AWS profile (default: the AWS CLI's resolution)")
    @click.option("--region", default=None, help="Must match pipeline.yml's region if given")
    @functools.wraps(func)
    def command(config_path: str, profile: str | None, region: str | None, **options) -> None:
        from pipeline.aws import AwsError, session_for
        from pipeline.regions import RegionError

        config = _load(config_path)
        try:
            code = func(config, session_for(profile, _region(config, region)), **options)
        except AwsError as exc:
            click.echo(f"{func.__name__}: {exc}", err=True)
            raise SystemExit(1) from None
        except RegionError as exc:  # deploy synthesizes before it calls AWS
            _refuse(exc.problems, config_path)
        raise SystemExit(code)

    return command


def _branch_option(func: Callable) -> Callable:
    return click.option(
        "--branch",
        default=None,
        help="A branch pipeline: this git branch's own pipeline, QA-like environments only (see README)",
    )(func)


def _check_branch(config: PipelineConfig, branch: str | None) -> None:
    """Refuse, in one line and before any AWS call, a branch that cannot have its own pipeline."""
    from pipeline.branches import branch_problem_for

    reason = branch_problem_for(config, branch) if branch is not None else None
    if reason:
        _refuse([reason])


@cli.command()
@click.option("--yes", is_flag=True, help="Deploy without asking (needed when not on a terminal)")
@click.option("--dry-run", is_flag=True, help="Show the change set, then delete it; change nothing")
@_branch_option
@aws_command
def deploy(config: PipelineConfig, session, yes: bool, dry_run: bool, branch: str | None) -> int:
    """Create or update the pipeline stack (or a branch's) through a change set you review first."""
    from pipeline.deploy import deploy_pipeline

    _check_branch(config, branch)
    return deploy_pipeline(
        config,
        branch=branch,
        session=session,
        echo=click.echo,
        confirm=lambda question: click.confirm(question, default=False),
        yes=yes,
        dry_run=dry_run,
        interactive=sys.stdin.isatty(),
    )


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation")
@_branch_option
@aws_command
def destroy(config: PipelineConfig, session, yes: bool, branch: str | None) -> int:
    """Delete the endpoint stacks and the pipeline stack (or only a branch's); models, data and the key are kept."""
    from pipeline.destroy import destroy as run_destroy

    _check_branch(config, branch)

    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            click.echo("destroy: not a terminal, so not asking: re-run with --yes (make destroy ARGS=--yes)", err=True)
            return False
        return click.confirm(question, default=False)

    return run_destroy(config, session, confirm=confirm, echo=click.echo, branch=branch)


@cli.command()
@aws_command
@_branch_option
def status(config: PipelineConfig, session, branch: str | None) -> int:
    """Where the newest commits are in the pipeline (or a branch's), a pending approval, and each endpoint."""
    from pipeline.branches import for_branch
    from pipeline.status import show_status

    _check_branch(config, branch)
    return show_status(for_branch(config, branch), session, echo=click.echo, width=80, branch=branch)


@cli.command()
@click.option("--config", "config_path", default="pipeline.yml", show_default=True, help="The pipeline config file")
@click.option("--runs-per-month", type=click.IntRange(min=0), default=None, help="Estimate the pipeline from this")
@click.option("--action-minutes-per-run", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--live", is_flag=True, help="Hosting prices from the AWS Price List API (needs credentials)")
@click.option("--profile", default=None, help="AWS profile for --live")
def cost(
    config_path: str, runs_per_month: int | None, action_minutes_per_run: int, live: bool, profile: str | None
) -> None:
    """What the stood-up stacks keep running and its monthly cost (offline, from the price table)."""
    from pipeline.aws import RETRIES, AwsError, session_for
    from pipeline.cost import PriceError, estimate, kms_key_count, live_hourly, load_table, report
    from pipeline.synth import render

    config = _load(config_path)
    table = load_table()
    hourly = None
    try:
        if live:  # The Price List API answers in us-east-1, whatever region is priced.
            client = session_for(profile, "us-east-1").client("pricing", config=RETRIES)
            hourly = functools.partial(live_hourly, client)
        items = estimate(
            config,
            table,
            kms_keys=kms_key_count(render(config).templates),
            runs_per_month=runs_per_month,
            action_minutes_per_run=action_minutes_per_run,
            hourly=hourly,
        )
    except (PriceError, AwsError) as exc:
        click.echo(f"cost: {exc}", err=True)
        raise SystemExit(1) from None
    for line in report(config, items, table, live=live):
        click.echo(line)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="sagemaker-cd", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
