"""The `ray up` cluster files: Ray's autoscaler schema, and what this project needs of them.

Validation runs what `ray up` runs before it talks to the cloud: ``prepare_config`` (defaults of
the provider merged in, common setup commands merged into the head's and workers') and then
``validate_config`` (Ray's ``ray-schema.json``). Nothing here needs cloud credentials.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from sweep.spec import load_study

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
CLUSTER_FILES = ["aws-gpu.yaml", "gcp-gpu.yaml"]
ONPREM = "onprem.yaml"  # machines you own: no GPU workers to autoscale, no cloud
ALL_FILES = [*CLUSTER_FILES, ONPREM]
BASH = shutil.which("bash") or "/bin/bash"  # found once: some tests run with a bare PATH


def _raw(name: str) -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))


def _prepared(name: str) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config

    return prepare_config(_raw(name))


def _gpu_workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: node
        for name, node in config["available_node_types"].items()
        if name != config["head_node_type"] and node["resources"].get("GPU", 0) >= 1
    }


@pytest.mark.parametrize("name", ALL_FILES)
def test_cluster_file_validates_against_rays_autoscaler_schema(name):
    from ray.autoscaler._private.util import validate_config

    validate_config(_prepared(name))  # raises jsonschema.ValidationError when invalid


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_schema_check_refuses_a_fractional_gpu_count_on_a_node(name):
    # The check this file relies on must be able to fail: node resources are whole numbers.
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    config = _prepared(name)
    broken = copy.deepcopy(config)
    worker = next(iter(_gpu_workers(broken).values()))
    worker["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_head_is_a_cpu_node_that_runs_no_trials(name):
    config = _raw(name)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_gpu_workers_autoscale_from_zero(name):
    config = _raw(name)
    workers = _gpu_workers(config)
    assert workers, "no GPU worker type"
    for worker in workers.values():
        assert worker["min_workers"] == 0
        assert 1 <= worker["max_workers"] <= config["max_workers"]
    assert config["idle_timeout_minutes"] <= 10


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_a_gpu_worker_runs_the_mnist_study_by_its_gpu_fraction(name):
    # studies/mnist.yaml asks for 0.25 GPU per trial: four trials per GPU, so a worker must
    # also have the CPUs for four trials, or CPUs rather than the GPU would limit the packing.
    spec = load_study(ROOT / "studies" / "mnist.yaml")
    for worker in _gpu_workers(_raw(name)).values():
        by_gpu = worker["resources"]["GPU"] / spec.resources.gpu
        by_cpu = worker["resources"]["CPU"] / spec.resources.cpu
        assert by_gpu == 4 and by_cpu >= by_gpu


@pytest.mark.parametrize("name", ALL_FILES)
def test_dashboard_listens_on_the_heads_localhost_only(name):
    config = _raw(name)
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    assert "0.0.0.0" not in (CLUSTER / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_nodes_install_this_ray_and_torch_with_a_cpu_head_and_cuda_workers(name):
    import ray
    import torch

    config = _prepared(name)
    torch_version = torch.__version__.split("+")[0]
    head = " ".join(config["head_setup_commands"])
    workers = " ".join(config["worker_setup_commands"])
    for commands in (head, workers):
        assert f'"ray[default,tune]=={ray.__version__}"' in commands
        assert "-r ~/infovae-sweep.requirement" in commands
    cpu_wheel = f'"torch=={torch_version}" --index-url https://download.pytorch.org/whl/cpu'
    assert cpu_wheel in head
    # PyPI's Linux x86_64 torch wheel is the CUDA build; the CPU index must not reach workers.
    assert f'"torch=={torch_version}" --index-url https://pypi.org/simple' in workers
    assert "whl/cpu" not in workers
    assert "torch.cuda.is_available()" in workers


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_command_is_valid_bash(name):
    config = _prepared(name)
    for key in ("head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
                "worker_start_ray_commands"):
        for command in config[key]:
            checked = subprocess.run([BASH, "-n", "-c", command], capture_output=True, text=True)
            assert checked.returncode == 0, f"{key}: {command}\n{checked.stderr}"


def _run(command: str, home: Path, path: str | None = None) -> subprocess.CompletedProcess:
    env = {"HOME": str(home), "PATH": path or os.environ["PATH"]}
    return subprocess.run([BASH, "-c", command], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("name", ALL_FILES)
def test_project_install_stops_with_a_message_until_its_placeholders_are_filled(name, tmp_path):
    text = (CLUSTER / name).read_text(encoding="utf-8")

    def requirement_steps(config_text: str) -> list[str]:
        commands = yaml.safe_load(config_text)["setup_commands"]
        return [c for c in commands if "infovae-sweep.requirement" in c and "install" not in c]

    steps = requirement_steps(text)
    assert len(steps) == 2  # write the requirement, then refuse a placeholder
    outcome = _run(" && ".join(steps), tmp_path)
    assert outcome.returncode != 0
    assert name in outcome.stderr and "git URL and commit" in outcome.stderr

    filled = text.replace("YOUR-ORG", "example-org").replace("YOUR-COMMIT-SHA", "0123abc")
    outcome = _run(" && ".join(requirement_steps(filled)), tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    written = (tmp_path / "infovae-sweep.requirement").read_text().strip()
    assert written == "infovae-sweep @ git+https://github.com/example-org/infovae-sweep@0123abc"


def _fake_nvidia_smi(folder: Path, version: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\necho {version}\n")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return f"{folder}:/usr/bin:/bin"


@pytest.mark.parametrize("name", CLUSTER_FILES)
@pytest.mark.parametrize(("driver", "accepted"), [("570.172.08", False), ("580.95.05", True),
                                                  ("595.58.03", True)])
def test_gpu_worker_refuses_a_driver_too_old_for_cuda_13(name, driver, accepted, tmp_path):
    check = next(c for c in _raw(name)["worker_setup_commands"] if "nvidia-smi" in c)
    outcome = _run(check, tmp_path, _fake_nvidia_smi(tmp_path / "bin", driver))
    assert (outcome.returncode == 0) == accepted
    if not accepted:
        assert driver in outcome.stderr and ">= 580" in outcome.stderr


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_gpu_worker_without_a_driver_is_refused(name, tmp_path):
    check = next(c for c in _raw(name)["worker_setup_commands"] if "nvidia-smi" in c)
    outcome = _run(check, tmp_path, str(tmp_path / "nothing-here"))  # no nvidia-smi on PATH
    assert outcome.returncode != 0 and "missing" in outcome.stderr


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_placeholder_is_explained_in_the_cluster_readme(name):
    readme = (CLUSTER / "README.md").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"YOUR-[A-Z-]*[A-Z]", (CLUSTER / name).read_text()))
    assert placeholders, "expected fill-in placeholders"
    assert {p for p in placeholders if p not in readme} == set()


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_ray_down_deletes_cloud_instances_rather_than_stopping_them(name):
    # A stopped instance would keep its disk (and bill for it); deleted, nothing outlives it.
    assert _raw(name)["provider"]["cache_stopped_nodes"] is False


def test_onprem_nodes_install_this_torch_ray_and_project_in_their_own_environment():
    import ray
    import torch

    config = _prepared(ONPREM)
    torch_version = torch.__version__.split("+")[0]
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = " ".join(config[key])
        assert f'"torch=={torch_version}"' in commands
        assert f'-r ~/infovae-sweep.requirement "ray[default,tune]=={ray.__version__}"' in commands
    bashrc = next(c for c in config["setup_commands"] if ">> ~/.bashrc" in c)
    for setting in ("source ~/infovae-sweep-venv/bin/activate", "RAY_TMPDIR=/tmp/ray-$(id -u)",
                    "RAY_AUTH_MODE=token"):
        assert setting in bashrc


def test_onprem_nodes_get_the_token_of_the_machine_running_ray_up(tmp_path):
    config = _raw(ONPREM)
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    check = next(c for c in config["setup_commands"] if "auth_token" in c)
    outcome = _run(check, tmp_path)  # a HOME without the token
    assert outcome.returncode != 0 and "ray get-auth-token --generate" in outcome.stderr
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("0123abcd")
    assert _run(check, tmp_path).returncode == 0


@dataclass
class WatchedNode:
    """A fake worker node after the on-prem watcher command: a `ray` that records its
    arguments in ``calls``, a `raylet` that only sleeps, and the watcher's process."""

    stop_first: str  # the worker's first start command
    env: dict[str, str]
    calls: Path
    raylet: subprocess.Popen
    watcher: psutil.Process

    def watcher_ended(self) -> bool:
        return not self.watcher.is_running() or self.watcher.status() == psutil.STATUS_ZOMBIE


