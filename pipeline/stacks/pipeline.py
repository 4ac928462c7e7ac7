"""The pipeline stack: storage and key, approval topic, source connection, the SageMaker and
deploy roles, the build steps' projects and the CodePipeline itself.

Each resource is a cached property that returns it (a fork can override one piece, say
`train_step`, without rewriting the rest); `build()` lists the parts that go into the template,
each part with the outputs that describe it. Building the template makes no AWS call and reads no
environment.

The pipeline's layout (`stages`): Source -> UpdatePipeline (unless `self_update: false`) -> Build (the `build_steps`, side by side) -> for each
environment in the config's order: an approval stage if it asks for one, then a stage that readies
its endpoint stack (PrepareStack), deploys it (its `DeploymentTarget`) and tests the endpoint.
"""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Any

import awacs.application_autoscaling
import awacs.cloudformation
import awacs.cloudwatch
import awacs.codebuild
import awacs.codeconnections
import awacs.codepipeline
import awacs.codestar_connections
import awacs.ecr
import awacs.events
import awacs.iam
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.sns
from awacs.aws import ArnEquals, AWSPrincipal, Bool, Condition, Principal, Statement, StringEquals, StringLike
from troposphere import (
    FindInMap,
    GetAtt,
    Join,
    Ref,
    Sub,
    Tags,
    Template,
    codepipeline,
    codestarconnections,
    ecr,
    events,
    iam,
    kms,
    s3,
    sagemaker,
    sns,
)

from pipeline import monitoring
from pipeline.config import Environment, PipelineConfig
from pipeline.iam import allow, deny, document, role
from pipeline.refs import arn
from pipeline.stacks.endpoint import (
    ANALYZER_REGISTRY_MAPPING,
    ENVIRONMENT_TAG,
    SCALING_ROLE,
    SCALING_SERVICE,
    SERVING_OUTPUTS,
    EndpointStack,
    analyzer_registry,
    parameters_file,
)
from pipeline.stacks.parts import Part, assemble, output
from pipeline.stages import (
    PIPELINE_VARIABLES,
    RUN_REASON,
    SOURCE_VARIABLES,
    Action,
    DeploymentTarget,
    Stage,
    camel,
    render_stages,
)
from pipeline.steps import BuildStep, Report, StepContext, StepResources, render_step
from pipeline.tags import PROJECT_TAG, cfn_tags, project_tags

# Kept when the stack is deleted or the resource replaced, but deleted when the operation that
# created it rolls back: a failed first create leaves no bucket or key behind (RetainExceptOnCreate).
RETAIN = dict(DeletionPolicy="RetainExceptOnCreate", UpdateReplacePolicy="Retain")
SOURCE_OUTPUT = "SourceOutput"
IMAGE_REGISTRY_MAPPING = "ImageRegistry"
LINT_TIMEOUT_MINUTES = 30
# The Lint action's reports, each `build/reports/NAME.xml` as `make ci-lint` writes them: cfn-nag's,
# cfn-lint's and cfripper's (pipeline.scan), the local loop's endpoint test (scripts.local), the unit
# tests' (pytest).
LINT_REPORTS = ("cfn-nag", "scan", "local-endpoint-tests", "unit-tests")
# Report group logical IDs other than `Lint<Name>Reports`: LintLocalReports, no longer than the
# template's other logical IDs (make deploy's change table fits them in 80 columns).
LINT_REPORT_IDS = {"local-endpoint-tests": "Local"}
# scripts/prepare_stack.py gives up waiting on a stack after 20 minutes; this leaves it room to say so.
PREPARE_TIMEOUT_MINUTES = 30
UPDATE_STEP = "update-pipeline"
# An update of the pipeline stack (change set, then its events until it settles).
UPDATE_TIMEOUT_MINUTES = 60
# EventBridge detail types of CodePipeline's events (CodePipeline user guide, "Monitoring
# CodePipeline events"); only the action event names the stage and action.
RUN_EVENT = "CodePipeline Pipeline Execution State Change"
ACTION_EVENT = "CodePipeline Action Execution State Change"
# SageMaker's event for deployments with guardrails (SageMaker Developer Guide, "Events that
# Amazon SageMaker AI sends to Amazon EventBridge", endpoint deployment state change). Its example
# writes EndpointStatus in capitals ("UPDATING"); DescribeEndpoint's enum (botocore) has RollingBack
# and UpdateRollbackFailed: both spellings are matched, ignoring case.
DEPLOYMENT_EVENT = "SageMaker Endpoint Deployment State Change"
ROLLBACK_STATUSES = ("ROLLING_BACK", "RollingBack", "UPDATE_ROLLBACK_FAILED", "UpdateRollbackFailed")
ENDPOINT_LINK = (
    "https://${AWS::Region}.console.aws.amazon.com/sagemaker/home?region=${AWS::Region}#/endpoints/<endpoint>"
)
# Where an input transformer finds each placeholder of a notification in the event.
PLACEHOLDERS = {
    "pipeline": "$.detail.pipeline",
    "execution": "$.detail.execution-id",
    "state": "$.detail.state",
    "stage": "$.detail.stage",
    "action": "$.detail.action",
}
# The run's page in the CodePipeline console (a Sub: ${Pipeline} is the pipeline's name).
EXECUTION_LINK = (
    "https://${AWS::Region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/${Pipeline}"
    "/executions/<execution>/timeline?region=${AWS::Region}"
)


def _nag(*rules: tuple[str, str]) -> dict:
    """Resource metadata that tells cfn-nag (which runs in the Lint action) why a rule does not apply."""
    return {"cfn_nag": {"rules_to_suppress": [{"id": rule, "reason": reason} for rule, reason in rules]}}


def _checkov(*rules: tuple[str, str]) -> dict:
    """Resource metadata that tells checkov (`make checkov`) why a check does not apply."""
    return {"checkov": {"skip": [{"id": rule, "comment": reason} for rule, reason in rules]}}


ACCESS_LOGS_REASON = (
    "Access goes only through this stack's roles and is recorded by CloudTrail; point "
    "server access logs at your organisation's log bucket if it requires them."
)


