"""An environment's endpoint stack: SageMaker Model, EndpointConfig and an Endpoint with a stable name.

One template per environment (`endpoint-<env>.json`), built from the config at synth time: the
endpoint's name, instance type and count, volume encryption and tags are fixed in it. Only what
changes with every run comes in as parameters: the model, image, code and version from the train
step (`RUN_PARAMETERS`, in the environment's `parameters_file`), and the pipeline stack's role and key from the
deploy action. Each run brings a new model, so the Model and EndpointConfig are replaced
(CloudFormation names them) while the Endpoint keeps its name and is updated in place: callers
never see a new endpoint, and no old endpoint is left billing.
"""

from __future__ import annotations

import hashlib
from functools import cached_property

from troposphere import (
    FindInMap,
    GetAtt,
    Parameter,
    Ref,
    Sub,
    Template,
    applicationautoscaling,
    cloudwatch,
    sagemaker,
)

from pipeline import monitoring
from pipeline.config import DataCapture, Deployment, Environment, Monitoring, PipelineConfig
from pipeline.instances import has_instance_storage
from pipeline.stacks.parts import Part, assemble, output
from pipeline.tags import cfn_tags, project_tags

VARIANT = "AllTraffic"
# The parameters the train step supplies to every environment, in a file per environment (the
# serving image differs where one environment runs CPUs and another GPUs).
RUN_PARAMETERS = ("ModelDataUrl", "ImageUri", "SourceDir", "ModelVersion")
# With monitoring anywhere, the train step also writes its baseline's files: every environment's
# template declares them (CloudFormation refuses a parameter the template does not declare, and every
# file has them), and outputs them as the baseline of the model it serves.
BASELINE_PARAMETERS = ("BaselineStatisticsUri", "BaselineConstraintsUri")
# Outputs the deploy action hands the endpoint test as variables: what it checks the endpoint serves.
SERVING_OUTPUTS = ("EndpointConfigName", "ModelName", "ModelVersion")
ENVIRONMENT_TAG = "sagemaker-cd:environment"
# Application Auto Scaling's names for a SageMaker variant's instance count (RegisterScalableTarget:
# ServiceNamespace, ScalableDimension; ResourceId endpoint/<endpoint>/variant/<variant>) and the
# predefined target-tracking metric (PredefinedMetricSpecification.PredefinedMetricType).
SCALING_NAMESPACE = "sagemaker"
SCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SCALING_METRIC = "SageMakerVariantInvocationsPerInstance"
# The service-linked role Application Auto Scaling uses for SageMaker variants when a target names
# no RoleARN (AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint).
SCALING_SERVICE = "sagemaker.application-autoscaling.amazonaws.com"
SCALING_ROLE = "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
SCALABLE_TARGET_ID = "ScalableTarget"
SCALING_POLICY_ID = "ScalingPolicy"
INSTANCE_TYPE_OUTPUT = "InstanceType"
# Asynchronous Inference's scaling (SageMaker Developer Guide, "Autoscale an asynchronous endpoint",
# https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html): target tracking on
# the queue per instance, and, when the count may reach zero, a step policy that adds an instance as
# soon as requests wait with none to serve them (the alarm on HasBacklogWithoutCapacity).
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
NO_CAPACITY_METRIC = "HasBacklogWithoutCapacity"
SCALE_FROM_ZERO_POLICY_ID = "ScaleFromZeroPolicy"
BACKLOG_ALARM_ID = "BacklogWithoutCapacityAlarm"
BACKLOG_ALARM_PERIOD_S = 60
SCALE_FROM_ZERO_COOLDOWN_S = 300


def parameters_file(env_name: str) -> str:
    """The file the train step writes an environment's run parameters to."""
    return f"endpoint-parameters-{env_name}.json"


def run_parameters(config: PipelineConfig) -> tuple[str, ...]:
    """The parameters the train step writes for this config's endpoint stacks (an own container holds
    its code, a built-in algorithm has none of ours: no SourceDir)."""
    run = tuple(name for name in RUN_PARAMETERS if name != "SourceDir" or config.script_mode)
    return (*run, *BASELINE_PARAMETERS) if config.monitors else run


# The analyzer image's registry account per region (pipeline/data/images/model-monitor.json).
ANALYZER_REGISTRY_MAPPING = "AnalyzerRegistry"
MONITORING_SCHEDULE_ID = "MonitoringSchedule"
# The schedule's job: one instance, as the baseline job (scripts/baseline.py), and a runtime well
# within an hour so that an hourly run ends before the next (botocore MonitoringMaxRuntimeInSeconds:
# 1..86400).
MONITORING_INSTANCE_TYPE = "ml.m5.xlarge"
MONITORING_VOLUME_GB = 20
MONITORING_MAX_RUNTIME_S = 1800


