"""HTTP error answers: the one our APIs give for a `CovertypeError`, and what another
service's error answer says (for messages that name the cause).

Shared by the APIs, ingest (reading the source API) and the UI (reading the inference API),
so it imports nothing heavy. Not named `http.py`: a folder on sys.path (as `streamlit run`
puts its page's) would shadow the standard library's `http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from covertype.errors import CovertypeError


async def error_response(request: Request, error: CovertypeError) -> JSONResponse:
    """An app's one handler of the platform's errors: the error's status, body and headers."""
    from starlette.responses import JSONResponse

    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def detail(response: httpx.Response) -> str:
    """FastAPI's `detail` of an error answer; any other body as its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text)) if isinstance(body, dict) else response.text
