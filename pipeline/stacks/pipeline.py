"""The pipeline stack: artifact and model storage, approval topic, roles, CodeBuild projects and
the CodePipeline itself.

Each resource is a cached property, so a fork can override one piece (say, `train_project`)
without rewriting the rest. Building the template makes no AWS call and reads no environment.
"""

from __future__ import annotations

import json
from functools import cached_property

import awacs.cloudformation
import awacs.cloudwatch
import awacs.codebuild
import awacs.codeconnections
import awacs.codestar_connections
import awacs.ecr
import awacs.iam
import awacs.kms
import awacs.logs
import awacs.s3
import awacs.sagemaker
import awacs.sns
from awacs.aws import AWSPrincipal, Bool, Condition, Principal, StringEquals, StringLike
from troposphere import (
    FindInMap,
    GetAtt,
    Output,
    Ref,
    Sub,
    Tags,
    Template,
    codebuild,
    codepipeline,
    codestarconnections,
    iam,
    kms,
    logs,
    s3,
    sns,
)

from pipeline import images
from pipeline.config import PipelineConfig
from pipeline.iam import allow, deny, document, role
from pipeline.names import ENVIRONMENTS
from pipeline.refs import arn
from pipeline.stages import PipelineRefs, Stage, pipeline_stages, render_stages

CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"
LOG_RETENTION_DAYS = 90
PROJECT_KINDS = ("lint", "train", "endpoint-test")

