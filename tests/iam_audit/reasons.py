"""Why a role holds a permission that no recorded call, SageMaker job, CodeBuild build or
CloudFormation handler of the simulation exercises: what AWS does with it, and where AWS (or,
where AWS documents nothing, the AWS CDK's own constructs) says so.

Keys: (the service that assumes the role, or the role's logical ID; the IAM action). A reason is
a claim the offline suite cannot check; the README lists these as not proven.
"""

from __future__ import annotations

CODEPIPELINE = "codepipeline.amazonaws.com"
CODEBUILD = "codebuild.amazonaws.com"
EVENTBRIDGE = "events.amazonaws.com"

_PIPELINE = {
    # CodePipeline User Guide, "CodePipeline service role policy" (AllowS3BucketAccess,
    # AllowS3ObjectAccess) and "Configure server-side encryption for artifacts stored in Amazon S3".
    "s3:GetObject": "CodePipeline reads artifacts from the artifact store to hand them to actions",
    "s3:GetObjectVersion": "CodePipeline reads the artifact versions an execution produced",
    "s3:PutObject": "CodePipeline stores the source action's output artifact",
    "s3:GetBucketLocation": "CodePipeline checks the artifact store's region",
    "s3:GetBucketVersioning": "CodePipeline checks that the artifact store is versioned",
    "kms:Decrypt": "CodePipeline decrypts artifacts encrypted with the artifact store's key",
    "kms:GenerateDataKey": "CodePipeline encrypts the artifacts it stores with the artifact store's key",
    "kms:Encrypt": "CodePipeline encrypts with the artifact store's key (its documented key permissions)",
    "kms:DescribeKey": "CodePipeline validates the artifact store's key (its documented key permissions)",
    # CodeStarSourceConnection action reference, "Service role permissions".
    "codestar-connections:UseConnection": "the source action pulls the repository through the connection",
    "codeconnections:UseConnection": "the same, for a connection ARN issued under the codeconnections name",
    # CodeBuild action reference, "Service role permissions".
    "codebuild:StartBuild": "each build action starts a build of its project",
    "codebuild:BatchGetBuilds": "each build action polls its build for the result",
    "codebuild:StopBuild": "stopping or superseding an execution stops its running builds",
    # CloudFormation action reference, "Service role permissions".
    "cloudformation:CreateStack": "the deploy action (CREATE_UPDATE) creates the endpoint stack on the first run",
    "cloudformation:UpdateStack": "the deploy action updates the endpoint stack on later runs",
    "cloudformation:DescribeStacks": "the deploy action reads the stack's status and outputs",
    "cloudformation:DescribeStackEvents": "the deploy action reports the failing resource of a failed deploy",
    "cloudformation:CreateChangeSet": "change-set action modes of the CloudFormation action",
    "cloudformation:DescribeChangeSet": "change-set action modes of the CloudFormation action",
    "cloudformation:ExecuteChangeSet": "change-set action modes of the CloudFormation action",
    "cloudformation:DeleteChangeSet": "change-set action modes of the CloudFormation action",
    "cloudformation:ValidateTemplate": "the deploy action validates the template it passes (no resource ARN exists)",
    "iam:PassRole": "the deploy action passes the deploy role to CloudFormation (RoleArn)",
    # Manual approval action reference: NotificationArn.
    "sns:Publish": "the approval action notifies the approvers' topic",
}

