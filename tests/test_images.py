"""The framework image tables: shipped files equal what pipeline.images makes from the pinned
sagemaker-core (installed in the dev venv), and synth refuses what the tables lack."""

from __future__ import annotations

import copy
import json
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import images, monitoring
from pipeline.config import ConfigError, parse_config
from pipeline.frameworks import FRAMEWORKS

REPO = Path(__file__).resolve().parent.parent
SAMPLE = yaml.safe_load((REPO / "pipeline.yml").read_text())


def _installed(name: str) -> dict[str, Any]:
    """One of sagemaker-core's config files, read from the installed package (without importing it)."""
    package = distribution(images.SOURCE_PACKAGE)
    assert package.version == images.SOURCE_VERSION, "the dev venv's sagemaker-core is not the pinned one"
    data: dict[str, Any] = json.loads(Path(str(package.locate_file(images.source_path(name)))).read_text())
    return data


def _shipped(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((images.IMAGES_DIR / f"{name}.json").read_text())
    return data


def _differences(shipped: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The top-level version or registry entries where the shipped table differs from the expected one."""
    out = []
    for section in ("versions", "registries"):
        for key in sorted(set(shipped.get(section, {})) | set(expected.get(section, {}))):
            if shipped.get(section, {}).get(key) != expected.get(section, {}).get(key):
                out.append(f"{section}.{key}")
    if shipped.get("_source") != expected.get("_source"):
        out.append("_source")
    return out


@pytest.mark.parametrize("name", sorted(images.TABLE_FILES))
def test_a_shipped_framework_table_is_what_the_pinned_sagemaker_core_makes(name):
    expected = images.build_table(name, _installed(images.TABLE_FILES[name]))
    assert _differences(_shipped(name), expected) == []
    assert (images.IMAGES_DIR / f"{name}.json").read_text() == images.table_text(
        name, _installed(images.TABLE_FILES[name])
    )


def test_the_shipped_model_monitor_table_is_what_the_pinned_sagemaker_core_makes():
    assert monitoring.TABLE_FILE.read_text() == monitoring.table_text(_installed("model-monitor"))


def test_a_changed_shipped_entry_is_seen():
    expected = images.build_table("sklearn", _installed("sklearn"))
    changed = copy.deepcopy(_shipped("sklearn"))
    changed["versions"]["1.2-1"]["training"]["images"][0]["tag"] = "1.2-1-cpu-py39"
    changed["registries"]["accounts-1"]["eu-west-1"] = "111122223333"
    assert _differences(changed, expected) == ["versions.1.2-1", "registries.accounts-1"]
    dropped = copy.deepcopy(_shipped("sklearn"))
    del dropped["versions"]["1.9-0"]
    assert _differences(dropped, expected) == ["versions.1.9-0"]


def test_aliases_keep_the_written_version_in_the_tag_and_name_what_they_resolve_to():
    # image_uris.retrieve: tag_prefix = version_config.get("tag_prefix", version), version as written.
    entry = _shipped("pytorch")["versions"]["2.6"]["training"]
    assert entry["resolves_to"] == "2.6.0"
    assert {image["tag"] for image in entry["images"]} == {"2.6-cpu-py312", "2.6-gpu-py312"}


def test_tags_follow_the_sdk_rules_per_framework():
    xgboost = _shipped("xgboost")["versions"]
    assert [image["tag"] for image in xgboost["1.7-1"]["training"]["images"]] == ["1.7-1"]
    assert "1" not in xgboost and "latest" not in xgboost  # the built-in algorithm's image, not framework mode
    serving = _shipped("tensorflow")["versions"]["2.19.0"]["inference"]["images"]
    assert [image["tag"] for image in serving] == ["2.19.0-cpu", "2.19.0-gpu"]  # no py_versions in its config
    sklearn = _shipped("sklearn")["versions"]["1.2-1"]["inference"]["images"]
    assert [image["tag"] for image in sklearn] == ["1.2-1-cpu-py3"]


def test_no_table_has_a_non_commercial_region():
    for name in images.TABLE_FILES:
        regions = {region for accounts in _shipped(name)["registries"].values() for region in accounts}
        assert not {region for region in regions if region.startswith(images.NOT_COMMERCIAL)}


def test_the_sklearn_framework_reads_its_uri_from_the_table():
    sklearn = FRAMEWORKS["sklearn"]
    assert sklearn.versions() == ["0.23-1", "1.0-1", "1.2-1", "1.4-2-py312", "1.9-0"]
    table = _shipped("sklearn")["versions"]
    for version in sklearn.versions():  # one URI trains and serves: the table must agree
        assert table[version]["training"]["images"] == table[version]["inference"]["images"], version
    assert sklearn.image_uri("eu-west-1", "1.2-1") == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    )


def _config(**model: object) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE)
    data["model"].update(model)
    return data


def test_a_version_the_table_lacks_is_refused_naming_the_published_ones():
    with pytest.raises(ConfigError) as exc:
        parse_config(_config(framework_version="1.3-1"), root=REPO)
    (line,) = str(exc.value).splitlines()
    assert "model.framework_version: '1.3-1' is not a published scikit-learn image version" in line
    assert "1.2-1, 1.4-2-py312, 1.9-0" in line


def test_a_region_without_the_versions_images_is_refused_naming_where_they_are(monkeypatch):
    sklearn = FRAMEWORKS["sklearn"]
    only_two = {"us-east-1": "683313688378", "eu-west-1": "141502667606"}
    real = type(sklearn).registry_accounts
    # 1.2-1 (the sample's) published in two regions only; the other versions everywhere as shipped.
    monkeypatch.setattr(
        type(sklearn),
        "registry_accounts",
        lambda self, version: only_two if version == "1.2-1" else real(self, version),
    )
    data = copy.deepcopy(SAMPLE)
    data["region"] = "us-east-1" if SAMPLE["region"] != "us-east-1" else "eu-west-1"
    parse_config(data, root=REPO)  # published there: accepted
    data["region"] = "ap-southeast-2"
    with pytest.raises(ConfigError) as exc:
        parse_config(data, root=REPO)
    (line,) = str(exc.value).splitlines()
    assert line == (
        "pipeline.yml: region: 'ap-southeast-2' has no SageMaker scikit-learn 1.2-1 images "
        "(published in: eu-west-1, us-east-1)"
    )
