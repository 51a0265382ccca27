"""The source API as a real process over HTTP."""

import itertools
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np

from covertype import dataset, schema
from covertype.settings import Settings
from tests.support.environment import run_cli


def get_data(server, group=7, **params):
    return httpx.get(f"{server.url}/data", params={"group_number": group, **params}, timeout=30)


def keys(rows) -> set[tuple]:
    return {tuple(r) for r in rows}


def test_root_says_what_it_serves(source_server, small_data):
    body = httpx.get(source_server().url + "/").json()
    assert body["rows"] == 2000 and body["batches"] == 10
    assert body["rows_per_batch"] == [200] * 10
    assert body["fields"] == list(schema.FIELDS)
    assert body["source"] == str(small_data)


def test_data_returns_a_random_tenth_of_batch_one_as_strings(source_server, small_data):
    server = source_server()
    first, second = get_data(server).json(), get_data(server).json()
    assert first["group_number"] == 7 and first["batch_number"] == 1
    assert second["batch_number"] == 1
    assert len(first["data"]) == len(second["data"]) == 20  # a tenth of 200
    assert all(isinstance(v, str) for row in first["data"] for v in row)
    clean, rejected, _ = schema.validate_rows(first["data"])
    assert rejected == [] and len(clean) == 20
    assert keys(first["data"]) != keys(second["data"])  # a fresh sample each call
    # Every served row is a row of the dataset.
    everything = keys(dataset.to_course_rows(dataset.read_uci_file(small_data)))
    assert keys(first["data"]) <= everything


def test_batches_rotate_and_end_with_all_collected(source_server):
    server = source_server(batch_seconds=0.3)
    seen: dict[int, set] = {}
    for _ in range(400):
        response = get_data(server)
        if response.status_code == 400:
            break
        body = response.json()
        seen.setdefault(body["batch_number"], set()).update(keys(body["data"]))
        time.sleep(0.1)
    assert response.status_code == 400
    assert "All data was collected for group 7" in response.json()["detail"]
    assert sorted(seen) == list(range(1, 11))  # each batch, none skipped
    for a in seen:  # batches are disjoint parts of the dataset
        for b in seen:
            assert a == b or not seen[a] & seen[b]
    assert get_data(server).status_code == 400  # stays exhausted
    assert get_data(server, group=3).json()["batch_number"] == 1  # other groups unaffected


def test_restart_sends_a_group_back_to_batch_one(source_server):
    server = source_server(batch_seconds=0.3)
    get_data(server, group=2)
    time.sleep(0.35)
    assert get_data(server, group=2).json()["batch_number"] == 2
    response = httpx.get(f"{server.url}/restart_data_generation", params={"group_number": 2})
    assert response.status_code == 200 and response.json()["batch_number"] == 1
    assert get_data(server, group=2).json()["batch_number"] == 1


def test_invalid_group_is_400_naming_what_is_allowed(source_server):
    server = source_server()
    for group in ["0", "11", "-1", "seven", "7.5", None]:
        params = {} if group is None else {"group_number": group}
        for path in ("/data", "/restart_data_generation"):
            response = httpx.get(server.url + path, params=params)
            assert response.status_code == 400, (path, group)
            detail = response.json()["detail"]
            assert detail.startswith("group_number must be a whole number from 1 to 10; got ")
            assert detail.endswith("nothing" if group is None else repr(group))


def test_state_survives_a_restart_of_the_process(source_server, tmp_path):
    home = tmp_path / "state-home"
    server = source_server(batch_seconds=0.3, home=home)
    get_data(server)
    time.sleep(0.35)
    get_data(server)
    time.sleep(0.35)
    assert get_data(server).json()["batch_number"] == 3
    server.stop()
    # Same home, a long window now: the group resumes at batch 3, not 1.
    again = source_server(batch_seconds=300, home=home)
    assert get_data(again).json()["batch_number"] == 3


