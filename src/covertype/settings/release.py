"""Model releases: how a version that passed the gate reaches the serving alias (through
`challenger` and the shadow traffic, or at once), what promotes, retires and rolls it back."""

from __future__ import annotations

from typing import Literal

from covertype.settings.values import Group, setting


class ReleaseSettings(Group):
    mode: Literal["shadow", "direct"] = setting(
        "shadow",
        "COVERTYPE_RELEASE_MODE",
        "shadow: a version that passes the gate becomes the challenger, shadowed by the API "
        "and promoted on the next batch; direct: it becomes champion at once",
    )
    challenger_alias: str = setting(
        "challenger",
        "COVERTYPE_CHALLENGER_ALIAS",
        "the alias of the version waiting for its promotion",
    )
    shadow_share: float = setting(
        1.0,
        "COVERTYPE_SHADOW_SHARE",
        "share of /predict and /predict/batch requests the challenger also predicts, off "
        "the request path (0 to 1)",
        ge=0,
        le=1,
    )
    shadow_queue: int = setting(
        1000,
        "COVERTYPE_SHADOW_QUEUE",
        "requests waiting for the challenger's prediction; more are not shadowed (and counted)",
        ge=1,
    )
    shadow_gather_records: int = setting(
        64,
        "COVERTYPE_SHADOW_GATHER_RECORDS",
        "records the shadow thread gathers before it predicts them with the challenger, one "
        "request after the other (1 to 10000; 1: each request as it comes)",
        ge=1,
        le=10_000,
    )
    shadow_gather_seconds: float = setting(
        2.0,
        "COVERTYPE_SHADOW_GATHER_SECONDS",
        "longest wait of a queued request for the gathering: fewer records are predicted "
        "this long after the first was queued (0 to 60 seconds; 0: no wait)",
        ge=0,
        le=60,
    )
    f1_tolerance: float = setting(
        0.005,
        "COVERTYPE_RELEASE_F1_TOLERANCE",
        "the challenger is promoted when its macro F1 on the next batch is at least the "
        "champion's minus this",
        ge=0,
        le=1,
    )
    latency_factor: float = setting(
        1.5,
        "COVERTYPE_RELEASE_LATENCY_FACTOR",
        "over the serving budget, the challenger's shadow p99 predict time (CPU) may be at "
        "most this times the champion's",
        ge=1,
    )
    min_shadow_rows: int = setting(
        100,
        "COVERTYPE_RELEASE_MIN_SHADOW_ROWS",
        "shadow answers needed to judge the challenger's latency; fewer: judged on its "
        "measured serving cost alone",
        ge=1,
    )
    max_wait_seconds: float = setting(
        3600.0,
        "COVERTYPE_CHALLENGER_MAX_WAIT_SECONDS",
        "a challenger with no new batch this long after it was named is decided on what "
        "there is (its gate and its shadow answers)",
        gt=0,
    )
    rollback_margin: float = setting(
        0.02,
        "COVERTYPE_ROLLBACK_MARGIN",
        "after a promotion, the champion is rolled back when its macro F1 on the next batch "
        "is below the previous champion's on the same rows by more than this",
        ge=0,
        le=1,
    )
