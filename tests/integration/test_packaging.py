"""The wheel users install: the platform's package and nothing of its tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.support.environment import REPO


def test_the_wheel_holds_the_package_its_migrations_and_dags_and_no_test_code(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("covertype-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"covertype", wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert not [n for n in names if "/tests/" in n or "testing" in n or "conftest" in n]
    needed = ("covertype/db/migrations/env.py", "covertype/db/migrations/versions/0001_baseline.py",
              "covertype/dags/collection.py", "covertype/ui/app.py")  # fmt: skip
    for name in needed:
        assert name in names, f"the wheel lacks {name}"
