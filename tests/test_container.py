"""model.container, the project's own image: its config, the ECR repository and BuildImage stage it
adds to the pipeline stack, the image Train and the endpoints use, and scripts/build_image.py
(decide, then do; ECR under botocore's Stubber, docker faked)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config, parse_config
from pipeline.stacks.endpoint import run_parameters
from pipeline.synth import render
from scripts import build_image, train

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "own-container" / "pipeline.yml"
DATA = yaml.safe_load(EXAMPLE.read_text())
REPOSITORY = "111122223333.dkr.ecr.us-east-1.amazonaws.com/own-container-imagerepository-abc"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _config(**model):
    data = copy.deepcopy(DATA)
    data["model"].update(model)
    return parse_config(data)


@pytest.fixture(scope="module")
def example():
    return load_config(EXAMPLE, check_payloads=True)


@pytest.fixture(scope="module")
def templates(example):
    return render(example).templates


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [("framework", "sklearn"), ("entry_point", "x.py"), ("source_dir", "x")])
def test_a_container_with_script_mode_fields_is_refused_in_one_line(field, value):
    with pytest.raises(ConfigError) as exc:
        _config(**{field: value})
    (line,) = exc.value.problems
    assert line.startswith(f"pipeline.yml: model.container: your own image replaces script mode; remove model.{field}")


def test_a_container_with_a_builtin_algorithm_is_refused_in_one_line():
    with pytest.raises(ConfigError) as exc:
        _config(algorithm={"name": "linear-learner", "version": "1"})
    assert exc.value.problems == [
        "pipeline.yml: model: algorithm runs in SageMaker's image and container in your own: keep one of the two"
    ]


def test_make_local_refuses_an_own_container_in_one_line_and_the_lint_action_skips_it(tmp_path, capsys):
    from scripts import local

    assert local.main(["--config", str(EXAMPLE), "--work-dir", str(tmp_path / "w")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "local: FAILED: model.container: the local loop runs a framework's script mode; your own image needs "
        "Docker (docker build, then docker run IMAGE train / serve)"
    ]
    report = tmp_path / "r.xml"
    offline = ["--config", str(EXAMPLE), "--offline", "--junit-xml", str(report), "--work-dir", str(tmp_path)]
    assert local.main(offline) == 0
    assert "<skipped" in report.read_text()


def test_a_missing_dockerfile_is_named(tmp_path):
    data = copy.deepcopy(DATA)
    data["model"]["container"]["dockerfile"] = "Nope.dockerfile"
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=EXAMPLE.parent)
    assert exc.value.problems == ["pipeline.yml: model.container.dockerfile: 'Nope.dockerfile' is not a file"]


def test_the_images_are_known_only_once_located(example):
    with pytest.raises(LookupError, match="known only at run time"):
        _ = example.training_image
    located = example.with_built_image(REPOSITORY, COMMIT)
    assert located.training_image == f"{REPOSITORY}:{COMMIT}"
    assert [located.serving_image(env) for env in located.environments] == [f"{REPOSITORY}:{COMMIT}"] * 2
    assert located.image_repositories == []


def test_a_serving_dockerfile_serves_with_its_own_tag():
    located = _config(container={"serving_dockerfile": "Dockerfile"}).with_built_image(REPOSITORY, COMMIT)
    assert located.training_image == f"{REPOSITORY}:{COMMIT}"
    assert located.serving_image(located.environments[0]) == f"{REPOSITORY}:{COMMIT}-serving"


def test_hyperparameters_are_plain_strings_and_the_gate_is_a_metric_definition(example):
    located = example.with_built_image(REPOSITORY, COMMIT)
    target = train.Target(
        bucket="b",
        role_arn="arn:aws:iam::111122223333:role/r",
        kms_key_arn=None,
        commit=COMMIT,
        project="own-container",
    )
    request = train.training_job_request(located, target, "job", located.training_image, "", "s3://b/d/")
    assert request["HyperParameters"] == {"validation-fraction": "0.2", "seed": "7"}
    assert request["AlgorithmSpecification"]["TrainingImage"] == f"{REPOSITORY}:{COMMIT}"
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "validation:accuracy", "Regex": located.quality_gate.metric_regex}
    ]


def test_each_environment_gets_the_image_and_no_source_dir(example):
    located = example.with_built_image(REPOSITORY, COMMIT)
    job = {"ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}, "TrainingJobName": "job"}
    parameters = train.run_parameters(located, job, "", COMMIT)
    assert {env: p["Parameters"]["ImageUri"] for env, p in parameters.items()} == {
        "qa": f"{REPOSITORY}:{COMMIT}",
        "prod": f"{REPOSITORY}:{COMMIT}",
    }
    assert all(set(p["Parameters"]) == set(run_parameters(located)) for p in parameters.values())
    assert "SourceDir" not in run_parameters(located)


# --- the pipeline stack ------------------------------------------------------------------------


def test_the_repository_scans_keeps_tags_encrypts_expires_and_is_retained(templates):
    repository = templates["pipeline.json"]["Resources"]["ImageRepository"]
    props = repository["Properties"]
    assert repository["DeletionPolicy"] == "RetainExceptOnCreate"
    assert props["ImageScanningConfiguration"] == {"ScanOnPush": True}
    assert props["ImageTagMutability"] == "IMMUTABLE"
    assert props["EncryptionConfiguration"] == {
        "EncryptionType": "KMS",
        "KmsKey": {"Fn::GetAtt": ["ArtifactKey", "Arn"]},
    }
    (rule,) = json.loads(props["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 100}


def test_build_image_runs_privileged_in_a_stage_before_build(templates):
    resources = templates["pipeline.json"]["Resources"]
    project = resources["BuildImageProject"]
    assert project["Properties"]["Environment"]["PrivilegedMode"] is True
    assert project["Metadata"]["checkov"]["skip"][0]["id"] == "CKV_AWS_316"
    stages = [stage["Name"] for stage in resources["Pipeline"]["Properties"]["Stages"]]
    assert stages.index("Image") == stages.index("Build") - 1
    train_env = {
        v["Name"]: v["Value"] for v in resources["TrainProject"]["Properties"]["Environment"]["EnvironmentVariables"]
    }
    assert train_env["IMAGE_REPOSITORY_URI"] == {"Fn::GetAtt": ["ImageRepository", "RepositoryUri"]}


def _grants(role: dict) -> list[tuple[str, object]]:
    return [
        (action, statement["Resource"])
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in statement["Action"]
    ]


PUSH = {"ecr:PutImage", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload"}


def test_only_build_image_may_push_and_only_to_the_project_repository(templates):
    resources = templates["pipeline.json"]["Resources"]
    roles = {rid: r for rid, r in resources.items() if r["Type"] == "AWS::IAM::Role" and "Policies" in r["Properties"]}
    pushers = {rid for rid, r in roles.items() if PUSH & {action for action, _ in _grants(r)}}
    assert pushers == {"BuildImageRole"}
    assert {str(res) for action, res in _grants(roles["BuildImageRole"]) if action in PUSH} == {
        str([{"Fn::GetAtt": ["ImageRepository", "Arn"]}])
    }
    pulls = [res for action, res in _grants(roles["SageMakerExecutionRole"]) if action == "ecr:BatchGetImage"]
    assert pulls == [[{"Fn::GetAtt": ["ImageRepository", "Arn"]}]]


def test_the_endpoint_model_has_no_script_mode_environment(templates):
    model = templates["endpoint-prod.json"]["Resources"]["Model"]["Properties"]["PrimaryContainer"]
    assert "Environment" not in model
    assert "SourceDir" not in templates["endpoint-prod.json"]["Parameters"]


# --- scripts/build_image.py ------------------------------------------------------------------------


@pytest.fixture
def ecr(stub_aws, monkeypatch):
    stubbed = stub_aws("ecr")
    monkeypatch.setattr(build_image, "client", lambda service, region=None: stubbed.clients[service])
    return stubbed


@pytest.fixture
def docker(monkeypatch):
    ran: list[list[str]] = []
    monkeypatch.setattr(build_image, "docker", lambda args, stdin=None: ran.append(list(args)))
    return ran


def _describe(ecr, tag: str, error: str | None = None) -> None:
    expected = {
        "registryId": "111122223333",
        "repositoryName": REPOSITORY.split("/")[1],
        "imageIds": [{"imageTag": tag}],
    }
    if error:
        ecr["ecr"].add_client_error("describe_images", error, "refused", expected_params=expected)
    else:
        ecr["ecr"].add_response("describe_images", {"imageDetails": [{"imageTags": [tag]}]}, expected)


def _run() -> int:
    return build_image.main(["--config", str(EXAMPLE), "--repository-uri", REPOSITORY, "--commit", COMMIT])


def test_plan_builds_only_the_tags_not_there():
    wanted = [
        build_image.Image("training", "a", "Dockerfile", "."),
        build_image.Image("inference", "a-serving", "D", "."),
    ]
    assert build_image.plan(wanted, {"a"}) == wanted[1:]
    assert build_image.plan(wanted, {"a", "a-serving"}) == []


def test_a_commit_already_pushed_is_skipped(ecr, docker, capsys):
    _describe(ecr, COMMIT)
    assert _run() == 0
    assert docker == []
    assert "is there already" in capsys.readouterr().out


def test_a_new_commit_is_built_and_pushed(ecr, docker):
    _describe(ecr, COMMIT, "ImageNotFoundException")
    token = "QVdTOnNlY3JldA=="  # AWS:secret
    ecr["ecr"].add_response(
        "get_authorization_token",
        {"authorizationData": [{"authorizationToken": token, "proxyEndpoint": "https://x"}]},
        {"registryIds": ["111122223333"]},
    )
    assert _run() == 0
    uri = f"{REPOSITORY}:{COMMIT}"
    root = EXAMPLE.parent
    assert docker == [
        ["login", "--username", "AWS", "--password-stdin", REPOSITORY.split("/")[0]],
        ["build", "--file", str(root / "Dockerfile"), "--tag", uri, str(root / ".")],
        ["push", uri],
    ]


def test_ecr_refusing_is_one_line(ecr, docker, capsys):
    _describe(ecr, COMMIT, "AccessDeniedException")
    assert _run() == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("build-image: FAILED: ") and "AccessDeniedException" in err and "\n" not in err
    assert docker == []


def test_a_uri_that_is_no_ecr_repository_is_refused(docker, capsys):
    assert build_image.main(["--config", str(EXAMPLE), "--repository-uri", "docker.io/x", "--commit", COMMIT]) == 1
    assert "is not an ECR repository URI" in capsys.readouterr().err


def test_docker_failing_is_one_line(monkeypatch):
    monkeypatch.setattr(build_image.subprocess, "run", lambda *a, **k: type("Done", (), {"returncode": 3})())
    with pytest.raises(build_image.StageFailure, match=r"docker push failed \(exit 3\)"):
        build_image.docker(["push", "x"])


def test_a_self_update_leaves_the_repository_to_make_deploy():
    from scripts.self_update import human_only

    change = {"Action": "Modify", "LogicalResourceId": "ImageRepository", "ResourceType": "AWS::ECR::Repository"}
    assert human_only([{"Type": "Resource", "ResourceChange": change}]) == [
        "ImageRepository (AWS::ECR::Repository) modified"
    ]
