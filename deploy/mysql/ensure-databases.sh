#!/bin/bash
# The platform's three MySQL databases, each with its own user (never root):
#   cover_type   the data DB (ingest writes, training reads)  user cover_type
#   mlflow       the MLflow server's backend store             user mlflow
#   mlflow_auth  the MLflow server's users and permissions     user mlflow_auth
#                (basic-auth app: COVERTYPE_MLFLOW_AUTH_DB_URL)
# Run by compose's one-shot service mysql-init at every `docker compose up`, against the
# running server: a new volume gets everything, a volume of an older release what it lacks
# (mlflow_auth came later), and every user the password .env gives it now. Idempotent.
# Passwords come from the environment (.env via docker-compose.yaml), never from this file.
set -euo pipefail

: "${MYSQL_ROOT_PASSWORD:?MYSQL_ROOT_PASSWORD is not set}"
: "${MYSQL_COVER_TYPE_PASSWORD:?MYSQL_COVER_TYPE_PASSWORD is not set}"
: "${MYSQL_MLFLOW_PASSWORD:?MYSQL_MLFLOW_PASSWORD is not set}"
: "${MYSQL_MLFLOW_AUTH_PASSWORD:?MYSQL_MLFLOW_AUTH_PASSWORD is not set}"

# A password as an SQL string literal: backslashes and single quotes doubled.
sql_literal() {
    local value=${1//\\/\\\\}
    printf "'%s'" "${value//\'/\'\'}"
}

statements=""
for pair in "cover_type:$MYSQL_COVER_TYPE_PASSWORD" "mlflow:$MYSQL_MLFLOW_PASSWORD" \
    "mlflow_auth:$MYSQL_MLFLOW_AUTH_PASSWORD"; do
    name=${pair%%:*}
    password=$(sql_literal "${pair#*:}")
    statements+="CREATE DATABASE IF NOT EXISTS $name CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$name'@'%' IDENTIFIED BY $password;
ALTER USER '$name'@'%' IDENTIFIED BY $password;
GRANT ALL PRIVILEGES ON $name.* TO '$name'@'%';
"
done

# The root password through the environment, not the command line (ps would show it).
MYSQL_PWD=$MYSQL_ROOT_PASSWORD mysql --host="${MYSQL_HOST:-mysql}" --port="${MYSQL_PORT:-3306}" \
    --user="${MYSQL_ADMIN_USER:-root}" --batch <<< "$statements"
echo "mysql-init: databases cover_type, mlflow, mlflow_auth and their users are up to date"
