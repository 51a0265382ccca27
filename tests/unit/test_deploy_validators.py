"""The deployment files against their formats' own schemas: each compose file against the
compose specification (jsonschema), every object `kubectl kustomize` renders against the
Kubernetes schemas (kubernetes-validate, strict: an unknown field is an error). Dockerfiles:
hadolint, in test_dockerfiles.py; the platform's contracts: test_deploy_contracts.py."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy_files import (  # isort: skip
    COMPOSE_FILES, COMPOSE_SCHEMA, KUSTOMIZATIONS, MAIN_COMPOSE, ROOT, by_kind, load_yaml, rendered,
)  # fmt: skip

KUBERNETES = "1.32"  # the API version the manifests target (kubernetes-validate's schemas)


def compose_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def kubernetes_errors(objects: list[dict]) -> list[str]:
    errors = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = f"{obj['kind']} {obj['metadata']['name']} {list(error.absolute_path)}"
            errors.append(f"{where}: {error.message}")
    return errors


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_validates_against_the_compose_spec(path):
    errors = compose_errors(load_yaml(path))
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("folder", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_kustomization_renders_objects_valid_in_kubernetes(folder):
    objects = rendered(folder)
    assert objects, f"{folder} renders nothing"
    errors = kubernetes_errors(objects)
    assert not errors, "\n".join(errors)


def test_the_validators_reject_a_misspelt_field():
    compose = load_yaml(MAIN_COMPOSE)
    compose["services"]["api"]["healthchek"] = compose["services"]["api"].pop("healthcheck")
    [error] = compose_errors(compose)
    assert error.startswith("['services', 'api']: 'healthchek'"), error
    api = copy.deepcopy(by_kind("Deployment")["api"])
    [container] = api["spec"]["template"]["spec"]["containers"]
    container["readynessProbe"] = container.pop("readinessProbe")
    [error] = kubernetes_errors([api])
    assert error.startswith("Deployment api ") and "'readynessProbe'" in error, error