RETAIN = dict(DeletionPolicy="Retain", UpdateReplacePolicy="Retain")


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
        self.template = Template(
            Description=f"sagemaker-cd pipeline for {config.project}: GitHub -> lint/train -> QA -> approval -> production"
        )

    # ----- shared -------------------------------------------------------------------------
    @cached_property
    def tags(self) -> Tags:
        """Tags on every taggable resource: the config's plus the project."""
        return Tags(**self.config.tags) + Tags({"sagemaker-cd:project": self.config.project})

    @cached_property
    def image_registry_mapping(self) -> str:
        """Region -> account of the SageMaker scikit-learn images (for the execution role's ECR pull)."""
        self.template.add_mapping(
            "ImageRegistry", {region: {"Account": account} for region, account in images.registry_accounts().items()}
        )
        return "ImageRegistry"

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
        )
        # The account principal has to be set per statement; awacs keeps it explicit.
        policy.Statement[0].Principal = AWSPrincipal(Sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root"))
        policy.Statement[1].Principal = Principal("Service", Sub("logs.${AWS::Region}.amazonaws.com"))
        key = kms.Key(
            "ArtifactKey",
            Description=f"sagemaker-cd {self.config.project}: pipeline artifacts, models, logs, approval topic",
            EnableKeyRotation=True,
            KeyPolicy=policy,
            Tags=self.tags,
            **RETAIN,
        )
        self.template.add_resource(kms.Alias("ArtifactKeyAlias", AliasName=self.names.key_alias, TargetKeyId=Ref(key)))
        return self.template.add_resource(key)

    @property
    def key_arn(self) -> GetAtt:
        """The key's ARN."""
        return GetAtt(self.key, "Arn")

    def _bucket(self, logical_id: str, purpose: str, lifecycle: list[s3.LifecycleRule]) -> s3.Bucket:
        bucket = self.template.add_resource(
            s3.Bucket(
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
        )
        self.template.add_resource(
            s3.BucketPolicy(
                f"{logical_id}Policy",
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
        )
        return bucket

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
        return self._bucket(
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

    def _objects(self, bucket: s3.Bucket, prefix: str = "") -> Sub:
        return Sub("${Bucket}/" + prefix + "*", Bucket=GetAtt(bucket, "Arn"))

    @property
    def project_prefix(self) -> str:
        """Key prefix of this project's objects in the model bucket."""
        return f"{self.config.project}/"

    # ----- approval topic -----------------------------------------------------------------
    @cached_property
    def approval_topic(self) -> sns.Topic:
        """Encrypted topic the manual approval notifies; each configured address is subscribed."""
        return self.template.add_resource(
            sns.Topic(
                "ApprovalTopic",
                TopicName=self.names.approval_topic,
                DisplayName=f"{self.config.project} approvals"[:100],
                KmsMasterKeyId=self.key_arn,
                Subscription=[sns.Subscription(Protocol="email", Endpoint=e) for e in self.config.approval.emails],
                Tags=self.tags,
            )
        )

    # ----- source connection --------------------------------------------------------------
    @cached_property
    def connection_arn(self):
        """The configured connection, or one this stack creates (PENDING until the console handshake)."""
        configured = self.config.source.github.connection_arn
        if configured:
            return configured
        connection = self.template.add_resource(
            codestarconnections.Connection(
                "GitHubConnection",
                ConnectionName=f"{self.config.project}-github"[:32],
                ProviderType="GitHub",
                Tags=self.tags,
            )
        )
        return Ref(connection)

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

    # ----- roles --------------------------------------------------------------------------
    def _key_use(self, *extra) -> object:
        return allow([awacs.kms.Decrypt, awacs.kms.GenerateDataKey, awacs.kms.DescribeKey, *extra], self.key_arn)

    def _artifacts_rw(self) -> list:
        return [
            allow(
                [awacs.s3.GetObject, awacs.s3.GetObjectVersion, awacs.s3.PutObject], self._objects(self.artifact_bucket)
            ),
            allow([awacs.s3.GetBucketLocation, awacs.s3.GetBucketVersioning], GetAtt(self.artifact_bucket, "Arn")),
            self._key_use(awacs.kms.Encrypt),
        ]

    def _log_group(self, kind: str) -> logs.LogGroup:
        logical = "".join(part.capitalize() for part in kind.split("-")) + "Logs"
        return self.template.add_resource(
            logs.LogGroup(
                logical,
                LogGroupName=f"/aws/codebuild/{self.names.codebuild_project(kind)}",
                RetentionInDays=LOG_RETENTION_DAYS,
                KmsKeyId=self.key_arn,
                Tags=self.tags,
                # Build logs go with the stack; models and data are what is retained.
                DeletionPolicy="Delete",
                UpdateReplacePolicy="Delete",
            )
        )

    @cached_property
    def log_groups(self) -> dict[str, logs.LogGroup]:
        """One encrypted log group per CodeBuild project, with a retention period."""
        return {kind: self._log_group(kind) for kind in PROJECT_KINDS}

    def _log_writes(self, kind: str):
        return allow(
            [awacs.logs.CreateLogStream, awacs.logs.PutLogEvents],
            Sub("${Group}:*", Group=GetAtt(self.log_groups[kind], "Arn")),
        )

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
                ],
            ),
            allow(
                [awacs.s3.ListBucket],
                GetAtt(self.model_bucket, "Arn"),
                condition=Condition(StringLike("s3:prefix", [prefix + "*"])),
            ),
            self._key_use(awacs.kms.Encrypt, awacs.kms.CreateGrant),
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
                Sub(
                    "arn:${AWS::Partition}:ecr:${AWS::Region}:${Account}:repository/" + images.repository(),
                    Account=FindInMap(self.image_registry_mapping, Ref("AWS::Region"), "Account"),
                ),
            ),
        ]
        if data.s3_uri:
            data_bucket = Sub("arn:${AWS::Partition}:s3:::" + data.s3_bucket)
            statements += [
                allow(
                    [awacs.s3.GetObject],
                    Sub("arn:${AWS::Partition}:s3:::" + data.s3_bucket + "/" + data.s3_prefix + "*"),
                ),
                allow([awacs.s3.ListBucket], data_bucket),
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
        return self.template.add_resource(resource)

    def _pass_role(self, target: iam.Role, service: str):
        return allow(
            [awacs.iam.PassRole],
            GetAtt(target, "Arn"),
            condition=Condition(StringEquals("iam:PassedToService", service)),
        )

    @property
    def _endpoint_arns(self) -> list[Sub]:
        return [arn("sagemaker", f"endpoint/{self.names.endpoint(env)}") for env in ENVIRONMENTS]

    @cached_property
    def lint_role(self) -> iam.Role:
        """The Lint action synthesizes, scans and tests offline: artifacts and its logs only."""
        return self.template.add_resource(
            role(
                "LintRole",
                "codebuild.amazonaws.com",
                "Lint action: synth, cfn-nag, cfn-lint, unit tests",
                [*self._artifacts_rw(), self._log_writes("lint")],
                self.tags,
            )
        )

    @cached_property
    def train_role(self) -> iam.Role:
        """The Train action uploads code and data, then starts and watches one training job."""
        prefix = self.project_prefix
        statements = [
            *self._artifacts_rw(),
            self._log_writes("train"),
            allow(
                [awacs.s3.PutObject, awacs.s3.GetObject],
                [
                    self._objects(self.model_bucket, prefix + "code/"),
                    self._objects(self.model_bucket, prefix + "data/"),
                ],
            ),
            allow(
                [
                    awacs.sagemaker.CreateTrainingJob,
                    awacs.sagemaker.DescribeTrainingJob,
                    awacs.sagemaker.StopTrainingJob,
                    awacs.sagemaker.AddTags,
                ],
                arn("sagemaker", f"training-job/{self.config.project}-*"),
            ),
            self._pass_role(self.sagemaker_role, "sagemaker.amazonaws.com"),
            allow(
                [awacs.kms.CreateGrant], self.key_arn, condition=Condition(Bool("kms:GrantIsForAWSResource", "true"))
            ),
        ]
        return self.template.add_resource(
            role(
                "TrainRole",
                "codebuild.amazonaws.com",
                "Train action: one SageMaker training job per commit",
                statements,
                self.tags,
            )
        )

    @cached_property
    def report_group(self) -> codebuild.ReportGroup:
        """Receives the endpoint tests' JUnit XML (the buildspec's `endpoint-tests` report)."""
        return self.template.add_resource(
            codebuild.ReportGroup(
                "EndpointTestReports",
                Name=self.names.report_group,
                Type="TEST",
                ExportConfig=codebuild.ReportExportConfig(ExportConfigType="NO_EXPORT"),
                DeleteReports=True,
                Tags=self.tags,
            )
        )

    @cached_property
    def test_role(self) -> iam.Role:
        """The endpoint test invokes only this project's two endpoints and writes its report."""
        statements = [
            *self._artifacts_rw(),
            self._log_writes("endpoint-test"),
            allow([awacs.sagemaker.InvokeEndpoint, awacs.sagemaker.DescribeEndpoint], self._endpoint_arns),
            allow(
                [awacs.codebuild.CreateReport, awacs.codebuild.UpdateReport, awacs.codebuild.BatchPutTestCases],
                GetAtt(self.report_group, "Arn"),
            ),
        ]
        return self.template.add_resource(
            role(
                "EndpointTestRole",
                "codebuild.amazonaws.com",
                "Endpoint test: invoke the QA and production endpoints",
                statements,
                self.tags,
            )
        )

    @cached_property
    def deploy_role(self) -> iam.Role:
        """Assumed by CloudFormation to create and update the endpoint stacks."""
        statements = [
            allow([awacs.s3.GetObject, awacs.s3.GetObjectVersion], self._objects(self.artifact_bucket)),
            self._key_use(),
            allow(
                [
                    awacs.sagemaker.CreateModel,
                    awacs.sagemaker.DescribeModel,
                    awacs.sagemaker.DeleteModel,
                    awacs.sagemaker.CreateEndpointConfig,
                    awacs.sagemaker.DescribeEndpointConfig,
                    awacs.sagemaker.DeleteEndpointConfig,
                    awacs.sagemaker.AddTags,
                    awacs.sagemaker.DeleteTags,
                    awacs.sagemaker.ListTags,
                ],
                [arn("sagemaker", "model/*"), arn("sagemaker", "endpoint-config/*")],
            ),
            allow(
                [
                    awacs.sagemaker.CreateEndpoint,
                    awacs.sagemaker.UpdateEndpoint,
                    awacs.sagemaker.DescribeEndpoint,
                    awacs.sagemaker.DeleteEndpoint,
                    awacs.sagemaker.AddTags,
                    awacs.sagemaker.DeleteTags,
                    awacs.sagemaker.ListTags,
                ],
                self._endpoint_arns + [arn("sagemaker", "endpoint-config/*")],
            ),
            self._pass_role(self.sagemaker_role, "sagemaker.amazonaws.com"),
            allow(
                [awacs.kms.CreateGrant], self.key_arn, condition=Condition(Bool("kms:GrantIsForAWSResource", "true"))
            ),
        ]
        return self.template.add_resource(
            role(
                "EndpointDeployRole",
                "cloudformation.amazonaws.com",
                "CloudFormation deploys the QA and production endpoint stacks",
                statements,
                self.tags,
            )
        )

    @cached_property
    def pipeline_role(self) -> iam.Role:
        """CodePipeline: artifacts, the source connection, its three builds, the two endpoint stacks, the topic."""
        stacks = [arn("cloudformation", f"stack/{self.names.endpoint_stack(env)}/*") for env in ENVIRONMENTS]
        projects = [GetAtt(p, "Arn") for p in self.projects.values()]
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
            allow(
                [awacs.iam.PassRole],
                GetAtt(self.deploy_role, "Arn"),
                condition=Condition(StringEquals("iam:PassedToService", "cloudformation.amazonaws.com")),
            ),
            allow([awacs.sns.Publish], Ref(self.approval_topic)),
        ]
        resource = role(
            "PipelineRole", "codepipeline.amazonaws.com", "CodePipeline service role", statements, self.tags
        )
        resource.Metadata = _nag(("W11", "cloudformation:ValidateTemplate takes no resource ARN."))
        return self.template.add_resource(resource)

    # ----- CodeBuild ----------------------------------------------------------------------
    def _project(self, kind: str, service_role: iam.Role, buildspec: str, timeout: int, env: dict) -> codebuild.Project:
        logical = "".join(part.capitalize() for part in kind.split("-")) + "Project"
        return self.template.add_resource(
            codebuild.Project(
                logical,
                Name=self.names.codebuild_project(kind),
                Description=f"sagemaker-cd {self.config.project}: {kind}",
                ServiceRole=GetAtt(service_role, "Arn"),
                Source=codebuild.Source(Type="CODEPIPELINE", BuildSpec=buildspec),
                Artifacts=codebuild.Artifacts(Type="CODEPIPELINE"),
                Environment=codebuild.Environment(
                    ComputeType="BUILD_GENERAL1_SMALL",
                    Image=CODEBUILD_IMAGE,
                    Type="LINUX_CONTAINER",
                    EnvironmentVariables=[
                        codebuild.EnvironmentVariable(Name=k, Value=v, Type="PLAINTEXT") for k, v in env.items()
                    ],
                ),
                EncryptionKey=self.key_arn,
                TimeoutInMinutes=timeout,
                LogsConfig=codebuild.LogsConfig(
                    CloudWatchLogs=codebuild.CloudWatchLogs(Status="ENABLED", GroupName=Ref(self.log_groups[kind]))
                ),
                Tags=self.tags,
            )
        )

    @cached_property
    def projects(self) -> dict[str, codebuild.Project]:
        """The three CodeBuild projects, by kind."""
        return {
            "lint": self._project("lint", self.lint_role, "buildspecs/lint.yml", 30, {}),
            "train": self._project(
                "train",
                self.train_role,
                "buildspecs/train.yml",
                self.config.model.training.codebuild_timeout_minutes,
                {
                    "MODEL_BUCKET": Ref(self.model_bucket),
                    "SAGEMAKER_ROLE_ARN": GetAtt(self.sagemaker_role, "Arn"),
                    "KMS_KEY_ARN": self.key_arn,
                },
            ),
            "endpoint-test": self._project("endpoint-test", self.test_role, "buildspecs/endpoint-test.yml", 20, {}),
        }

    # ----- the pipeline -------------------------------------------------------------------
    def _parameter_overrides(self, env: str) -> Sub:
        values = {"EndpointName": self.names.endpoint(env), "ExecutionRoleArn": "${Role}", "KmsKeyArn": "${Key}"}
        return Sub(json.dumps(values, sort_keys=True), Role=GetAtt(self.sagemaker_role, "Arn"), Key=self.key_arn)

    @property
    def _qa_report_link(self) -> Sub:
        """The QA test build's report page. A URL at create time (only the build id is a run
        variable), so CodePipeline's URL check on ExternalEntityLink holds."""
        return Sub(
            "https://${AWS::Region}.console.aws.amazon.com/codesuite/codebuild/${AWS::AccountId}/projects/"
            "${Project}/build/#{QATestVariables.TEST_BUILD_ID}/reports?region=${AWS::Region}",
            Project=Ref(self.projects["endpoint-test"]),
        )

    @cached_property
    def stages(self) -> list[Stage]:
        """The pipeline's stages as data (see pipeline.stages)."""
        refs = PipelineRefs(
            connection_arn=self.connection_arn,
            repository=self.config.source.github.full_repository_id,
            branch=self.config.source.github.branch,
            lint_project=Ref(self.projects["lint"]),
            train_project=Ref(self.projects["train"]),
            test_project=Ref(self.projects["endpoint-test"]),
            deploy_role_arn=GetAtt(self.deploy_role, "Arn"),
            approval_topic_arn=Ref(self.approval_topic),
            approval_link=self._qa_report_link,
            stack_names={env: self.names.endpoint_stack(env) for env in ENVIRONMENTS},
            parameter_overrides={env: self._parameter_overrides(env) for env in ENVIRONMENTS},
        )
        return pipeline_stages(refs)

    @cached_property
    def pipeline(self) -> codepipeline.Pipeline:
        """The CodePipeline (V2) that runs every commit to the branch."""
        return self.template.add_resource(
            codepipeline.Pipeline(
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
                RestartExecutionOnUpdate=False,
                Tags=self.tags,
            )
        )

    def _outputs(self) -> None:
        values = {
            "PipelineName": (Ref(self.pipeline), "The CodePipeline"),
            "ArtifactBucketName": (Ref(self.artifact_bucket), "Pipeline artifacts (kept when the stack is deleted)"),
            "ModelBucketName": (
                Ref(self.model_bucket),
                "Models, data and code by commit (kept when the stack is deleted)",
            ),
            "ArtifactKeyArn": (self.key_arn, "Encrypts artifacts, models, logs and the approval topic (kept)"),
            "ApprovalTopicArn": (Ref(self.approval_topic), "Approvers' notification topic"),
            "GitHubConnectionArn": (self.connection_arn, "Complete its handshake once in the console if PENDING"),
            "SageMakerExecutionRoleArn": (
                GetAtt(self.sagemaker_role, "Arn"),
                "Role of the training jobs and endpoints",
            ),
            "QaEndpointStackName": (self.names.endpoint_stack("qa"), "Stack the pipeline deploys for QA"),
            "ProdEndpointStackName": (self.names.endpoint_stack("prod"), "Stack the pipeline deploys for production"),
            "QaEndpointName": (self.names.endpoint("qa"), "QA endpoint (stable name)"),
            "ProdEndpointName": (self.names.endpoint("prod"), "Production endpoint (stable name)"),
        }
        self.template.add_output([Output(k, Value=v, Description=d) for k, (v, d) in values.items()])

    def build(self) -> Template:
        """Assemble and return the template."""
        # The test buildspec's `endpoint-tests` report resolves to this group by name, so nothing
        # references it: add it explicitly.
        _ = (self.pipeline, self.report_group)
        self._outputs()
        return self.template


def build_pipeline_template(config: PipelineConfig) -> Template:
    """The pipeline stack's template for a config."""
    return PipelineStack(config).build()
