"""A bounded load on the inference API, recording every answer for the fault tests."""

from __future__ import annotations

import threading
import time


class PredictLoad:
    """A bounded load on `/predict`: `clients` threads posting real records one after the
    other (2 s timeout each) until stopped or `max_seconds` passed; every answer recorded
    as (time, ok, what) so a test can count the failures of an outage."""

    def __init__(
        self,
        api_url: str,
        records: list[dict],
        clients: int = 2,
        max_seconds=300,
        headers: dict[str, str] | None = None,
    ):
        self.url, self.records, self.max_seconds = f"{api_url}/predict", records, max_seconds
        self.headers = headers or {}
        self.results: list[tuple[float, bool, str]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(k,)) for k in range(clients)]

    def _run(self, k: int) -> None:
        import httpx

        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=2, headers=self.headers) as client:
            i = k
            while not self.stopping.is_set() and time.monotonic() < deadline:
                record = self.records[i % len(self.records)]
                i += len(self.threads)
                try:
                    answer = client.post(self.url, json=record)
                    ok = answer.status_code == 200 and "model_version" in answer.json()
                    what = str(answer.status_code)
                except (httpx.HTTPError, ValueError) as error:
                    ok, what = False, type(error).__name__
                self.results.append((time.time(), ok, what))
                if not ok:
                    time.sleep(0.05)  # a refused connection returns at once

    def __enter__(self) -> PredictLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)

    @property
    def requests(self) -> int:
        return len(self.results)

    def failures(self, since: float = 0.0) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if not r[1] and r[0] >= since]