def analyzer_registry() -> dict[str, dict[str, str]]:
    """Region -> {"Account": ...} of the analyzer image, as a template mapping."""
    return {region: {"Account": account} for region, account in monitoring.registry_accounts().items()}


def scaling_resource_id(endpoint_name: str) -> str:
    """Application Auto Scaling's ResourceId of the endpoint's one variant."""
    return f"endpoint/{endpoint_name}/variant/{VARIANT}"


def instance_type_suffix(instance_type: str) -> str:
    """A short, stable tag of an instance type for logical IDs: a new type, new IDs (see `scalable_target`)."""
    return hashlib.sha256(instance_type.encode()).hexdigest()[:8]


MODEL_VERSION_TAG = "sagemaker-cd:model-version"
# The content types SageMaker records as text rather than base64 (CaptureContentTypeHeader): the
# ones the endpoint tests send and the serving containers answer with.
CAPTURE_JSON_TYPES = ["application/json"]
CAPTURE_CSV_TYPES = ["text/csv"]
# CloudWatch metrics SageMaker publishes per endpoint and variant (namespace AWS/SageMaker,
# dimensions EndpointName and VariantName); ModelLatency is in microseconds.
ERRORS_METRIC, LATENCY_METRIC = "Invocation5XXErrors", "ModelLatency"
MICROSECONDS_PER_MS = 1000


class EndpointDataCaptureConfig(sagemaker.DataCaptureConfig):
    """AWS::SageMaker::EndpointConfig DataCaptureConfig as cfn-lint's schema has it: troposphere
    gives this name to the InferenceExperiment's shape (its last definition wins)."""

    props = {
        "CaptureContentTypeHeader": (sagemaker.CaptureContentTypeHeader, False),
        "CaptureOptions": ([sagemaker.CaptureOption], True),
        "DestinationS3Uri": (str, True),
        "EnableCapture": (bool, False),
        "InitialSamplingPercentage": (int, True),
        "KmsKeyId": (str, False),
    }


def _isolation_skipped(why: str) -> dict[str, object]:
    """The Model's checkov metadata for a model without network isolation, and why."""
    return {"Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_370", "comment": why}]}}}


