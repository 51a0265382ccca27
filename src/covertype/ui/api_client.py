"""The UI's calls to the inference API: its JSON answer, or an error in words for the page."""

from __future__ import annotations

import httpx

from covertype import http_errors
from covertype.errors import CovertypeError
from covertype.settings import Settings


class ApiError(CovertypeError):
    """The API could not answer; the message is for the page."""


def call(settings: Settings, method: str, path: str, **kwargs) -> object:
    """The API's JSON answer, or ApiError with what went wrong in words."""
    url = f"{settings.serve.url}{path}"
    try:
        response = httpx.request(
            method, url, timeout=30, headers=settings.auth.api_headers, **kwargs
        )
    except httpx.HTTPError as error:
        raise ApiError(
            f"The inference API at {settings.serve.url} is not reachable ({error})."
        ) from None
    if response.status_code == 503:
        raise ApiError(f"No model is served yet: {http_errors.detail(response)}")
    if response.status_code == 401:
        raise ApiError(
            f"The inference API refused the UI's key (COVERTYPE_API_KEY): "
            f"{http_errors.detail(response)}"
        )
    if response.status_code == 422:
        problems = response.json().get("detail", [])
        raise ApiError("Invalid input: " + "; ".join(p.get("msg", str(p)) for p in problems))
    if response.status_code != 200:
        raise ApiError(
            f"The inference API answered {response.status_code}: {http_errors.detail(response)}"
        )
    return response.json()
