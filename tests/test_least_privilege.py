"""Least privilege, proven against the synthesized templates.

The module runs the pipeline's CodeBuild actions itself (tests/iam_audit/simulate.py): for the
sample config, a variant and the sample's pipeline for a branch (pipeline.branches: its own
roles and names, the main stack's buckets and key), each action's stage script runs under moto
with the environment CodeBuild would give it, while a botocore hook records every AWS call with
the role of the action's CodeBuild project. Then:

- every recorded call is allowed to that role (operation -> IAM actions, parameters -> ARNs and
  condition context, from the Service Authorization Reference; the role's policy resolved with
  the placeholders the simulation used);
- what SageMaker does with the execution role for the recorded training job and for the
  endpoint templates' models is allowed to the execution role;
- every create/read/update/delete handler permission of every resource in the endpoint templates
  is allowed to the role the deploy action passes to CloudFormation;
- every permission a role grants is used by one of those, or has a written reason
  (tests/iam_audit/reasons.py);
- every condition key is one its actions support, per the reference.

A new build step is picked up from the template (its project, role, environment and `make`
target); a new stage script from the Makefile recipe its step runs. Branches a plain run does
not reach are SCENARIOS below; add one for a new script's failure path.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import botocore.session
import pytest
import yaml
from botocore import xform_name

from pipeline.branches import for_branch
from pipeline.config import parse_config
from pipeline.stacks.branch import SHARED
from pipeline.stages import camel
from pipeline.synth import PIPELINE_TEMPLATE
from pipeline.tags import PROJECT_TAG

from iam_audit.derived import (
    HANDLERS,
    codebuild_requests,
    handler_requests,
    hosting_requests,
    monitoring_requests,
    processing_job_requests,
    resource_schema,
    training_job_requests,
    transform_job_requests,
)
from iam_audit.policy import (
    ACCOUNT,
    Placeholders,
    Request,
    Resolver,
    Statement,
    UnresolvableError,
    conditions_hold,
    is_allowed,
    wildcard_match,
)
from iam_audit.reasons import REASONS
from iam_audit.reference import call_requests, privilege, supports_condition_key
from iam_audit.simulate import (
    REPO,
    Makefile,
    Scenario,
    Simulated,
    Simulation,
    Stub,
    build_actions,
    classify,
)

SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _variant() -> dict:
    """What the sample does not exercise: S3 training data (an external bucket), spot training with
    checkpoints, a production host with instance storage (no volume key), another region, a
    data-quality monitoring schedule, an asynchronous environment, a batch transform, a framework whose
    model Train repacks and whose script writes to S3 (TensorFlow)."""
    data = copy.deepcopy(SAMPLE)
    data["project"] = "churn-model"
    data["region"] = "ap-southeast-2"
    data["training_data"] = {"s3_uri": "s3://shared-datasets/churn/v7/"}
    data["model"]["training"].update(spot=True, max_runtime_minutes=120, max_wait_minutes=240)
    data["environments"][1]["instance_type"] = "ml.m5d.xlarge"
    # An instance-based qa with a fixed count (the sample's is serverless).
    data["environments"][0] = {"name": "qa", "instance_type": "ml.m5.large", "initial_instance_count": 1}
    data["triggers"] = {"schedule": "rate(7 days)"}
    # Model Monitor on prod (the sample does not monitor): Train's baseline job, the schedule.
    data["environments"][1]["monitoring"] = {"schedule": "hourly"}
    # An asynchronous qa that scales to zero: its topic, output and failure prefixes, the scaling
    # alarm and step policy, and the endpoint test's S3 round trip.
    data["environments"][0]["asynchronous"] = {"max_concurrent_invocations_per_instance": 2}
    data["environments"][0]["autoscaling"] = {"min_instances": 0, "max_instances": 2}
    # A batch transform after qa, of data in a bucket of the team's own.
    data["batch_transform"] = {"after": "qa", "input": {"s3_uri": "s3://shared-datasets/churn/batch/"}}
    # TensorFlow: the script writes checkpoints to model_dir under models/; Train repacks the model
    # with the code under code/ (reads and writes models/), as for PyTorch.
    data["model"].update(framework="tensorflow", framework_version="2.19.0")
    return data


def _own_container() -> dict:
    """The sample with its own image (model.container): the BuildImage action pushes it, Train and
    the endpoints pull it from the project's repository."""
    data = copy.deepcopy(SAMPLE)
    data["project"] = "own-image"
    data["model"] = {
        "container": {"dockerfile": "examples/own-container/Dockerfile", "context": "examples/own-container"},
        "hyperparameters": {"seed": 7},
        "training": SAMPLE["model"]["training"],
    }
    return data


def _builtin() -> dict:
    """The sample as a built-in algorithm (XGBoost in algorithm mode): no code upload, channels
    under the training data, the same image for training and hosting."""
    data = copy.deepcopy(SAMPLE)
    data["project"] = "iris-xgboost"
    for field in ("framework", "framework_version", "source_dir", "entry_point", "inference_entry_point"):
        del data["model"][field]
    data["model"]["algorithm"] = {"name": "xgboost", "version": "1.7-1"}
    data["model"]["hyperparameters"] = {"objective": "binary:logistic", "num_round": 20}
    data["quality_gate"] = {"metric": "validation:error", "threshold": 0.1, "direction": "minimize"}
    return data