class EndpointStack:
    """Builds one environment's endpoint template from a validated config."""

    def __init__(self, config: PipelineConfig, env: Environment):
        self.config = config
        self.env = env

    @property
    def file_name(self) -> str:
        """The template's file among the synthesized ones."""
        return f"endpoint-{self.env.name}.json"

    @property
    def region(self) -> str:
        """The region the stack deploys to: the environment's, else the pipeline's."""
        return self.env.region or self.config.region

    @property
    def endpoint_name(self) -> str:
        """The endpoint's stable name."""
        return self.config.names.endpoint(self.env.name)

    @property
    def encrypt_volume(self) -> bool:
        """Whether the hosts' storage volume takes the stack's KMS key: not on instance types with
        local NVMe storage, where SageMaker refuses one (the hardware encrypts it), and not when
        serverless, which has no instance or volume of ours (KmsKeyId is documented as the key of
        "the storage volume attached to the ML compute instance")."""
        return self.env.serverless is None and not has_instance_storage(self.env.instance_type)

    @property
    def guardrails(self) -> Deployment | None:
        """The environment's blue/green update policy, or None for SageMaker's default update."""
        return self.env.guardrails

    @property
    def capture(self) -> DataCapture | None:
        """The environment's data capture, or None."""
        return self.env.capture

    @property
    def monitoring(self) -> Monitoring | None:
        """The environment's data-quality schedule, or None."""
        return self.env.monitoring

    @property
    def pipeline_parameters(self) -> tuple[str, ...]:
        """The parameters the deploy action supplies from the pipeline stack: the role, the key
        where the volume or the captured data takes it, where captured data and monitoring reports go."""
        names = ["ExecutionRoleArn"]
        if self.encrypt_volume or self.capture or self.env.asynchronous:
            names.append("KmsKeyArn")
        if self.capture:
            names.append("DataCaptureS3Uri")
        if self.env.asynchronous:
            names += ["AsyncOutputS3Uri", "AsyncFailureS3Uri"]
            if self.env.asynchronous.notifications:
                names.append("AsyncTopicArn")
        if self.monitoring:
            names.append("MonitoringS3Uri")
        return tuple(names)

    # ----- parameters ---------------------------------------------------------------------
    @cached_property
    def parameters(self) -> dict[str, Parameter]:
        """Run values from the train step, then the pipeline stack's role (and key)."""
        specs = {
            "ModelDataUrl": dict(
                Type="String", Description="s3:// URI of the trained model.tar.gz", AllowedPattern="^s3://.+"
            ),
            "ImageUri": dict(Type="String", Description="Inference container image URI"),
            "SourceDir": dict(
                Type="String", Description="s3:// URI of the script-mode sourcedir.tar.gz", AllowedPattern="^s3://.+"
            ),
            "ModelVersion": dict(Type="String", Description="The training job that produced the model"),
            "ExecutionRoleArn": dict(Type="String", Description="Role SageMaker assumes to fetch the model and code"),
            "KmsKeyArn": dict(Type="String", Description="Key for the endpoint's storage volume and captured data"),
            "DataCaptureS3Uri": dict(
                Type="String",
                Description="s3:// prefix the endpoint's captured requests and responses go to",
                AllowedPattern="^s3://.+",
            ),
            "BaselineStatisticsUri": dict(
                Type="String",
                Description="s3:// URI of the training data's statistics.json (Model Monitor baseline)",
                AllowedPattern="^s3://.+",
            ),
            "BaselineConstraintsUri": dict(
                Type="String",
                Description="s3:// URI of the training data's constraints.json (Model Monitor baseline)",
                AllowedPattern="^s3://.+",
            ),
            "MonitoringS3Uri": dict(
                Type="String",
                Description="s3:// prefix the monitoring schedule's reports go to",
                AllowedPattern="^s3://.+",
            ),
            "AsyncOutputS3Uri": dict(
                Type="String",
                Description="s3:// prefix the asynchronous endpoint writes its answers to",
                AllowedPattern="^s3://.+",
            ),
            "AsyncFailureS3Uri": dict(
                Type="String",
                Description="s3:// prefix the asynchronous endpoint writes its failed requests' errors to",
                AllowedPattern="^s3://.+",
            ),
            "AsyncTopicArn": dict(Type="String", Description="SNS topic told of every asynchronous answer and failure"),
        }
        names = (*run_parameters(self.config), *self.pipeline_parameters)
        return {name: Parameter(name, **specs[name]) for name in names}

    def _ref(self, name: str) -> Ref:
        return Ref(self.parameters[name])

    @cached_property
    def tags(self) -> dict[str, object]:
        """The project's tags, the environment and the version of the model serving."""
        return project_tags(self.config, {ENVIRONMENT_TAG: self.env.name, MODEL_VERSION_TAG: self._ref("ModelVersion")})

    # ----- resources ----------------------------------------------------------------------
    @cached_property
    def model(self) -> sagemaker.Model:
        """The trained model in the framework's serving container (script mode), in a built-in
        algorithm's image (the model artifact only, no environment, and no network: the container fetches
        nothing), or in the project's own serving image (model.container: its code is in the image, its
        environment its own)."""
        environment: dict[str, object] = {}
        if self.config.builtin:  # SageMaker's own code, nothing fetched at start: no network
            network: dict[str, object] = {"EnableNetworkIsolation": True}
        elif self.config.model.own_container:
            network = _isolation_skipped(
                "Own container: what it needs at run time is the container's own contract, which network "
                "isolation could break; turning it on is the image author's call (not configurable yet)."
            )
        else:
            environment = self.config.framework.serving_environment(
                entry_point=self.config.model.inference_entry_point,
                code_uri=self._ref("SourceDir"),
                region=Ref("AWS::Region"),
                version=self.config.model.framework_version,
            )
            network = _isolation_skipped(
                "Script mode: the container fetches SAGEMAKER_SUBMIT_DIRECTORY from S3 at start, which network "
                "isolation would block. Repacking the code into model.tar.gz would allow it."
            )
        return sagemaker.Model(
            "Model",
            ExecutionRoleArn=self._ref("ExecutionRoleArn"),
            PrimaryContainer=sagemaker.ContainerDefinition(
                Image=self._ref("ImageUri"),
                ModelDataUrl=self._ref("ModelDataUrl"),
                **({"Environment": environment} if environment else {}),
            ),
            Tags=cfn_tags(self.tags),
            **network,
        )

    @cached_property
    def endpoint_config(self) -> sagemaker.EndpointConfig:
        """The environment's capacity for this model; replaced on every run."""
        volume_key = {"KmsKeyId": self._ref("KmsKeyArn")} if self.encrypt_volume else {}
        capture = {"DataCaptureConfig": self.data_capture_config} if self.data_capture_config else {}
        asynchronous = {"AsyncInferenceConfig": self.async_inference_config} if self.env.asynchronous else {}
        return sagemaker.EndpointConfig(
            "EndpointConfig",
            ProductionVariants=[
                sagemaker.ProductionVariant(
                    VariantName=VARIANT,
                    ModelName=GetAtt(self.model, "ModelName"),
                    InitialVariantWeight=1.0,
                    **self.capacity,
                )
            ],
            Tags=cfn_tags(self.tags),
            **volume_key,
            **self._serverless_metadata,
            **capture,
            **asynchronous,
        )

    @cached_property
    def async_inference_config(self) -> sagemaker.AsyncInferenceConfig:
        """Where an asynchronous endpoint writes answers and failures (the model bucket, under the
        environment's prefixes, with the stack's key), whom it tells (the project's topic, for
        success and error alike), and how many requests each instance takes at once."""
        settings = self.env.asynchronous
        assert settings is not None
        notify: dict[str, object] = {}
        if settings.notifications:
            topic = self._ref("AsyncTopicArn")
            notify["NotificationConfig"] = sagemaker.AsyncInferenceNotificationConfig(
                SuccessTopic=topic, ErrorTopic=topic
            )
        client: dict[str, object] = {}
        if settings.max_concurrent_invocations_per_instance is not None:
            client["ClientConfig"] = sagemaker.AsyncInferenceClientConfig(
                MaxConcurrentInvocationsPerInstance=settings.max_concurrent_invocations_per_instance
            )
        return sagemaker.AsyncInferenceConfig(
            OutputConfig=sagemaker.AsyncInferenceOutputConfig(
                S3OutputPath=self._ref("AsyncOutputS3Uri"),
                S3FailurePath=self._ref("AsyncFailureS3Uri"),
                KmsKeyId=self._ref("KmsKeyArn"),
                **notify,
            ),
            **client,
        )

    @cached_property
    def data_capture_config(self) -> EndpointDataCaptureConfig | None:
        """Requests and responses SageMaker samples into the model bucket, under the environment's
        prefix, encrypted with the stack's key; JSON and CSV kept as text."""
        capture = self.capture
        if capture is None:
            return None
        options = [sagemaker.CaptureOption(CaptureMode=what.capitalize()) for what in capture.capture]
        return EndpointDataCaptureConfig(
            EnableCapture=True,
            InitialSamplingPercentage=capture.sampling_percent,
            DestinationS3Uri=self._ref("DataCaptureS3Uri"),
            KmsKeyId=self._ref("KmsKeyArn"),
            CaptureOptions=options,
            CaptureContentTypeHeader=sagemaker.CaptureContentTypeHeader(
                JsonContentTypes=CAPTURE_JSON_TYPES, CsvContentTypes=CAPTURE_CSV_TYPES
            ),
        )

    # ----- guardrails ---------------------------------------------------------------------
    def _alarm(self, logical_id: str, metric: str, suffix: str, **settings: object) -> cloudwatch.Alarm:
        guardrails = self.guardrails
        assert guardrails is not None
        return cloudwatch.Alarm(
            logical_id,
            AlarmName=self.config.names.endpoint_alarm(self.env.name, suffix),
            Namespace="AWS/SageMaker",
            MetricName=metric,
            Dimensions=[
                cloudwatch.MetricDimension(Name="EndpointName", Value=self.endpoint_name),
                cloudwatch.MetricDimension(Name="VariantName", Value=VARIANT),
            ],
            Period=guardrails.alarms.period_s,
            EvaluationPeriods=guardrails.alarms.evaluation_periods,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            # No traffic is no evidence against the new model: an idle endpoint must not roll back.
            TreatMissingData="notBreaching",
            # Not the model version: an alarm is not replaced, nor updated, by each run.
            Tags=cfn_tags(project_tags(self.config, {ENVIRONMENT_TAG: self.env.name})),
            **settings,
        )

    @property
    def latency_budget_ms(self) -> int:
        """The model latency that trips the latency alarm: the configured one, else the endpoint test's budget."""
        guardrails = self.guardrails
        configured = guardrails.alarms.latency_ms if guardrails else None
        return configured or self.config.endpoint_tests.latency_budget_ms

    @cached_property
    def alarms(self) -> list[cloudwatch.Alarm]:
        """The alarms that roll an update back: 5XX errors and model latency of the endpoint's
        variant (none without guardrails)."""
        guardrails = self.guardrails
        if guardrails is None:
            return []
        return [
            self._alarm(
                "ErrorsAlarm",
                ERRORS_METRIC,
                "5xx-errors",
                AlarmDescription=f"{self.endpoint_name}: {guardrails.alarms.errors_5xx} or more 5XX errors in "
                f"{guardrails.alarms.period_s} s; rolls back an update in progress",
                Statistic="Sum",
                Threshold=float(guardrails.alarms.errors_5xx),
            ),
            self._alarm(
                "LatencyAlarm",
                LATENCY_METRIC,
                "model-latency",
                AlarmDescription=f"{self.endpoint_name}: average model latency of {self.latency_budget_ms} ms or "
                f"more over {guardrails.alarms.period_s} s; rolls back an update in progress",
                Statistic="Average",
                # ModelLatency is published in microseconds; no Unit here, so a unit CloudWatch
                # stores it under cannot leave the alarm without data.
                Threshold=float(self.latency_budget_ms * MICROSECONDS_PER_MS),
            ),
        ]

    @cached_property
    def deployment_config(self) -> sagemaker.DeploymentConfig | None:
        """Blue/green with the configured traffic shifting, rolled back by the alarms; None leaves
        SageMaker's default (all at once, no baking, no alarms)."""
        guardrails = self.guardrails
        if guardrails is None:
            return None
        sizes: dict[str, object] = {}
        if guardrails.traffic == "canary":
            sizes["CanarySize"] = sagemaker.CapacitySize(Type="CAPACITY_PERCENT", Value=guardrails.canary_percent)
        elif guardrails.traffic == "linear":
            sizes["LinearStepSize"] = sagemaker.CapacitySize(
                Type="CAPACITY_PERCENT", Value=guardrails.linear_step_percent
            )
        timeout = {"MaximumExecutionTimeoutInSeconds": guardrails.max_execution_s} if guardrails.max_execution_s else {}
        return sagemaker.DeploymentConfig(
            BlueGreenUpdatePolicy=sagemaker.BlueGreenUpdatePolicy(
                TrafficRoutingConfiguration=sagemaker.TrafficRoutingConfig(
                    Type=(guardrails.traffic or "all_at_once").upper(),
                    WaitIntervalInSeconds=guardrails.wait_s,
                    **sizes,
                ),
                TerminationWaitInSeconds=guardrails.termination_wait_s,
                **timeout,
            ),
            AutoRollbackConfiguration=sagemaker.AutoRollbackConfig(
                Alarms=[sagemaker.Alarm(AlarmName=Ref(alarm)) for alarm in self.alarms]
            ),
        )

    @property
    def capacity(self) -> dict[str, object]:
        """The variant's compute: instances (type and count), or a ServerlessConfig instead."""
        serverless = self.env.serverless
        if serverless is None:
            return {"InstanceType": self.env.instance_type, "InitialInstanceCount": self.env.initial_instance_count}
        config: dict[str, int] = {"MemorySizeInMB": serverless.memory_mb, "MaxConcurrency": serverless.max_concurrency}
        if serverless.provisioned_concurrency is not None:
            config["ProvisionedConcurrency"] = serverless.provisioned_concurrency
        return {"ServerlessConfig": sagemaker.ServerlessConfig(**config)}

    @property
    def _serverless_metadata(self) -> dict[str, object]:
        if self.env.serverless is None:
            return {}
        reason = (
            "Serverless: no instance, so no storage volume for KmsKeyId to key "
            "(CreateEndpointConfig API reference: the key of the volume attached to the ML compute instance)."
        )
        return {"Metadata": {"checkov": {"skip": [{"id": "CKV_AWS_98", "comment": reason}]}}}

    @cached_property
    def endpoint(self) -> sagemaker.Endpoint:
        """The endpoint, under the same name on every run, so each run updates it in place."""
        return sagemaker.Endpoint(
            "Endpoint",
            EndpointName=self.endpoint_name,
            EndpointConfigName=GetAtt(self.endpoint_config, "EndpointConfigName"),
            Tags=cfn_tags(self.tags),
            **self.retained_variant_properties,
            **({"DeploymentConfig": self.deployment_config} if self.deployment_config else {}),
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

    @property
    def retained_variant_properties(self) -> dict[str, object]:
        """When autoscaled: an update keeps the instance count autoscaling chose (UpdateEndpoint
        RetainAllVariantProperties) instead of resetting it to InitialInstanceCount, except the data
        capture settings, which come from the new endpoint config (ExcludeRetainedVariantProperties;
        botocore sagemaker VariantPropertyType: DesiredInstanceCount, DesiredWeight, DataCaptureConfig)."""
        if self.env.autoscaling is None:
            return {}
        return {
            "RetainAllVariantProperties": True,
            "ExcludeRetainedVariantProperties": [sagemaker.VariantProperty(VariantPropertyType="DataCaptureConfig")],
        }

    # ----- autoscaling --------------------------------------------------------------------
    @property
    def scaling_suffix(self) -> str:
        """What the scaling resources' logical IDs end with: the instance type's tag."""
        return instance_type_suffix(self.env.instance_type)

    @cached_property
    def scalable_target(self) -> applicationautoscaling.ScalableTarget:
        """The variant's instance count, registered with Application Auto Scaling after the endpoint
        exists. No RoleARN: the service-linked role AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint
        is used (created on first use; the deploy role may create it).

        Its logical ID carries the instance type: a new type means a new ID, so CloudFormation
        registers the target afresh after the endpoint update (its ResourceId reads the endpoint's
        name, so it comes after the endpoint; PrepareStack deregistered the old one first, as AWS
        requires for an instance type change). RetainExceptOnCreate: the old ID's removal in the
        cleanup phase must not deregister the same variant's new registration, while a rolled-back
        first create still removes it; the endpoint's delete deregisters it (AWS: "Delete an
        endpoint configured for auto scaling")."""
        scaling = self.env.autoscaling
        assert scaling is not None
        return applicationautoscaling.ScalableTarget(
            f"{SCALABLE_TARGET_ID}{self.scaling_suffix}",
            ServiceNamespace=SCALING_NAMESPACE,
            ScalableDimension=SCALING_DIMENSION,
            ResourceId=Sub(scaling_resource_id("${EndpointName}"), EndpointName=GetAtt(self.endpoint, "EndpointName")),
            MinCapacity=scaling.min_instances,
            MaxCapacity=scaling.max_instances,
            # Project and environment (not the model version: a run must not touch the target), so
            # only this environment's PrepareStack may deregister it (its role's condition).
            Tags=cfn_tags(project_tags(self.config, {ENVIRONMENT_TAG: self.env.name})),
            DeletionPolicy="RetainExceptOnCreate",
            UpdateReplacePolicy="Retain",
        )

    @cached_property
    def scaling_policy(self) -> applicationautoscaling.ScalingPolicy:
        """Target tracking on invocations per instance; deregistering the target deletes it too, so it
        follows the target's logical ID and deletion policy (same policy name: PutScalingPolicy
        creates or updates)."""
        scaling = self.env.autoscaling
        assert scaling is not None
        if self.env.asynchronous is None:
            name, target = "invocations-per-instance", scaling.target_invocations_per_instance
            metric: dict[str, object] = {
                "PredefinedMetricSpecification": applicationautoscaling.PredefinedMetricSpecification(
                    PredefinedMetricType=SCALING_METRIC
                )
            }
        else:
            name, target = "backlog-per-instance", scaling.target_backlog_per_instance
            metric = {
                "CustomizedMetricSpecification": applicationautoscaling.CustomizedMetricSpecification(
                    MetricName=BACKLOG_METRIC,
                    Namespace="AWS/SageMaker",
                    Dimensions=[applicationautoscaling.MetricDimension(Name="EndpointName", Value=self.endpoint_name)],
                    Statistic="Average",
                )
            }
        return applicationautoscaling.ScalingPolicy(
            f"{SCALING_POLICY_ID}{self.scaling_suffix}",
            PolicyName=f"{self.endpoint_name}-{name}",
            PolicyType="TargetTrackingScaling",
            ScalingTargetId=Ref(self.scalable_target),
            TargetTrackingScalingPolicyConfiguration=applicationautoscaling.TargetTrackingScalingPolicyConfiguration(
                **metric,
                TargetValue=target,
                ScaleInCooldown=scaling.scale_in_cooldown_s,
                ScaleOutCooldown=scaling.scale_out_cooldown_s,
            ),
            DeletionPolicy="RetainExceptOnCreate",
            UpdateReplacePolicy="Retain",
        )

    @property
    def scales_from_zero(self) -> bool:
        """Whether an asynchronous environment's instances may all go: then a backlog with no
        instance must bring one back (target tracking alone waits for a backlog over its target)."""
        scaling = self.env.autoscaling
        return self.env.asynchronous is not None and scaling is not None and scaling.min_instances == 0

    @cached_property
    def scale_from_zero_policy(self) -> applicationautoscaling.ScalingPolicy:
        """One more instance whenever the alarm says requests wait with none to serve them (AWS's
        "scale up from zero" policy, async-inference-autoscale); same lifecycle as the target's."""
        return applicationautoscaling.ScalingPolicy(
            f"{SCALE_FROM_ZERO_POLICY_ID}{self.scaling_suffix}",
            PolicyName=f"{self.endpoint_name}-scale-from-zero",
            PolicyType="StepScaling",
            ScalingTargetId=Ref(self.scalable_target),
            StepScalingPolicyConfiguration=applicationautoscaling.StepScalingPolicyConfiguration(
                AdjustmentType="ChangeInCapacity",
                MetricAggregationType="Average",
                Cooldown=SCALE_FROM_ZERO_COOLDOWN_S,
                StepAdjustments=[
                    applicationautoscaling.StepAdjustment(MetricIntervalLowerBound=0, ScalingAdjustment=1)
                ],
            ),
            DeletionPolicy="RetainExceptOnCreate",
            UpdateReplacePolicy="Retain",
        )

    @cached_property
    def backlog_alarm(self) -> cloudwatch.Alarm:
        """Requests wait and the endpoint has no instance: starts the scale-from-zero policy."""
        return cloudwatch.Alarm(
            BACKLOG_ALARM_ID,
            AlarmName=self.config.names.endpoint_alarm(self.env.name, "backlog-without-capacity"),
            AlarmDescription=f"{self.endpoint_name}: requests are queued and no instance serves them; adds one",
            Namespace="AWS/SageMaker",
            MetricName=NO_CAPACITY_METRIC,
            Dimensions=[cloudwatch.MetricDimension(Name="EndpointName", Value=self.endpoint_name)],
            Statistic="Average",
            Period=BACKLOG_ALARM_PERIOD_S,
            EvaluationPeriods=2,
            DatapointsToAlarm=2,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData="missing",
            AlarmActions=[Ref(self.scale_from_zero_policy)],
            Tags=cfn_tags(project_tags(self.config, {ENVIRONMENT_TAG: self.env.name})),
        )

    @property
    def scaling_alarms(self) -> list[cloudwatch.Alarm]:
        """The alarms that drive scaling (not rollback): the backlog alarm where the count may reach zero."""
        return [self.backlog_alarm] if self.scales_from_zero else []

    def autoscaling(self) -> Part:
        """The scalable target and its policy, with the instance type PrepareStack compares the next
        template's with; nothing when the environment is not autoscaled."""
        if self.env.autoscaling is None:
            return Part([])
        from_zero = [self.scale_from_zero_policy, self.backlog_alarm] if self.scales_from_zero else []
        return Part(
            [self.scalable_target, self.scaling_policy, *from_zero],
            [
                output(
                    INSTANCE_TYPE_OUTPUT, self.env.instance_type, "Instance type the scalable target was registered for"
                )
            ],
        )

    # ----- data-quality monitoring ----------------------------------------------------------
    @cached_property
    def monitoring_schedule(self) -> sagemaker.MonitoringSchedule:
        """Model Monitor's data-quality job on the endpoint's captured traffic, on the configured
        schedule, against this run's baseline (an inline job definition: one resource, no second
        name to keep). Named like the endpoint: one schedule per endpoint."""
        settings = self.monitoring
        assert settings is not None
        key = self._ref("KmsKeyArn")
        image = Sub(
            "${Account}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/" + monitoring.repository(),
            Account=FindInMap(ANALYZER_REGISTRY_MAPPING, Ref("AWS::Region"), "Account"),
        )
        cluster: dict[str, object] = {
            "InstanceCount": 1,
            "InstanceType": MONITORING_INSTANCE_TYPE,
            "VolumeSizeInGB": MONITORING_VOLUME_GB,
        }
        if not has_instance_storage(MONITORING_INSTANCE_TYPE):
            cluster["VolumeKmsKeyId"] = key
        return sagemaker.MonitoringSchedule(
            MONITORING_SCHEDULE_ID,
            MonitoringScheduleName=self.endpoint_name,
            EndpointName=GetAtt(self.endpoint, "EndpointName"),
            MonitoringScheduleConfig=sagemaker.MonitoringScheduleConfig(
                MonitoringType="DataQuality",
                ScheduleConfig=sagemaker.ScheduleConfig(ScheduleExpression=monitoring.SCHEDULES[settings.schedule]),
                MonitoringJobDefinition=sagemaker.MonitoringJobDefinition(
                    BaselineConfig=sagemaker.BaselineConfig(
                        StatisticsResource=sagemaker.StatisticsResource(S3Uri=self._ref("BaselineStatisticsUri")),
                        ConstraintsResource=sagemaker.ConstraintsResource(S3Uri=self._ref("BaselineConstraintsUri")),
                    ),
                    MonitoringAppSpecification=sagemaker.MonitoringAppSpecification(ImageUri=image),
                    MonitoringInputs=[
                        sagemaker.MonitoringInput(
                            EndpointInput=sagemaker.EndpointInput(
                                EndpointName=GetAtt(self.endpoint, "EndpointName"),
                                LocalPath=monitoring.ENDPOINT_INPUT_PATH,
                                S3InputMode="File",
                                S3DataDistributionType="FullyReplicated",
                            )
                        )
                    ],
                    MonitoringOutputConfig=sagemaker.MonitoringOutputConfig(
                        KmsKeyId=key,
                        MonitoringOutputs=[
                            sagemaker.MonitoringOutput(
                                S3Output=sagemaker.S3Output(
                                    LocalPath=monitoring.OUTPUT_PATH,
                                    S3Uri=self._ref("MonitoringS3Uri"),
                                    S3UploadMode="EndOfJob",
                                )
                            )
                        ],
                    ),
                    MonitoringResources=sagemaker.MonitoringResources(ClusterConfig=sagemaker.ClusterConfig(**cluster)),
                    RoleArn=self._ref("ExecutionRoleArn"),
                    StoppingCondition=sagemaker.StoppingCondition(MaxRuntimeInSeconds=MONITORING_MAX_RUNTIME_S),
                ),
            ),
            # Not the model version: the schedule is not replaced, nor updated, by each run's tag.
            Tags=cfn_tags(project_tags(self.config, {ENVIRONMENT_TAG: self.env.name})),
        )

    def monitored(self) -> Part:
        """The schedule (where the environment monitors), and the baseline of the model serving
        (where the config monitors anywhere: the train step writes it for every stack)."""
        outputs = []
        if self.config.monitors:
            outputs = [
                output(name, self._ref(name), f"Model Monitor baseline of the model now serving ({name})")
                for name in BASELINE_PARAMETERS
            ]
        if self.monitoring is None:
            return Part([], outputs)
        schedule = self.monitoring_schedule
        return Part(
            [schedule],
            [*outputs, output(f"{MONITORING_SCHEDULE_ID}Name", self.endpoint_name, "Data-quality monitoring schedule")],
            mappings={ANALYZER_REGISTRY_MAPPING: analyzer_registry()},
        )

    # ----- assembly -----------------------------------------------------------------------
    def serving(self) -> Part:
        """Model, config and endpoint, with what the pipeline and `make status` read back."""
        return Part(
            [self.model, self.endpoint_config, self.endpoint],
            [
                output("EndpointName", GetAtt(self.endpoint, "EndpointName"), "Invoke this endpoint"),
                output("EndpointArn", Ref(self.endpoint), "The endpoint's ARN"),
                output("ModelName", GetAtt(self.model, "ModelName"), "The SageMaker model now serving"),
                output("EndpointConfigName", GetAtt(self.endpoint_config, "EndpointConfigName"), "Its endpoint config"),
                output("ModelVersion", self._ref("ModelVersion"), "Training job of the model now serving"),
                output("ModelDataUrl", self._ref("ModelDataUrl"), "The model artifact now serving"),
                # Repacked (PyTorch >= 1.2, TensorFlow): the container reads code/ inside the model,
                # not SourceDir; said here, where the code the artifact holds came from.
                *(
                    [output("SourceDir", self._ref("SourceDir"), "The code repacked into the model (code/)")]
                    if self.config.framework.repacks(self.config.model.framework_version)
                    else []
                ),
            ],
        )

    def guarding(self) -> Part:
        """The rollback alarms, named so `make status` and the console can find them."""
        return Part(
            self.alarms,
            [
                output(f"{alarm.title}Name", Ref(alarm), f"Rolls back an update: {alarm.MetricName}")
                for alarm in self.alarms
            ],
        )

    def build(self) -> Template:
        """Assemble and return the template."""
        return assemble(
            f"sagemaker-cd {self.config.project}, environment {self.env.name}: a SageMaker model behind "
            f"the stable endpoint {self.endpoint_name}, updated in place",
            [self.guarding(), self.serving(), self.autoscaling(), self.monitored()],
            parameters=list(self.parameters.values()),
        )