def test_twenty_concurrent_clients_move_the_batch_exactly_once(source_server):
    server = source_server(batch_seconds=1.0)
    barrier = threading.Barrier(20)

    def client(_):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            barrier.wait()
            first = http.get("/data", params={"group_number": 5}).json()["batch_number"]
            barrier.wait()
            time.sleep(1.1)  # the window of the first batch is over for everyone
            barrier.wait()
            second = http.get("/data", params={"group_number": 5}).json()["batch_number"]
            return first, second

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(client, range(20)))
    assert {first for first, _ in answers} == {1}
    assert {second for _, second in answers} == {2}  # moved once, not once per client


def test_startup_uses_the_cached_conversion(source_server, real_data, tmp_path):
    home = tmp_path / "cache-home"
    server = source_server(data=real_data, home=home)
    assert "converting dataset" in server.log()
    server.stop()
    again = source_server(data=real_data, home=home)
    assert "dataset loaded from cache" in again.log()
    rows = get_data(again).json()["data"]
    total = len(
        dataset.load_dataset(
            Settings.from_env({"COVERTYPE_HOME": home, "COVERTYPE_SOURCE_DATA": real_data})
        )
    )
    assert len(rows) == math.ceil(math.ceil(total / 10) / 10)


# ---------------------------------------------------------------- drift scenarios


def collect_every_batch(server) -> dict[int, list[list[str]]]:
    """Call the source until it is exhausted; the rows served, per batch."""
    seen: dict[int, list] = {}
    for _ in range(400):
        response = get_data(server)
        if response.status_code == 400:
            return seen
        body = response.json()
        seen.setdefault(body["batch_number"], []).extend(body["data"])
        time.sleep(0.1)
    raise AssertionError("the source never said all data was collected")


def test_default_order_is_random_and_keeps_the_course_batches(source_server, small_data):
    server = source_server()
    body = httpx.get(server.url + "/").json()
    assert body["order"] == "random" and "random permutation" in body["order_detail"]
    # Today's split: a permutation seeded 0, cut in 10. Batch 1's rows come from its first tenth.
    frame = dataset.read_uci_file(small_data)
    first = np.array_split(np.random.default_rng(0).permutation(len(frame)), 10)[0]
    assert keys(get_data(server).json()["data"]) <= keys(dataset.to_course_rows(frame.iloc[first]))


def test_elevation_order_serves_bands_from_the_lowest(source_server):
    server = source_server(batch_seconds=0.3, env={"COVERTYPE_SOURCE_ORDER": "elevation"})
    assert httpx.get(server.url + "/").json()["order"] == "elevation"
    served = collect_every_batch(server)
    assert sorted(served) == list(range(1, 11))
    bands = [[int(row[0]) for row in served[b]] for b in range(1, 11)]
    for lower, higher in itertools.pairwise(bands):
        assert max(lower) <= min(higher)  # every batch above the one before
    assert min(bands[0]) < 1400 and max(bands[-1]) > 4100  # from the bottom to the top


def test_wilderness_order_serves_the_areas_one_after_another(source_server):
    server = source_server(batch_seconds=0.3, env={"COVERTYPE_SOURCE_ORDER": "wilderness"})
    assert httpx.get(server.url + "/").json()["order"] == "wilderness"
    served = collect_every_batch(server)
    area = schema.WILDERNESS_AREAS.index
    areas = [sorted({area(row[10]) for row in served[b]}) for b in range(1, 11)]
    assert areas[0] == [0] and areas[-1] == [3]  # Rawah first, Cache last
    for earlier, later in itertools.pairwise(areas):
        assert max(earlier) <= min(later)  # never back to an area already served


def test_unknown_order_is_a_settings_error_naming_the_allowed_values(tmp_path):
    result = run_cli(["source"], {"COVERTYPE_SOURCE_ORDER": "sideways"}, tmp_path, timeout=60)
    assert result.returncode == 2
    assert "COVERTYPE_SOURCE_ORDER='sideways'" in result.stderr
    assert "'random', 'elevation' or 'wilderness'" in result.stderr