# The UpdatePipeline role executes change sets on the pipeline stack with its own credentials (the
# stack has no service role), so CloudFormation calls each resource type's handlers as that role. No
# stage script makes these calls: CloudFormation does, for a change set the simulation cannot
# execute (moto cannot create the pipeline stack). Source: the registry schemas' handler
# permissions (cfn-lint's copy; test_least_privilege checks each action is one of them) and, for
# AWS::CodeBuild::Project, which has no registry handler, the CodeBuild API reference.
UPDATE_ROLE = "UpdatePipelineRole"
_SCHEMA = "listed by the registry schema's handlers of "
_UPDATE_PIPELINE = {
    **{
        f"codepipeline:{a}": _SCHEMA + "AWS::CodePipeline::Pipeline (update): a commit changes the stages"
        for a in (
            "GetPipeline",
            "UpdatePipeline",
            "GetPipelineState",
            "EnableStageTransition",
            "DisableStageTransition",
            "StartPipelineExecution",
            "TagResource",
            "UntagResource",
        )
    },
    "iam:GetRole": _SCHEMA + "AWS::CodePipeline::Pipeline (update): it reads the pipeline's RoleArn",
    "codestar-connections:PassConnection": _SCHEMA
    + "AWS::CodePipeline::Pipeline (update): the source action's ConnectionArn",
    "codeconnections:PassConnection": "the same, for a connection ARN issued under the codeconnections name",
    **{
        f"codebuild:{a}": "CodeBuild API reference (AWS::CodeBuild::Project has no registry handler): "
        "a commit adds, changes or removes a build step's project"
        for a in ("BatchGetProjects", "CreateProject", "UpdateProject", "DeleteProject")
    },
    **{
        f"codebuild:{a}": _SCHEMA + "AWS::CodeBuild::ReportGroup (create, update, delete): a step's reports change"
        for a in ("CreateReportGroup", "UpdateReportGroup", "DeleteReportGroup", "BatchGetReportGroups")
    },
    **{
        f"events:{a}": _SCHEMA + "AWS::Events::Rule (create, update, delete): trigger and notification rules"
        for a in (
            "DescribeRule",
            "PutRule",
            "DeleteRule",
            "PutTargets",
            "RemoveTargets",
            "ListTargetsByRule",
            "TagResource",
            "UntagResource",
        )
    },
    "iam:PassRole": _SCHEMA + "AWS::CodePipeline::Pipeline and AWS::Events::Rule, and CodeBuild's CreateProject/"
    "UpdateProject (serviceRole): the project's existing roles, each to its own service",
    **{
        f"sns:{a}": _SCHEMA + "AWS::SNS::Topic (update) and AWS::SNS::TopicPolicy: subscribers and the topic policy"
        for a in (
            "GetTopicAttributes",
            "SetTopicAttributes",
            "Subscribe",
            "Unsubscribe",
            "ListSubscriptionsByTopic",
            "TagResource",
            "UntagResource",
            "ListTagsForResource",
        )
    },
    **{
        f"logs:{a}": _SCHEMA + "AWS::Logs::LogGroup (create, update, delete): a build step's log group"
        for a in (
            "CreateLogGroup",
            "DeleteLogGroup",
            "PutRetentionPolicy",
            "DeleteRetentionPolicy",
            "AssociateKmsKey",
            "TagResource",
            "UntagResource",
            "ListTagsForResource",
            "DescribeLogGroups",
            "GetDataProtectionPolicy",
        )
    },
    "codepipeline:ListTagsForResource": _SCHEMA + "AWS::CodePipeline::Pipeline (read, after an update)",
    "events:ListTagsForResource": _SCHEMA + "AWS::Events::Rule (read, after an update)",
    "sns:GetDataProtectionPolicy": _SCHEMA + "AWS::SNS::Topic (update, read)",
}

REASONS: dict[tuple[str, str], str] = {
    **{(UPDATE_ROLE, action): reason for action, reason in _UPDATE_PIPELINE.items()},
    **{(CODEPIPELINE, action): reason for action, reason in _PIPELINE.items()},
    (EVENTBRIDGE, "codepipeline:StartPipelineExecution"): (
        "EventBridge itself starts the pipeline when a rule (new training data, schedule) matches, no stage "
        "script does; EventBridge User Guide, 'Permissions for targets': a CodePipeline target needs a role "
        "that allows codepipeline:StartPipelineExecution on the pipeline"
    ),
    (CODEBUILD, "s3:GetBucketVersioning"): (
        "CodeBuild fetches versioned input artifacts from CodePipeline's store; the AWS CDK grants a "
        "pipeline's CodeBuild project s3:GetBucket* on the artifact bucket (CodeBuildAction: bucket.grantRead)"
    ),
    (CODEBUILD, "kms:Encrypt"): (
        "a step that stores an output artifact encrypts it with the project's EncryptionKey; the AWS CDK "
        "grants a project's role Encrypt/Decrypt/GenerateDataKey on that key (aws-codebuild Project.encryptionKey)"
    ),
    ("TrainRole", "kms:CreateGrant"): (
        "SageMaker API permissions reference, CreateTrainingJob: kms:CreateGrant is required of the caller "
        "when ResourceConfig has a VolumeKmsKeyId and the execution role has no policy permitting it; "
        "limited to grants for AWS resources"
    ),
    ("EndpointDeployRole", "iam:CreateServiceLinkedRole"): (
        "the first scalable target registered for a SageMaker variant in an account creates Application Auto "
        "Scaling's service-linked role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint, with the "
        "caller's permission (Application Auto Scaling User Guide, 'Service-linked roles'; the scalable "
        "target's create handler lists iam:CreateServiceLinkedRole); limited to that service's role"
    ),
    ("EndpointDeployRole", "sagemaker:AddTags"): (
        "the monitoring schedule carries the project's tags, and the Service Authorization Reference lists "
        "sagemaker:AddTags as a dependent action of sagemaker:CreateMonitoringSchedule (its registry schema's "
        "create handler does not list it); limited to this project's schedules by name"
    ),
    ("SageMakerExecutionRole", "kms:DescribeKey"): (
        "key metadata only; AWS KMS's default 'allow use of the key' statement gives it to principals that "
        "use a key through AWS services; not shown to be needed by SageMaker (cannot be tested offline)"
    ),
    ("TrainRole", "sagemaker:CreateModelPackage"): (
        "the Service Authorization Reference lists two resource types for CreateModelPackage, model-package "
        "(the version created, model-package/GROUP/N) and model-package-group; the simulation can name only "
        "the group from the request, so the grant on this project's group's versions is not exercised; "
        "SageMaker Developer Guide, 'Model Registry' IAM examples grant both"
    ),
}