def _scenarios(name: str, config: dict, commit: dict, branch: str | None = None) -> list[Scenario]:
    """A whole run; one with a commit that changes what a commit may change without a redeploy
    (spot training, where the training data comes from); the train action's failure paths that
    make AWS calls of their own: interrupted while it waits, an upload of code or data failing.
    With `branch`: of that branch's pipeline, beside the config's main one."""
    local = config if "local_dir" in config["training_data"] else commit
    parsed = for_branch(parse_config(config, root=REPO), branch)
    names = parsed.names
    scenario = functools.partial(Scenario, branch=branch)
    failed_upload = Stub("s3", "UploadPart", 403, {"Error": {"Code": "AccessDenied", "Message": "simulated"}})
    return [
        scenario(name, config),
        scenario(f"{name}-changed-by-a-commit", config, commit=commit),
        *(
            scenario(
                f"{name}-{folder}-upload-fails",
                config,
                commit=local,
                actions=("Build/Train",),
                big_file_in=folder,
                stubs=(failed_upload,),
                expected_exit=1,
                must_call=("CreateMultipartUpload", "AbortMultipartUpload"),
            )
            # An own container's code is in its image: no source upload.
            for folder in (("data",) if "container" in config["model"] else ("source", "data"))
        ),
        *(
            scenario(
                f"{name}-{env}-first-create-failed{'-and-delete-fails' if delete_fails else ''}",
                config,
                actions=(f"{camel(env)}/PrepareStack",),
                stubs=_failed_first_create(names.endpoint_stack(env), delete_fails),
                expected_exit=1 if delete_fails else 0,
                must_call=("DescribeStackEvents",) if delete_fails else ("ListStackResources", "DeleteStack"),
            )
            for env in parsed.environment_names
            for delete_fails in (False, True)
        ),
        *(
            scenario(
                f"{name}-{env.name}-autoscaled-on-another-instance-type",
                config,
                actions=(f"{camel(env.name)}/PrepareStack",),
                stubs=_deployed_autoscaled_elsewhere(names.endpoint_stack(env.name)),
                # A serverless environment refuses (an instance-based endpoint cannot become serverless).
                expected_exit=1 if env.serverless else 0,
                must_call=("GetTemplate",) if env.serverless else ("GetTemplate", "DeregisterScalableTarget"),
            )
            for env in parsed.environments
        ),
        *(
            # A champion serves: Train reads its stack's ModelVersion output and describes that
            # job (gone here, in moto: the no-champion path, after the call the grant must allow).
            scenario(
                f"{name}-champion-serves",
                config,
                actions=("Build/Train",),
                stubs=(_champion_stack(names.endpoint_stack(parsed.champion_environment), names.project),),
                must_call=("DescribeStacks", "DescribeTrainingJob"),
            )
            for _ in ([parsed.champion_environment] if parsed.champion_environment else [])
        ),
        *(
            # The build is stopped while the transform job runs: the step stops the job.
            scenario(
                f"{name}-batch-transform-interrupted",
                config,
                actions=(f"{camel(parsed.batch_transform.after)}/BatchTransform",),
                interrupt_waits=True,
                stubs=(
                    Stub("sagemaker", "DescribeTransformJob", 200, {"TransformJobStatus": "InProgress"}),
                    Stub("sagemaker", "StopTransformJob"),
                ),
                expected_exit=1,
                must_call=("CreateTransformJob", "StopTransformJob"),
            )
            for _ in ([True] if parsed.batch_transform else [])
        ),
        *(_self_updates(name, config) if branch is None else []),  # branch pipelines have no UpdatePipeline
        scenario(
            f"{name}-train-interrupted",
            config,
            actions=("Build/Train",),
            job_status="InProgress",
            interrupt_waits=True,
            stubs=(Stub("sagemaker", "StopTrainingJob"),),
            expected_exit=1,
            must_call=("StopTrainingJob",),
        ),
        *(
            # With monitoring: the build is stopped while the baseline job runs; Train stops it.
            scenario(
                f"{name}-baseline-interrupted",
                config,
                actions=("Build/Train",),
                interrupt_waits=True,
                stubs=(
                    Stub("sagemaker", "DescribeProcessingJob", 200, {"ProcessingJobStatus": "InProgress"}),
                    Stub("sagemaker", "StopProcessingJob"),
                ),
                expected_exit=1,
                must_call=("CreateProcessingJob", "StopProcessingJob"),
            )
            for _ in ([True] if parsed.monitors else [])
        ),
    ]


def _champion_stack(stack: str, project: str) -> Stub:
    """The champion environment's endpoint stack, its ModelVersion output naming an older job."""
    outputs = [{"OutputKey": "ModelVersion", "OutputValue": f"{project}-0000000-20260101T000000"}]
    created = "2026-11-23T00:00:00Z"
    return Stub(
        "cloudformation",
        "DescribeStacks",
        200,
        {
            "Stacks": [
                {"StackName": stack, "StackStatus": "UPDATE_COMPLETE", "CreationTime": created, "Outputs": outputs}
            ]
        },
    )


