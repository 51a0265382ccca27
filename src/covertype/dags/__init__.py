"""The platform's workflows (DAG files that only wire tasks); Airflow's DAGs folder
(covertype.orchestrate.airflow_config)."""
