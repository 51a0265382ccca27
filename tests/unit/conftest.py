"""The unit layer: in-process, no server process."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One BLAS/OpenMP thread, as the API's lifespan sets it: on two shared cores thread
    teams spin more than they work (an SVM fit here: 2.9 s of CPU instead of 0.2 s)."""
    with threadpool_limits(1):
        yield
