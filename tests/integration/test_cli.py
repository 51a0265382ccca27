"""The `covertype` command line as a user runs it."""

import re

from tests.support.environment import run_cli


def test_a_bad_setting_names_the_variable(tmp_path):
    done = run_cli(["ingest"], {"COVERTYPE_GROUP_NUMBER": "12"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "invalid settings: COVERTYPE_GROUP_NUMBER='12': Input should be less than or equal to 10"
    )


def test_a_serving_budget_that_is_not_a_number_says_what_the_setting_takes(tmp_path):
    done = run_cli(["train"], {"COVERTYPE_SERVE_BUDGET_US": "fast"}, tmp_path)
    assert done.returncode == 2
    message = done.stderr.strip()
    assert message.startswith(
        "invalid settings: COVERTYPE_SERVE_BUDGET_US='fast': Input should be a valid number"
    ), message
    assert "the most microseconds one single-row answer of a model may cost" in message
    assert message.endswith("0: no budget)")
    negative = run_cli(["train"], {"COVERTYPE_SERVE_BUDGET_US": "-5"}, tmp_path)
    assert negative.returncode == 2
    assert negative.stderr.strip() == (
        "invalid settings: COVERTYPE_SERVE_BUDGET_US='-5': Input should be greater than or "
        "equal to 0"
    )


def test_cli_lists_the_stage_commands(tmp_path):
    done = run_cli(["--help"], {}, tmp_path)
    assert done.returncode == 0
    for command in ("source", "ingest"):
        assert re.search(rf"│ {command} ", done.stdout), done.stdout


def test_prometheus_without_its_binary_says_how_to_install_it(tmp_path):
    from tests.support.environment import BIN

    done = run_cli(["prometheus"], {"COVERTYPE_HOME": str(tmp_path), "PATH": str(BIN)}, tmp_path)
    assert done.returncode == 1
    assert "prometheus is not on PATH (Debian/Ubuntu: sudo apt-get install prometheus)" in (
        done.stderr
    )
