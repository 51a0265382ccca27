"""API keys of the inference API: `X-API-Key: <key>` or `Authorization: Bearer <key>`.

Plain ASGI, like the request context around it (which times, counts and logs the 401s
too): a dependency would cost ~25 µs a request, this costs a header scan and one
constant-time comparison per key. The probes (/health, /ready) stay open for orchestrators;
/metrics opens only to the scraper's own key (COVERTYPE_METRICS_KEY), so an API key cannot
read the traffic and a scraper key cannot predict. The docs and the OpenAPI schema stay
open: they describe the API, and their "Authorize" button takes a key for "Try it out".
"""

from __future__ import annotations

import hmac
import json

from covertype.settings import Settings, require

OPEN = frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PROBES = ("/health", "/ready")
METRICS = "/metrics"
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}


def check_configured(settings: Settings) -> None:
    """MissingSecret when auth is on and no key is set: the API would answer nobody."""
    if settings.auth.on:
        require(
            settings,
            "auth.api_keys",
            "the inference API needs keys (comma-separated, 16+ characters)",
        )


class ApiKeys:
    """ASGI middleware: 401 with a message saying what to send, unless the path is open."""

    def __init__(self, app, keys: tuple[str, ...], metrics_key: str | None):
        self.app = app
        self.keys = tuple(k.encode() for k in keys)
        self.metrics_keys = (metrics_key.encode(),) if metrics_key else ()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN:
            await self.app(scope, receive, send)
            return
        metrics = scope["path"] == METRICS
        presented = _presented(scope["headers"])
        if presented is None:
            problem = (
                "missing API key: send it as the header X-API-Key: <key> "
                "or Authorization: Bearer <key>"
            )
            if metrics:
                problem = "/metrics needs the scraper's key (COVERTYPE_METRICS_KEY) as Bearer"
        elif _known(presented, self.metrics_keys if metrics else self.keys):
            await self.app(scope, receive, send)
            return
        elif metrics:
            problem = "wrong key for /metrics: only the scraper's key (COVERTYPE_METRICS_KEY)"
            if not self.metrics_keys:
                problem = "/metrics is closed: no COVERTYPE_METRICS_KEY is set on this API"
        else:
            problem = "invalid API key"
        await _unauthorized(send, problem)


def _presented(headers) -> bytes | None:
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip() or None
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return value[7:].strip() or None
    return None


def _known(presented: bytes, keys: tuple[bytes, ...]) -> bool:
    # Every key compared, in constant time each: the answer's timing names none of them.
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found


async def _unauthorized(send, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="covertype"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def document(schema: dict) -> dict:
    """The OpenAPI schema with the two ways to send a key, required everywhere but the
    probes (the docs page's "Authorize" button); /metrics takes the scraper's key only."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if path in PROBES:
                operation["security"] = []
            elif path == METRICS:
                operation["security"] = [{"Bearer": []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "No key, or not the scraper's (COVERTYPE_METRICS_KEY) as Bearer"
                }
            else:
                operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
                operation.setdefault("responses", {})["401"] = {
                    "description": "No API key, or not one of COVERTYPE_API_KEYS"
                }
    return schema
