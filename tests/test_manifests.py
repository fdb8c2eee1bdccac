"""Everything in cluster/ and the Dockerfile, checked against what is installed: the launcher YAMLs
by Ray's own validator, the KubeRay manifests for the fields KubeRay requires, every image and Ray
version against this environment's, and every training command they carry through distmeta's
own config loader."""

import copy
import re
import shlex
import sys

import pytest
import ray
import yaml

import distmeta
from distmeta.errors import ConfigError
from tests.conftest import REPO

CLUSTER = REPO / "cluster"
LAUNCHERS = ["launcher-aws.yaml", "launcher-local.yaml"]
KUBERAY = ["raycluster.yaml", "rayjob.yaml"]


def _validate_launcher(config: dict) -> None:
    from ray.autoscaler._private.commands import prepare_config
    from ray.autoscaler._private.util import validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_yamls_pass_rays_validator(name):
    config = yaml.safe_load((CLUSTER / name).read_text())
    _validate_launcher(config)
    assert config["docker"]["image"].endswith(f"distmeta:{distmeta.__version__}-gpu")
    for command in config["head_start_ray_commands"]:
        if "ray start" in command:
            assert "--dashboard-host=127.0.0.1" in command, "the dashboard is reached through `ray dashboard`'s SSH tunnel"


def test_the_validator_catches_a_mistyped_launcher_key():
    config = yaml.safe_load((CLUSTER / "launcher-aws.yaml").read_text())
    config["max_worker"] = config.pop("max_workers")
    with pytest.raises(Exception, match="max_worker"):
        _validate_launcher(config)


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_manifests_have_the_required_fields_and_matching_versions(name):
    doc = yaml.safe_load((CLUSTER / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] in ("RayCluster", "RayJob") and doc["metadata"]["name"]
    spec = _cluster_spec(doc)
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    pods = [head["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            assert container["name"] and container["image"] == f"distmeta:{distmeta.__version__}-gpu"
    gpu_groups = 0
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        gpu_groups += int(limits.get("nvidia.com/gpu", 0)) > 0
    assert gpu_groups >= 1, "a GPU worker group with nvidia.com/gpu limits"


def _train_commands() -> list[list[str]]:
    """The distmeta training commands in cluster/ (RayJob entrypoints and the files' comments)."""
    commands = []
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    commands.append(shlex.split(job["spec"]["entrypoint"]))
    for path in sorted(CLUSTER.glob("*.yaml")):
        text = path.read_text().replace("\\\n#", "")  # comment lines continued with a backslash
        for match in re.finditer(r"#\s+(distmeta submit .*)", text):
            commands.append(shlex.split(" ".join(match.group(1).split())))
    return commands


def test_every_training_command_in_cluster_loads_as_a_config():
    commands = _train_commands()
    assert len(commands) >= 4
    for argv in commands:
        words = [w for w in argv if not w.startswith("--") and not w.startswith("http")]
        config = next(w for w in words if w.endswith(".yaml"))
        overrides = [w for w in words if "=" in w]
        try:
            distmeta.load_config(REPO / config, overrides)
        except ConfigError as exc:
            pytest.fail(f"{' '.join(argv)}: {exc}")


def test_the_dockerfile_builds_on_the_ray_image_of_the_installed_ray_and_python():
    text = (REPO / "Dockerfile").read_text()
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\S+)-py(\d)(\d+)-cpu$", text, re.M)
    assert base, "the default base is a rayproject/ray CPU image"
    assert base.group(1) == ray.__version__
    assert (int(base.group(2)), int(base.group(3))) == sys.version_info[:2], "the lock was made on this Python"
    for tag in re.findall(r"rayproject/ray:(\S+?)-py", text):
        assert tag == ray.__version__
    assert "-c requirements/constraints.txt" in text and "torch==2.13.0" in text