class PipelineStack:
    """Builds the pipeline stack's template from a validated config."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.names = config.names

    # ----- shared -------------------------------------------------------------------------
    @cached_property
    def tags(self) -> Tags:
        """Tags on every taggable resource: the config's plus the project."""
        return cfn_tags(project_tags(self.config))

    @property
    def project_prefix(self) -> str:
        """Key prefix of this project's objects in the model bucket."""
        return f"{self.config.project}/"

    @property
    def training_data_prefix(self) -> str | None:
        """Key prefix of the training data when it lives in the model bucket (model_bucket_prefix; a
        branch pipeline's is the main pipeline's), else None."""
        return self.config.training_data_key_prefix

    def _bucket_arn(self, bucket: Any) -> Any:
        """A bucket's ARN (a branch pipeline's buckets are the main stack's, given by parameter)."""
        return GetAtt(bucket, "Arn")

    def _objects(self, bucket: Any, prefix: str = "") -> Sub:
        return Sub("${Bucket}/" + prefix + "*", Bucket=self._bucket_arn(bucket))

    # ----- encryption and storage ---------------------------------------------------------
    @cached_property
    def key(self) -> kms.Key:
        """One customer-managed key for artifacts, models, logs and the approval topic. Retained:
        models encrypted with it outlive the stack and must stay readable."""
        log_groups = arn("logs", f"log-group:/aws/codebuild/{self.config.project}-*")
        policy = document(
            allow(
                [
                    awacs.kms.CreateAlias,
                    awacs.kms.CreateGrant,
                    awacs.kms.Decrypt,
                    awacs.kms.DescribeKey,
                    awacs.kms.DisableKey,
                    awacs.kms.EnableKey,
                    awacs.kms.EnableKeyRotation,
                    awacs.kms.Encrypt,
                    awacs.kms.GenerateDataKey,
                    awacs.kms.GetKeyPolicy,
                    awacs.kms.GetKeyRotationStatus,
                    awacs.kms.ListGrants,
                    awacs.kms.ListResourceTags,
                    awacs.kms.PutKeyPolicy,
                    awacs.kms.ReEncryptFrom,
                    awacs.kms.ReEncryptTo,
                    awacs.kms.RetireGrant,
                    awacs.kms.RevokeGrant,
                    awacs.kms.ScheduleKeyDeletion,
                    awacs.kms.CancelKeyDeletion,
                    awacs.kms.TagResource,
                    awacs.kms.UntagResource,
                    awacs.kms.UpdateAlias,
                    awacs.kms.UpdateKeyDescription,
                    awacs.kms.DeleteAlias,
                ],
                "*",
                sid="AccountAdministersKeyThroughIam",
            ),
            allow(
                [
                    awacs.kms.Encrypt,
                    awacs.kms.Decrypt,
                    awacs.kms.ReEncryptFrom,
                    awacs.kms.ReEncryptTo,
                    awacs.kms.GenerateDataKey,
                    awacs.kms.DescribeKey,
                ],
                "*",
                condition=Condition(StringLike("kms:EncryptionContext:aws:logs:arn", log_groups)),
                sid="CloudWatchLogsEncryptsBuildLogs",
            ),
            # EventBridge publishes to the encrypted notification topic: SNS asks KMS for a data
            # key on its behalf (EventBridge user guide, "Authorizing EventBridge to use a customer
            # managed key": GenerateDataKey and Decrypt, scoped by aws:SourceAccount).
            allow(
                [awacs.kms.GenerateDataKey, awacs.kms.Decrypt],
                "*",
                condition=Condition(StringEquals("aws:SourceAccount", Ref("AWS::AccountId"))),
                sid="EventBridgePublishesToTheNotificationTopic",
            ),
        )
        # The account principal has to be set per statement; awacs keeps it explicit.
        policy.Statement[0].Principal = AWSPrincipal(Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"))
        policy.Statement[1].Principal = Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com"))
        policy.Statement[2].Principal = Principal("Service", "events.amazonaws.com")
        return kms.Key(
            "ArtifactKey",
            Description=f"sagemaker-cd {self.config.project}: pipeline artifacts, models, logs, approval topic",
            EnableKeyRotation=True,
            KeyPolicy=policy,
            Tags=self.tags,
            **RETAIN,
        )

    @property
    def key_arn(self) -> GetAtt:
        """The key's ARN."""
        return GetAtt(self.key, "Arn")

    @cached_property
    def key_alias(self) -> kms.Alias:
        """A readable name for the key."""
        return kms.Alias("ArtifactKeyAlias", AliasName=self.names.key_alias, TargetKeyId=Ref(self.key))

    def _bucket(self, logical_id: str, purpose: str, lifecycle: list[s3.LifecycleRule]) -> s3.Bucket:
        return s3.Bucket(
            logical_id,
            BucketEncryption=s3.BucketEncryption(
                ServerSideEncryptionConfiguration=[
                    s3.ServerSideEncryptionRule(
                        BucketKeyEnabled=True,
                        ServerSideEncryptionByDefault=s3.ServerSideEncryptionByDefault(
                            SSEAlgorithm="aws:kms", KMSMasterKeyID=self.key_arn
                        ),
                    )
                ]
            ),
            VersioningConfiguration=s3.VersioningConfiguration(Status="Enabled"),
            PublicAccessBlockConfiguration=s3.PublicAccessBlockConfiguration(
                BlockPublicAcls=True, BlockPublicPolicy=True, IgnorePublicAcls=True, RestrictPublicBuckets=True
            ),
            OwnershipControls=s3.OwnershipControls(
                Rules=[s3.OwnershipControlsRule(ObjectOwnership="BucketOwnerEnforced")]
            ),
            LifecycleConfiguration=s3.LifecycleConfiguration(Rules=lifecycle),
            Tags=self.tags + Tags({"sagemaker-cd:purpose": purpose}),
            Metadata={**_nag(("W35", ACCESS_LOGS_REASON)), **_checkov(("CKV_AWS_18", ACCESS_LOGS_REASON))},
            **RETAIN,
        )

    def _tls_only(self, bucket: s3.Bucket) -> s3.BucketPolicy:
        """A bucket policy refusing plain-HTTP access."""
        return s3.BucketPolicy(
            f"{bucket.title}Policy",
            Bucket=Ref(bucket),
            PolicyDocument=document(
                deny(
                    [awacs.s3.Action("*")],
                    [GetAtt(bucket, "Arn"), Sub("${Bucket}/*", Bucket=GetAtt(bucket, "Arn"))],
                    Principal("*"),
                    Condition(Bool("aws:SecureTransport", "false")),
                    sid="DenyPlainHttp",
                )
            ),
        )

    @cached_property
    def artifact_bucket(self) -> s3.Bucket:
        """CodePipeline's artifact store. Retained, like the model bucket, so a stack delete never
        fails on a non-empty bucket; old artifact versions expire."""
        return self._bucket(
            "ArtifactBucket",
            "pipeline-artifacts",
            [
                s3.LifecycleRule(
                    Id="ExpireOldVersions",
                    Status="Enabled",
                    NoncurrentVersionExpiration=s3.NoncurrentVersionExpiration(NoncurrentDays=30),
                ),
                s3.LifecycleRule(
                    Id="AbortUploads",
                    Status="Enabled",
                    AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
                ),
            ],
        )

    @cached_property
    def model_bucket(self) -> s3.Bucket:
        """Models, training data uploads and script-mode code, keyed by commit. Retained forever."""
        bucket = self._bucket(
            "ModelBucket",
            "models-and-data",
            [
                s3.LifecycleRule(
                    Id="AbortUploads",
                    Status="Enabled",
                    AbortIncompleteMultipartUpload=s3.AbortIncompleteMultipartUpload(DaysAfterInitiation=7),
                ),
            ],
        )
        if self.training_data_prefix is not None and self.config.retrains_on_new_data:
            # The data trigger: S3 sends every object event of this bucket to EventBridge's default
            # bus, where NewTrainingDataRule picks the training data's prefix.
            bucket.NotificationConfiguration = s3.NotificationConfiguration(
                EventBridgeConfiguration=s3.EventBridgeConfiguration(EventBridgeEnabled=True)
            )
        return bucket

    @cached_property
    def model_package_group(self) -> sagemaker.ModelPackageGroup:
        """The model registry: every model that passes the gate becomes a version of this group
        (scripts/registry.py). Retained: the versions record what was approved, rejected and served."""
        return sagemaker.ModelPackageGroup(
            "ModelPackageGroup",
            ModelPackageGroupName=self.names.model_package_group,
            Tags=self.tags,
            # Kept on delete, as the buckets and key; gone only when the create that made it rolls back.
            **RETAIN,
        )

    def registry(self) -> Part:
        """The model package group and its name (scripts read it from pipeline.names too)."""
        return Part(
            [self.model_package_group],
            [output("ModelPackageGroupName", self.names.model_package_group, "Model registry (kept)")],
        )

    def storage(self) -> Part:
        """The key and both buckets: everything a destroy keeps."""
        return Part(
            [
                self.key,
                self.key_alias,
                self.artifact_bucket,
                self._tls_only(self.artifact_bucket),
                self.model_bucket,
                self._tls_only(self.model_bucket),
            ],
            [
                output(
                    "ArtifactKeyArn", self.key_arn, "Encrypts artifacts, models, logs and the approval topic (kept)"
                ),
                output(
                    "ArtifactBucketName",
                    Ref(self.artifact_bucket),
                    "Pipeline artifacts (kept when the stack is deleted)",
                ),
                output(
                    "ModelBucketName",
                    Ref(self.model_bucket),
                    "Models, data and code by commit (kept when the stack is deleted)",
                ),
            ],
        )

    # ----- own container ------------------------------------------------------------------
    @cached_property
    def image_repository(self) -> ecr.Repository | None:
        """The project's ECR repository for its own container (model.container; None otherwise):
        scanned on push, tags immutable (a commit's tag is its image for good), encrypted with the
        project's key (ECR adds its own grants on the key: ECR user guide, "Encryption at rest"),
        the last `keep_images` images kept. Named by CloudFormation and retained, like the buckets:
        a destroy keeps the images, and a new stack after it does not collide with the old name."""
        container = self.config.model.container
        if container is None:
            return None
        lifecycle = {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the last {container.keep_images} images",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": container.keep_images,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
        return ecr.Repository(
            "ImageRepository",
            ImageScanningConfiguration=ecr.ImageScanningConfiguration(ScanOnPush=True),
            ImageTagMutability="IMMUTABLE",
            EncryptionConfiguration=ecr.EncryptionConfiguration(EncryptionType="KMS", KmsKey=self.key_arn),
            LifecyclePolicy=ecr.LifecyclePolicy(LifecyclePolicyText=json.dumps(lifecycle, sort_keys=True)),
            Tags=self.tags,
            **RETAIN,
        )

    def images(self) -> Part:
        """The own container's repository and its URI (nothing without model.container)."""
        repository = self.image_repository
        if repository is None:
            return Part([])
        return Part(
            [repository],
            [
                output(
                    "ImageRepositoryUri",
                    GetAtt(repository, "RepositoryUri"),
                    "Your images, tagged by commit (kept when the stack is deleted)",
                )
            ],
        )

    @cached_property
    def build_image_step(self) -> BuildStep | None:
        """Builds the own container's image(s) from the commit and pushes them tagged by it; a commit
        whose tag is already there is skipped (tags are immutable). None without model.container."""
        repository = self.image_repository
        if repository is None:
            return None
        return BuildStep(
            name="build-image",
            description="BuildImage action: docker build and push of model.container, tagged by commit",
            commands=("make build-image",),
            statements=(
                allow([awacs.ecr.GetAuthorizationToken], "*"),
                allow(
                    [
                        # scripts/build_image.py: is the commit's tag there already?
                        awacs.ecr.DescribeImages,
                        # docker push: which layers are there, upload the missing ones, then the manifest.
                        awacs.ecr.BatchCheckLayerAvailability,
                        awacs.ecr.InitiateLayerUpload,
                        awacs.ecr.UploadLayerPart,
                        awacs.ecr.CompleteLayerUpload,
                        awacs.ecr.PutImage,
                    ],
                    GetAtt(repository, "Arn"),
                ),
            ),
            env={"IMAGE_REPOSITORY_URI": GetAtt(repository, "RepositoryUri")},
            action_env={"COMMIT_ID": self.source_action.variable("CommitId")},
            wildcard_reason="ecr:GetAuthorizationToken takes no resource ARN (service authorization reference); "
            "docker login needs its token to push to the project's repository.",
            privileged_reason="docker build needs the Docker daemon, which CodeBuild runs only in privileged "
            "mode; the project builds only this repository's Dockerfile and pushes only to the project's repository.",
        )

    # ----- approval topic -----------------------------------------------------------------
    @cached_property
    def approval_topic(self) -> sns.Topic:
        """Encrypted topic the manual approvals notify; each configured address is subscribed."""
        return sns.Topic(
            "ApprovalTopic",
            TopicName=self.names.approval_topic,
            DisplayName=f"{self.config.project} approvals"[:100],
            KmsMasterKeyId=self.key_arn,
            Subscription=[sns.Subscription(Protocol="email", Endpoint=e) for e in self.config.approval.emails],
            Tags=self.tags,
        )

    def approvals(self) -> Part:
        """The approvers' topic."""
        return Part(
            [self.approval_topic],
            [output("ApprovalTopicArn", Ref(self.approval_topic), "Approvers' notification topic")],
        )

    # ----- notifications ------------------------------------------------------------------
    # A topic of its own rather than the approval topic: approvers would otherwise get every run's
    # start and end, and the approval topic is published by the pipeline role alone (IAM), while
    # this one is published by EventBridge through a topic policy.
    @cached_property
    def notification_topic(self) -> sns.Topic:
        """Encrypted topic that hears of pipeline runs, failed actions and waiting approvals;
        each configured subscriber is subscribed."""
        return sns.Topic(
            "NotificationTopic",
            TopicName=self.names.notification_topic,
            DisplayName=f"{self.config.project} pipeline"[:100],
            KmsMasterKeyId=self.key_arn,
            Subscription=[
                sns.Subscription(Protocol=s.protocol, Endpoint=s.endpoint)
                for s in self.config.notifications.subscribers
            ],
            Tags=self.tags,
        )

    def _notification_rule(
        self, logical_id: str, description: str, detail_type: str, detail: dict, words: str
    ) -> events.Rule:
        """A rule on this pipeline's `detail_type` events that sends `words` and a link to the
        run's console page to the topic. `words` holds placeholders EventBridge fills in from the
        event (`PLACEHOLDERS`; <stage> and <action> only in action events) and no quote."""
        placeholders = re.findall(r"<([a-z]+)>", words + EXECUTION_LINK)
        paths = {name: PLACEHOLDERS[name] for name in placeholders}
        if detail_type != ACTION_EVENT and {"stage", "action"} & set(paths):
            raise ValueError(f"{logical_id}: only action events carry the stage and action")
        return events.Rule(
            logical_id,
            Description=description,
            EventPattern={
                "source": ["aws.codepipeline"],
                "detail-type": [detail_type],
                "detail": {"pipeline": [Ref(self.pipeline)], **detail},
            },
            State="ENABLED",
            Targets=[
                events.Target(
                    Id="NotificationTopic",
                    Arn=Ref(self.notification_topic),
                    InputTransformer=events.InputTransformer(
                        InputPathsMap=paths,
                        # A JSON string: SNS then delivers it as plain text.
                        InputTemplate=Sub(f'"{words} {EXECUTION_LINK}"', Pipeline=Ref(self.pipeline)),
                    ),
                )
            ],
        )

    @cached_property
    def notification_rules(self) -> list[events.Rule]:
        """Runs started, succeeded or failed; an action failed (the event that names the stage and
        action); an approval waits (only where the pipeline has an approval: a branch pipeline has
        none). A failed endpoint update makes its DeployEndpoint action fail."""
        rules = [
            self._notification_rule(
                "PipelineRunRule",
                "A run of the pipeline started, succeeded or failed",
                RUN_EVENT,
                {"state": ["STARTED", "SUCCEEDED", "FAILED"]},
                "Pipeline <pipeline>: run <execution> <state>.",
            ),
            self._notification_rule(
                "ActionFailedRule",
                "An action of the pipeline failed: names its stage and action",
                ACTION_EVENT,
                {"state": ["FAILED"]},
                "Pipeline <pipeline>: action <stage>/<action> FAILED in run <execution>.",
            ),
        ]
        if any(env.approval for env in self.config.environments):
            rules.append(
                self._notification_rule(
                    "ApprovalWaitsRule",
                    "A manual approval of the pipeline waits for a decision",
                    ACTION_EVENT,
                    {"state": ["STARTED"], "type": {"category": ["Approval"]}},
                    "Pipeline <pipeline>: approval <stage>/<action> waits for a decision in run <execution>.",
                )
            )
        if self.endpoint_rollback_rule is not None:
            rules.append(self.endpoint_rollback_rule)
        return rules

    @cached_property
    def endpoint_rollback_rule(self) -> events.Rule | None:
        """SageMaker rolls a guarded endpoint's update back (an alarm tripped, or the update failed):
        says which endpoint, in which state, with a link to it. None when no endpoint is guarded."""
        guarded = [env for env in self.config.environments if env.guardrails]
        if not guarded:
            return None
        words = "Endpoint <endpoint>: <status>; SageMaker returns it to the endpoint config it served before."
        return events.Rule(
            "EndpointRollbackRule",
            Description="SageMaker rolls back an update of a guarded endpoint of this pipeline",
            EventPattern={
                "source": ["aws.sagemaker"],
                "detail-type": [DEPLOYMENT_EVENT],
                "resources": [arn("sagemaker", f"endpoint/{self.names.endpoint(env.name)}") for env in guarded],
                "detail": {"EndpointStatus": [{"equals-ignore-case": status} for status in ROLLBACK_STATUSES]},
            },
            State="ENABLED",
            Targets=[
                events.Target(
                    Id="NotificationTopic",
                    Arn=Ref(self.notification_topic),
                    InputTransformer=events.InputTransformer(
                        InputPathsMap={"endpoint": "$.detail.EndpointName", "status": "$.detail.EndpointStatus"},
                        InputTemplate=Sub(f'"{words} {ENDPOINT_LINK}"'),
                    ),
                )
            ],
        )

    @cached_property
    def notification_topic_policy(self) -> sns.TopicPolicy:
        """Only this stack's rules (through EventBridge) may publish to the notification topic."""
        policy = document(
            allow(
                [awacs.sns.Publish],
                Ref(self.notification_topic),
                condition=Condition(ArnEquals("aws:SourceArn", [GetAtt(r, "Arn") for r in self.notification_rules])),
                sid="OnlyThisStacksRulesPublish",
            )
        )
        policy.Statement[0].Principal = Principal("Service", "events.amazonaws.com")
        return sns.TopicPolicy("NotificationTopicPolicy", Topics=[Ref(self.notification_topic)], PolicyDocument=policy)

    # ----- asynchronous inference --------------------------------------------------------
    # A topic of its own: every answer of an asynchronous endpoint is one message, which neither
    # approvers nor the pipeline's subscribers want; the applications that invoke the endpoint
    # subscribe to it. SageMaker publishes with the execution role (IAM), so no topic policy.
    @cached_property
    def async_topic(self) -> sns.Topic:
        """Encrypted topic SageMaker tells of each asynchronous answer and failure (SuccessTopic and
        ErrorTopic); no subscriber here: the callers subscribe (the message says which request)."""
        return sns.Topic(
            "AsyncInferenceTopic",
            TopicName=self.names.async_topic,
            DisplayName=f"{self.config.project} async inference"[:100],
            KmsMasterKeyId=self.key_arn,
            Tags=self.tags,
        )

    def async_prefix(self, env: Environment, kind: str) -> str:
        """Where an asynchronous environment's requests (`input`, the endpoint test's), answers
        (`output`) and failures (`failures`) go in the model bucket."""
        return f"{self.project_prefix}async-{kind}/{env.name}/"

    def asynchronous(self) -> Part:
        """The async-inference topic, where some asynchronous environment publishes to it."""
        if not self.config.notifies_async:
            return Part([])
        return Part(
            [self.async_topic],
            [output("AsyncInferenceTopicArn", Ref(self.async_topic), "Asynchronous endpoints' answers and failures")],
        )

    def _async_execution_grants(self) -> list[Statement]:
        """The execution role writes asynchronous answers and failures and tells the topic
        (SageMaker Developer Guide, async-inference-check-predictions: "your IAM role must have
        sns:Publish permissions"); the key use it has already."""
        envs = self.config.asynchronous_environments
        if not envs:
            return []
        prefixes = [self.async_prefix(env, kind) for env in envs for kind in ("output", "failures")]
        grants = [allow([awacs.s3.PutObject], [self._objects(self.model_bucket, prefix) for prefix in prefixes])]
        if self.config.notifies_async:
            grants.append(allow([awacs.sns.Publish], Ref(self.async_topic)))
        return grants

    def _async_test_grants(self) -> list[Statement]:
        """The endpoint test of an asynchronous environment puts each case under the environment's
        input prefix, invokes the endpoint with it and reads the answer or the failure."""
        envs = self.config.asynchronous_environments
        if not envs:
            return []
        endpoints = [arn("sagemaker", f"endpoint/{self.names.endpoint(env.name)}") for env in envs]
        return [
            allow([awacs.sagemaker.InvokeEndpointAsync, awacs.sagemaker.DescribeEndpoint], endpoints),
            allow(
                [awacs.s3.PutObject],
                [self._objects(self.model_bucket, self.async_prefix(env, "input")) for env in envs],
            ),
            allow(
                [awacs.s3.GetObject],
                [
                    self._objects(self.model_bucket, self.async_prefix(env, kind))
                    for env in envs
                    for kind in ("output", "failures")
                ],
            ),
            allow([awacs.kms.Decrypt, awacs.kms.GenerateDataKey], self.key_arn),
        ]

    def notifications(self) -> Part:
        """The notification topic, its policy and the rules that feed it."""
        return Part(
            [self.notification_topic, self.notification_topic_policy, *self.notification_rules],
            [output("NotificationTopicArn", Ref(self.notification_topic), "Pipeline runs, failures and approvals")],
        )

    # ----- source connection --------------------------------------------------------------
    @cached_property
    def connection(self) -> codestarconnections.Connection | None:
        """The GitHub connection this stack creates (PENDING until the console handshake), or None
        when the config names an existing one."""
        if self.config.source.github.connection_arn:
            return None
        return codestarconnections.Connection(
            "GitHubConnection",
            ConnectionName=f"{self.config.project}-github"[:32],
            ProviderType="GitHub",
            Tags=self.tags,
        )

    @property
    def connection_arn(self) -> Any:
        """The configured connection's ARN, or a Ref to the one this stack creates."""
        return Ref(self.connection) if self.connection else self.config.source.github.connection_arn

    @property
    def _pass_connection_actions(self) -> list:
        """PassConnection in the namespace(s) of the connection's ARN, as UseConnection."""
        return [
            awacs.codeconnections.PassConnection
            if action is awacs.codeconnections.UseConnection
            else awacs.codestar_connections.PassConnection
            for action in self._connection_actions
        ]

    @property
    def _connection_actions(self) -> list:
        """UseConnection in the namespace of the connection's ARN (both for one the stack creates,
        whose ARN AWS may issue under either name)."""
        configured = self.config.source.github.connection_arn or ""
        if ":codeconnections:" in configured:
            return [awacs.codeconnections.UseConnection]
        if ":codestar-connections:" in configured:
            return [awacs.codestar_connections.UseConnection]
        return [awacs.codestar_connections.UseConnection, awacs.codeconnections.UseConnection]

    def source(self) -> Part:
        """The connection, if this stack makes it."""
        return Part(
            [self.connection] if self.connection else [],
            [
                output(
                    "GitHubConnectionArn", self.connection_arn, "Complete its handshake once in the console if PENDING"
                )
            ],
        )

    @cached_property
    def source_action(self) -> Action:
        """Every commit to the branch, as a zip of the repository."""
        github = self.config.source.github
        return Action(
            name="GitHub",
            kind="source",
            outputs=(SOURCE_OUTPUT,),
            namespace="SourceVariables",
            exports=SOURCE_VARIABLES,
            configuration={
                "ConnectionArn": self.connection_arn,
                "FullRepositoryId": github.full_repository_id,
                "BranchName": github.branch,
                "OutputArtifactFormat": "CODE_ZIP",
                "DetectChanges": "true",
            },
        )

    # ----- roles shared by several pieces -------------------------------------------------
    def _key_use(self, *extra: Any) -> Statement:
        return allow([awacs.kms.Decrypt, awacs.kms.GenerateDataKey, awacs.kms.DescribeKey, *extra], self.key_arn)

    def _artifacts_rw(self) -> list[Statement]:
        return [
            allow(
                [awacs.s3.GetObject, awacs.s3.GetObjectVersion, awacs.s3.PutObject], self._objects(self.artifact_bucket)
            ),
            allow([awacs.s3.GetBucketLocation, awacs.s3.GetBucketVersioning], self._bucket_arn(self.artifact_bucket)),
            self._key_use(awacs.kms.Encrypt),
        ]

    def _artifacts_read(self) -> list[Statement]:
        """What a build needs to fetch its input artifacts (SSE-KMS objects of the artifact store)."""
        return [
            allow([awacs.s3.GetObject, awacs.s3.GetObjectVersion], self._objects(self.artifact_bucket)),
            allow([awacs.s3.GetBucketLocation, awacs.s3.GetBucketVersioning], self._bucket_arn(self.artifact_bucket)),
            allow([awacs.kms.Decrypt], self.key_arn),
        ]

    def _artifacts_write(self) -> list[Statement]:
        """What a build needs to hand an output artifact on."""
        return [
            allow([awacs.s3.PutObject], self._objects(self.artifact_bucket)),
            allow([awacs.kms.GenerateDataKey, awacs.kms.Encrypt], self.key_arn),
        ]

    def _pass_role(self, target: iam.Role, service: str) -> Statement:
        return allow(
            [awacs.iam.PassRole],
            GetAtt(target, "Arn"),
            condition=Condition(StringEquals("iam:PassedToService", service)),
        )

    def _grant_for_aws_resources(self) -> Statement:
        return allow(
            [awacs.kms.CreateGrant], self.key_arn, condition=Condition(Bool("kms:GrantIsForAWSResource", "true"))
        )

    @property
    def _endpoint_arns(self) -> list[Sub]:
        return [arn("sagemaker", f"endpoint/{self.names.endpoint(env.name)}") for env in self.config.environments]

    @property
    def _real_time_endpoint_arns(self) -> list[Sub]:
        return [
            arn("sagemaker", f"endpoint/{self.names.endpoint(env.name)}")
            for env in self.config.environments
            if env.asynchronous is None
        ]

    def data_capture_prefix(self, env: Environment) -> str:
        """Where an environment's endpoint writes captured requests and responses in the model bucket."""
        return f"{self.project_prefix}data-capture/{env.name}/"

    def monitoring_prefix(self, env: Environment) -> str:
        """Where an environment's monitoring schedule writes its reports in the model bucket."""
        return f"{self.project_prefix}monitoring/{env.name}/"

    @property
    def baselines_prefix(self) -> str:
        """Where the train step's baseline jobs write statistics.json and constraints.json."""
        return f"{self.project_prefix}baselines/"

    @property
    def _monitored(self) -> list[Environment]:
        return [env for env in self.config.environments if env.monitoring is not None]

    @property
    def _schedule_arns(self) -> list[Sub]:
        """The monitoring schedules, named like their endpoints."""
        return [arn("sagemaker", f"monitoring-schedule/{self.names.endpoint(env.name)}") for env in self._monitored]

    def _monitoring_grants(self) -> list[Statement]:
        """The execution role's share of Model Monitor: the baseline job's and the schedules' reports,
        and the analyzer image (its own account per region: pipeline/data/images/model-monitor.json).
        Reading the training data and the captured data is covered by the project-prefix read."""
        if not self.config.monitors:
            return []
        return [
            allow(
                [awacs.s3.PutObject],
                [
                    self._objects(self.model_bucket, self.baselines_prefix),
                    *[self._objects(self.model_bucket, self.monitoring_prefix(env)) for env in self._monitored],
                ],
            ),
            allow(
                [awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage, awacs.ecr.GetDownloadUrlForLayer],
                Sub(
                    "arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/" + monitoring.repository(),
                    Account=FindInMap(ANALYZER_REGISTRY_MAPPING, Ref("AWS::Region"), "Account"),
                ),
            ),
        ]

    @property
    def _alarm_arns(self) -> list[Sub]:
        """The rollback alarms of every guarded environment's endpoint stack."""
        return [
            arn("cloudwatch", f"alarm:{alarm.AlarmName}")
            for env in self.config.environments
            for alarm in self.endpoint_stack(env).alarms
        ]

    @cached_property
    def image_registry(self) -> dict[str, dict[str, str]]:
        """Region -> account of the framework's images (for the execution role's ECR pull)."""
        if self.config.model.own_container:
            return {}
        accounts = self.config.framework.registry_accounts(self.config.image_version)
        return {region: {"Account": account} for region, account in accounts.items()}

    @cached_property
    def sagemaker_role(self) -> iam.Role:
        """Assumed by SageMaker for the training job and the hosted model."""
        data = self.config.training_data
        prefix = self.project_prefix
        statements = [
            allow([awacs.s3.GetObject], self._objects(self.model_bucket, prefix)),
            allow(
                [awacs.s3.PutObject],
                [
                    self._objects(self.model_bucket, prefix + "models/"),
                    self._objects(self.model_bucket, prefix + "checkpoints/"),
                    *[
                        self._objects(self.model_bucket, self.data_capture_prefix(env))
                        for env in self.config.environments
                        if env.capture
                    ],
                ],
            ),
            allow(
                [awacs.s3.ListBucket],
                self._bucket_arn(self.model_bucket),
                condition=Condition(StringLike("s3:prefix", [prefix + "*"])),
            ),
            self._key_use(awacs.kms.Encrypt),
            self._grant_for_aws_resources(),
            allow(
                [
                    awacs.logs.CreateLogGroup,
                    awacs.logs.CreateLogStream,
                    awacs.logs.PutLogEvents,
                    awacs.logs.DescribeLogStreams,
                ],
                arn("logs", "log-group:/aws/sagemaker/*"),
            ),
            allow(
                [awacs.cloudwatch.PutMetricData],
                "*",
                condition=Condition(StringLike("cloudwatch:namespace", "/aws/sagemaker/*")),
            ),
            allow([awacs.ecr.GetAuthorizationToken], "*"),
            allow(
                [awacs.ecr.BatchCheckLayerAvailability, awacs.ecr.BatchGetImage, awacs.ecr.GetDownloadUrlForLayer],
                [
                    Sub(
                        "arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/" + repository,
                        Account=FindInMap(IMAGE_REGISTRY_MAPPING, Ref("AWS::Region"), "Account"),
                    )
                    for repository in self.config.image_repositories
                ]
                # Its own container: the project's repository, which the BuildImage stage pushes to.
                or GetAtt(self.image_repository, "Arn"),
            ),
        ]
        statements += self._monitoring_grants()
        statements += self._async_execution_grants()
        statements += self._batch_execution_grants()
        if self._alarm_arns:
            # Deployment guardrails: "Ensure that your IAM execution role has permission to perform
            # the cloudwatch:DescribeAlarms action on the auto-rollback alarms" (SageMaker Developer
            # Guide, deployment-guardrails-configuration).
            statements.append(allow([awacs.cloudwatch.DescribeAlarms], self._alarm_arns))
        training = self.training_data_prefix
        if training is not None and not training.startswith(prefix):  # a branch pipeline's, the main one's data
            statements += [
                allow([awacs.s3.GetObject], self._objects(self.model_bucket, training)),
                allow(
                    [awacs.s3.ListBucket],
                    self._bucket_arn(self.model_bucket),
                    condition=Condition(StringLike("s3:prefix", [training + "*"])),
                ),
            ]
        if data.s3_uri and data.s3_bucket:
            data_bucket = Sub("arn:${AWS::Partition}:s3:::" + data.s3_bucket)
            statements += [
                allow(
                    [awacs.s3.GetObject],
                    Sub("arn:${AWS::Partition}:s3:::" + data.s3_bucket + "/" + data.s3_prefix + "*"),
                ),
                allow(
                    [awacs.s3.ListBucket],
                    data_bucket,
                    condition=Condition(StringLike("s3:prefix", [data.s3_prefix + "*"])),
                ),
            ]
        resource = role(
            "SageMakerExecutionRole",
            "sagemaker.amazonaws.com",
            "SageMaker training jobs and endpoints of this pipeline",
            statements,
            self.tags,
        )
        resource.Metadata = _nag(
            ("W11", "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (namespace-limited) take no resource ARN."),
        )
        return resource

    def execution(self) -> Part:
        """The role SageMaker trains and serves with, and where its images come from."""
        return Part(
            [self.sagemaker_role],
            [
                output(
                    "SageMakerExecutionRoleArn",
                    GetAtt(self.sagemaker_role, "Arn"),
                    "Role of the training jobs and endpoints",
                )
            ],
            mappings={
                **({IMAGE_REGISTRY_MAPPING: self.image_registry} if self.image_registry else {}),
                **({ANALYZER_REGISTRY_MAPPING: analyzer_registry()} if self.config.monitors else {}),
            },
        )

    # ----- build steps --------------------------------------------------------------------
    @cached_property
    def lint_step(self) -> BuildStep:
        """Synthesizes the templates from the commit, scans them (cfn-nag; cfn-lint and cfripper),
        runs the local loop (train, serve on 127.0.0.1, the endpoint test: `make local`) and the unit
        tests, publishing each as a report (`make ci-lint` writes them all, pass or
        fail); hands the templates on and exports LINT_BUILD_ID for the approval's link to its
        reports. Offline: artifacts, its logs and its reports only."""
        return BuildStep(
            name="lint",
            description="Lint action: synth, cfn-nag, cfn-lint, local train/serve/test, unit tests",
            runtimes={"python": "3.11", "ruby": "3.2"},
            install_commands=("gem install cfn-nag --no-document",),
            commands=("make ci-lint", ". build/lint-exports.env"),
            artifacts=("build/templates/*.json",),
            exports=("LINT_BUILD_ID",),
            reports=tuple(
                Report(name, (f"build/reports/{name}.xml",), id=LINT_REPORT_IDS.get(name)) for name in LINT_REPORTS
            ),
            timeout_minutes=LINT_TIMEOUT_MINUTES,
        )

    def _data_listing(self) -> list[Statement]:
        """s3:ListBucket on the prefixes training data can come from: the data a commit's local_dir
        uploads under the project's prefix, the model bucket's training data folder, and the
        configured s3_uri's prefix."""
        data = self.config.training_data
        statements = [
            allow(
                [awacs.s3.ListBucket],
                self._bucket_arn(self.model_bucket),
                condition=Condition(StringLike("s3:prefix", [self.project_prefix + "data/*"])),
            )
        ]
        if self.training_data_prefix is not None:
            statements.append(
                allow(
                    [awacs.s3.ListBucket],
                    self._bucket_arn(self.model_bucket),
                    condition=Condition(StringLike("s3:prefix", [self.training_data_prefix + "*"])),
                )
            )
        if data.s3_uri and data.s3_bucket:
            statements.append(
                allow(
                    [awacs.s3.ListBucket],
                    Sub("arn:${AWS::Partition}:s3:::" + data.s3_bucket),
                    condition=Condition(StringLike("s3:prefix", [data.s3_prefix + "*"])),
                )
            )
        return statements

    @cached_property
    def train_step(self) -> BuildStep:
        """Uploads code and data, starts and watches one training job, holds it to the gate and
        writes the endpoint stacks' run parameters."""
        prefix = self.project_prefix
        return BuildStep(
            name="train",
            description="Train action: one SageMaker training job per commit",
            commands=("make train", ". build/train/exports.env"),
            statements=(
                # Uploads only; a failed multipart upload is aborted (boto3's transfer manager does).
                # Only script mode uploads code (an own container's is in its image; a built-in has none).
                allow(
                    [awacs.s3.PutObject, awacs.s3.AbortMultipartUpload],
                    [
                        *([self._objects(self.model_bucket, prefix + "code/")] if self.config.script_mode else []),
                        self._objects(self.model_bucket, prefix + "data/"),
                    ],
                ),
                # The data version: train lists the objects of the training data prefix.
                *self._data_listing(),
                *self._repack_grants(),
                allow(
                    [
                        awacs.sagemaker.CreateTrainingJob,
                        awacs.sagemaker.DescribeTrainingJob,
                        awacs.sagemaker.StopTrainingJob,
                        awacs.sagemaker.AddTags,
                        # The training cache reads the tags of the project's earlier jobs.
                        awacs.sagemaker.ListTags,
                    ],
                    arn("sagemaker", f"training-job/{self.config.project}-*"),
                ),
                # The training cache lists the project's Completed jobs (names and statuses); the
                # action takes no resource type, so no narrower resource than *.
                allow([awacs.sagemaker.ListTrainingJobs], "*"),
                self._pass_role(self.sagemaker_role, "sagemaker.amazonaws.com"),
                self._grant_for_aws_resources(),
                self._register_grant(),
                *self._champion_grants(),
                *self._baseline_grants(),
            ),
            env={
                "MODEL_BUCKET": Ref(self.model_bucket),
                "SAGEMAKER_ROLE_ARN": GetAtt(self.sagemaker_role, "Arn"),
                "KMS_KEY_ARN": self.key_arn,
                **(
                    {"IMAGE_REPOSITORY_URI": GetAtt(self.image_repository, "RepositoryUri")}
                    if self.image_repository is not None
                    else {}
                ),
            },
            action_env={
                "COMMIT_ID": self.source_action.variable("CommitId"),
                "RUN_REASON": RUN_REASON.ref,
            },
            timeout_minutes=self.config.model.training.codebuild_timeout_minutes,
            exports=(
                "METRIC_NAME",
                "METRIC_VALUE",
                "TRAINING_JOB_NAME",
                "MODEL_DATA_URL",
                "DATA_VERSION",
                "MODEL_ORIGIN",
                "MODEL_PACKAGE_ARN",
                "MODEL_PACKAGE_VERSION",
                *(("CHAMPION_VALUE", "CHAMPION_ENV") if self.config.champion_environment else ()),
            ),
            artifacts=tuple(f"build/train/{parameters_file(name)}" for name in self.config.environment_names),
            wildcard_reason="sagemaker:ListTrainingJobs (the training cache) takes no resource ARN "
            "(service authorization reference); it returns job names and statuses only.",
        )

    def _registry_arns(self) -> list[Any]:
        """The project's model package group and its versions (model-package/GROUP/N)."""
        group = self.names.model_package_group
        return [arn("sagemaker", f"model-package-group/{group}"), arn("sagemaker", f"model-package/{group}/*")]

    def _register_grant(self) -> Statement:
        """Train registers the model as a version of the group, only PendingManualApproval: the
        commit's code that trains cannot approve its own model."""
        return allow(
            [awacs.sagemaker.CreateModelPackage],
            self._registry_arns(),
            condition=Condition(StringEquals("sagemaker:ModelApprovalStatus", "PendingManualApproval")),
        )

    def _approve_grant(self) -> Statement:
        """The last environment's endpoint test marks the version it deployed and tested Approved."""
        group = self.names.model_package_group
        return allow(
            [awacs.sagemaker.UpdateModelPackage],
            arn("sagemaker", f"model-package/{group}/*"),
            condition=Condition(StringEquals("sagemaker:ModelApprovalStatus", "Approved")),
        )

    def _repack_grants(self) -> list[Statement]:
        """Where the framework serves from a repacked model.tar.gz (PyTorch >= 1.2, TensorFlow):
        train reads the job's model and writes the repacked one beside it, under models/."""
        if not self.config.framework.repacks(self.config.model.framework_version):
            return []
        return [
            allow(
                [awacs.s3.GetObject, awacs.s3.PutObject],
                self._objects(self.model_bucket, self.project_prefix + "models/"),
            )
        ]

    def _baseline_grants(self) -> list[Statement]:
        """With monitoring: start, watch and (when it overruns) stop the baseline processing job,
        named like the training job (scripts/baseline.py), tagged on create."""
        if not self.config.monitors:
            return []
        return [
            allow(
                [
                    awacs.sagemaker.CreateProcessingJob,
                    awacs.sagemaker.DescribeProcessingJob,
                    awacs.sagemaker.StopProcessingJob,
                    awacs.sagemaker.AddTags,
                ],
                arn("sagemaker", f"processing-job/{self.config.project}-*"),
            )
        ]

    def _champion_grants(self) -> list[Statement]:
        """With a champion gate: read the champion environment's endpoint stack (its ModelVersion
        output names the serving model's training job, which the train role already may describe)."""
        environment = self.config.champion_environment
        if environment is None:
            return []
        stack = self.names.endpoint_stack(environment)
        return [allow([awacs.cloudformation.DescribeStacks], arn("cloudformation", f"stack/{stack}/*"))]

    @cached_property
    def endpoint_test_step(self) -> BuildStep:
        """Sends every test payload to one environment's endpoint (ENDPOINT_ENV, set per action),
        checks answers and latency, and publishes a JUnit report."""
        return BuildStep(
            name="endpoint-test",
            description="Endpoint test: invoke this project's endpoints",
            commands=("make endpoint-test", ". build/endpoint-test-exports.env"),
            statements=(
                # Real-time endpoints; an asynchronous one is invoked with InvokeEndpointAsync (_async_test_grants).
                *(
                    [
                        allow(
                            [awacs.sagemaker.InvokeEndpoint, awacs.sagemaker.DescribeEndpoint],
                            self._real_time_endpoint_arns,
                        )
                    ]
                    if self._real_time_endpoint_arns
                    else []
                ),
                # Which model the endpoint's config serves (rollback detection). CloudFormation names
                # the configs, so no name pattern scopes them; read-only.
                allow([awacs.sagemaker.DescribeEndpointConfig], arn("sagemaker", "endpoint-config/*")),
                *self._async_test_grants(),
                self._approve_grant(),
            ),
            env={"MODEL_BUCKET": Ref(self.model_bucket)} if self.config.asynchronous_environments else {},
            exports=("TEST_SUMMARY", "TEST_REPORT_URL", "TEST_BUILD_ID"),
            # Its group's logical ID stays EndpointTestReports (see Report).
            reports=(Report("endpoint-tests", ("build/reports/endpoint-tests.xml",), id=""),),
        )

    def batch_output_prefix(self) -> str:
        """Where the batch transform step's jobs write, one folder per job, in the model bucket."""
        return f"{self.project_prefix}batch-output/"

    def _batch_input(self) -> tuple[Any, str]:
        """(bucket ARN, key prefix) of the batch transform's input objects."""
        batch = self.config.batch_transform
        assert batch is not None
        if batch.input.s3_uri is not None:
            return Sub("arn:${AWS::Partition}:s3:::" + (batch.input.s3_bucket or "")), batch.input.s3_prefix
        return self._bucket_arn(self.model_bucket), self.project_prefix + (batch.input.model_bucket_prefix or "")

    @cached_property
    def batch_transform_step(self) -> BuildStep | None:
        """After `batch_transform.after`'s endpoint tests: one transform job with the model that
        environment serves, over the configured input, checked input by input (scripts/batch_transform.py)."""
        batch = self.config.batch_transform
        if batch is None:
            return None
        in_bucket, in_prefix = self._batch_input()
        return BuildStep(
            name="batch-transform",
            description="Batch transform: the deployed model over offline data",
            commands=("make batch-transform", ". build/batch-transform-exports.env"),
            statements=(
                allow(
                    [
                        awacs.sagemaker.CreateTransformJob,
                        awacs.sagemaker.DescribeTransformJob,
                        awacs.sagemaker.StopTransformJob,
                        awacs.sagemaker.AddTags,
                    ],
                    arn("sagemaker", f"transform-job/{self.config.project}-*"),
                ),
                # It counts the inputs, then the outputs.
                allow(
                    [awacs.s3.ListBucket], in_bucket, condition=Condition(StringLike("s3:prefix", [in_prefix + "*"]))
                ),
                allow(
                    [awacs.s3.ListBucket],
                    self._bucket_arn(self.model_bucket),
                    condition=Condition(StringLike("s3:prefix", [self.batch_output_prefix() + "*"])),
                ),
                # No kms:CreateGrant: the volume key's grant is the model's execution role's, which holds
                # it (CreateTrainingJob's reference asks it of the caller only without one there).
            ),
            env={"MODEL_BUCKET": Ref(self.model_bucket), "KMS_KEY_ARN": self.key_arn},
            action_env={"COMMIT_ID": self.source_action.variable("CommitId")},
            timeout_minutes=batch.codebuild_timeout_minutes,
            exports=("BATCH_SUMMARY",),
        )

    def _batch_execution_grants(self) -> list[Statement]:
        """The model's role while the transform job runs: it writes the outputs (the project
        prefix's read covers an input in the model bucket; one in your own bucket is granted here)."""
        batch = self.config.batch_transform
        if batch is None:
            return []
        grants = [allow([awacs.s3.PutObject], self._objects(self.model_bucket, self.batch_output_prefix()))]
        if batch.input.s3_uri is not None:
            in_bucket, in_prefix = self._batch_input()
            grants += [
                allow([awacs.s3.GetObject], Sub("${Bucket}/" + in_prefix + "*", Bucket=in_bucket)),
                allow(
                    [awacs.s3.ListBucket], in_bucket, condition=Condition(StringLike("s3:prefix", [in_prefix + "*"]))
                ),
            ]
        return grants

    @cached_property
    def prepare_steps(self) -> dict[str, BuildStep]:
        """Per environment, by name: readies its endpoint stack for the deploy (scripts/prepare_stack.py)
        by deleting it if its first create failed, waiting out a running operation, or stopping on a
        state only a human can resolve. One step (project and role) per environment, each allowed
        only its own stack: the build runs the commit's code, so qa's build must not be able to delete
        prod's stack before the approval. Deleting needs no iam:PassRole (CloudFormation uses the
        role the stack was created with)."""
        steps = {}
        for env in self.config.environments:
            stack = self.names.endpoint_stack(env.name)
            steps[env.name] = BuildStep(
                name=f"prepare-{env.name}",
                description=f"PrepareStack: ready the {env.name} endpoint stack for its deploy",
                commands=("make prepare-stack",),
                statements=(
                    allow(
                        [
                            awacs.cloudformation.DescribeStacks,
                            awacs.cloudformation.ListStackResources,
                            awacs.cloudformation.DescribeStackEvents,
                            awacs.cloudformation.DeleteStack,
                            awacs.cloudformation.GetTemplate,
                        ],
                        arn("cloudformation", f"stack/{stack}/*"),
                    ),
                    *self._deregistration(env),
                ),
                env={"ENDPOINT_ENV": env.name, "ENDPOINT_STACK": stack},
                timeout_minutes=PREPARE_TIMEOUT_MINUTES,
            )
        return steps

    def _deregistration(self, env: Environment) -> tuple[Statement, ...]:
        """An instance-based environment's PrepareStack deregisters its variant's scalable target
        before an instance type change or autoscaling's removal (pipeline.capacity). A serverless
        one never does: from an autoscaled endpoint it refuses instead. A target's ARN ends in an ID
        Application Auto Scaling assigns, so the ARN cannot name it: the target's tags do (the
        endpoint template tags it with the project and environment), so qa's build, which runs the
        commit's code before any approval, cannot deregister prod's autoscaling."""
        if env.serverless is not None:
            return ()
        own = Condition(
            StringEquals(
                {
                    f"aws:ResourceTag/{PROJECT_TAG}": self.config.project,
                    f"aws:ResourceTag/{ENVIRONMENT_TAG}": env.name,
                    "application-autoscaling:service-namespace": "sagemaker",
                }
            )
        )
        return (
            allow(
                [awacs.application_autoscaling.DeregisterScalableTarget],
                arn("application-autoscaling", "scalable-target/*"),
                condition=own,
            ),
        )

    @property
    def self_updates(self) -> bool:
        """Whether this pipeline has the UpdatePipeline stage (the config's `self_update`)."""
        return self.config.self_update

    @cached_property
    def update_pipeline_step(self) -> BuildStep | None:
        """Updates this stack from the commit (scripts/self_update.py), or None when the config says
        `self_update: false`. It makes the change set with its own credentials (the stack has no
        CloudFormation service role: one passed once binds every later operation, `make deploy`
        included), so its role holds exactly what updating this stack's CodePipeline, CodeBuild,
        EventBridge, SNS and log group resources needs (their registry handlers; CodeBuild projects
        have none, so the CodeBuild API's), scoped to this project's names, and may pass only this
        project's existing roles, each to its own service. No IAM, KMS key or bucket write: a commit
        cannot widen a role, the key or a bucket (README: Self-update)."""
        if not self.self_updates:
            return None
        names = self.names
        rules = arn("events", f"rule/{names.pipeline_stack}-*")
        topics = [Ref(self.approval_topic), Ref(self.notification_topic)]
        step_roles = [GetAtt(r.role, "Arn") for r in self._step_resources_but_update.values()]
        return BuildStep(
            name=UPDATE_STEP,
            description="UpdatePipeline: update the pipeline stack from the commit",
            commands=("make self-update",),
            statements=(
                allow(
                    [
                        awacs.cloudformation.CreateChangeSet,
                        awacs.cloudformation.DescribeChangeSet,
                        awacs.cloudformation.ExecuteChangeSet,
                        awacs.cloudformation.DeleteChangeSet,
                        awacs.cloudformation.DescribeStacks,
                        awacs.cloudformation.DescribeStackEvents,
                        awacs.cloudformation.GetTemplate,
                    ],
                    arn("cloudformation", f"stack/{names.pipeline_stack}/*"),
                ),
                # Templates over the inline limit are staged here (TemplateURL).
                allow([awacs.s3.PutObject], self._objects(self.artifact_bucket, "self-update/")),
                allow([awacs.kms.GenerateDataKey], self.key_arn),
                # AWS::CodePipeline::Pipeline update handler (registry schema).
                allow(
                    [
                        awacs.codepipeline.GetPipeline,
                        awacs.codepipeline.UpdatePipeline,
                        awacs.codepipeline.GetPipelineState,
                        awacs.codepipeline.EnableStageTransition,
                        awacs.codepipeline.DisableStageTransition,
                        awacs.codepipeline.StartPipelineExecution,
                        awacs.codepipeline.TagResource,
                        awacs.codepipeline.UntagResource,
                        awacs.codepipeline.ListTagsForResource,
                    ],
                    arn("codepipeline", names.pipeline),
                ),
                allow([awacs.iam.GetRole], GetAtt(self.pipeline_role, "Arn")),
                self._pass_role(self.pipeline_role, "codepipeline.amazonaws.com"),
                allow(self._pass_connection_actions, self.connection_arn),
                # AWS::CodeBuild::Project has no registry handler: the CodeBuild API's project calls.
                allow(
                    [
                        awacs.codebuild.BatchGetProjects,
                        awacs.codebuild.CreateProject,
                        awacs.codebuild.UpdateProject,
                        awacs.codebuild.DeleteProject,
                    ],
                    arn("codebuild", f"project/{names.codebuild_project('*')}"),
                ),
                allow(
                    [awacs.iam.PassRole],
                    step_roles,
                    condition=Condition(StringEquals("iam:PassedToService", "codebuild.amazonaws.com")),
                ),
                # AWS::CodeBuild::ReportGroup create, update and delete handlers.
                allow(
                    [
                        awacs.codebuild.CreateReportGroup,
                        awacs.codebuild.UpdateReportGroup,
                        awacs.codebuild.DeleteReportGroup,
                        awacs.codebuild.BatchGetReportGroups,
                    ],
                    arn("codebuild", f"report-group/{names.codebuild_project('*')}"),
                ),
                # AWS::Events::Rule create, update and delete handlers (rules CloudFormation names
                # after this stack).
                allow(
                    [
                        awacs.events.DescribeRule,
                        awacs.events.PutRule,
                        awacs.events.DeleteRule,
                        awacs.events.PutTargets,
                        awacs.events.RemoveTargets,
                        awacs.events.ListTargetsByRule,
                        awacs.events.TagResource,
                        awacs.events.UntagResource,
                        awacs.events.ListTagsForResource,
                    ],
                    rules,
                ),
                *([self._pass_role(self.start_role, "events.amazonaws.com")] if self.has_start_rules else []),
                # AWS::SNS::Topic update and AWS::SNS::TopicPolicy handlers, this project's topics.
                allow(
                    [
                        awacs.sns.GetTopicAttributes,
                        awacs.sns.SetTopicAttributes,
                        awacs.sns.Subscribe,
                        awacs.sns.Unsubscribe,
                        awacs.sns.ListSubscriptionsByTopic,
                        awacs.sns.TagResource,
                        awacs.sns.UntagResource,
                        awacs.sns.ListTagsForResource,
                        awacs.sns.GetDataProtectionPolicy,
                    ],
                    topics,
                ),
                # AWS::Logs::LogGroup: the build steps' log groups, created with a step, updated, deleted.
                allow(
                    [
                        awacs.logs.CreateLogGroup,
                        awacs.logs.DeleteLogGroup,
                        awacs.logs.PutRetentionPolicy,
                        awacs.logs.DeleteRetentionPolicy,
                        awacs.logs.AssociateKmsKey,
                        awacs.logs.TagResource,
                        awacs.logs.UntagResource,
                        awacs.logs.ListTagsForResource,
                        awacs.logs.GetDataProtectionPolicy,
                    ],
                    arn("logs", f"log-group:{names.build_log_group('*')}"),
                ),
                # The log group handlers list groups (read-only). The Service Authorization Reference
                # gives it no resource type; cfripper blocks "*" for it (its data scopes it to log
                # groups), so all of the account's groups, as AWS's examples write it.
                allow([awacs.logs.DescribeLogGroups], arn("logs", "log-group:*")),
            ),
            env={"ARTIFACT_BUCKET": Ref(self.artifact_bucket)},
            timeout_minutes=UPDATE_TIMEOUT_MINUTES,
        )

    @property
    def build_steps(self) -> tuple[BuildStep, ...]:
        """The Build stage: these steps run side by side on every commit (add one here)."""
        return (self.lint_step, self.train_step)

    @property
    def environment_steps(self) -> tuple[BuildStep, ...]:
        """The steps that run in every environment after its deploy, in order (its PrepareStack
        runs before the deploy: `prepare_steps`)."""
        return (self.endpoint_test_step,)

    @cached_property
    def _step_context(self) -> StepContext:
        return StepContext(
            names=self.names,
            key_arn=self.key_arn,
            tags=self.tags,
            artifact_read=tuple(self._artifacts_read()),
            artifact_write=tuple(self._artifacts_write()),
        )

    @cached_property
    def _step_resources_but_update(self) -> dict[str, StepResources]:
        image = (self.build_image_step,) if self.build_image_step is not None else ()
        batch = (self.batch_transform_step,) if self.batch_transform_step else ()
        steps = (*image, *self.build_steps, *self.environment_steps, *batch, *self.prepare_steps.values())
        return {step.name: render_step(self._as_run_here(step), self._step_context) for step in steps}

    @cached_property
    def step_resources(self) -> dict[str, StepResources]:
        """Each step's project, role, log group (and report group), by step name (UpdatePipeline's
        last: its role may pass the others')."""
        resources = dict(self._step_resources_but_update)
        update = self.update_pipeline_step
        if update is not None:
            resources[update.name] = render_step(self._as_run_here(update), self._step_context)
        return resources

    def _as_run_here(self, step: BuildStep) -> BuildStep:
        """The step as this stack's project runs it (a branch pipeline's steps learn their branch)."""
        return step

    def _project(self, step: BuildStep) -> Ref:
        return Ref(self.step_resources[step.name].project)

    def builds(self) -> Part:
        """Every step's resources."""
        return Part([resource for rendered in self.step_resources.values() for resource in rendered.resources])

    # ----- deployments --------------------------------------------------------------------
    @cached_property
    def deploy_role(self) -> iam.Role:
        """Assumed by CloudFormation to create, update and delete the endpoint stacks' resources:
        exactly what their resource types' handlers need. Models and endpoint configs get names
        CloudFormation generates (so each run can replace them), so they are scoped by the project
        tag every endpoint stack resource carries: on the request when created (the handlers tag
        on create), on the resource afterwards. Endpoints are scoped by their stable names. The
        role reads no pipeline artifacts: CodePipeline hands CloudFormation the template."""
        models, configs = arn("sagemaker", "model/*"), arn("sagemaker", "endpoint-config/*")
        tagged_on_create = Condition(StringEquals(f"aws:RequestTag/{PROJECT_TAG}", self.config.project))
        tagged = Condition(StringEquals(f"aws:ResourceTag/{PROJECT_TAG}", self.config.project))
        tags = [awacs.sagemaker.AddTags, awacs.sagemaker.DeleteTags, awacs.sagemaker.ListTags]
        statements = [
            allow([awacs.sagemaker.CreateModel, awacs.sagemaker.AddTags], models, condition=tagged_on_create),
            allow([awacs.sagemaker.DescribeModel, awacs.sagemaker.DeleteModel, *tags], models, condition=tagged),
            allow([awacs.sagemaker.CreateEndpointConfig, awacs.sagemaker.AddTags], configs, condition=tagged_on_create),
            # An endpoint is created or updated with one of this project's endpoint configs only.
            allow(
                [
                    awacs.sagemaker.DescribeEndpointConfig,
                    awacs.sagemaker.DeleteEndpointConfig,
                    *tags,
                    awacs.sagemaker.CreateEndpoint,
                    awacs.sagemaker.UpdateEndpoint,
                ],
                configs,
                condition=tagged,
            ),
            allow(
                [
                    awacs.sagemaker.CreateEndpoint,
                    awacs.sagemaker.UpdateEndpoint,
                    awacs.sagemaker.DescribeEndpoint,
                    awacs.sagemaker.DeleteEndpoint,
                    *tags,
                ],
                self._endpoint_arns,
            ),
            self._pass_role(self.sagemaker_role, "sagemaker.amazonaws.com"),
            *self._alarm_grants(),
            *self._schedule_grants(),
            # The endpoint config's volume key: described on create, granted to the hosts' volumes;
            # only where an endpoint stack takes the key (a serverless one does not).
            *(
                [allow([awacs.kms.DescribeKey], self.key_arn), self._grant_for_aws_resources()]
                if any("KmsKeyArn" in self.endpoint_stack(env).pipeline_parameters for env in self.config.environments)
                else []
            ),
            *self._autoscaling_statements(),
        ]
        deploy = role(
            "EndpointDeployRole",
            "cloudformation.amazonaws.com",
            "CloudFormation deploys this project's endpoint stacks",
            statements,
            self.tags,
        )
        if any(env.autoscaling for env in self.config.environments):
            reason = (
                "Application Auto Scaling's DescribeScalableTargets, DescribeScalingPolicies and "
                "DescribeScheduledActions and CloudWatch's GetMetricData take no resource ARN (service "
                "authorization reference); the scalable target and scaling policy handlers call them."
            )
            deploy.Metadata = {"cfripper": {"suppress": [{"rule": "WildcardResourceRule", "reason": reason}]}}
        return deploy

    def _autoscaling_statements(self) -> list[Statement]:
        """What the handlers of AWS::ApplicationAutoScaling::ScalableTarget and ::ScalingPolicy need
        (their registry schemas, as cfn-lint ships them), when some environment is autoscaled. A
        scalable target's ARN ends in an ID Application Auto Scaling assigns, so scalable-target/*
        in this account and region; the Describe* calls and GetMetricData take no resource. No
        iam:PassRole: the targets name no role, so the service-linked role is used, which the first
        registration in an account creates."""
        if not any(env.autoscaling for env in self.config.environments):
            return []
        aas = awacs.application_autoscaling
        return [
            allow(
                [
                    aas.RegisterScalableTarget,
                    aas.DeregisterScalableTarget,
                    aas.PutScalingPolicy,
                    aas.DeleteScalingPolicy,
                    aas.Action("PutScheduledAction"),
                    aas.Action("DeleteScheduledAction"),
                    aas.TagResource,
                    aas.Action("UntagResource"),
                    aas.ListTagsForResource,
                ],
                arn("application-autoscaling", "scalable-target/*"),
            ),
            allow(
                [
                    aas.DescribeScalableTargets,
                    aas.DescribeScalingPolicies,
                    aas.Action("DescribeScheduledActions"),
                    awacs.cloudwatch.GetMetricData,
                ],
                "*",
            ),
            allow(
                [awacs.iam.CreateServiceLinkedRole],
                arn("iam", f"role/aws-service-role/{SCALING_SERVICE}/{SCALING_ROLE}", region=False),
                condition=Condition(StringEquals("iam:AWSServiceName", SCALING_SERVICE)),
            ),
        ]

    @property
    def _scaling_alarm_arns(self) -> list[Sub]:
        """The alarms that scale asynchronous endpoints up from zero."""
        return [
            arn("cloudwatch", f"alarm:{alarm.AlarmName}")
            for env in self.config.environments
            for alarm in self.endpoint_stack(env).scaling_alarms
        ]

    def _alarm_grants(self) -> list[Statement]:
        """What AWS::CloudWatch::Alarm's handlers need (its registry schema), on the rollback and
        scaling alarms by name."""
        alarms = self._alarm_arns + self._scaling_alarm_arns
        if not alarms:
            return []
        return [
            allow(
                [
                    awacs.cloudwatch.PutMetricAlarm,
                    awacs.cloudwatch.DescribeAlarms,
                    awacs.cloudwatch.DeleteAlarms,
                    awacs.cloudwatch.TagResource,
                    awacs.cloudwatch.UntagResource,
                    awacs.cloudwatch.ListTagsForResource,
                ],
                alarms,
            )
        ]

    def _schedule_grants(self) -> list[Statement]:
        """What AWS::SageMaker::MonitoringSchedule's handlers need (its registry schema: Create, Update,
        Delete, Describe; iam:PassRole is the deploy role's already), on the schedules by name."""
        if not self._schedule_arns:
            return []
        return [
            allow(
                [
                    awacs.sagemaker.CreateMonitoringSchedule,
                    awacs.sagemaker.UpdateMonitoringSchedule,
                    awacs.sagemaker.DescribeMonitoringSchedule,
                    awacs.sagemaker.DeleteMonitoringSchedule,
                    # CreateMonitoringSchedule with Tags: a dependent action (service authorization reference).
                    awacs.sagemaker.AddTags,
                ],
                self._schedule_arns,
            )
        ]

    def endpoint_stack(self, env: Environment) -> EndpointStack:
        """The builder of one environment's endpoint template."""
        return EndpointStack(self.config, env)

    @cached_property
    def targets(self) -> dict[str, DeploymentTarget]:
        """Per environment: the endpoint stack, its template and parameters, and the role that deploys it."""
        targets = {}
        for env in self.config.environments:
            stack = self.endpoint_stack(env)
            supplied = {
                "ExecutionRoleArn": GetAtt(self.sagemaker_role, "Arn"),
                "KmsKeyArn": self.key_arn,
                "DataCaptureS3Uri": Sub(
                    "s3://${Bucket}/" + self.data_capture_prefix(env), Bucket=Ref(self.model_bucket)
                ),
                "MonitoringS3Uri": Sub("s3://${Bucket}/" + self.monitoring_prefix(env), Bucket=Ref(self.model_bucket)),
                "AsyncOutputS3Uri": Sub(
                    "s3://${Bucket}/" + self.async_prefix(env, "output"), Bucket=Ref(self.model_bucket)
                ),
                "AsyncFailureS3Uri": Sub(
                    "s3://${Bucket}/" + self.async_prefix(env, "failures"), Bucket=Ref(self.model_bucket)
                ),
            }
            if "AsyncTopicArn" in stack.pipeline_parameters:
                supplied["AsyncTopicArn"] = Ref(self.async_topic)
            targets[env.name] = DeploymentTarget(
                environment=env.name,
                stack_name=self.names.endpoint_stack(env.name),
                template_path=self.lint_step.file(stack.file_name),
                template_configuration=self.train_step.file(parameters_file(env.name)),
                parameters={name: supplied[name] for name in stack.pipeline_parameters},
                execution_role_arn=GetAtt(self.deploy_role, "Arn"),
                inputs=(self.lint_step.artifact, self.train_step.artifact),
                outputs=SERVING_OUTPUTS,
            )
        return targets

    def deployments(self) -> Part:
        """The deploy role, and each environment's stack and endpoint names."""
        outputs = []
        for env in self.config.environments:
            outputs += [
                output(
                    f"{camel(env.name)}EndpointStackName",
                    self.names.endpoint_stack(env.name),
                    f"Stack the pipeline deploys for {env.name}",
                ),
                output(
                    f"{camel(env.name)}EndpointName",
                    self.names.endpoint(env.name),
                    f"{env.name} endpoint (stable name)",
                ),
            ]
        return Part([self.deploy_role], outputs)

    # ----- the pipeline -------------------------------------------------------------------
    @cached_property
    def build_actions(self) -> dict[str, Action]:
        """The Build stage's actions, by step name."""
        return {
            step.name: step.action(self._project(step), inputs=(SOURCE_OUTPUT,), namespace=f"{step.id}Variables")
            for step in self.build_steps
        }

    @cached_property
    def build_image_action(self) -> Action | None:
        """The Image stage's one action, before Build (None without model.container)."""
        step = self.build_image_step
        return None if step is None else step.action(self._project(step), inputs=(SOURCE_OUTPUT,))

    @cached_property
    def update_pipeline_action(self) -> Action | None:
        """The UpdatePipeline stage's one action (None without self-update)."""
        step = self.update_pipeline_step
        return None if step is None else step.action(self._project(step), name="SelfUpdate", inputs=(SOURCE_OUTPUT,))

    def environment_actions(self, env: Environment) -> dict[str, Action]:
        """What runs in an environment's stage, in order: ready its stack, deploy it, then each
        environment step (by step name) against its endpoint."""
        prepare = self.prepare_steps[env.name]
        deploy = self.targets[env.name].action(
            "DeployEndpoint", run_order=2, namespace=f"{camel(env.name)}DeployEndpointVariables"
        )
        actions = {
            "prepare": prepare.action(self._project(prepare), name="PrepareStack", inputs=(SOURCE_OUTPUT,)),
            "deploy": deploy,
        }
        # What the endpoint test checks the endpoint serves before testing it: the stack's outputs
        # after this deploy, and the version this run trained (SageMaker may have rolled back).
        serving = {
            "DEPLOYED_ENDPOINT_CONFIG": deploy.variable("EndpointConfigName"),
            "DEPLOYED_MODEL_NAME": deploy.variable("ModelName"),
            "DEPLOYED_MODEL_VERSION": deploy.variable("ModelVersion"),
            "TRAINED_MODEL_VERSION": self.build_actions["train"].variable("TRAINING_JOB_NAME"),
        }
        if env.asynchronous is not None:
            serving["ASYNC_INPUT_PREFIX"] = self.async_prefix(env, "input")
        if env.name == self.config.environments[-1].name:
            # Only the last environment's test approves the registry version this run deployed.
            serving["APPROVE_MODEL_PACKAGE_ARN"] = self.build_actions["train"].variable("MODEL_PACKAGE_ARN")
        for order, step in enumerate(self.environment_steps, start=3):
            actions[step.name] = step.action(
                self._project(step),
                inputs=(SOURCE_OUTPUT,),
                namespace=f"{camel(env.name)}{step.id}Variables",
                env={"ENDPOINT_ENV": env.name, **serving},
                run_order=order,
            )
        batch = self.batch_transform_step
        if batch is not None and self.config.batch_transform and self.config.batch_transform.after == env.name:
            # After the endpoint tests, on the model this run deployed here (the stack's output).
            actions[batch.name] = batch.action(
                self._project(batch),
                inputs=(SOURCE_OUTPUT,),
                namespace=f"{camel(env.name)}{batch.id}Variables",
                env={"BATCH_MODEL_NAME": deploy.variable("ModelName")},
                run_order=3 + len(self.environment_steps),
            )
        return actions

    def _report_link(self, build: Action, build_id_variable: str = "TEST_BUILD_ID") -> Sub:
        """A build's report page (`build_id_variable`: the variable its action exports its URL-encoded
        build id as). A URL at create time (only the build id is a run variable), so CodePipeline's
        URL check on ExternalEntityLink holds."""
        return Sub(
            "https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/${AWS::AccountId}/projects/"
            "${Project}/build/" + build.variable(build_id_variable) + "/reports?region=${AWS::Region}",
            Project=build.configuration["ProjectName"],
        )

    def _training_job_link(self) -> Sub:
        train = self.build_actions["train"]
        return Sub(
            "https://${AWS::Region}.console.aws.amazon.com/sagemaker/home?region=${AWS::Region}#/jobs/"
            + train.variable("TRAINING_JOB_NAME")
        )

    def approval_action(
        self, env: Environment, tested_before: tuple[Environment, Action] | None, batched: Action | None = None
    ) -> Action:
        """The manual approval before `env`: the model's metric, the tests of the environment
        before it (if any) and the commit, with a link to that test report (or the training job), and
        a link to the Lint action's reports (cfn-nag, cfn-lint and cfripper, unit tests)."""
        train, source = self.build_actions["train"], self.source_action
        metric = f"{train.variable('METRIC_NAME')} {train.variable('METRIC_VALUE')}"
        if self.config.champion_environment:
            # The champion gate's two numbers, e.g. "challenger validation:accuracy 0.97 vs champion 0.95 (prod)".
            measured = (
                f"challenger {metric} vs champion {train.variable('CHAMPION_VALUE')} ({train.variable('CHAMPION_ENV')})"
            )
        else:
            measured = f"{train.variable('METRIC_NAME')} = {train.variable('METRIC_VALUE')}"
        # MODEL_ORIGIN: "trained for this commit" or "reused from commit abc1234 (unchanged inputs)".
        text = (
            f"Model {train.variable('TRAINING_JOB_NAME')} ({train.variable('MODEL_ORIGIN')}, registry version "
            f"{train.variable('MODEL_PACKAGE_VERSION')}): {measured}. "
        )
        if tested_before:
            previous, test = tested_before
            text += f"{previous.name} endpoint tests: {test.variable('TEST_SUMMARY')}. "
        if batched is not None:
            text += f"Batch transform: {batched.variable('BATCH_SUMMARY')}. "
        text += f"Run reason: {RUN_REASON.ref}. Data version: {train.variable('DATA_VERSION')}. "
        text += f"Commit {source.variable('CommitId')}: {source.variable('CommitMessage')}"
        lint_reports = self._report_link(self.build_actions[self.lint_step.name], "LINT_BUILD_ID")
        return Action(
            name="Approve",
            kind="approval",
            configuration={
                "NotificationArn": Ref(self.approval_topic),
                # The commit message last: a long one is what CodePipeline may cut.
                "CustomData": Join("", ["Lint reports: ", lint_reports, f" | {text}"]),
                "ExternalEntityLink": self._report_link(tested_before[1])
                if tested_before
                else self._training_job_link(),
            },
        )

    @cached_property
    def stages(self) -> list[Stage]:
        """Source -> Build -> per environment: [approval] -> deploy and test (see the module docstring)."""
        stages = [
            Stage("Source", (self.source_action,)),
            *([Stage("UpdatePipeline", (self.update_pipeline_action,))] if self.update_pipeline_action else []),
            *([Stage("Image", (self.build_image_action,))] if self.build_image_action else []),
            Stage("Build", tuple(self.build_actions.values())),
        ]
        tested_before: tuple[Environment, Action] | None = None
        batched: Action | None = None
        for env in self.config.environments:
            if env.approval:
                stages.append(Stage(f"Approve{camel(env.name)}", (self.approval_action(env, tested_before, batched),)))
            actions = self.environment_actions(env)
            stages.append(Stage(camel(env.name), tuple(actions.values())))
            test = actions.get(self.endpoint_test_step.name)
            tested_before = (env, test) if test else tested_before
            batched = actions.get("batch-transform", batched)
        return stages

    def _approval_grants(self) -> list[Statement]:
        """The pipeline role publishes the approvals' notices to the approval topic."""
        return [allow([awacs.sns.Publish], Ref(self.approval_topic))]

    @cached_property
    def pipeline_role(self) -> iam.Role:
        """CodePipeline: artifacts, the source connection, the steps' builds, the endpoint stacks, the topic."""
        stacks = [arn("cloudformation", f"stack/{target.stack_name}/*") for target in self.targets.values()]
        # The UpdatePipeline project by its name: its role may pass this one (a GetAtt would be a cycle).
        projects = [GetAtt(rendered.project, "Arn") for rendered in self._step_resources_but_update.values()]
        if self.self_updates:
            projects.append(arn("codebuild", f"project/{self.names.codebuild_project(UPDATE_STEP)}"))
        statements = [
            *self._artifacts_rw(),
            allow(self._connection_actions, self.connection_arn),
            allow([awacs.codebuild.StartBuild, awacs.codebuild.BatchGetBuilds, awacs.codebuild.StopBuild], projects),
            allow(
                [
                    awacs.cloudformation.CreateStack,
                    awacs.cloudformation.UpdateStack,
                    awacs.cloudformation.DescribeStacks,
                    awacs.cloudformation.DescribeStackEvents,
                    awacs.cloudformation.CreateChangeSet,
                    awacs.cloudformation.DescribeChangeSet,
                    awacs.cloudformation.ExecuteChangeSet,
                    awacs.cloudformation.DeleteChangeSet,
                ],
                stacks,
            ),
            allow([awacs.cloudformation.ValidateTemplate], "*"),
            self._pass_role(self.deploy_role, "cloudformation.amazonaws.com"),
            *self._approval_grants(),
        ]
        resource = role(
            "PipelineRole", "codepipeline.amazonaws.com", "CodePipeline service role", statements, self.tags
        )
        resource.Metadata = _nag(("W11", "cloudformation:ValidateTemplate takes no resource ARN."))
        return resource

    @cached_property
    def pipeline(self) -> codepipeline.Pipeline:
        """The CodePipeline (V2) that runs every commit to the branch."""
        return codepipeline.Pipeline(
            "Pipeline",
            Name=self.names.pipeline,
            PipelineType="V2",
            ExecutionMode="SUPERSEDED",
            RoleArn=GetAtt(self.pipeline_role, "Arn"),
            ArtifactStore=codepipeline.ArtifactStore(
                Type="S3",
                Location=Ref(self.artifact_bucket),
                EncryptionKey=codepipeline.EncryptionKey(Id=self.key_arn, Type="KMS"),
            ),
            Stages=render_stages(self.stages),
            # A self-updated definition starts a new run (the old one stops: scripts/self_update.py).
            RestartExecutionOnUpdate=self.update_pipeline_step is not None,
            Triggers=[self.push_trigger],
            Variables=[
                codepipeline.VariableDeclaration(Name=v.name, DefaultValue=v.default, Description=v.description)
                for v in PIPELINE_VARIABLES
            ],
            Tags=self.tags,
        )

    @property
    def push_trigger(self) -> codepipeline.PipelineTriggerDeclaration:
        """Which pushes start the pipeline: the configured branches, unless a push changes only
        excluded paths (docs, by default). With a trigger set, CodePipeline's default change
        detection on the source action's branch is off; BranchName stays the branch a manual
        start (Release change) takes."""
        triggers = self.config.triggers

        def lists(includes: list[str], excludes: list[str]) -> dict:
            return {**({"Includes": includes} if includes else {}), **({"Excludes": excludes} if excludes else {})}

        paths = lists(triggers.paths, triggers.paths_excluded)
        push = codepipeline.GitPushFilter(
            Branches=codepipeline.GitBranchFilterCriteria(
                **lists(self.config.branch_patterns, triggers.branches_excluded)
            ),
            **({"FilePaths": codepipeline.GitFilePathFilterCriteria(**paths)} if paths else {}),
        )
        return codepipeline.PipelineTriggerDeclaration(
            ProviderType="CodeStarSourceConnection",
            GitConfiguration=codepipeline.GitConfiguration(SourceActionName=self.source_action.name, Push=[push]),
        )

    def delivery(self) -> Part:
        """The pipeline and its role."""
        return Part(
            [self.pipeline_role, self.pipeline], [output("PipelineName", Ref(self.pipeline), "The CodePipeline")]
        )

    # ----- what else starts the pipeline --------------------------------------------------
    @property
    def pipeline_arn(self) -> Sub:
        """This pipeline's ARN."""
        return arn("codepipeline", "${Pipeline}", Pipeline=Ref(self.pipeline))

    @cached_property
    def start_role(self) -> iam.Role:
        """Assumed by EventBridge to start this pipeline, and nothing else."""
        return role(
            "PipelineStartRole",
            "events.amazonaws.com",
            "EventBridge starts this pipeline on new training data or on schedule",
            # By name, not Ref: the UpdatePipeline role passes this role, and the pipeline runs that step.
            [allow([awacs.codepipeline.StartPipelineExecution], arn("codepipeline", self.names.pipeline))],
            self.tags,
        )

    def _start_pipeline(self) -> events.Target:
        return events.Target(Id="Pipeline", Arn=self.pipeline_arn, RoleArn=GetAtt(self.start_role, "Arn"))

    @cached_property
    def new_data_rule(self) -> events.Rule | None:
        """Starts the pipeline when an object is created under the training data's S3 prefix (the
        bucket must send its events to EventBridge: the model bucket does when it holds the data),
        or None when the data is not in S3 or the config turns this off."""
        data = self.config.training_data
        if not self.config.retrains_on_new_data:
            return None
        detail: dict[str, Any]
        if self.training_data_prefix is not None:
            detail = {"bucket": {"name": [Ref(self.model_bucket)]}}
            prefix, where = self.training_data_prefix, f"the model bucket's {self.training_data_prefix}"
        else:
            detail = {"bucket": {"name": [data.s3_bucket]}}
            prefix, where = data.s3_prefix, str(data.s3_uri)
        if prefix:
            detail["object"] = {"key": [{"prefix": prefix}]}
        return events.Rule(
            "NewTrainingDataRule",
            Description=f"{self.config.project}: retrain when training data lands under {where}"[:512],
            EventPattern={"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail},
            State="ENABLED",
            Targets=[self._start_pipeline()],
        )

    @cached_property
    def schedule_rule(self) -> events.Rule | None:
        """Starts the pipeline on the configured schedule, or None."""
        schedule = self.config.triggers.schedule
        if schedule is None:
            return None
        return events.Rule(
            "ScheduledRetrainRule",
            Description=f"{self.config.project}: retrain on {schedule}"[:512],
            ScheduleExpression=schedule,
            State="ENABLED",
            Targets=[self._start_pipeline()],
        )

    @property
    def has_start_rules(self) -> bool:
        """Whether an EventBridge rule starts the pipeline besides pushes (then the start role exists)."""
        return self.config.retrains_on_new_data or self.config.triggers.schedule is not None

    def triggers(self) -> Part:
        """The EventBridge rules that start the pipeline besides pushes, and their role (none if no rule)."""
        rules = [rule for rule in (self.new_data_rule, self.schedule_rule) if rule is not None]
        assert bool(rules) == self.has_start_rules
        return Part([self.start_role, *rules] if rules else [])

    # ----- assembly -----------------------------------------------------------------------
    def build(self) -> Template:
        """Assemble and return the template: exactly these parts."""
        flow = " -> ".join(("approval -> " if env.approval else "") + env.name for env in self.config.environments)
        return assemble(
            f"sagemaker-cd pipeline for {self.config.project}: GitHub -> lint/train -> {flow}",
            [
                self.storage(),
                self.registry(),
                self.images(),
                self.approvals(),
                self.source(),
                self.execution(),
                self.builds(),
                self.deployments(),
                self.delivery(),
                self.triggers(),
                self.notifications(),
                self.asynchronous(),
            ],
        )


def build_pipeline_template(config: PipelineConfig) -> Template:
    """The pipeline stack's template for a config."""
    return PipelineStack(config).build()
