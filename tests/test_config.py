"""pipeline.yml validation: every malformed config is refused with one line naming the field."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_config, parse_config
from pipeline.frameworks import FRAMEWORKS, Framework

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _with(path: str, value) -> dict:
    """The sample config with one dotted path set (or removed, for value=DELETE); a number in
    the path indexes a list (environments.1.instance_type)."""
    data = copy.deepcopy(SAMPLE)
    *parents, leaf = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = data
    for key in parents:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    if value is DELETE:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return data


DELETE = object()

# (description, dotted path to change, new value, text the error line must contain)
MALFORMED = [
    ("project too long", "project", "a" * 70, "project:"),
    ("project uppercase", "project", "Iris", "project:"),
    ("project with underscore", "project", "iris_model", "project:"),
    ("project double hyphen", "project", "iris--model", "project:"),
    ("project missing", "project", DELETE, "project: is required"),
    ("region not commercial", "region", "cn-north-1", "region:"),
    ("region typo", "region", "us-east-9", "region:"),
    ("region missing", "region", DELETE, "region: is required"),
    ("github owner missing", "source.github.owner", DELETE, "source.github.owner: is required"),
    ("github repo bad", "source.github.repo", "my repo", "source.github.repo:"),
    ("branch with space", "source.github.branch", "my branch", "source.github.branch:"),
    (
        "connection arn malformed",
        "source.github.connection_arn",
        "arn:aws:s3:::bucket",
        "source.github.connection_arn:",
    ),
    ("unknown framework", "model.framework", "mxnet", "model.framework:"),
    ("unknown framework version", "model.framework_version", "0.1-0", "model.framework_version:"),
    (
        "reserved hyperparameter",
        "model.hyperparameters",
        {"sagemaker_program": "x"},
        "model.hyperparameters.sagemaker_program:",
    ),
    ("training instance type", "model.training.instance_type", "m5.large", "model.training.instance_type:"),
    ("training instance count zero", "model.training.instance_count", 0, "model.training.instance_count:"),
    ("max runtime over CodeBuild", "model.training.max_runtime_minutes", 3000, "model.training:"),
    ("max wait without spot", "model.training.max_wait_minutes", 90, "model.training:"),
    ("spot as a string", "model.training.spot", "maybe", "model.training.spot:"),
    (
        "typo in a key",
        "model.training.instance_typ",
        "ml.m5.large",
        "model.training.instance_typ: is not a known setting",
    ),
    ("data: both sources", "training_data.s3_uri", "s3://bucket/data/", "training_data:"),
    ("data: bad s3 uri", "training_data", {"s3_uri": "bucket/data"}, "training_data.s3_uri:"),
    ("data: no source", "training_data", {}, "training_data:"),
    ("gate direction", "quality_gate.direction", "up", "quality_gate.direction:"),
    ("gate threshold text", "quality_gate.threshold", "high", "quality_gate.threshold:"),
    ("gate regex without group", "quality_gate.regex", "accuracy=[0-9.]+", "quality_gate.regex:"),
    ("gate metric missing", "quality_gate.metric", DELETE, "quality_gate.metric: is required"),
    (
        "champion against an unknown environment",
        "quality_gate.champion.against",
        "staging",
        "quality_gate.champion.against: 'staging' is not one of the environments (qa, prod)",
    ),
    ("champion margin negative", "quality_gate.champion.margin", -0.1, "quality_gate.champion.margin:"),
    ("champion margin text", "quality_gate.champion.margin", "a bit", "quality_gate.champion.margin:"),
    ("champion typo", "quality_gate.champion.agianst", "prod", "quality_gate.champion.agianst: is not a known"),
    ("prod instance type", "environments.1.instance_type", "ml.m5", "environments[1].instance_type:"),
    ("prod count negative", "environments.1.initial_instance_count", -1, "environments[1].initial_instance_count:"),
    (
        "serverless memory step",
        "environments.0.serverless.memory_mb",
        1500,
        "environments[0].serverless.memory_mb: 1500 is not allowed: use 1024",
    ),
    (
        "serverless memory over",
        "environments.0.serverless.memory_mb",
        7168,
        "environments[0].serverless.memory_mb: must be at most 6144",
    ),
    (
        "serverless concurrency",
        "environments.0.serverless.max_concurrency",
        201,
        "environments[0].serverless.max_concurrency: must be at most 200",
    ),
    (
        "provisioned over max",
        "environments.0.serverless.provisioned_concurrency",
        6,
        "environments[0].serverless.provisioned_concurrency: 6 is over max_concurrency (5)",
    ),
    (
        "serverless and instances",
        "environments.0.instance_type",
        "ml.m5.large",
        "environments[0].serverless: an environment is either serverless or runs instances; remove instance_type or serverless",
    ),
    (
        "serverless and autoscaling",
        "environments.0.autoscaling",
        {"min_instances": 1, "max_instances": 2},
        "environments[0].serverless: an environment is either serverless or runs instances; remove autoscaling or serverless",
    ),
    (
        "autoscaling min over max",
        "environments.1.autoscaling.min_instances",
        5,
        "environments[1].autoscaling.min_instances: 5 is over max_instances (4)",
    ),
    (
        "count below autoscaling",
        "environments.1.initial_instance_count",
        1,
        "environments[1].initial_instance_count: 1 is outside autoscaling's 2..4",
    ),
    (
        "autoscaling target zero",
        "environments.1.autoscaling.target_invocations_per_instance",
        0,
        "environments[1].autoscaling.target_invocations_per_instance: must be over 0",
    ),
    (
        "autoscaling unknown key",
        "environments.1.autoscaling.max",
        3,
        "environments[1].autoscaling.max: is not a known setting",
    ),
    ("environment name uppercase", "environments.1.name", "Prod", "environments[1].name:"),
    ("environment name missing", "environments.1.name", DELETE, "environments[1].name: is required"),
    ("environment name too long", "environments.1.name", "p" * 21, "environments[1].name:"),
    ("environment names twice", "environments.1.name", "qa", "environments: 'qa' named more than once"),
    ("no environments", "environments", [], "environments:"),
    ("approval as a string", "environments.1.approval", "yes", "environments[1].approval:"),
    ("another account", "environments.1.account", "111122223333", "environments[1].account: deploying to another"),
    ("account malformed", "environments.1.account", "1234", "environments[1].account:"),
    ("another region", "environments.1.region", "eu-west-1", "environments[1].region: deploying to another region"),
    ("approval email", "approval.emails", ["not-an-email"], "approval.emails[0]:"),
    ("approval duplicate email", "approval.emails", ["a@example.com", "a@example.com"], "approval.emails:"),
    ("latency budget zero", "endpoint_tests.latency_budget_ms", 0, "endpoint_tests.latency_budget_ms:"),
    ("reserved tag", "tags", {"aws:owner": "me"}, "tags.aws:owner:"),
    (
        "trigger: nine branch patterns",
        "triggers.branches",
        [f"b{i}" for i in range(9)],
        "triggers.branches: 9 patterns",
    ),
    ("trigger: no branch", "triggers.branches", [], "triggers.branches: needs at least one"),
    ("trigger: long path", "triggers.paths", ["p" * 256], "triggers.paths: 'ppp"),
    ("trigger: empty path", "triggers.paths_excluded", [""], "triggers.paths_excluded: a pattern is empty"),
    ("trigger: path twice", "triggers.paths_excluded", ["docs/**", "docs/**"], "triggers.paths_excluded: lists"),
    ("trigger: path as text", "triggers.paths", "docs/**", "triggers.paths: expected a list"),
    ("trigger: unknown key", "triggers.pull_request", True, "triggers.pull_request: is not a known setting"),
    ("schedule: not an expression", "triggers.schedule", "weekly", "triggers.schedule: 'weekly' is not rate("),
    ("schedule: plural for one", "triggers.schedule", "rate(1 days)", "triggers.schedule: write rate(1 day)"),
    ("schedule: zero rate", "triggers.schedule", "rate(0 hours)", "triggers.schedule: a rate must be at least 1"),
    ("schedule: cron fields", "triggers.schedule", "cron(0 3 * * *)", "triggers.schedule: a cron expression has six"),
    ("schedule: cron both days", "triggers.schedule", "cron(0 3 1 * MON *)", "triggers.schedule: cron: one of"),
    (
        "data: three sources",
        "training_data.local_dir",
        "model/data",
        "training_data: set exactly one of s3_uri, local_dir or model_bucket_prefix",
    ),
    (
        "data: prefix not a folder",
        "training_data.model_bucket_prefix",
        "training-data",
        "training_data.model_bucket_prefix: 'training-data' must be a folder: no leading '/', ending in '/'",
    ),
    (
        "data: prefix from the root",
        "training_data.model_bucket_prefix",
        "/training-data/",
        "training_data.model_bucket_prefix: '/training-data/' must be a folder",
    ),
    (
        "data: prefix wildcard",
        "training_data.model_bucket_prefix",
        "train*/",
        "training_data.model_bucket_prefix: the prefix 'train*/' holds a wildcard",
    ),
    (
        "data: prefix Sub variable",
        "training_data.model_bucket_prefix",
        "${AWS::AccountId}/",
        "training_data.model_bucket_prefix: the prefix '${AWS::AccountId}/' holds '${'",
    ),
    (
        "data: prefix odd characters",
        "training_data.model_bucket_prefix",
        "a b/",
        "training_data.model_bucket_prefix: the prefix holds ' ': use letters",
    ),
    (
        "data: prefix empty folder",
        "training_data.model_bucket_prefix",
        "a//",
        "training_data.model_bucket_prefix: the prefix 'a//' has an empty, '.' or '..' folder",
    ),
    (
        "data: prefix is where models go",
        "training_data.model_bucket_prefix",
        "models/",
        "training_data.model_bucket_prefix: 'models/' overlaps the pipeline's own folder models/",
    ),
    (
        "data: prefix holds the per-commit uploads",
        "training_data.model_bucket_prefix",
        "data/iris/",
        "training_data.model_bucket_prefix: 'data/iris/' overlaps the pipeline's own folder data/",
    ),
    (
        "data: prefix too long",
        "training_data.model_bucket_prefix",
        "a/" * 480,
        "training_data.model_bucket_prefix: s3://MODEL-BUCKET/iris-classifier/PREFIX can be 1,045 characters, "
        "over SageMaker's 1,024",
    ),
    (
        "data: seed without a prefix",
        "training_data",
        {"local_dir": "model/data", "seed_dir": "model/data"},
        "training_data: seed_dir seeds the model bucket's folder, so it needs model_bucket_prefix",
    ),
    ("data: seed missing", "training_data.seed_dir", "model/nothing", "training_data.seed_dir: folder 'model/nothing'"),
    ("data: seed outside the repo", "training_data.seed_dir", "../elsewhere", "training_data.seed_dir:"),
    ("data: prefix not a string", "training_data.model_bucket_prefix", 7, "training_data.model_bucket_prefix:"),
]


@pytest.mark.parametrize("description,path,value,expected", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_is_refused_naming_the_field(description, path, value, expected):
    with pytest.raises(ConfigError) as exc:
        parse_config(_with(path, value), root=REPO)
    lines = exc.value.problems
    assert any(line.startswith("pipeline.yml: ") and expected in line for line in lines), lines
    assert all("\n" not in line for line in lines)


def test_the_sample_config_is_valid():
    config = load_config(REPO / "pipeline.yml")
    assert config.project == "iris-classifier"
    assert config.names.endpoint("prod") == "iris-classifier-prod"


def test_a_70_character_project_name_gives_one_line_with_the_limit():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with("project", "p" * 70), root=REPO)
    (line,) = exc.value.problems
    assert "training-job name" in line and "limit of 63" in line and "at most 39 characters" in line


def test_the_longest_allowed_project_name_passes():
    config = parse_config(_with("project", "p" * 39), root=REPO)
    assert len(config.names.training_job_example) == 63


def test_paths_in_the_config_must_exist():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with("model.source_dir", "no-such-folder"), root=REPO)
    assert exc.value.problems == ["pipeline.yml: model.source_dir: folder 'no-such-folder' does not exist"]


def test_yaml_syntax_error_names_the_line(tmp_path):
    bad = tmp_path / "pipeline.yml"
    bad.write_text("project: iris\nregion: [us-east-1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    (line,) = exc.value.problems
    assert "YAML syntax error" in line and "line " in line


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "nope.yml")
    assert exc.value.problems == [f"{tmp_path / 'nope.yml'}: file not found"]


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError) as exc:
        parse_config(["project"], root=REPO)
    assert "mapping" in exc.value.problems[0]


def test_training_timeout_follows_max_runtime_and_spot_wait():
    plain = parse_config(_with("model.training.max_runtime_minutes", 120), root=REPO)
    assert plain.model.training.codebuild_timeout_minutes == 150
    spot = copy.deepcopy(SAMPLE)
    spot["model"]["training"].update(spot=True, max_runtime_minutes=60, max_wait_minutes=180)
    assert parse_config(spot, root=REPO).model.training.codebuild_timeout_minutes == 210


def test_quality_gate_direction():
    config = load_config(REPO / "pipeline.yml")
    assert config.quality_gate.passes(0.95) and not config.quality_gate.passes(0.85)
    low = parse_config(_with("quality_gate", {"metric": "rmse", "threshold": 2.0, "direction": "minimize"}), root=REPO)
    assert low.quality_gate.passes(1.5) and not low.quality_gate.passes(2.5)


def test_champion_defaults_to_the_last_environment_and_a_zero_margin():
    assert load_config(REPO / "pipeline.yml").champion_environment == "prod"
    data = copy.deepcopy(SAMPLE)
    data["quality_gate"]["champion"] = {}
    config = parse_config(data, root=REPO)
    assert (config.champion_environment, config.quality_gate.champion.margin) == ("prod", 0.0)
    assert config.quality_gate.beats(0.95, 0.95) and not config.quality_gate.beats(0.94, 0.95)
    data["quality_gate"].pop("champion")
    assert parse_config(data, root=REPO).champion_environment is None


def test_champion_margin_in_both_directions():
    high = _with(
        "quality_gate", {"metric": "acc", "threshold": 0.5, "direction": "maximize", "champion": {"margin": 0.1}}
    )
    gate = parse_config(high, root=REPO).quality_gate
    assert gate.beats(0.9, 0.8) and not gate.beats(0.89, 0.8)
    low = _with(
        "quality_gate", {"metric": "rmse", "threshold": 2.0, "direction": "minimize", "champion": {"margin": 0.1}}
    )
    gate = parse_config(low, root=REPO).quality_gate
    assert gate.beats(0.7, 0.8) and not gate.beats(0.71, 0.8)


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, capture_output=True, text=True)


def test_synth_with_a_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "pipeline.yml"
    data = _with("project", "x" * 70)
    data["quality_gate"].pop("direction")
    bad.write_text(yaml.safe_dump(data))
    result = _cli("synth", "--config", str(bad), "--root", str(REPO), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert any("project:" in line for line in lines) and any(
        "quality_gate.direction: is required" in line for line in lines
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_schema_command_prints_the_config_schema():
    result = _cli("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["required"]) >= {"project", "region", "source", "training_data", "quality_gate"}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("command", ["deploy", "destroy", "status"])
def test_a_region_flag_that_contradicts_the_config_is_refused(command):
    result = _cli(command, "--region", "eu-west-1")
    assert result.returncode == 2
    assert result.stderr.strip() == "--region eu-west-1 differs from pipeline.yml's region us-east-1: change the config"


@pytest.mark.parametrize("command", [["deploy"], ["destroy", "--yes"], ["status"]], ids=lambda c: c[0])
def test_aws_commands_without_credentials_say_so_in_one_line(command, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
    )
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{command[0]}: no AWS credentials")
    assert result.stdout == ""


# ----- environments ----------------------------------------------------------------------------


def test_environments_are_an_ordered_list_with_approvals():
    config = load_config(REPO / "pipeline.yml")
    assert [(env.name, env.approval) for env in config.environments] == [("qa", False), ("prod", True)]
    assert config.environment("prod").initial_instance_count == 2


def test_without_environments_the_pipeline_has_qa_then_approved_prod():
    config = parse_config(_with("environments", DELETE), root=REPO)
    assert [(env.name, env.approval) for env in config.environments] == [("qa", False), ("prod", True)]


def test_a_third_environment_is_a_config_change():
    data = copy.deepcopy(SAMPLE)
    data["environments"].insert(1, {"name": "staging", "instance_type": "ml.c5.large"})
    config = parse_config(data, root=REPO)
    assert [env.name for env in config.environments] == ["qa", "staging", "prod"]
    assert config.names.endpoint("staging") == "iris-classifier-staging"


def test_the_old_qa_prod_mapping_gets_one_line_saying_how_to_write_the_list():
    old = _with("environments", {"qa": {"instance_type": "ml.m5.large"}, "prod": {"initial_instance_count": 2}})
    with pytest.raises(ConfigError) as exc:
        parse_config(old, root=REPO)
    (line,) = exc.value.problems
    assert line.startswith("pipeline.yml: environments: is an ordered list now")
    assert line.endswith(
        "write  environments: [{name: qa, instance_type: ml.m5.large}, "
        "{name: prod, approval: true, initial_instance_count: 2}]"
    )
    # ...and the suggestion is a valid config.
    suggested = yaml.safe_load(line.split("write  environments: ", 1)[1])
    assert [env.name for env in parse_config(_with("environments", suggested), root=REPO).environments] == [
        "qa",
        "prod",
    ]


def test_the_list_form_keeps_the_old_order_qa_then_prod():
    old = _with("environments", {"prod": {}, "qa": {}})
    with pytest.raises(ConfigError) as exc:
        parse_config(old, root=REPO)
    assert exc.value.problems[0].endswith("write  environments: [{name: qa}, {name: prod, approval: true}]")


def test_an_unknown_framework_names_the_ones_there_are():
    with pytest.raises(ConfigError) as exc:
        parse_config(_with("model.framework", "mxnet"), root=REPO)
    assert exc.value.problems == [
        "pipeline.yml: model.framework: 'mxnet' is not a framework this pipeline delivers "
        "(one of: sklearn, xgboost, pytorch, tensorflow)"
    ]


def test_the_framework_knows_the_image_of_the_region_and_version():
    config = load_config(REPO / "pipeline.yml")
    image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert config.training_image == image
    assert [config.serving_image(env) for env in config.environments] == [image, image]
    assert config.image_repositories == ["sagemaker-scikit-learn"]


def test_triggers_default_to_the_source_branch_without_docs_only_pushes():
    config = parse_config(SAMPLE, root=REPO)
    assert config.branch_patterns == [SAMPLE["source"]["github"]["branch"]]
    assert config.triggers.paths_excluded == ["**/*.md", "docs/**"]
    assert config.triggers.schedule is None
    assert config.retrains_on_new_data  # the sample's data is in the model bucket


@pytest.mark.parametrize("data", [{"s3_uri": "s3://bucket/data/"}, {"model_bucket_prefix": "training-data/"}])
def test_new_data_retrains_by_default_when_the_data_is_in_s3_and_can_be_turned_off(data):
    s3 = _with("training_data", data)
    assert parse_config(s3, root=REPO).retrains_on_new_data
    s3["triggers"] = {"new_data": False}
    assert not parse_config(s3, root=REPO).retrains_on_new_data


def test_new_data_is_refused_for_a_repo_folder():
    data = _with("training_data", {"local_dir": "model/data"})
    assert not parse_config(data, root=REPO).retrains_on_new_data
    data["triggers"] = {"new_data": True}
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=REPO)
    assert exc.value.problems == [
        "pipeline.yml: triggers.new_data: the training data is a repo folder (training_data.local_dir), so new "
        "data arrives with a commit; new_data needs training_data.s3_uri or model_bucket_prefix"
    ]


def test_the_samples_training_data_is_its_model_bucket_folder_seeded_from_the_repo():
    config = load_config(REPO / "pipeline.yml")
    assert config.training_data.model_bucket_prefix == "training-data/"
    assert config.training_data.seed_dir == "model/data"
    assert config.training_data_key_prefix == "iris-classifier/training-data/"


@pytest.mark.parametrize("expression", ["rate(1 day)", "rate(12 hours)", "rate(30 minutes)", "cron(0 3 ? * MON *)"])
def test_valid_schedules_are_accepted(expression):
    assert parse_config(_with("triggers.schedule", expression), root=REPO).triggers.schedule == expression


def test_serverless_is_refused_for_a_framework_without_cpu_serving_images(monkeypatch):
    monkeypatch.setattr(Framework, "serves_on", lambda self, version, processor: processor == "gpu")
    with pytest.raises(ConfigError) as exc:
        parse_config(_with("project", "iris-classifier"), root=REPO)
    assert exc.value.problems == [
        "pipeline.yml: environments[0].serverless: qa would run cpu images (Serverless Inference runs on CPUs "
        "only) and scikit-learn 1.2-1 serves on cpu only; choose an instance type of that kind"
    ]


@pytest.mark.parametrize(
    ("path", "instance_type", "problem"),
    [
        (
            "environments.1.instance_type",
            "ml.g5.xlarge",
            "environments[1].instance_type: prod would run gpu images and scikit-learn 1.2-1 serves on cpu only; "
            "choose an instance type of that kind",
        ),
        (
            "environments.1.instance_type",
            "ml.inf2.xlarge",
            "environments[1].instance_type: prod would run neuron images and scikit-learn 1.2-1 serves on cpu "
            "only; choose an instance type of that kind",
        ),
        (
            "model.training.instance_type",
            "ml.p3.2xlarge",
            "model.training.instance_type: ml.p3.2xlarge runs gpu images and scikit-learn 1.2-1 trains on cpu only; "
            "choose an instance type of that kind",
        ),
    ],
)
def test_an_instance_type_without_an_image_of_its_processor_is_refused(path, instance_type, problem):
    # As the SDK's image_uris.retrieve, which refuses sklearn on a GPU instance ("Unsupported processor").
    with pytest.raises(ConfigError) as exc:
        parse_config(_with(path, instance_type), root=REPO)
    assert exc.value.problems == [f"pipeline.yml: {problem}"]


def test_the_sklearn_images_are_cpu_builds():
    sklearn = FRAMEWORKS["sklearn"]
    assert all(sklearn.processors(version, "inference") == ["cpu"] for version in sklearn.versions())
