"""A branch pipeline's stack: the main pipeline stack for the branch's config (pipeline.branches)
without stateful resources. The artifact bucket, model bucket and key are the main stack's, given
as parameters (deploy reads them from the main stack's outputs); no approval topic, since a branch
pipeline stops before the first approval. Deleting this stack deletes nothing that holds data."""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import Any

from awacs.aws import Statement
from troposphere import Parameter, Ref, Sub, Template

from pipeline.branches import BRANCH_VARIABLE, branch_config
from pipeline.config import PipelineConfig
from pipeline.stacks.parts import Part, assemble
from pipeline.stacks.pipeline import PipelineStack
from pipeline.steps import BuildStep

# Parameter name -> the main pipeline stack's output that supplies it.
SHARED = {
    "ArtifactBucketName": "ArtifactBucketName",
    "ModelBucketName": "ModelBucketName",
    "ArtifactKeyArn": "ArtifactKeyArn",
    "GitHubConnectionArn": "GitHubConnectionArn",
}


class BranchPipelineStack(PipelineStack):
    """Builds a branch pipeline's template from the main config and the branch name."""

    def __init__(self, config: PipelineConfig, branch: str):
        super().__init__(branch_config(config, branch))
        self.main_config = config
        self.branch = branch

    @property
    def project_prefix(self) -> str:
        """The branch's objects in the shared model bucket: under its own prefix, apart from main's."""
        return f"{self.config.project}/"

    @cached_property
    def parameters(self) -> dict[str, Parameter]:
        """The main stack's shared resources, by parameter name."""
        return {
            "ArtifactBucketName": Parameter(
                "ArtifactBucketName", Type="String", Description="The main pipeline's artifact bucket"
            ),
            "ModelBucketName": Parameter(
                "ModelBucketName", Type="String", Description="The main pipeline's model bucket"
            ),
            "ArtifactKeyArn": Parameter(
                "ArtifactKeyArn",
                Type="String",
                AllowedPattern=r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]+$",
                Description="The main pipeline's KMS key",
            ),
            "GitHubConnectionArn": Parameter(
                "GitHubConnectionArn",
                Type="String",
                Description="The main pipeline's GitHub connection (already handshaken)",
            ),
        }

    @cached_property
    def connection(self) -> None:
        """None: the branch uses the main pipeline's connection (no second console handshake)."""
        return None

    @property
    def connection_arn(self) -> Any:
        return Ref(self.parameters["GitHubConnectionArn"])

    @cached_property
    def artifact_bucket(self) -> Any:
        return self.parameters["ArtifactBucketName"]

    @cached_property
    def model_bucket(self) -> Any:
        return self.parameters["ModelBucketName"]

    @property
    def key_arn(self) -> Any:
        return Ref(self.parameters["ArtifactKeyArn"])

    @property
    def self_updates(self) -> bool:
        """False: a branch pipeline does not update itself (`make deploy --branch` does)."""
        return False

    def _as_run_here(self, step: BuildStep) -> BuildStep:
        """Every step runs as the branch: synth, train and the scripts read the branch's config."""
        return dataclasses.replace(step, env={**step.env, BRANCH_VARIABLE: self.branch})

    def _bucket_arn(self, bucket: Any) -> Any:
        return Sub("arn:${AWS::Partition}:s3:::${Bucket}", Bucket=Ref(bucket))

    def storage(self) -> Part:
        """Nothing: the buckets and key are the main stack's."""
        return Part([])

    def approvals(self) -> Part:
        """Nothing: a branch pipeline has no approval."""
        return Part([])

    def _approval_grants(self) -> list[Statement]:
        return []

    def build(self) -> Template:
        """The template: the shared resources as parameters, then the main stack's parts."""
        body = super().build()
        flow = " -> ".join(env.name for env in self.config.environments)
        return assemble(
            f"sagemaker-cd branch pipeline {self.branch[:200]} of {self.main_config.project}: "
            f"GitHub -> lint/train -> {flow}",
            [Part(list(body.resources.values()), list(body.outputs.values()), body.mappings)],
            list(self.parameters.values()),
        )


def build_branch_template(config: PipelineConfig, branch: str) -> Template:
    """A branch pipeline stack's template."""
    return BranchPipelineStack(config, branch).build()
