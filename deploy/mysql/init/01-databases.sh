#!/bin/bash
# The platform's three MySQL databases, each with its own user (never root):
#   cover_type   the data DB (ingest writes, training reads)  user cover_type
#   mlflow       the MLflow server's backend store             user mlflow
#   mlflow_auth  the MLflow server's users and permissions     user mlflow_auth
#                (basic-auth app: COVERTYPE_MLFLOW_AUTH_DB_URL)
# The mysql image runs this once, on an empty data directory (/docker-entrypoint-initdb.d).
# Passwords come from the environment (.env via docker-compose.yaml), never from this file.
# Not executable on purpose: the entrypoint then sources it, which gives it
# `docker_process_sql` (runs SQL as root on the init server); so no `set` or `exit` here.

: "${MYSQL_COVER_TYPE_PASSWORD:?MYSQL_COVER_TYPE_PASSWORD is not set}"
: "${MYSQL_MLFLOW_PASSWORD:?MYSQL_MLFLOW_PASSWORD is not set}"
: "${MYSQL_MLFLOW_AUTH_PASSWORD:?MYSQL_MLFLOW_AUTH_PASSWORD is not set}"

# A password as an SQL string literal: backslashes and single quotes doubled.
sql_literal() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

docker_process_sql <<SQL
CREATE DATABASE IF NOT EXISTS cover_type CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS mlflow CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS mlflow_auth CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'cover_type'@'%' IDENTIFIED BY $(sql_literal "$MYSQL_COVER_TYPE_PASSWORD");
CREATE USER IF NOT EXISTS 'mlflow'@'%' IDENTIFIED BY $(sql_literal "$MYSQL_MLFLOW_PASSWORD");
CREATE USER IF NOT EXISTS 'mlflow_auth'@'%' IDENTIFIED BY $(sql_literal "$MYSQL_MLFLOW_AUTH_PASSWORD");
GRANT ALL PRIVILEGES ON cover_type.* TO 'cover_type'@'%';
GRANT ALL PRIVILEGES ON mlflow.* TO 'mlflow'@'%';
GRANT ALL PRIVILEGES ON mlflow_auth.* TO 'mlflow_auth'@'%';
FLUSH PRIVILEGES;
SQL
