"""The BuildImage action: build model.container's image(s) from the commit and push them to the
project's ECR repository, tagged by the commit (`make build-image`).

Decide, then do: `plan()` picks, from the tags the repository already has, which images to build;
tags are immutable, so a re-run of the same commit finds its tag and pushes nothing (a push would be
refused). Then docker builds and pushes the rest. Every failure is one line (exit 1).

Runs where a Docker daemon is (CodeBuild in privileged mode); the ECR calls use boto3, docker the
token from ecr:GetAuthorizationToken (`docker login --password-stdin`).
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from pipeline.aws import client
from pipeline.branches import load_run_config
from pipeline.config import PipelineConfig
from scripts.common import StageFailure, one_line_errors
from scripts.train import resolve_commit


@dataclass(frozen=True)
class Image:
    """One image to have in the repository: its tag, Dockerfile and build context (repo paths)."""

    scope: str  # training or inference
    tag: str
    dockerfile: str
    context: str


@dataclass(frozen=True)
class Repository:
    """An ECR repository named by its URI, ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME."""

    uri: str

    @property
    def registry(self) -> str:
        """The registry host, what docker logs in to."""
        return self.uri.split("/", 1)[0]

    @property
    def registry_id(self) -> str:
        """The account that owns the registry."""
        return self.registry.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The repository's name."""
        return self.uri.split("/", 1)[1]


def parse_repository(uri: str) -> Repository:
    """The repository of an ECR URI, or a one-line failure."""
    host, _, name = uri.partition("/")
    if not name or ".dkr.ecr." not in host or not host.split(".", 1)[0].isdigit():
        raise StageFailure(f"'{uri}' is not an ECR repository URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME)")
    return Repository(uri)


def wanted_images(config: PipelineConfig, commit: str) -> list[Image]:
    """The images a commit needs: the training image, and the serving image when it has its own Dockerfile."""
    container = config.model.container
    if container is None:
        raise StageFailure("model.container is not set: the model uses a framework's image, nothing to build")
    images = [Image("training", container.image_tag(commit, "training"), container.dockerfile, container.context)]
    if container.serving_dockerfile is not None:
        images.append(
            Image(
                "inference", container.image_tag(commit, "inference"), container.serving_dockerfile, container.context
            )
        )
    return images


def plan(wanted: Sequence[Image], present: set[str]) -> list[Image]:
    """The images to build and push: those whose tag the repository does not have yet."""
    return [image for image in wanted if image.tag not in present]


def present_tags(ecr, repository: Repository, tags: Sequence[str]) -> set[str]:
    """Which of `tags` the repository has (DescribeImages; an absent tag is ImageNotFoundException)."""
    found = set()
    for tag in tags:
        try:
            ecr.describe_images(
                registryId=repository.registry_id, repositoryName=repository.name, imageIds=[{"imageTag": tag}]
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ImageNotFoundException":
                raise
            continue
        found.add(tag)
    return found


def docker(args: Sequence[str], stdin: str | None = None) -> None:
    """Run one docker command, its output streaming to the build log; a failure is one line."""
    try:
        done = subprocess.run(["docker", *args], input=stdin, text=True, check=False)
    except OSError as exc:
        raise StageFailure(f"cannot run docker ({exc.strerror or exc}); BuildImage needs a Docker daemon") from None
    if done.returncode != 0:
        raise StageFailure(f"docker {args[0]} failed (exit {done.returncode}); its output is above")


def login(ecr, repository: Repository) -> None:
    """docker login to the repository's registry with an ECR authorization token."""
    reply = ecr.get_authorization_token(registryIds=[repository.registry_id])
    token = reply["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    docker(["login", "--username", user, "--password-stdin", repository.registry], stdin=password)


def build_and_push(image: Image, repository: Repository, repo_dir: Path) -> str:
    """docker build and push one image; returns its URI."""
    uri = f"{repository.uri}:{image.tag}"
    docker(["build", "--file", str(repo_dir / image.dockerfile), "--tag", uri, str(repo_dir / image.context)])
    docker(["push", uri])
    return uri


def build_parser() -> argparse.ArgumentParser:
    """The command line (`make build-image`)."""
    parser = argparse.ArgumentParser(prog="build_image", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="pipeline.yml", help="the pipeline config (default: pipeline.yml)")
    parser.add_argument(
        "--repository-uri",
        default=os.environ.get("IMAGE_REPOSITORY_URI"),
        help="the project's ECR repository (env IMAGE_REPOSITORY_URI; the stack output ImageRepositoryUri)",
    )
    parser.add_argument("--commit", default=os.environ.get("COMMIT_ID"), help="the commit to tag (env COMMIT_ID)")
    return parser


@one_line_errors("build-image")
def main(argv: list[str] | None = None) -> int:
    """Build and push what the commit lacks; 0 when every image is in the repository."""
    args = build_parser().parse_args(argv)
    config = load_run_config(args.config)
    repo_dir = Path(args.config).resolve().parent
    if not args.repository_uri:
        raise StageFailure("no repository: pass --repository-uri or set IMAGE_REPOSITORY_URI")
    repository = parse_repository(args.repository_uri)
    commit = resolve_commit(args.commit, repo_dir)
    wanted = wanted_images(config, commit)
    ecr = client("ecr", config.region)
    todo = plan(wanted, present_tags(ecr, repository, [image.tag for image in wanted]))
    for image in wanted:
        if image not in todo:
            print(f"{repository.uri}:{image.tag} is there already (tags are immutable): not built again")
    if todo:
        login(ecr, repository)
    for image in todo:
        print(f"pushed {build_and_push(image, repository, repo_dir)} ({image.scope} image, {image.dockerfile})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
