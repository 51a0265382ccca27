"""MLflow as the platform runs it: `server` (the `mlflow server` command line and process),
`auth_config` (its basic-auth app's configuration from the settings), `auth_users` (the
users and grants bootstrapped before it starts), `auth_app` (the app, loaded by MLflow),
`mysql_foreign_keys` (a fix MLflow's user DB needs on MySQL), `client` (how every other
process connects to it)."""
