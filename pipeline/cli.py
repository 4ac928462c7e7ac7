"""Command-line interface: `python -m pipeline synth|schema|deploy|...` (the Makefile calls these).

argparse, not click: `make bench` times a synth in a fresh process and click's import alone was
a tenth of its 0.3 s budget."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from pipeline.config import ConfigError, PipelineConfig, load_config

PROG = "sagemaker-cd"


def echo(message: str, err: bool = False) -> None:
    """One line on stdout (or stderr), flushed: what the commands and the modules they call print."""
    print(message, file=sys.stderr if err else sys.stdout, flush=True)


def confirm(question: str) -> bool:
    """Ask a yes/no question on the terminal; no (the default) unless the answer is y or yes.
    Ctrl-C or the end of input stops the command: `Aborted!`, exit 1."""
    while True:
        try:
            answer = input(f"{question} [y/N]: ").strip().lower()
        except (EOFError, KeyboardInterrupt):
            echo("\nAborted!", err=True)
            raise SystemExit(1) from None
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        echo("Error: invalid input", err=True)


def _load(config_path: str, root: str | None = None, check_payloads: bool = False) -> PipelineConfig:
    try:
        return load_config(config_path, root, check_payloads=check_payloads)
    except ConfigError as exc:
        _refuse(exc.problems)


def _refuse(problems: list[str], config_path: str | None = None) -> NoReturn:
    """Print one line per config problem (prefixed with the config's name when given) and exit 2."""
    prefix = f"{_display_name(config_path)}: " if config_path else ""
    for line in problems:
        echo(prefix + line, err=True)
    raise SystemExit(2)


def _display_name(config_path: str) -> str:
    """The config as load_config names it in its problems: the bare name when in the current folder."""
    path = Path(config_path)
    return path.name if path.parent == Path(".") else str(path)


def synth(args: argparse.Namespace) -> int:
    """Validate the config and write every CloudFormation template (offline)."""
    from pipeline.branches import branch_problem_for
    from pipeline.regions import RegionError
    from pipeline.synth import synthesize, write_templates

    config_path, out, branch = args.config, args.out, args.branch
    # Synth is where a commit's config is checked (the Lint action runs it): payloads included.
    config = _load(config_path, args.root, check_payloads=True)
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
        echo(f"synth: cannot build the templates from {config_path}: {type(exc).__name__}: {reason}", err=True)
        return 1
    try:
        paths = write_templates(synthesis, out)
    except OSError as exc:
        echo(f"synth: cannot write the templates to {out} ({exc.strerror or exc})", err=True)
        return 1
    whose = f"{config.project} branch {branch}" if branch else config.project
    echo(f"{whose} ({config.region}): wrote {', '.join(str(p) for p in paths)}")
    for line in synthesis.stage_lines:
        echo(f"  {line}")
    return 0


def schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of pipeline.yml (for editors)."""
    body = PipelineConfig.model_json_schema()
    body["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    body["title"] = "sagemaker-cd pipeline.yml"
    echo(json.dumps(body, indent=2, sort_keys=True))
    return 0


def _region(config: PipelineConfig, region: str | None) -> str:
    """The config's region; --region may only confirm it (the templates and scripts are built for it)."""
    if region and region != config.region:
        echo(f"--region {region} differs from pipeline.yml's region {config.region}: change the config", err=True)
        raise SystemExit(2)
    return config.region


def aws_command(func: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
    """A command that talks to AWS (its parser has --config, --profile, --region): the body gets
    (config, session, args) and returns an exit code; an AwsError becomes one line on stderr, exit 1."""

    @functools.wraps(func)
    def command(args: argparse.Namespace) -> int:
        from pipeline.aws import AwsError, session_for
        from pipeline.regions import RegionError

        config = _load(args.config)
        try:
            return func(config, session_for(args.profile, _region(config, args.region)), args)
        except AwsError as exc:
            echo(f"{func.__name__}: {exc}", err=True)
            return 1
        except RegionError as exc:  # deploy synthesizes before it calls AWS
            _refuse(exc.problems, args.config)

    return command


def _check_branch(config: PipelineConfig, branch: str | None) -> None:
    """Refuse, in one line and before any AWS call, a branch that cannot have its own pipeline."""
    from pipeline.branches import branch_problem_for

    reason = branch_problem_for(config, branch) if branch is not None else None
    if reason:
        _refuse([reason])


@aws_command
def deploy(config: PipelineConfig, session, args: argparse.Namespace) -> int:
    """Create or update the pipeline stack (or a branch's) through a change set you review first."""
    from pipeline.deploy import deploy_pipeline

    _check_branch(config, args.branch)
    return deploy_pipeline(
        config,
        branch=args.branch,
        root=Path(args.config).resolve().parent,  # where load_config checked seed_dir
        session=session,
        echo=echo,
        confirm=confirm,
        yes=args.yes,
        dry_run=args.dry_run,
        interactive=sys.stdin.isatty(),
    )


def _promote_flags(args: argparse.Namespace) -> dict:
    return dict(echo=echo, confirm=confirm, yes=args.yes, dry_run=args.dry_run, interactive=sys.stdin.isatty())


@aws_command
def promote(config: PipelineConfig, session, args: argparse.Namespace) -> int:
    """Deploy a registered model version to an environment's endpoint (Approved, or --force --reason)."""
    from pipeline.promote import promote as run_promote

    if args.force and not (args.reason or "").strip():
        echo("promote: --force needs --reason TEXT (it is recorded on the version)", err=True)
        return 2
    return run_promote(
        config, session, to=args.to, number=args.version, force=args.force, reason=args.reason, **_promote_flags(args)
    )


@aws_command
def rollback(config: PipelineConfig, session, args: argparse.Namespace) -> int:
    """Deploy to an environment the newest Approved version older than the one it serves."""
    from pipeline.promote import promote as run_promote

    return run_promote(config, session, to=args.to, **_promote_flags(args))


@aws_command
def destroy(config: PipelineConfig, session, args: argparse.Namespace) -> int:
    """Delete the endpoint stacks and the pipeline stack (or only a branch's); models, data and the key are kept."""
    from pipeline.destroy import destroy as run_destroy

    _check_branch(config, args.branch)

    def ask(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            echo("destroy: not a terminal, so not asking: re-run with --yes (make destroy ARGS=--yes)", err=True)
            return False
        return confirm(question)

    return run_destroy(config, session, confirm=ask, echo=echo, branch=args.branch)


@aws_command
def status(config: PipelineConfig, session, args: argparse.Namespace) -> int:
    """Where the newest commits are in the pipeline (or a branch's), a pending approval, and each endpoint."""
    from pipeline.branches import for_branch
    from pipeline.status import show_status

    _check_branch(config, args.branch)
    return show_status(for_branch(config, args.branch), session, echo=echo, width=80, branch=args.branch)


def cost(args: argparse.Namespace) -> int:
    """What the stood-up stacks keep running and its monthly cost (offline, from the price table)."""
    from pipeline.aws import RETRIES, AwsError, session_for
    from pipeline.cost import PriceError, estimate, kms_key_count, live_hourly, load_table, report
    from pipeline.synth import render

    config = _load(args.config)
    table = load_table()
    hourly = None
    try:
        if args.live:  # The Price List API answers in us-east-1, whatever region is priced.
            client = session_for(args.profile, "us-east-1").client("pricing", config=RETRIES)
            hourly = functools.partial(live_hourly, client)
        items = estimate(
            config,
            table,
            kms_keys=kms_key_count(render(config).templates),
            runs_per_month=args.runs_per_month,
            action_minutes_per_run=args.action_minutes_per_run,
            hourly=hourly,
        )
    except (PriceError, AwsError) as exc:
        echo(f"cost: {exc}", err=True)
        return 1
    for line in report(config, items, table, live=args.live):
        echo(line)
    return 0


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number no smaller than `minimum`."""

    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not in the range x>={minimum}")
        return value

    return whole


def _parser() -> argparse.ArgumentParser:
    """The command line: one sub-command per function above, each with its options."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="sagemaker-cd: a CodePipeline that trains, tests and ships a SageMaker model."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        doc = (run.__doc__ or "").strip()
        sub = commands.add_parser(run.__name__, help=doc, description=doc)
        sub.set_defaults(run=run, command=run.__name__)
        return sub

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--config", default="pipeline.yml", help="The pipeline config file (default: %(default)s)")

    def aws_options(sub: argparse.ArgumentParser) -> None:
        config_option(sub)
        sub.add_argument("--profile", default=None, help="AWS profile (default: the AWS CLI's resolution)")
        sub.add_argument("--region", default=None, help="Must match pipeline.yml's region if given")

    def branch_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--branch",
            default=None,
            help="A branch pipeline: this git branch's own pipeline, QA-like environments only (see README)",
        )

    sub = command(synth)
    config_option(sub)
    sub.add_argument(
        "--out", default="build/templates", help="Folder the templates are written to (default: %(default)s)"
    )
    sub.add_argument(
        "--root", default=None, help="Repo folder the config's paths are relative to (default: the config's folder)"
    )
    sub.add_argument(
        "--branch",
        # As click's envvar did: an empty PIPELINE_BRANCH is no branch.
        default=os.environ.get("PIPELINE_BRANCH") or None,
        help="Write the templates of this branch's pipeline (a branch pipeline's Lint action sets PIPELINE_BRANCH)",
    )

    command(schema)

    sub = command(deploy)
    aws_options(sub)
    sub.add_argument("--yes", action="store_true", help="Deploy without asking (needed when not on a terminal)")
    sub.add_argument("--dry-run", action="store_true", help="Show the change set, then delete it; change nothing")
    branch_option(sub)

    for run in (promote, rollback):
        sub = command(run)
        aws_options(sub)
        sub.add_argument("--to", required=True, metavar="ENV", help="The environment whose endpoint to update")
        if run is promote:
            sub.add_argument("--version", type=_at_least(1), required=True, metavar="N", help="The version number")
            sub.add_argument("--force", action="store_true", help="Promote a version that is not Approved")
            sub.add_argument("--reason", default=None, help="Why (with --force; recorded on the version)")
        sub.add_argument("--yes", action="store_true", help="Deploy without asking (needed when not on a terminal)")
        sub.add_argument("--dry-run", action="store_true", help="Show the change set, then delete it; change nothing")

    sub = command(destroy)
    aws_options(sub)
    sub.add_argument("--yes", action="store_true", help="Do not ask for confirmation")
    branch_option(sub)

    sub = command(status)
    aws_options(sub)
    branch_option(sub)

    sub = command(cost)
    config_option(sub)
    sub.add_argument("--runs-per-month", type=_at_least(0), default=None, help="Estimate the pipeline from this")
    sub.add_argument("--action-minutes-per-run", type=_at_least(1), default=30, help="(default: %(default)s)")
    sub.add_argument(
        "--live", action="store_true", help="Hosting prices from the AWS Price List API (needs credentials)"
    )
    sub.add_argument("--profile", default=None, help="AWS profile for --live")
    return parser


def _run(args: argparse.Namespace) -> int:
    """Run the chosen command. A failure of AWS or of the file system that escapes it (the SDK's
    errors of every kind, see pipeline.aws.is_failure) is `COMMAND: reason` on stderr, exit 1; any
    other exception is a bug and keeps its traceback."""
    try:
        return args.run(args)
    except Exception as exc:
        from pipeline.aws import error_line, is_failure  # boto3 loads only when something failed

        if not is_failure(exc):
            raise
        echo(f"{args.command}: {error_line(exc)}", err=True)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising SystemExit (2 for a usage error)."""
    try:
        return _run(_parser().parse_args(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1


if __name__ == "__main__":
    sys.exit(main())