@pytest.fixture
def watched_node(tmp_path):
    stop_first, _, watch = _raw(ONPREM)["worker_start_ray_commands"]
    tools = tmp_path / "bin"
    tools.mkdir()
    calls = tmp_path / "calls"
    (tools / "ray").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (tools / "ray").chmod(0o755)
    shutil.copy(shutil.which("sleep"), tools / "raylet")
    env = {"HOME": str(tmp_path), "PATH": f"{tools}:/usr/bin:/bin", "RAY_TMPDIR": str(tmp_path)}
    raylet = subprocess.Popen([str(tools / "raylet"), "60"])
    try:
        assert _run_with(watch, env).returncode == 0
        watcher = psutil.Process(int((tmp_path / "infovae-sweep-watcher.pid").read_text()))
        yield WatchedNode(stop_first, env, calls, raylet, watcher)
    finally:
        raylet.kill()
        raylet.wait()


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_onprem_worker_stops_its_ray_once_its_raylet_has_ended(watched_node):
    # `ray down` stops the head only: each worker's watcher runs `ray stop` for it.
    time.sleep(1)
    assert not watched_node.calls.exists(), "stopped while the raylet runs"
    watched_node.raylet.kill()
    watched_node.raylet.wait()
    assert _wait(lambda: watched_node.calls.exists(), 15), "no `ray stop` after the raylet ended"
    assert watched_node.calls.read_text() == "stop\n"
    assert _wait(watched_node.watcher_ended, 5)


def test_onprem_worker_start_ends_the_previous_watcher_before_ray_stop(watched_node, tmp_path):
    # Else the old watcher, seeing its raylet stopped, would stop the node being started.
    assert _run_with(watched_node.stop_first, watched_node.env).returncode == 0
    assert _wait(watched_node.watcher_ended, 5)
    assert watched_node.calls.read_text() == "stop\n"  # the start command's, not the watcher's
    assert not (tmp_path / "infovae-sweep-watcher.pid").exists()


def _run_with(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, "-c", command], capture_output=True, text=True, env=env,
                          timeout=30)