def _self_updates(name: str, config: dict) -> list[Scenario]:
    """The UpdatePipeline action when the commit changes the pipeline stack: the change set is
    executed (the stand-in stack never reaches UPDATE_COMPLETE, so the action fails, as it also
    does after a good update); and a commit whose template is over the inline limit (a third
    environment), staged under the artifact bucket's self-update/ prefix."""
    stack = parse_config(config, root=REPO).names.pipeline_stack
    page = {"ChangeSetName": "self-update", "StackName": stack, "Status": "CREATE_COMPLETE"}
    page["CreationTime"] = "2026-01-01T00:00:00Z"
    change = {"Action": "Modify", "LogicalResourceId": "LintProject", "ResourceType": "AWS::CodeBuild::Project"}
    changed = (
        Stub("cloudformation", "DescribeChangeSet", 200, page),
        Stub(
            "cloudformation",
            "DescribeChangeSet",
            200,
            {**page, "Changes": [{"Type": "Resource", "ResourceChange": change}]},
        ),
        Stub("cloudformation", "GetTemplate", 200, {"TemplateBody": "{}"}),
        Stub("cloudformation", "ExecuteChangeSet"),
    )
    bigger = copy.deepcopy(config)
    bigger["environments"] = [{"name": "qa"}, {"name": "staging"}, {"name": "perf"}, {"name": "prod", "approval": True}]
    return [
        Scenario(
            f"{name}-pipeline-updated",
            config,
            actions=("UpdatePipeline/SelfUpdate",),
            stubs=changed,
            expected_exit=1,
            must_call=("GetTemplate", "ExecuteChangeSet", "DescribeStackEvents"),
        ),
        Scenario(
            f"{name}-large-pipeline-template",
            config,
            commit=bigger,
            actions=("UpdatePipeline/SelfUpdate",),
            must_call=("PutObject", "CreateChangeSet"),
        ),
    ]


def _failed_first_create(stack: str, delete_fails: bool) -> tuple[Stub, ...]:
    """CloudFormation's answers for a stack whose first create rolled back, nothing left of it:
    PrepareStack reads it, lists its resources, deletes it and waits until it is gone; or the
    delete fails, and it reads the stack's events for the reason."""
    gone = {"Error": {"Code": "ValidationError", "Message": f"Stack with id {stack} does not exist"}}
    created = "2026-11-23T00:00:00Z"
    rolled_back = {"StackName": stack, "StackStatus": "ROLLBACK_COMPLETE", "CreationTime": created}
    failed = {**rolled_back, "StackStatus": "DELETE_FAILED"}
    after_delete = (
        Stub("cloudformation", "DescribeStacks", 200, {"Stacks": [failed]})
        if delete_fails
        else Stub("cloudformation", "DescribeStacks", 400, gone)
    )
    event = {
        "StackId": stack,
        "EventId": "1",
        "StackName": stack,
        "LogicalResourceId": "Endpoint",
        "ResourceStatus": "DELETE_FAILED",
        "ResourceStatusReason": "simulated",
        "Timestamp": "2099-01-01T00:00:00Z",
    }
    return (
        Stub("cloudformation", "DescribeStacks", 200, {"Stacks": [rolled_back]}),
        after_delete,
        Stub("cloudformation", "ListStackResources", 200, {"StackResourceSummaries": []}),
        Stub("cloudformation", "DeleteStack"),
        Stub("cloudformation", "DescribeStackEvents", 200, {"StackEvents": [event]}),
    )


def _deployed_autoscaled_elsewhere(stack: str) -> tuple[Stub, ...]:
    """A live endpoint stack whose template autoscales the variant on another instance type, and
    its scalable target registered: PrepareStack reads the template and deregisters the target."""
    template = {
        "Resources": {
            "EndpointConfig": {
                "Type": "AWS::SageMaker::EndpointConfig",
                "Properties": {"ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.c5.xlarge"}]},
            },
            "ScalableTargetOld": {"Type": "AWS::ApplicationAutoScaling::ScalableTarget"},
        }
    }
    live = {"StackName": stack, "StackStatus": "UPDATE_COMPLETE", "CreationTime": "2026-11-23T00:00:00Z"}
    return (
        Stub("cloudformation", "DescribeStacks", 200, {"Stacks": [live]}),
        Stub("cloudformation", "GetTemplate", 200, {"TemplateBody": json.dumps(template)}),
        Stub("application-autoscaling", "DeregisterScalableTarget"),
    )


def _commit(data: dict, training: dict, training_data: dict | None = None) -> dict:
    """The deployed config as a later commit changes it (the scripts read the commit's)."""
    changed = copy.deepcopy(data)
    changed["model"]["training"] = training
    changed["training_data"] = training_data or data["training_data"]
    return changed


CONFIGS = {"sample": SAMPLE, "variant": _variant()}
COMMITS = {
    # The sample's data is in the model bucket; a commit may switch to a repo folder without a redeploy.
    "sample": _commit(SAMPLE, {"spot": True, "max_wait_minutes": 60}, {"local_dir": "model/data"}),
    "variant": _commit(_variant(), {"spot": False}, {"local_dir": "model/data"}),
}
# Each pipeline proven on its own: name -> (config, branch). A branch pipeline has roles of its
# own, under the branch's names, on the main stack's buckets and key.
BRANCH = "feature/x"
PIPELINES: dict[str, tuple[dict, str | None]] = {
    "sample": (SAMPLE, None),
    "variant": (CONFIGS["variant"], None),
    "sample-branch": (SAMPLE, BRANCH),
}
# A pipeline with its own image: BuildImage pushes it, Train and the endpoints pull it.
OWN_CONTAINER = _own_container()
COMMITS["own-container"] = _commit(OWN_CONTAINER, {"spot": True, "max_wait_minutes": 60}, {"local_dir": "model/data"})
PIPELINES["own-container"] = (OWN_CONTAINER, None)
SCENARIOS = [
    scenario
    for name, (config, branch) in PIPELINES.items()
    for scenario in _scenarios(name, config, COMMITS[name.removesuffix("-branch")], branch)
]
# A built-in algorithm's pipeline: one whole run, its calls and what SageMaker does for its job and
# models allowed to their roles. Its grants are the sample's less the code upload, each proven used
# by the sample's scenarios (the failure paths this one run does not take), so it is not in PIPELINES.
SCENARIOS.append(Scenario("builtin", _builtin()))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, real_session) -> dict[str, Simulated]:
    """Every scenario, run once for the module (with the suite's parsed service models)."""
    simulation = Simulation(loader_from=real_session)
    workdir = tmp_path_factory.mktemp("pipeline-runs")
    return {scenario.name: simulation.run(scenario, workdir) for scenario in SCENARIOS}


