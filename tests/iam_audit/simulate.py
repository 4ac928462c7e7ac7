"""Run the pipeline's CodeBuild actions as CodeBuild would, under moto, and record every AWS call.

For a config, the synthesized pipeline template says which CodeBuild actions run, in which
order, with which project (so which role), environment variables (the project's, resolved, and
the action's, with `#{Namespace.VAR}` filled from the source and from earlier actions' exports)
and buildspec commands. A command `make T` is followed through the Makefile to the `python -m
scripts.X ...` it runs, and that module's `main()` is called in a copy of the repository with
that environment, so a new build step or stage script is simulated without a change here.

Every client the scripts make comes from one shared boto3 session per region (boto3's Session
is replaced while a scenario runs), on whose event system a `before-parameter-build` hook
records each call with the action that made it. The hook costs microseconds per call; moto's
service models are loaded once.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import os
import re
import shlex
import shutil
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
import yaml
from botocore.awsrequest import AWSResponse
from moto import mock_aws
from moto.s3.models import s3_backends
from moto.sagemaker.models import sagemaker_backends

from pipeline.branches import for_branch
from pipeline.config import PipelineConfig, load_config, parse_config
from pipeline.stacks.branch import SHARED
from pipeline.stacks.pipeline import PipelineStack
from pipeline.synth import PIPELINE_TEMPLATE, synthesize
from pipeline.tags import PROJECT_TAG
from scripts.train import INPUTS_HASH_TAG

from .policy import ACCOUNT, Placeholders, Resolver, Role, roles
from .reference import Call, Storage

REPO = Path(__file__).resolve().parents[2]
COMMIT = "3f2a9c1d0e5b6a7980112233445566778899aabb"
# Physical names of the generated-name resources, as tests/test_train.py names its bucket.
NAMES = {"ModelBucket": "model-bucket", "ArtifactBucket": "artifact-bucket", "ImageRepository": "image-repository"}
SOURCE_VARIABLES = {
    "CommitId": COMMIT,
    "CommitMessage": "a commit",
    "BranchName": "main",
    "AuthorDate": "2026-01-02T03:04:05Z",
}
# Commands a buildspec or make recipe may run that make no AWS call (checked in the test, so a
# command the simulation cannot follow is reported instead of skipped).
OFFLINE_PROGRAMS = {"gem", "cfn_nag_scan", "test", "touch", "echo", "mkdir", "rm", "exit"}
OFFLINE_MODULES = {
    "pip",
    "venv",
    "pytest",
    "pipeline.scan",
    "pipeline.lint_reports",
    "pipeline synth",
    "pipeline schema",
}
# Stage scripts that make no AWS call when given a flag: `scripts.local --offline` (the Lint action's
# local loop) reads its training data from the repository only and tests a server on 127.0.0.1.
OFFLINE_WITH_FLAG = {"scripts.local": "--offline"}
_REAL_SESSION = boto3.session.Session


# --- the Makefile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptRun:
    """`python -m MODULE ARGV...` found behind a buildspec command."""

    module: str
    argv: tuple[str, ...]


class Makefile:
    """Variables and targets of the repository's Makefile, enough to follow `make T` to its commands."""

    def __init__(self, path: Path = REPO / "Makefile", overrides: Mapping[str, str] | None = None):
        self.variables: dict[str, str] = {"MAKE": "make"}
        self.targets: dict[str, tuple[list[str], list[str]]] = {}
        current: list[str] | None = None
        for line in path.read_text().splitlines():
            if line.startswith("\t") and current is not None:
                if current and current[-1].endswith("\\"):  # a recipe line continued
                    current[-1] = current[-1][:-1] + " " + line.strip()
                else:
                    current.append(line.strip().lstrip("@-"))
                continue
            assignment = re.match(r"^([A-Z_]+)\s*(?::=|\?=|=)\s*(.*)$", line)
            if assignment:
                self.variables[assignment.group(1)] = assignment.group(2).strip()
                current = None
                continue
            rule = re.match(r"^([^\s:#=][^:=]*):(?!=)\s*([^#]*)", line)
            if rule and not rule.group(1).startswith("."):
                current = []
                for name in rule.group(1).split():
                    prerequisites = [p for p in rule.group(2).split() if not p.startswith("#")]
                    self.targets[self.expand(name)] = ([self.expand(p) for p in prerequisites], current)
            else:
                current = None
        self.variables.update(overrides or {})

    def expand(self, text: str) -> str:
        """Substitute $(VAR) until none is left (unknown variables become empty, as in make)."""
        for _ in range(10):
            expanded = re.sub(r"\$\(([A-Za-z_]+)\)", lambda m: self.variables.get(m.group(1), ""), text)
            if expanded == text:
                break
            text = expanded
        return text

    def lines(self, command: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """The shell commands a buildspec command runs, `make T` followed to T's prerequisites and recipe."""
        tokens = shlex.split(command)
        if not tokens or tokens[0] != "make":
            return [command]
        out = []
        for target in [t for t in tokens[1:] if not t.startswith("-") and "=" not in t]:
            if target in seen:
                continue
            if target not in self.targets:
                raise LookupError(f"make target {target!r} is not in the Makefile")
            prerequisites, recipe = self.targets[target]
            for prerequisite in prerequisites:
                if prerequisite in self.targets:
                    out += self.lines(f"make {prerequisite}", seen | {target})
            for line in recipe:
                for segment in re.split(r"\s*(?:&&|\|\||;)\s*", self.expand(line)):
                    out += self.lines(segment.strip(), seen | {target}) if segment.strip() else []
        return out


def classify(line: str) -> ScriptRun | str | None:
    """A stage script run, None for an offline command, or the command itself when it is neither."""
    tokens = shlex.split(line)
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        tokens = tokens[1:]
    if not tokens or tokens[0] in ("(", "."):
        return None  # `. build/x.env`: sourcing exports
    program = Path(tokens[0]).name
    if program.startswith("python") and "-m" in tokens:
        at = tokens.index("-m")
        module, argv = tokens[at + 1], tuple(tokens[at + 2 :])
        if OFFLINE_WITH_FLAG.get(module) in argv:
            return None
        if module.startswith("scripts."):
            return ScriptRun(module, argv)
        if module in OFFLINE_MODULES or f"{module} {argv[0] if argv else ''}" in OFFLINE_MODULES:
            return None
        return line
    return None if program in OFFLINE_PROGRAMS else line


# --- the pipeline's CodeBuild actions --------------------------------------------------------


@dataclass(frozen=True)
class BuildAction:
    """One CodeBuild action of the pipeline, as CodeBuild would run it."""

    label: str
    project: str
    project_name: str
    role: str
    env: Mapping[str, str]
    action_env: tuple[tuple[str, str], ...]
    commands: tuple[str, ...]
    install_commands: tuple[str, ...]
    namespace: str | None


def build_actions(template: Mapping[str, Any], resolve: Resolver) -> list[BuildAction]:
    """Every CodeBuild action in stage order (run order within a stage)."""
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    found = []
    for stage in pipeline["Properties"]["Stages"]:
        for action in sorted(stage["Actions"], key=lambda a: a.get("RunOrder", 1)):
            if action["ActionTypeId"]["Provider"] != "CodeBuild":
                continue
            config = action["Configuration"]
            project_id = config["ProjectName"]["Ref"]
            project = template["Resources"][project_id]["Properties"]
            spec = yaml.safe_load(project["Source"]["BuildSpec"])
            phases = spec.get("phases", {})
            env = {v["Name"]: str(resolve(v["Value"])) for v in project["Environment"].get("EnvironmentVariables", [])}
            action_env = tuple((v["name"], v["value"]) for v in json.loads(config.get("EnvironmentVariables", "[]")))
            found.append(
                BuildAction(
                    label=f"{stage['Name']}/{action['Name']}",
                    project=project_id,
                    project_name=resolve.physical_name(project_id),
                    role=project["ServiceRole"]["Fn::GetAtt"][0],
                    env=env,
                    action_env=action_env,
                    commands=tuple(phases.get("build", {}).get("commands", [])),
                    install_commands=tuple(phases.get("install", {}).get("commands", [])),
                    namespace=action.get("Namespace"),
                )
            )
    return found


def deploy_namespaces(templates: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Each CloudFormation deploy action's variable namespace -> the name of the endpoint its stack makes."""
    (pipeline,) = [
        r for r in templates[PIPELINE_TEMPLATE]["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"
    ]
    found = {}
    for stage in pipeline["Properties"]["Stages"]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] != "CloudFormation" or "Namespace" not in action:
                continue
            stack = templates[action["Configuration"]["TemplatePath"].split("::")[1]]
            (endpoint,) = [r for r in stack["Resources"].values() if r["Type"] == "AWS::SageMaker::Endpoint"]
            found[action["Namespace"]] = endpoint["Properties"]["EndpointName"]
    return found


def _deployed_variables(
    deploys: Mapping[str, str], exports: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """The stack outputs each deploy action emits, as `_world` leaves the endpoint (its model and
    config named as the endpoint) after deploying the model the Train action trained (without a
    Train action in the run, an earlier run's: no ModelVersion then)."""
    trained = exports.get("TrainVariables", {}).get("TRAINING_JOB_NAME")
    version = {"ModelVersion": trained} if trained is not None else {}
    return {
        namespace: {"EndpointConfigName": endpoint, "ModelName": endpoint, **version}
        for namespace, endpoint in deploys.items()
    }


def pipeline_variables(template: Mapping[str, Any]) -> dict[str, str]:
    """The pipeline's declared variables and their defaults."""
    (pipeline,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return {v["Name"]: v.get("DefaultValue", "") for v in pipeline["Properties"].get("Variables", [])}


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stub:
    """An answer given instead of moto's (botocore `before-call` short-circuit, as Stubber does).
    Several stubs of one operation answer its calls in turn; the last answers every later call."""

    service: str
    operation: str
    status: int = 200
    response: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A simulated pipeline run: the config the pipeline stack was deployed with, the config in
    the commit (what the scripts read and the Lint action synthesizes the endpoint templates
    from; the deployed one by default), which actions run (None: all, in order), and what the
    world does (how the training job ends, answers in place of moto's, waits interrupted, a file
    big enough for a multipart upload in the model's `source` or training `data` folder). With
    `branch`, the pipeline is that branch's (pipeline.branches), deployed beside the config's main
    pipeline stack, whose buckets and key it shares."""

    name: str
    config: Mapping[str, Any]
    commit: Mapping[str, Any] | None = None
    branch: str | None = None
    actions: tuple[str, ...] | None = None
    job_status: str = "Completed"
    stubs: tuple[Stub, ...] = ()
    interrupt_waits: bool = False
    big_file_in: str | None = None
    expected_exit: int = 0
    must_call: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one stage script run did."""

    action: BuildAction
    run: ScriptRun
    exit: int | str


@dataclass
class Simulated:
    """A scenario's templates (resolved with its placeholders), calls and script outcomes."""

    scenario: Scenario
    config: PipelineConfig
    repo: Path
    templates: dict[str, dict]
    placeholders: Placeholders
    resolver: Resolver
    calls: list[Call]
    outcomes: list[Outcome]
    exports: dict[str, dict[str, str]]
    # The stack holding the buckets and key, resolved: the pipeline's own, or a branch's main one.
    stateful: tuple[dict, Resolver] | None = None

    def output(self, relative: str) -> Path:
        """A file a stage script wrote in the simulated checkout."""
        return self.repo / relative

    @cached_property
    def roles(self) -> dict[str, Role]:
        """The pipeline template's roles, resolved with the run's placeholders."""
        return roles(self.templates[PIPELINE_TEMPLATE], self.resolver)

    @cached_property
    def storage(self) -> Storage:
        """The default KMS key of each bucket of the pipeline stack (SSE-KMS objects need it)."""
        template, resolver = self.stateful or (self.templates[PIPELINE_TEMPLATE], self.resolver)
        keys = {}
        for logical_id, resource in template["Resources"].items():
            if resource["Type"] != "AWS::S3::Bucket":
                continue
            encryption = resolver(resource["Properties"].get("BucketEncryption", {}))
            for rule in encryption.get("ServerSideEncryptionConfiguration", []):
                default = rule.get("ServerSideEncryptionByDefault", {})
                if default.get("SSEAlgorithm") == "aws:kms":
                    keys[resolver.physical_name(logical_id)] = default["KMSMasterKeyID"]
        return Storage(keys, self.scalable_target_tags)

    @cached_property
    def scalable_target_tags(self) -> dict[tuple[str, str], dict[str, str]]:
        """Each environment's scalable target, by the ResourceId calls name it with, and the tags the
        endpoint template gives it: the endpoint's own but the model version (an intrinsic function),
        whether this commit's template autoscales or a deployed one did (PrepareStack deregisters a
        target that an earlier deploy of the same environment registered)."""
        found = {}
        for name, template in self.templates.items():
            if name == PIPELINE_TEMPLATE:
                continue
            for resource in template["Resources"].values():
                if resource["Type"] != "AWS::SageMaker::Endpoint":
                    continue
                props = resource["Properties"]
                tags = {t["Key"]: t["Value"] for t in props.get("Tags", []) if isinstance(t["Value"], str)}
                found[("application-autoscaling", f"endpoint/{props['EndpointName']}/variant/AllTraffic")] = tags
        return found

    def role_by_arn(self, arn: str) -> str:
        """The logical ID of the template's role with this ARN."""
        found = [lid for lid in self.roles if self.resolver.arn(lid) == arn]
        if not found:
            raise LookupError(f"{arn} is no role of the pipeline template")
        return found[0]


class Recorder:
    """`before-parameter-build` hook: every call made while an action runs, with that action."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.current: tuple[str, BuildAction, str] | None = None

    def __call__(self, params: Mapping[str, Any], model: Any, context: Mapping[str, Any], **_: Any) -> None:
        if self.current is None:
            return
        scenario, action, module = self.current
        kept = {k: copy.deepcopy(v) for k, v in params.items() if k != "Body"}
        self.calls.append(
            Call(
                scenario=scenario,
                action=action.label,
                role=action.role,
                module=module,
                service=model.service_model.service_name,
                prefix=model.service_model.signing_name,
                operation=model.name,
                params=kept,
                region=context.get("client_region") or "",
            )
        )


class _ClientCache:
    """A boto3 session whose clients are made once per service and configuration (making one
    costs tens of milliseconds; the scripts make a client per call site)."""

    def __init__(self, session: Any):
        self.session = session
        self.clients: dict[tuple, Any] = {}

    def client(self, service: str, region_name: str | None = None, config: Any = None, **kwargs: Any) -> Any:
        key = (service, region_name, id(config), tuple(sorted(kwargs.items())))
        if key not in self.clients:
            self.clients[key] = self.session.client(service, region_name=region_name, config=config, **kwargs)
        return self.clients[key]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


class Simulation:
    """Shared boto3 sessions (one per region, model files parsed once), the recorder, and the
    per-scenario world behind them."""

    def __init__(self, loader_from: Any = None) -> None:
        self.loader_from = loader_from
        self.recorder = Recorder()
        self.sessions: dict[str, Any] = {}
        self.stubs: dict[tuple[str, str], list[Stub]] = {}
        self.scenario: Scenario | None = None
        self.config: PipelineConfig | None = None
        self.deploys: dict[str, str] = {}
        self.makefile = Makefile()
        self._synthesized: dict[str, dict[str, dict]] = {}
        # An asynchronous endpoint's answer to each test case's body (pipeline.yml's payloads).
        self.async_answers: dict[str, Any] = {}

    def _synthesize(self, config: PipelineConfig, branch: str | None = None) -> dict[str, dict]:
        key = f"{branch}:{config.model_dump_json()}"
        if key not in self._synthesized:
            self._synthesized[key] = synthesize(config, branch).templates
        return self._synthesized[key]

    def _main_stack(self, deployed: PipelineConfig) -> tuple[dict, Resolver, dict[str, Any]]:
        """A branch's main pipeline stack, resolved, and the parameters deploy gives the branch's
        stack from its outputs (pipeline.stacks.branch.SHARED)."""
        template = self._synthesize(deployed)[PIPELINE_TEMPLATE]
        resolver = Resolver(
            template, Placeholders(region=deployed.region, names=NAMES), stack_name=deployed.names.pipeline_stack
        )
        outputs = template["Outputs"]
        return template, resolver, {name: resolver(outputs[output]["Value"]) for name, output in SHARED.items()}

    # --- sessions -----------------------------------------------------------------------------
    def session(self, *args: Any, region_name: str | None = None, **kwargs: Any) -> Any:
        """Stands in for boto3.session.Session while a scenario runs."""
        region = region_name or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        if region not in self.sessions:
            made = _REAL_SESSION(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region)
            # Parse the service models once, for every region (and with the suite's own session).
            source = self.loader_from or (next(iter(self.sessions.values())).session if self.sessions else None)
            if source is not None:
                made._session.register_component("data_loader", source._session.get_component("data_loader"))
            made.events.register("before-parameter-build", self.recorder)
            made.events.register("before-call", self._stub)
            made.events.register("after-call.sagemaker.CreateTrainingJob", self._end_training_job)
            made.events.register("before-call.sagemaker-runtime.InvokeEndpointAsync", self._answer_async)
            made.events.register("after-call.sagemaker.CreateTransformJob", self._transform)
            self.sessions[region] = _ClientCache(made)
        return self.sessions[region]

    def _stub(self, model: Any, **_: Any) -> Any:
        answers = self.stubs.get((model.service_model.service_name, model.name))
        if not answers:
            return None
        stub = answers.pop(0) if len(answers) > 1 else answers[0]
        response = {**stub.response, "ResponseMetadata": {"HTTPStatusCode": stub.status, "RequestId": "stub"}}
        return AWSResponse("https://stub", stub.status, {}, None), response

    def _answer_async(self, params: Mapping[str, Any], **_: Any) -> Any:
        """SageMaker's side of an asynchronous request (moto writes answers to a bucket of its own):
        reads the request the test put in S3, writes the answer its case expects under the
        environment's output prefix in the model bucket, as the endpoint config says, and says where."""
        assert self.config is not None
        endpoint = params["url_path"].split("/")[2]
        (env,) = [e for e in self.config.environments if self.config.names.endpoint(e.name) == endpoint]
        bucket, _, key = params["headers"]["X-Amzn-SageMaker-InputLocation"].removeprefix("s3://").partition("/")
        backend = s3_backends[ACCOUNT]["aws"]
        body = backend.get_object(bucket, key).value.decode()
        answer = json.dumps(self.async_answers[body]).encode()
        stack = PipelineStack(self.config)
        model_bucket = NAMES["ModelBucket"]
        name = f"{uuid.uuid4()}.out"
        output_key = stack.async_prefix(env, "output") + name
        backend.put_object(model_bucket, output_key, answer)
        headers = {
            "X-Amzn-SageMaker-OutputLocation": f"s3://{model_bucket}/{output_key}",
            "X-Amzn-SageMaker-FailureLocation": f"s3://{model_bucket}/{stack.async_prefix(env, 'failures')}{name}",
        }
        response = {
            "InferenceId": name,
            "OutputLocation": headers["X-Amzn-SageMaker-OutputLocation"],
            "FailureLocation": headers["X-Amzn-SageMaker-FailureLocation"],
            "ResponseMetadata": {"HTTPStatusCode": 202, "RequestId": "simulated"},
        }
        return AWSResponse("https://simulated", 202, headers, None), response

    def _transform(self, **kwargs: Any) -> None:
        """moto completes a transform job at once and writes nothing: write `<key>.out` for every
        input object under the output path, as SageMaker does."""
        request = self.recorder.calls[-1].params
        backend = s3_backends[ACCOUNT]["aws"]
        source = request["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]
        in_bucket, _, in_prefix = source.removeprefix("s3://").partition("/")
        out_bucket, _, out_prefix = request["TransformOutput"]["S3OutputPath"].removeprefix("s3://").partition("/")
        for key in list(backend.get_bucket(in_bucket).keys.keys()):
            if key.startswith(in_prefix):
                backend.put_object(out_bucket, out_prefix + key[len(in_prefix) :] + ".out", b"[0]\n")

    def _end_training_job(self, parsed: Mapping[str, Any], **_: Any) -> None:
        """moto completes every job at once and reports no metric: end it as the scenario says,
        with the gate's metric at its threshold (which passes)."""
        assert self.scenario is not None and self.config is not None
        gate = self.config.quality_gate
        region = self.config.region
        job = sagemaker_backends[ACCOUNT][region].training_jobs[parsed["TrainingJobArn"].rsplit("/", 1)[1]]
        job.training_job_status = job.secondary_status = self.scenario.job_status
        job.final_metric_data_list = [
            {"MetricName": gate.metric, "Value": gate.threshold, "Timestamp": job.creation_time}
        ]
        # The model the container would leave (Train repacks it for PyTorch/TensorFlow); stored
        # through moto's backend, so it is no call of any role.
        bucket, _, key = job.model_artifacts["S3ModelArtifacts"].removeprefix("s3://").partition("/")
        if bucket in s3_backends[ACCOUNT][S3_PARTITION].buckets:
            s3_backends[ACCOUNT][S3_PARTITION].put_object(bucket, key, _EMPTY_MODEL)

    # --- a scenario -------------------------------------------------------------------------------
    def run(self, scenario: Scenario, workdir: Path) -> Simulated:
        """Build the scenario's checkout, world and environment, run its actions, return what happened."""
        repo = _checkout(scenario, workdir / scenario.name)
        branch = scenario.branch
        commit = load_config(repo / "pipeline.yml")
        config = for_branch(commit, branch)  # as the scripts read it (PIPELINE_BRANCH)
        main = parse_config(dict(scenario.config), root=repo)
        deployed = self._synthesize(main, branch)
        templates = {**self._synthesize(commit, branch), PIPELINE_TEMPLATE: deployed[PIPELINE_TEMPLATE]}
        stateful = None
        parameters: dict[str, Any] = {}
        if branch:
            main_template, main_resolver, parameters = self._main_stack(main)
            stateful = (main_template, main_resolver)
        placeholders = Placeholders(region=config.region, names=NAMES, parameters=parameters)
        resolver = Resolver(templates[PIPELINE_TEMPLATE], placeholders, stack_name=config.names.pipeline_stack)
        stateful = stateful or (templates[PIPELINE_TEMPLATE], resolver)
        actions = build_actions(templates[PIPELINE_TEMPLATE], resolver)
        self.deploys = deploy_namespaces(templates)
        known = {a.label for a in actions}
        unknown = set(scenario.actions or ()) - known
        if unknown:
            raise LookupError(f"scenario {scenario.name}: no actions {sorted(unknown)} (there are: {sorted(known)})")
        self.scenario, self.config = scenario, config
        self.stubs = {}
        for stub in scenario.stubs:
            self.stubs.setdefault((stub.service, stub.operation), []).append(stub)
        for stub in (*unchanged_pipeline_stack(config), *docker_push_answers()):  # unless the scenario answers them
            if (stub.service, stub.operation) not in self.stubs:
                self.stubs[(stub.service, stub.operation)] = [stub]
        start = len(self.recorder.calls)
        outcomes: list[Outcome] = []
        exports: dict[str, dict[str, str]] = {
            "SourceVariables": dict(SOURCE_VARIABLES),
            # Pipeline-level variables, `#{variables.NAME}`: a run started by a push takes their defaults.
            "variables": pipeline_variables(templates[PIPELINE_TEMPLATE]),
        }
        with contextlib.ExitStack() as stack:
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            stack.enter_context(mock_aws())
            _fake_environment(patch, config.region)
            patch.setattr(boto3.session, "Session", self.session)
            patch.setattr(boto3, "DEFAULT_SESSION", None)
            patch.setattr(time, "sleep", _interrupt if scenario.interrupt_waits else _no_wait)
            patch.setattr("scripts.build_image.docker", _docker)
            patch.chdir(repo)
            _world(self.session(region_name=config.region), config, templates, stateful, scenario.actions is None)
            self.async_answers = {
                case["body"]: case["expected"]
                for case in (
                    json.loads(path.read_text())
                    for path in sorted((repo / config.endpoint_tests.payloads_dir).glob("*.json"))
                )
            }
            for action in actions:
                if scenario.actions is not None and action.label not in scenario.actions:
                    continue
                outcomes += self._run_action(scenario, action, config, placeholders, exports, patch)
        self.scenario = self.config = None
        self.stubs = {}
        return Simulated(
            scenario=scenario,
            config=config,
            repo=repo,
            templates=templates,
            placeholders=placeholders,
            resolver=resolver,
            calls=self.recorder.calls[start:],
            outcomes=outcomes,
            exports=exports,
            stateful=stateful,
        )

    def _run_action(
        self,
        scenario: Scenario,
        action: BuildAction,
        config: PipelineConfig,
        placeholders: Placeholders,
        exports: dict[str, dict[str, str]],
        patch: Any,
    ) -> list[Outcome]:
        build_arn = (
            f"arn:aws:codebuild:{config.region}:{placeholders.account}:build/{action.project_name}:{uuid.uuid4()}"
        )
        exports.update(_deployed_variables(self.deploys, exports))
        env = {
            **action.env,
            **{name: _fill_variables(value, exports) for name, value in action.action_env},
            "CODEBUILD_BUILD_ARN": build_arn,
            "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT,
        }
        for name, value in env.items():
            patch.setenv(name, value)
        outcomes = []
        exported: dict[str, str] = {}
        for command in action.commands:
            for line in self.makefile.lines(command):
                found = classify(line)
                if isinstance(found, ScriptRun):
                    outcomes.append(Outcome(action, found, self._main(scenario, action, found)))
                elif line.startswith(". "):
                    exported.update(_read_exports(Path(line[2:].strip())))
        for name in env:
            patch.delenv(name, raising=False)
        if action.namespace:
            exports[action.namespace] = exported
        return outcomes

    def _main(self, scenario: Scenario, action: BuildAction, run: ScriptRun) -> int | str:
        module = importlib.import_module(run.module)
        self.recorder.current = (scenario.name, action, run.module)
        try:
            return int(module.main(list(run.argv)))
        except SystemExit as exc:
            return int(exc.code or 0) if not isinstance(exc.code, str) else exc.code
        except Exception as exc:  # e.g. boto3's S3UploadFailedError, which main() lets through today
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.recorder.current = None


def _empty_model() -> bytes:
    """A model.tar.gz with one small file, as a training job's output."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("model.pth")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"model"))
    return buffer.getvalue()


_EMPTY_MODEL = _empty_model()
S3_PARTITION = "aws"


def _fake_environment(patch: Any, region: str) -> None:
    """CodeBuild's region, fake keys, and nothing from the developer's AWS files or CodeBuild."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "CODEBUILD_")) or name in ("MODEL_BUCKET", "SAGEMAKER_ROLE_ARN", "KMS_KEY_ARN"):
            patch.delenv(name)
    patch.setenv("AWS_ACCESS_KEY_ID", "testing")
    patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    patch.setenv("AWS_REGION", region)
    patch.setenv("AWS_DEFAULT_REGION", region)
    patch.setenv("AWS_CONFIG_FILE", os.devnull)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def _no_wait(seconds: float) -> None:
    """Simulated time: nothing sleeps."""


def _interrupt(seconds: float) -> None:
    """The build is stopped while the script waits (CodeBuild sends SIGTERM; the script sees an interrupt)."""
    raise KeyboardInterrupt


def _fill_variables(value: str, exports: Mapping[str, Mapping[str, str]]) -> str:
    def one(match: re.Match) -> str:
        namespace, name = match.group(1), match.group(2)
        if name not in exports.get(namespace, {}):
            raise LookupError(f"#{{{namespace}.{name}}} is exported by no action that ran before")
        return exports[namespace][name]

    return re.sub(r"#\{([A-Za-z0-9_]+)\.([A-Za-z0-9_@-]+)\}", one, value)


def _read_exports(path: Path) -> dict[str, str]:
    """`export K=V` lines of a file a buildspec sources."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        tokens = shlex.split(line)
        if len(tokens) == 2 and tokens[0] == "export" and "=" in tokens[1]:
            name, _, value = tokens[1].partition("=")
            found[name] = value
    return found


def docker_push_answers() -> tuple[Stub, ...]:
    """ECR's answers to the registry calls of a docker push (moto has no layer uploads): no layer
    is there yet, each is uploaded in one part, then the manifest is put."""
    digest = "sha256:" + "0" * 64
    upload = {"uploadId": "simulated", "partSize": 1024}
    return (
        Stub(
            "ecr",
            "BatchCheckLayerAvailability",
            200,
            {"layers": [{"layerDigest": digest, "layerAvailability": "UNAVAILABLE"}]},
        ),
        Stub("ecr", "InitiateLayerUpload", 200, upload),
        Stub("ecr", "UploadLayerPart", 200, {"uploadId": "simulated", "lastByteReceived": 1023}),
        Stub("ecr", "CompleteLayerUpload", 200, {"uploadId": "simulated", "layerDigest": digest}),
        Stub("ecr", "PutImage", 200, {"image": {"imageId": {"imageDigest": digest}}}),
    )


def _docker(args: Sequence[str], stdin: str | None = None) -> None:
    """scripts.build_image's docker, simulated (no daemon here): `login` and `build` call no AWS API;
    `push` makes the ECR calls the Docker client's registry requests are authorized as (ECR User
    Guide, "Pushing an image": BatchCheckLayerAvailability, the layer upload, PutImage)."""
    if args[0] != "push":
        return
    host, _, rest = args[1].partition("/")
    name, _, tag = rest.partition(":")
    ecr = boto3.session.Session().client("ecr")
    where = {"registryId": host.split(".", 1)[0], "repositoryName": name}
    digest = "sha256:" + "0" * 64
    ecr.batch_check_layer_availability(**where, layerDigests=[digest])
    upload = ecr.initiate_layer_upload(**where)["uploadId"]
    ecr.upload_layer_part(**where, uploadId=upload, partFirstByte=0, partLastByte=1023, layerPartBlob=b"0" * 1024)
    ecr.complete_layer_upload(**where, uploadId=upload, layerDigests=[digest])
    ecr.put_image(**where, imageManifest="{}", imageTag=tag)


def _checkout(scenario: Scenario, root: Path) -> Path:
    """The repository as CodeBuild checks it out: the scenario's pipeline.yml and the model folder."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / "pipeline.yml").write_text(yaml.safe_dump(dict(scenario.commit or scenario.config), sort_keys=False))
    shutil.copytree(REPO / "model", root / "model", ignore=shutil.ignore_patterns("__pycache__"))
    container = (scenario.commit or scenario.config)["model"].get("container")
    if container is not None:  # its own image: the Dockerfile the BuildImage action builds
        dockerfile = root / container.get("dockerfile", "Dockerfile")
        dockerfile.parent.mkdir(parents=True, exist_ok=True)
        dockerfile.write_text("FROM python:3.11-slim\n")
    if scenario.big_file_in:
        # Incompressible and over boto3's 8 MiB multipart threshold, so it goes up in parts
        # (in the source folder, inside the code archive).
        data = (scenario.commit or scenario.config)["training_data"].get("local_dir")
        folder = root / ("model" if scenario.big_file_in == "source" else data)
        (folder / "weights.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 64 * 1024))
    return root


def change_set_id(config: PipelineConfig) -> str:
    """The ARN CloudFormation gives a change set on the pipeline stack (moto has no change sets of its own
    for a template it cannot create, so the UpdatePipeline action's are answered by stubs)."""
    return (
        f"arn:aws:cloudformation:{config.region}:{ACCOUNT}:changeSet/self-update/7d3e8a00-0000-4000-8000-000000000004"
    )


def unchanged_pipeline_stack(config: PipelineConfig) -> tuple[Stub, ...]:
    """CloudFormation's answers when the commit's pipeline template changes nothing: the change set is
    created, fails with "didn't contain changes", and the UpdatePipeline action deletes it."""
    stack = config.names.pipeline_stack
    nothing = "The submitted information didn't contain changes. Submit different information to create a change set."
    return (
        Stub("cloudformation", "CreateChangeSet", 200, {"Id": change_set_id(config), "StackId": stack}),
        Stub(
            "cloudformation",
            "DescribeChangeSet",
            200,
            {"ChangeSetName": "self-update", "StackName": stack, "Status": "FAILED", "StatusReason": nothing},
        ),
        Stub("cloudformation", "DeleteChangeSet"),
    )


def _world(
    session: Any,
    config: PipelineConfig,
    templates: Mapping[str, dict],
    stateful: tuple[dict, Resolver],
    endpoints: bool,
) -> None:
    """What exists when the actions run: the pipeline stack (settled, as `make deploy` leaves it; a
    stand-in template, as moto cannot create the real one), the buckets of the stack that holds the
    actions (the pipeline's, or a branch's main one), and each environment's endpoint in service (as
    its deploy action leaves it), answering its test cases as expected."""
    stand_in = {"Resources": {"StandIn": {"Type": "AWS::SNS::Topic"}}}
    session.client("cloudformation").create_stack(
        StackName=config.names.pipeline_stack, TemplateBody=json.dumps(stand_in)
    )
    s3 = session.client("s3")
    template, resolver = stateful
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::S3::Bucket":
            where = {} if config.region == "us-east-1" else {"LocationConstraint": config.region}
            s3.create_bucket(Bucket=resolver.physical_name(logical_id), CreateBucketConfiguration=where)
    # The model registry the pipeline stack holds (its group, named by pipeline.names).
    session.client("sagemaker").create_model_package_group(ModelPackageGroupName=config.names.model_package_group)
    if "ImageRepository" in template["Resources"]:  # model.container's, empty until BuildImage pushes
        session.client("ecr").create_repository(repositoryName=resolver.physical_name("ImageRepository"))
    data = config.training_data
    if config.training_data_key_prefix is not None:  # the training data seeded or dropped in the model bucket
        s3.put_object(
            Bucket=resolver.physical_name("ModelBucket"),
            Key=config.training_data_key_prefix + "train.csv",
            Body=b"1,2,3\n",
        )
    if data.s3_uri and data.s3_bucket:  # the training data a data scientist put there
        where = {} if config.region == "us-east-1" else {"LocationConstraint": config.region}
        s3.create_bucket(Bucket=data.s3_bucket, CreateBucketConfiguration=where)
        s3.put_object(Bucket=data.s3_bucket, Key=data.s3_prefix + "train.csv", Body=b"1,2,3\n")
    # An earlier training job of the project, Completed, with other inputs: the training cache reads
    # its tags (ListTags) and trains.
    sagemaker = session.client("sagemaker")
    sagemaker.create_training_job(
        TrainingJobName=config.names.training_job("0" * 40, datetime(2026, 1, 1, tzinfo=timezone.utc)),
        AlgorithmSpecification={"TrainingImage": "simulated", "TrainingInputMode": "File"},
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/simulated",
        OutputDataConfig={"S3OutputPath": "s3://simulated/"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        Tags=[{"Key": PROJECT_TAG, "Value": config.project}, {"Key": INPUTS_HASH_TAG, "Value": "0" * 64}],
    )
    batch = config.batch_transform
    if batch is not None:  # its input objects, in the model bucket or the team's own
        in_bucket = batch.input.s3_bucket or resolver.physical_name("ModelBucket")
        prefix = batch.input.s3_prefix if batch.input.s3_uri else f"{config.project}/{batch.input.model_bucket_prefix}"
        if batch.input.s3_uri and in_bucket != data.s3_bucket:
            where = {} if config.region == "us-east-1" else {"LocationConstraint": config.region}
            s3.create_bucket(Bucket=in_bucket, CreateBucketConfiguration=where)
        for name in ("part-1.csv", "part-2.csv"):
            s3.put_object(Bucket=in_bucket, Key=prefix + name, Body=b"5.1,3.5,1.4,0.2\n")
    if not endpoints:
        return
    cases = sorted((Path.cwd() / config.endpoint_tests.payloads_dir).glob("*.json"))
    expected = [json.loads(path.read_text())["expected"] for path in cases]
    for template in templates.values():
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::SageMaker::Endpoint":
                continue
            endpoint = resource["Properties"]["EndpointName"]
            sagemaker.create_model(
                ModelName=endpoint,
                ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/simulated",
                PrimaryContainer={"Image": "simulated"},
            )
            sagemaker.create_endpoint_config(
                EndpointConfigName=endpoint,
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": endpoint,
                        "InitialInstanceCount": 1,
                        "InstanceType": "ml.m5.large",
                    }
                ],
            )
            sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)
            _queue_answers(config.region, expected)


def _queue_answers(region: str, bodies: Sequence[Any]) -> None:
    """moto answers each distinct InvokeEndpoint request of an endpoint with the next queued result."""
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={
            "account_id": ACCOUNT,
            "region": region,
            "results": [
                {"Body": json.dumps(b), "ContentType": "application/json", "InvokedProductionVariant": "AllTraffic"}
                for b in bodies
            ],
        },
        timeout=10,
    )
    response.raise_for_status()
