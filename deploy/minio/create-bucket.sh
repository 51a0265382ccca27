#!/bin/sh
# One-shot job of docker-compose.yaml (image minio/mc): the MLflow artifact bucket, and a MinIO
# user that may use only that bucket: the MLflow server writes artifacts as this user
# (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), never as MinIO's root. Safe to run again.
set -eu
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
: "${MINIO_URL:?}" "${BUCKET:?}"

mc alias set covertype "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "covertype/$BUCKET"

policy="${TMPDIR:-/tmp}/mlflow-artifacts.json"
cat > "$policy" <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
     "Resource": ["arn:aws:s3:::$BUCKET"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
     "Resource": ["arn:aws:s3:::$BUCKET/*"]}
  ]
}
EOF
mc admin policy create covertype mlflow-artifacts "$policy"
mc admin user add covertype "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
# Attaching a policy the user already has is an error; on a re-run that is the expected state.
mc admin policy attach covertype mlflow-artifacts --user "$AWS_ACCESS_KEY_ID" \
    || mc admin user info covertype "$AWS_ACCESS_KEY_ID" | grep -q mlflow-artifacts
echo "bucket $BUCKET ready; user $AWS_ACCESS_KEY_ID may read and write it"