# --- what each role must allow ----------------------------------------------------------------


def _call_needs(run: Simulated) -> Iterator[tuple[str, Request]]:
    """(role, request) for every recorded call of the run."""
    for call in run.calls:
        for request in call_requests(call, run.storage, run.placeholders.account):
            yield call.role, request


def _deployments(run: Simulated) -> Iterator[tuple[dict, str, Resolver, dict[str, str]]]:
    """Per CloudFormation deploy action: the endpoint template, the role CloudFormation gets, the
    template resolved with the parameters the run supplied, and the stack tags."""
    pipeline = run.templates[PIPELINE_TEMPLATE]
    (resource,) = [r for r in pipeline["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    for stage in resource["Properties"]["Stages"]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] != "CloudFormation":
                continue
            config = run.resolver(action["Configuration"])
            template = run.templates[config["TemplatePath"].split("::", 1)[1]]
            written = run.output("build/train/" + config["TemplateConfiguration"].split("::")[1])
            if not written.exists():
                continue  # the run stopped before the train step handed its parameters on
            configuration = json.loads(written.read_text())
            parameters = {**configuration["Parameters"], **json.loads(config.get("ParameterOverrides", "{}"))}
            resolver = Resolver(
                template,
                Placeholders(region=run.placeholders.region, parameters=parameters),
                stack_name=config["StackName"],
            )
            yield template, run.role_by_arn(config["RoleArn"]), resolver, configuration.get("Tags", {})


def _model_roles(run: Simulated) -> set[str]:
    """The roles the deploy actions hand the endpoint stacks' models (ExecutionRoleArn)."""
    pipeline = run.templates[PIPELINE_TEMPLATE]
    (resource,) = [r for r in pipeline["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return {
        run.role_by_arn(json.loads(run.resolver(action["Configuration"])["ParameterOverrides"])["ExecutionRoleArn"])
        for stage in resource["Properties"]["Stages"]
        for action in stage["Actions"]
        if action["ActionTypeId"]["Provider"] == "CloudFormation"
    }


def _service_needs(run: Simulated) -> Iterator[tuple[str, Request]]:
    """(role, request) for what SageMaker and CloudFormation do with the pipeline's roles."""
    region, account = run.placeholders.region, run.placeholders.account
    yield from codebuild_requests(run.templates[PIPELINE_TEMPLATE], run.resolver)
    for call in run.calls:
        if call.operation == "CreateTrainingJob":
            role = run.role_by_arn(call.params["RoleArn"])
            for request in training_job_requests(call.params, run.storage, region, account):
                yield role, request
        if call.operation == "CreateProcessingJob":
            role = run.role_by_arn(call.params["RoleArn"])
            for request in processing_job_requests(call.params, run.storage, region, account):
                yield role, request
    for call in run.calls:
        if call.operation == "CreateTransformJob":
            # The job runs with the role of the model it names: the one the deploy actions give the models.
            (role,) = _model_roles(run)
            for request in transform_job_requests(call.params, run.storage, region, account):
                yield role, request
    for template, deploy_role, resolver, stack_tags in _deployments(run):
        for role_arn, request in hosting_requests(template, resolver, run.storage):
            yield run.role_by_arn(role_arn), request
        for role_arn, request in monitoring_requests(template, resolver, run.storage):
            yield run.role_by_arn(role_arn), request
        for need in handler_requests(template, resolver, stack_tags):
            if need.request is not None:
                yield deploy_role, need.request


def _lines(found: list[str], what: str = "") -> str:
    """A failure message with one finding per line."""
    return "\n" + (f"{what}:\n" if what else "") + "\n".join(found)


def _denied(run: Simulated, needs: Iterable[tuple[str, Request]]) -> list[str]:
    granted = run.roles
    return sorted(
        {
            f"{r.origin} needs {r.describe()}: {role} does not allow it"
            for role, r in needs
            if not granted[role].allows(r)
        }
    )


def test_every_stage_script_runs_and_reaches_aws(simulated):
    for name, run in simulated.items():
        scripts = [o for o in run.outcomes]
        assert scripts, f"{name}: no stage script ran"
        for outcome in scripts:
            expected = run.scenario.expected_exit
            assert (outcome.exit == 0) == (expected == 0), (
                f"{name}: {outcome.action.label} {outcome.run.module} ended {outcome.exit}"
            )
            made = [c for c in run.calls if c.action == outcome.action.label and c.module == outcome.run.module]
            assert made, (
                f"{name}: {outcome.run.module} made no AWS call, so nothing of {outcome.action.role} is checked"
            )
        operations = {c.operation for c in run.calls}
        assert set(run.scenario.must_call) <= operations, f"{name}: {run.scenario.must_call} not among {operations}"


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_every_call_a_stage_script_makes_is_allowed_to_its_steps_role(simulated, scenario):
    run = simulated[scenario]
    denied = _denied(run, _call_needs(run))
    assert not denied, _lines(denied)


@pytest.mark.parametrize("scenario", [s.name for s in SCENARIOS])
def test_what_codebuild_sagemaker_and_cloudformation_do_for_the_pipeline_is_allowed_to_their_roles(simulated, scenario):
    run = simulated[scenario]
    denied = _denied(run, _service_needs(run))
    assert not denied, _lines(denied)


def test_cloudformation_handlers_cover_create_read_update_delete_of_every_endpoint_resource(simulated):
    run = simulated["sample"]
    for template, _, resolver, tags in _deployments(run):
        needs = list(handler_requests(template, resolver, tags))
        covered = {(n.logical_id, n.handler) for n in needs}
        for logical_id in template["Resources"]:
            assert {(logical_id, h) for h in ("create", "read", "update", "delete")} <= covered
        # A permission with nothing to authorize here is one on another service's resource the
        # template does not give (no role on the endpoint config, for instance).
        for need in needs:
            if need.request is None:
                assert need.permission.split(":")[0] != "sagemaker", need


def test_list_handlers_are_left_out_because_their_actions_cannot_be_scoped_and_are_not_granted(simulated):
    run = simulated["sample"]
    deploy = run.roles["EndpointDeployRole"]
    for template, _, _, _ in _deployments(run):
        for resource in template["Resources"].values():
            handlers = resource_schema(run.placeholders.region, resource["Type"])["handlers"]
            listing = handlers["list"]["permissions"]
            assert listing, resource["Type"]
            # Application Auto Scaling's create and read handlers need its Describe* calls too.
            others = {a for name in HANDLERS for a in handlers.get(name, {}).get("permissions", [])}
            for action in set(listing) - others:
                # No resource type in the reference: only Resource "*" could grant it.
                assert not [t for t in privilege(action)["resource_types"] if t], action
                assert not deploy.allows(Request(action, "*")), action


def test_models_and_endpoint_configs_carry_the_project_tag_when_created(simulated):
    """The deploy role may create them only with the project tag on the request: their handlers
    tag on create (the registry schema says so) and the endpoint template gives them the tag."""
    run = simulated["sample"]
    for template, _, resolver, _ in _deployments(run):
        for resource in template["Resources"].values():
            if resource["Type"] in ("AWS::SageMaker::Model", "AWS::SageMaker::EndpointConfig"):
                assert resource_schema(run.placeholders.region, resource["Type"])["tagging"]["tagOnCreate"] is True
                tags = {t["Key"]: t["Value"] for t in resolver(resource["Properties"]["Tags"])}
                assert tags[PROJECT_TAG] == run.config.project


def test_the_train_action_tags_its_job_with_the_pipelines_run_reason(simulated):
    """`#{variables.RunReason}` reaches the Train action (a push takes the default) and its job's tags."""
    run = simulated["sample"]
    (create,) = [c for c in run.calls if c.operation == "CreateTrainingJob"]
    tags = {t["Key"]: t["Value"] for t in create.params["Tags"]}
    assert tags["sagemaker-cd:run-reason"] == run.exports["variables"]["RunReason"] == "automatic"


def test_a_branch_pipeline_acts_under_its_own_names_in_the_main_stacks_buckets(simulated):
    """The branch's roles are proven above on the calls of a run under the branch's names: its
    jobs, stacks and endpoints, and its own prefix in the main stack's model bucket."""
    branch, main = simulated["sample-branch"], simulated["sample"]
    project = branch.config.project
    assert project.startswith(main.config.project + "-") and branch.config.environment_names == ["qa"]
    assert branch.resolver.physical_name("TrainRole").startswith(project + "-pipeline-")
    named = {"TrainingJobName", "StackName", "EndpointName"}
    seen = {(key, str(value)) for call in branch.calls for key, value in call.params.items() if key in named | {"Key"}}
    assert {key for key, _ in seen} == named | {"Key"}
    assert all(value.startswith(project + ("/" if key == "Key" else "-")) for key, value in seen), sorted(seen)
    buckets = {call.params["Bucket"] for call in branch.calls if "Bucket" in call.params}
    assert buckets == {main.resolver.physical_name("ModelBucket")}


# --- nothing more -----------------------------------------------------------------------------


def _unused(run: Simulated, needs: list[tuple[str, Request]]) -> list[str]:
    """Each (statement, action, resource) of every role that no need uses and no reason covers."""
    unused = []
    for role in run.roles.values():
        mine = [r for lid, r in needs if lid == role.logical_id]
        for statement in role.statements:
            for action in statement.actions:
                if (role.service, action) in REASONS or (role.logical_id, action) in REASONS:
                    continue
                for resource in statement.resources:
                    single = Statement("Allow", (action,), (resource,), statement.conditions, statement.where)
                    if not any(single.matches(r) for r in mine):
                        unused.append(f"{statement.where}: {action} on {resource}")
    return unused


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_every_granted_permission_is_used_or_has_a_written_reason(simulated, pipeline):
    config, branch = PIPELINES[pipeline]
    runs = [run for run in simulated.values() if run.scenario.config is config and run.scenario.branch == branch]
    needs = [need for run in runs for need in (*_call_needs(run), *_service_needs(run))]
    unused = _unused(runs[0], needs)
    assert not unused, _lines(
        unused, "used by no recorded call, no service and no reason in tests/iam_audit/reasons.py"
    )


def test_every_reason_is_for_a_permission_some_role_grants(simulated):
    granted = set()
    for run in simulated.values():
        for role in run.roles.values():
            for statement in role.statements:
                granted.update((key, action) for key in (role.service, role.logical_id) for action in statement.actions)
    stale = sorted(f"{key}: {action}" for key, action in set(REASONS) - granted)
    assert not stale, _lines(stale, "a reason for a permission no role grants")


def test_every_condition_key_in_a_role_is_one_its_actions_support(simulated):
    unsupported = []
    for name in PIPELINES:
        for statement in (s for role in simulated[name].roles.values() for s in role.statements):
            for block in statement.conditions.values():
                for key in block:
                    for action in statement.actions:
                        if "*" not in action and not supports_condition_key(action, key):
                            unsupported.append(f"{statement.where}: {action} does not support {key}")
    assert not unsupported, _lines(unsupported)


# --- the project's own SageMaker resources, and no one else's --------------------------------


@pytest.mark.parametrize(
    "action, resource, context, allowed",
    [
        ("sagemaker:DescribeModel", "model/Model-abc", {"aws:ResourceTag/" + PROJECT_TAG: "iris-classifier"}, True),
        ("sagemaker:DescribeModel", "model/theirs", {"aws:ResourceTag/" + PROJECT_TAG: "other-project"}, False),
        ("sagemaker:DeleteModel", "model/untagged", {}, False),
        ("sagemaker:DeleteEndpointConfig", "endpoint-config/theirs", {"aws:ResourceTag/team": "ml-platform"}, False),
        ("sagemaker:CreateModel", "model/Model-abc", {"aws:RequestTag/" + PROJECT_TAG: "iris-classifier"}, True),
        ("sagemaker:CreateModel", "model/Model-abc", {"aws:RequestTag/" + PROJECT_TAG: "other-project"}, False),
        ("sagemaker:CreateEndpointConfig", "endpoint-config/EndpointConfig-x", {}, False),
        ("sagemaker:AddTags", "model/theirs", {"aws:ResourceTag/" + PROJECT_TAG: "other-project"}, False),
        ("sagemaker:UpdateEndpoint", "endpoint/other-project-qa", {}, False),
    ],
)
def test_the_deploy_role_reaches_only_this_projects_models_and_endpoint_configs(
    simulated, action, resource, context, allowed
):
    arn = f"arn:aws:sagemaker:us-east-1:123456789012:{resource}"
    assert simulated["sample"].roles["EndpointDeployRole"].allows(Request(action, arn, context)) is allowed


# --- the check itself can fail ----------------------------------------------------------------


def test_a_role_missing_a_statement_fails_naming_the_call_and_the_role(simulated):
    templates = copy.deepcopy(simulated["sample"].templates)
    policy = templates[PIPELINE_TEMPLATE]["Resources"]["EndpointTestRole"]["Properties"]["Policies"][0]
    document = policy["PolicyDocument"]
    document["Statement"] = [s for s in document["Statement"] if "sagemaker:InvokeEndpoint" not in s["Action"]]
    run = dataclasses.replace(simulated["sample"], templates=templates)
    denied = _denied(run, _call_needs(run))
    assert denied and all("EndpointTestRole does not allow it" in line for line in denied)
    assert any(
        "scripts.endpoint_test): sagemaker-runtime InvokeEndpoint needs sagemaker:InvokeEndpoint" in d for d in denied
    )


def test_a_call_without_its_permission_fails_naming_the_call_and_the_role(simulated):
    calls = simulated["sample"].calls
    (describe,) = [c for c in calls if c.operation == "DescribeEndpoint" and c.action == "Qa/EndpointTest"]
    run = dataclasses.replace(
        simulated["sample"], calls=[*calls, dataclasses.replace(describe, operation="DeleteEndpoint")]
    )
    assert _denied(run, _call_needs(run)) == [
        "Qa/EndpointTest (scripts.endpoint_test): sagemaker DeleteEndpoint needs sagemaker:DeleteEndpoint on "
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/iris-classifier-qa: EndpointTestRole does not allow it"
    ]


# --- every command is simulated, every AWS method recorded ------------------------------------


def test_every_build_command_is_a_simulated_stage_script_or_offline():
    makefile = Makefile()
    unknown = []
    for config, branch in PIPELINES.values():
        from pipeline.synth import synthesize

        parsed = parse_config(config, root=REPO)
        template = synthesize(parsed, branch).templates[PIPELINE_TEMPLATE]
        shared = {name: f"main-stack-{name}" for name in SHARED}  # a branch's: only its commands matter here
        resolver = Resolver(template, Placeholders(region=parsed.region, parameters=shared))
        for action in build_actions(template, resolver):
            for command in (*action.install_commands, *action.commands):
                for line in makefile.lines(command):
                    found = classify(line)
                    if isinstance(found, str):
                        unknown.append(f"{action.label}: {line}")
    assert not unknown, _lines(unknown, "neither a stage script the simulation runs nor a known offline command")


def _client_methods(path: Path) -> tuple[set[str], set[str]]:
    """The services a script makes clients for (`client("s3", ...)`) and the methods it calls on anything."""
    tree = ast.parse(path.read_text())
    services, methods = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "client" and node.args:
                if isinstance(node.args[0], ast.Constant):
                    services.add(node.args[0].value)
            elif isinstance(func, ast.Attribute):
                methods.add(func.attr)
    return services, methods


TRANSFER_METHODS = {"upload_file": {"PutObject", "CreateMultipartUpload"}, "download_file": {"GetObject", "HeadObject"}}


def test_every_aws_operation_a_stage_script_calls_was_recorded(simulated):
    recorded: dict[str, set[str]] = {}
    for run in simulated.values():
        for call in run.calls:
            recorded.setdefault(call.module, set()).add(call.operation)
    modules = {o.run.module for run in simulated.values() for o in run.outcomes}
    session = botocore.session.get_session()
    missing = []
    for module in sorted(modules):
        services, methods = _client_methods(REPO / (module.replace(".", "/") + ".py"))
        for service in services:
            operations = {xform_name(op): op for op in session.get_service_model(service).operation_names}
            missing += [
                f"{module}: {service} {operations[m]}"
                for m in methods & set(operations)
                if operations[m] not in recorded.get(module, set())
            ]
        for method, operations in TRANSFER_METHODS.items():
            if method in methods and not operations & recorded.get(module, set()):
                missing.append(f"{module}: {method}")
    assert not missing, _lines(missing, "called by the script but recorded in no scenario: add one to SCENARIOS")


# --- the evaluator ----------------------------------------------------------------------------


def test_wildcards_match_as_iam_does():
    assert wildcard_match("arn:aws:s3:::bucket/project/*", "arn:aws:s3:::bucket/project/code/x.tar.gz")
    assert not wildcard_match("arn:aws:s3:::bucket/project/*", "arn:aws:s3:::bucket/other/x")
    assert wildcard_match(
        "arn:aws:logs:r:1:log-group:/aws/sagemaker/*", "arn:aws:logs:r:1:log-group:/aws/sagemaker/T:log-stream:j"
    )
    assert wildcard_match("s3:Get?bject", "s3:GetObject")
    assert not wildcard_match("s3:getobject", "s3:GetObject")
    assert wildcard_match("s3:getobject", "s3:GetObject", ignore_case=True)


@pytest.mark.parametrize(
    "conditions, context, holds",
    [
        ({"StringEquals": {"k": ["a", "b"]}}, {"k": "b"}, True),
        ({"StringEquals": {"k": "a"}}, {}, False),
        ({"StringNotEquals": {"k": "a"}}, {}, True),
        ({"StringLike": {"s3:prefix": ["proj/*"]}}, {"s3:prefix": "proj/data/"}, True),
        ({"StringLike": {"s3:prefix": ["proj/*"]}}, {"s3:prefix": "other/"}, False),
        ({"StringLike": {"s3:prefix": ["proj/*"]}}, {}, False),
        ({"StringEqualsIfExists": {"k": "a"}}, {}, True),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {"kms:GrantIsForAWSResource": "true"}, True),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {}, False),
        ({"StringEquals": {"K": "a"}, "StringLike": {"j": "x*"}}, {"k": "a", "j": "y"}, False),
        ({"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}, {"aws:TagKeys": ("a", "c")}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["a"]}}, {"aws:TagKeys": ("a", "c")}, True),
        ({"Null": {"k": "true"}}, {}, True),
    ],
)
def test_conditions_hold_as_iam_evaluates_them(conditions, context, holds):
    assert conditions_hold(conditions, context) is holds


def test_an_operator_the_evaluator_does_not_know_fails_the_test():
    with pytest.raises(UnresolvableError, match="NumericLessThan"):
        conditions_hold({"NumericLessThan": {"s3:max-keys": "10"}}, {"s3:max-keys": "5"})


def test_a_deny_wins_and_not_action_excludes():
    allow = Statement("Allow", ("s3:*",), ("*",), {}, "allow")
    deny = Statement("Deny", ("s3:DeleteObject",), ("*",), {}, "deny")
    everything_but = Statement("Allow", ("s3:GetObject",), ("*",), {}, "not", not_actions=True)
    assert is_allowed([allow], Request("s3:DeleteObject", "arn:aws:s3:::b/k"))
    assert not is_allowed([allow, deny], Request("s3:DeleteObject", "arn:aws:s3:::b/k"))
    assert not is_allowed([everything_but], Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert is_allowed([everything_but], Request("s3:PutObject", "arn:aws:s3:::b/k"))


def test_the_champion_gate_reads_the_champions_stack_and_job_under_the_train_role(simulated):
    run = simulated["sample-champion-serves"]
    champion = [
        c for c in run.calls if c.operation == "DescribeTrainingJob" and "-0000000-" in c.params["TrainingJobName"]
    ]
    stack = [c for c in run.calls if c.operation == "DescribeStacks"]
    assert [c.params["TrainingJobName"] for c in champion] == ["iris-classifier-0000000-20260101T000000"]
    assert [c.params["StackName"] for c in stack] == ["iris-classifier-endpoint-prod"]
    assert {c.role for c in champion + stack} == {"TrainRole"}


# The UpdatePipeline role's own calls (change sets, staging, its input artifact) and CodeBuild's
# project API (AWS::CodeBuild::Project has no registry handler) are checked above or by reasons.
NOT_HANDLER_GRANTS = ("cloudformation:", "s3:", "kms:", "codebuild:BatchGetProjects", "codebuild:CreateProject")
NOT_HANDLER_GRANTS += ("codebuild:UpdateProject", "codebuild:DeleteProject")
NOT_HANDLER_GRANTS += ("logs:CreateLogStream", "logs:PutLogEvents")


def test_the_update_roles_resource_grants_are_handler_permissions_of_the_pipeline_stacks_types(simulated):
    """Each action the UpdatePipeline role holds for CloudFormation to update the pipeline stack is
    one the registry schema's create, update, delete or read handler of a type in that stack lists."""
    for name in CONFIGS:
        run = simulated[name]
        template = run.templates[PIPELINE_TEMPLATE]
        listed = {
            permission
            for type_name in {r["Type"] for r in template["Resources"].values()}
            for handler in ("create", "update", "delete", "read")
            for permission in resource_schema(run.placeholders.region, type_name)
            .get("handlers", {})
            .get(handler, {})
            .get("permissions", [])
        }
        granted = {a for s in run.roles["UpdatePipelineRole"].statements for a in s.actions}
        assert "codepipeline:UpdatePipeline" in granted
        extra = sorted(a for a in granted if not a.startswith(NOT_HANDLER_GRANTS) and a not in listed)
        # The connection's PassConnection under its other service name (the pipeline's handler lists one).
        assert extra in ([], ["codeconnections:PassConnection"]), extra


# What the UpdatePipeline role may update, by resource type: the handlers CloudFormation calls.
UPDATABLE_HANDLERS = {
    "AWS::CodePipeline::Pipeline": ("update", "read"),
    "AWS::CodeBuild::ReportGroup": ("create", "update", "delete", "read"),
    "AWS::Events::Rule": ("create", "update", "delete", "read"),
    "AWS::SNS::Topic": ("update", "read"),
    "AWS::SNS::TopicPolicy": ("create", "update", "delete"),
    "AWS::Logs::LogGroup": ("create", "update", "delete", "read"),
}
# Handler permissions deliberately not granted: each serves a property the pipeline template does
# not set (data protection, resource and index policies, log delivery, deletion protection,
# bearer-token auth, a topic's delivery-status logging role), so the handler has no reason to call
# it (assumed: handlers call them only for those properties), or would undo the key (logs:DisassociateKmsKey).
# s3:REST.PUT.OBJECT is no IAM action at all.
NOT_GRANTED = {
    "firehose:TagDeliveryStream",
    "logs:CreateLogDelivery",
    "logs:DeleteDataProtectionPolicy",
    "logs:DeleteIndexPolicy",
    "logs:DeleteResourcePolicy",
    "logs:DescribeIndexPolicies",
    "logs:DescribeResourcePolicies",
    "logs:DisassociateKmsKey",
    "logs:PutBearerTokenAuthentication",
    "logs:PutDataProtectionPolicy",
    "logs:PutIndexPolicy",
    "logs:PutLogGroupDeletionProtection",
    "logs:PutResourcePolicy",
    "s3:REST.PUT.OBJECT",
    "sns:PutDataProtectionPolicy",
}


def test_the_update_role_holds_the_handler_permissions_of_every_type_it_may_update(simulated):
    """Conversely: every permission those handlers list is granted, but for the few in NOT_GRANTED
    (iam:PassRole is granted per role and service, checked in test_self_update_stage)."""
    for name in CONFIGS:
        run = simulated[name]
        types = {r["Type"] for r in run.templates[PIPELINE_TEMPLATE]["Resources"].values()}
        assert set(UPDATABLE_HANDLERS) <= types
        needed = {
            permission
            for type_name, handlers in UPDATABLE_HANDLERS.items()
            for handler in handlers
            for permission in resource_schema(run.placeholders.region, type_name)["handlers"]
            .get(handler, {})
            .get("permissions", [])
        }
        granted = {a for s in run.roles["UpdatePipelineRole"].statements for a in s.actions}
        assert sorted(needed - granted - NOT_GRANTED) == [], name
        assert needed >= NOT_GRANTED, sorted(NOT_GRANTED - needed)  # no stale entry
        assert not NOT_GRANTED & granted


def test_a_prepare_role_cannot_deregister_another_environments_scalable_target(simulated):
    """The variant's qa runs instances: its PrepareStack may deregister qa's target, never prod's
    (both in the same account and region, told apart only by their tags)."""
    run = simulated["variant"]
    qa = run.roles["PrepareQaRole"]
    arn = f"arn:aws:application-autoscaling:{run.placeholders.region}:{ACCOUNT}:scalable-target/0123456789abcdef"

    def request(env: str) -> Request:
        tags = {"sagemaker-cd:project": "churn-model", "sagemaker-cd:environment": env}
        context = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        context["application-autoscaling:service-namespace"] = "sagemaker"
        return Request("application-autoscaling:DeregisterScalableTarget", arn, context)

    assert qa.allows(request("qa"))
    assert not qa.allows(request("prod"))


def test_a_builtin_run_trains_on_its_channels_and_uploads_no_code(simulated):
    run = simulated["builtin"]
    (job,) = [call.params for call in run.calls if call.operation == "CreateTrainingJob"]
    assert [channel["ChannelName"] for channel in job["InputDataConfig"]] == ["train", "validation"]
    uploads = [
        call.params.get("Key", "") for call in run.calls if call.operation in ("PutObject", "CreateMultipartUpload")
    ]
    assert not [key for key in uploads if "/code/" in key]
