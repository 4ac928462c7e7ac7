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

REASONS: dict[tuple[str, str], str] = {
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
    ("SageMakerExecutionRole", "kms:DescribeKey"): (
        "key metadata only; AWS KMS's default 'allow use of the key' statement gives it to principals that "
        "use a key through AWS services; not shown to be needed by SageMaker (cannot be tested offline)"
    ),
}
