"""Stand-ins over real HTTP for the services a test does not start."""

from __future__ import annotations

import threading
import time

from tests.support.servers import free_port


class ScriptedSource:
    """A stand-in source API over real HTTP that answers from a script of
    (status, body) pairs, then repeats the last; it counts the requests it got."""

    def __init__(self, script: list[tuple[int, dict]]):
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.script = list(script)
        self.requests = 0
        app = FastAPI()

        @app.get("/data")
        def data():
            self.requests += 1
            status, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            return JSONResponse(body, status_code=status)

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ScriptedSource:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
