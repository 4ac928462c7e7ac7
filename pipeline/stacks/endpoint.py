"""The endpoint stack: SageMaker Model, EndpointConfig and an Endpoint with a stable name.

The pipeline deploys this one template twice (QA, production). Each run brings a new model, so
the Model and EndpointConfig are replaced (CloudFormation names them), while the Endpoint keeps
its name and is updated in place to the new config: callers never see a new endpoint, and no old
endpoint is left billing.
"""

from __future__ import annotations

from troposphere import (
    And,
    Equals,
    GetAtt,
    If,
    Not,
    NoValue,
    Output,
    Parameter,
    Ref,
    Tags,
    Template,
    sagemaker,
)

from pipeline.names import SAGEMAKER_NAME

VARIANT = "AllTraffic"


def _parameters(template: Template) -> dict[str, Parameter]:
    """The values the pipeline passes per run (from the train step) and per environment."""
    specs = {
        "EndpointName": dict(
            Type="String",
            Description="Stable endpoint name for this environment; the same on every run",
            AllowedPattern=SAGEMAKER_NAME.pattern.pattern,
            MaxLength=SAGEMAKER_NAME.max_len,
        ),
        "ModelDataUrl": dict(
            Type="String", Description="s3:// URI of the trained model.tar.gz", AllowedPattern="^s3://.+"
        ),
        "ImageUri": dict(Type="String", Description="Inference container image URI"),
        "SourceDir": dict(
            Type="String", Description="s3:// URI of the script-mode sourcedir.tar.gz", AllowedPattern="^s3://.+"
        ),
        "EntryPoint": dict(Type="String", Description="Inference script inside SourceDir", Default="inference.py"),
        "InstanceType": dict(
            Type="String", Description="Hosting instance type", AllowedPattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$"
        ),
        "InitialInstanceCount": dict(Type="Number", Description="Instances behind the endpoint", MinValue=1, Default=1),
        "ModelVersion": dict(Type="String", Description="The training job that produced the model"),
        "ExecutionRoleArn": dict(Type="String", Description="Role SageMaker assumes to fetch the model and code"),
        "KmsKeyArn": dict(Type="String", Description="Key for the endpoint's storage volume", Default=""),
        "EncryptVolume": dict(
            Type="String",
            Description="false for instance types with local NVMe storage, which SageMaker encrypts itself",
            AllowedValues=["true", "false"],
            Default="true",
        ),
    }
    return {name: template.add_parameter(Parameter(name, **spec)) for name, spec in specs.items()}


def build_endpoint_template(tags: dict[str, str] | None = None) -> Template:
    """The endpoint stack's template; the same for every environment."""
    template = Template(
        Description="sagemaker-cd endpoint: a SageMaker model behind a stable, in-place-updated endpoint"
    )
    p = _parameters(template)
    template.add_condition(
        "UseVolumeKey", And(Equals(Ref(p["EncryptVolume"]), "true"), Not(Equals(Ref(p["KmsKeyArn"]), "")))
    )
    common_tags = Tags(**(tags or {})) + Tags({"sagemaker-cd:model-version": Ref(p["ModelVersion"])})

    model = template.add_resource(
        sagemaker.Model(
            "Model",
            ExecutionRoleArn=Ref(p["ExecutionRoleArn"]),
            PrimaryContainer=sagemaker.ContainerDefinition(
                Image=Ref(p["ImageUri"]),
                ModelDataUrl=Ref(p["ModelDataUrl"]),
                Environment={
                    "SAGEMAKER_PROGRAM": Ref(p["EntryPoint"]),
                    "SAGEMAKER_SUBMIT_DIRECTORY": Ref(p["SourceDir"]),
                    "SAGEMAKER_REGION": Ref("AWS::Region"),
                    "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                },
            ),
            Tags=common_tags,
            Metadata={
                "checkov": {
                    "skip": [
                        {
                            "id": "CKV_AWS_370",
                            "comment": "Script mode: the container fetches SAGEMAKER_SUBMIT_DIRECTORY from S3 at start, "
                            "which network isolation would block. Repacking the code into model.tar.gz would allow it.",
                        }
                    ]
                }
            },
        )
    )
    config = template.add_resource(
        sagemaker.EndpointConfig(
            "EndpointConfig",
            ProductionVariants=[
                sagemaker.ProductionVariant(
                    VariantName=VARIANT,
                    ModelName=GetAtt(model, "ModelName"),
                    InstanceType=Ref(p["InstanceType"]),
                    InitialInstanceCount=Ref(p["InitialInstanceCount"]),
                    InitialVariantWeight=1.0,
                )
            ],
            KmsKeyId=If("UseVolumeKey", Ref(p["KmsKeyArn"]), NoValue),
            Tags=common_tags,
        )
    )
    endpoint = template.add_resource(
        sagemaker.Endpoint(
            "Endpoint",
            EndpointName=Ref(p["EndpointName"]),
            EndpointConfigName=GetAtt(config, "EndpointConfigName"),
            Tags=common_tags,
            Metadata={
                "cfn_nag": {
                    "rules_to_suppress": [
                        {
                            "id": "W28",
                            "reason": "The stable name is the point: each run updates this endpoint in place.",
                        }
                    ]
                }
            },
        )
    )
    template.add_output(
        [
            Output("EndpointName", Value=GetAtt(endpoint, "EndpointName"), Description="Invoke this endpoint"),
            Output("EndpointArn", Value=Ref(endpoint)),
            Output("ModelName", Value=GetAtt(model, "ModelName")),
            Output("EndpointConfigName", Value=GetAtt(config, "EndpointConfigName")),
            Output("ModelVersion", Value=Ref(p["ModelVersion"]), Description="Training job of the model now serving"),
            Output("ModelDataUrl", Value=Ref(p["ModelDataUrl"])),
        ]
    )
    return template
