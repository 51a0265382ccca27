"""What `covertype up` prints while the stack runs, from a thread beside supervisord.

It migrates Airflow's metadata DB and then has supervisord start Airflow's components; waits
for every service's first health and prints where they are; then follows the first cycle
(collection → training → alias → inference API) until a real record gets an answer, and
after that new batches and champions. All along it reports supervision: a service that
exited and when it is healthy again, one that failed for good. It keeps the state file's
memory peak and time to the first prediction up to date.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

import httpx
import psutil

from covertype.orchestrate import airflow_config
from covertype.priority import keep_priority
from covertype.processes import memory_bytes, session_members
from covertype.settings import Settings
from covertype.stack import probes, progress
from covertype.stack.services import AIRFLOW, BY_NAME, SERVICES
from covertype.stack.state import BACKOFF, FAILED, ServiceRecord, StackState
from covertype.stack.supervisor import Supervisor

HEALTH_TIMEOUT_SECONDS = 300  # Airflow's first start creates its metadata DB
POLL_SECONDS = 1
NEWS_EVERY = 2  # polls between reads of the data DB and MLflow
Echo = Callable[[str], None]


def now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Rows as aligned, indented lines; the first row is the header, underlined."""
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rows = [rows[0], tuple("-" * w for w in width), *rows[1:]]
    return [
        ("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, width, strict=True))).rstrip()
        for row in rows
    ]


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


class Watcher(threading.Thread):
    def __init__(
        self,
        settings: Settings,
        supervisor: Supervisor,
        state: StackState,
        echo: Echo,
    ):
        super().__init__(name="stack-watcher", daemon=True)
        self.settings, self.supervisor, self.state, self.echo = settings, supervisor, state, echo
        self.started, self.started_at = time.monotonic(), time.time()
        self.stopping = threading.Event()
        self.failed: set[str] = set()  # services given up on, or never healthy
        self.airflow_init: subprocess.Popen | None = None
        self._airflow_done = False
        self._healthy: dict[str, bool] = {}
        self._seen_exits: dict[str, int] = {}
        self._down_since: dict[str, float] = {}
        self._records: dict[str, ServiceRecord] = {}

    def say(self, line: str) -> None:
        self.echo(f"{now()} {line}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        try:
            with probes.client(self.settings) as client:
                self._start_airflow()
                if self._wait_until_healthy(client):
                    self._print_table()
                self._follow(client)
        except Exception as error:  # a bug here must not take the stack down
            self.say(f"the watcher stopped: {error!r}; the services keep running")

    # ------------------------------------------------------------ start-up

    def _start_airflow(self) -> None:
        """`airflow db migrate` in the background: the components need the tables."""
        self._airflow_log = self.supervisor.log_path("airflow-init")
        self._airflow_started = time.monotonic()
        with self._airflow_log.open("ab") as output:
            self.airflow_init = subprocess.Popen(
                [*BY_NAME["airflow-api-server"].command()[:-1], "db", "migrate"],
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=keep_priority(),
            )

    def _airflow_migrated(self) -> None:
        """Once the migration ended: start Airflow's components, or say why not."""
        if self.airflow_init is None or self.airflow_init.poll() is None or self._airflow_done:
            return
        self._airflow_done = True
        if code := self.airflow_init.returncode:
            tail = self._airflow_log.read_text(errors="replace").splitlines()[-15:]
            self.failed.update(s.name for s in SERVICES if s.group == AIRFLOW)
            self.say(
                f"✖ Airflow's metadata DB could not be migrated (exit {code}); Airflow is not "
                f"started, the rest runs. End of {self._airflow_log}:\n  " + "\n  ".join(tail)
            )
            return
        took = time.monotonic() - self._airflow_started
        self.say(f"Airflow metadata DB ready ({took:.0f} s); starting its components")
        for service in SERVICES:
            if service.group == AIRFLOW:
                self.supervisor.start(service.name)

    def _wait_until_healthy(self, client: httpx.Client) -> bool:
        waiting = [s for s in SERVICES if s.name not in self.failed]
        while waiting and not self.stopping.is_set():
            self._airflow_migrated()
            waiting = [s for s in waiting if s.name not in self.failed]
            health = probes.Health(self.settings, client)
            for service in list(waiting):
                if health.healthy(service):
                    waiting.remove(service)
                    self._healthy[service.name] = True
                    self.say(f"✔ {service.title} healthy ({self.elapsed():.0f} s)")
            self._supervision(health)
            if waiting and self.elapsed() > HEALTH_TIMEOUT_SECONDS:
                for service in waiting:
                    self.say(
                        f"✖ {service.title} not healthy after {HEALTH_TIMEOUT_SECONDS} s "
                        f"(log: {self.supervisor.log_path(service.name)}); the rest runs"
                    )
                return False
            self.stopping.wait(POLL_SECONDS / 2)
        return not waiting

    def _print_table(self) -> None:
        settings = self.settings
        rows = [("service", "URL", "log")]
        for service in SERVICES:
            url = service.url(settings) if service.listens else ""
            rows.append((service.title, url, str(self.supervisor.log_path(service.name))))
            if service.name == "serve":
                rows.append(("  API docs", service.url(settings) + "/docs", ""))
        self.echo("")
        for line in table(rows):
            self.echo(line)
        if settings.airflow.admin_password is not None:
            login = "the password in COVERTYPE_AIRFLOW_ADMIN_PASSWORD"
        else:
            login = f"the password Airflow generated, in {airflow_config.passwords_file(settings)}"
        self.echo(f"  Airflow login: {settings.airflow.admin_user} with {login}")
        self.echo(f"  data DB: {settings.data_db}; state and logs: {settings.home}")
        self.echo(
            f"  supervised by supervisord: `covertype status`; "
            f"supervisorctl -c {self.supervisor.config} status"
        )
        self.echo("")

    # ------------------------------------------------------------ supervision

    def _supervision(self, health: probes.Health) -> None:
        """Exits, restarts, failures and recoveries since the last look, each told once."""
        for service in SERVICES:
            record = ServiceRecord.load(self.settings.home, service.name)
            self._records[service.name] = record
            seen = self._seen_exits.get(service.name, 0)
            if len(record.exits) > seen:
                self._seen_exits[service.name] = len(record.exits)
                self._healthy[service.name] = False
                self._down_since.setdefault(service.name, record.exits[-1].at)
                done = record.exits[-1]
                if record.state != FAILED:
                    self.say(
                        f"✖ {service.title} exited ({done.describe()} after "
                        f"{done.ran_seconds:.0f} s); supervisord restarts it"
                    )
            if record.state == FAILED and service.name not in self.failed:
                self.failed.add(service.name)
                self.say(
                    f"✖ {service.title} FAILED: {record.failed_reason}. The rest of the stack "
                    f"keeps running; `covertype restart {service.name}` tries again. "
                    f"End of {self.supervisor.log_path(service.name)}:\n  "
                    + "\n  ".join(record.log_tail[-10:])
                )
            elif record.state == BACKOFF and record.backoff_until:
                pass  # the exit line said a restart comes; status shows the wait
            if record.state != FAILED:
                self.failed.discard(service.name)
            if service.name in self._down_since and health.healthy(service):
                down = time.time() - self._down_since.pop(service.name)
                self._healthy[service.name] = True
                self.say(
                    f"✔ {service.title} healthy again, {down:.0f} s after it exited "
                    f"(restart {record.restarts})"
                )

    def _sample_memory(self) -> None:
        sids = [r.sid for r in self._records.values() if r.sid]
        guards = [r.guard_pid for r in self._records.values() if r.guard_pid]
        processes = [*session_members(sids), psutil.Process()]
        for pid in [*guards, self.state.supervisord_pid]:
            with contextlib.suppress(psutil.Error, TypeError):
                processes.append(psutil.Process(pid))
        used = memory_bytes(processes)
        if used > self.state.peak_memory_bytes:
            self.state.peak_memory_bytes = used
            self.state.save()

    # ------------------------------------------------------------ the cycle

    def _follow(self, client: httpx.Client) -> None:
        """Until the first champion is served, then news: batches, champions, supervision."""
        settings = self.settings
        seen_rows: dict[int, int] | None = None
        training = progress.TrainingNews(self.started_at)
        monitoring = progress.MonitoringNews()
        champion = served = None
        if self.state.fast:
            self.say(
                f"fast demo: a batch every {settings.source.batch_seconds:.0f} s, "
                f"{settings.train.n_iter} candidates per training"
            )
        self.say("waiting for the first champion: collection → training → alias → API")
        polls = 0
        while not self.stopping.is_set():
            self._supervision(probes.Health(settings, client))
            polls += 1
            if polls % NEWS_EVERY == 0:
                # The API first: it serves from its cache while MLflow, asked below with a
                # timeout per call, may still be starting.
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    served = self._check_served(client, served)
                rows = probes.rows_by_batch(settings)
                if rows and rows != seen_rows:
                    new = sorted(set(rows) - set(seen_rows)) if seen_rows is not None else []
                    self.say(
                        f"collection: {sum(rows.values()):,} rows of {progress.ranges(rows)} in "
                        f"the data DB"
                        + (f" (new: batch {', '.join(map(str, new))})" if new else "")
                    )
                    seen_rows = rows
                for line in monitoring.poll(settings):
                    self.say(line)
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                    for line in training.poll(settings, client):
                        self.say(line)
                    version = probes.champion_version(settings, client)
                    if version and version != champion:
                        champion = version
                        self.say(
                            f"registry: {settings.mlflow.model_name} version {version} is "
                            f"{settings.mlflow.model_alias}"
                        )
                self._sample_memory()
            self.stopping.wait(POLL_SECONDS)

    def _check_served(self, client: httpx.Client, served: str | None) -> str | None:
        answer = probes.served_answer(self.settings, client)
        if answer is None:
            return served
        result, took = answer
        version = result["model_version"]
        if version == served:
            return served
        what = f"{result['cover_type_name']} (class {result['cover_type']})"
        self.say(f"inference API: version {version} answers; a real record → {what}")
        if served is None:
            self.state.first_prediction_seconds = round(self.elapsed(), 1)
            self.state.save()
            self.say(
                f"first prediction {self.elapsed():.0f} s after `covertype up` ({took:.0f} ms): "
                f"the stack is up. UI: {BY_NAME['ui'].url(self.settings)}"
            )
            self.say("Ctrl-C or `covertype down` stops it; `covertype status` shows it.")
        return version
