"""Airflow for the platform: `airflow_config` is its whole configuration from the settings
(AIRFLOW_HOME and AIRFLOW__* variables: nothing is edited in airflow.cfg or set in the UI;
`covertype airflow <args>` runs the venv's `airflow` with it); `schedule` is what the DAGs
in `covertype/dags` decide about time: their ids and assets, the collection's interval and
pause, the monitoring's interval, the batches a training reports on. Plain functions,
testable without Airflow: nothing at module level imports it, so the CLI stays quick and
the DAG files cheap to parse.
"""
