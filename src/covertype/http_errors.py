"""What an HTTP error answer of another service says, for messages that name the cause.

Shared by ingest (the source API) and the UI (the inference API), so it imports nothing heavy.
Not named `http.py`: `streamlit run` puts this folder on sys.path, where it would shadow the
standard library's `http`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


def detail(response: httpx.Response) -> str:
    """FastAPI's `detail` of an error answer; any other body as its text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", response.text)) if isinstance(body, dict) else response.text
