#!/usr/bin/env bash
# Installs (once) and starts a real S3-protocol server (moto) on 127.0.0.1
# for the compactor's tests, creates the test bucket and prints the
# environment to use. Usage:
#   eval "$(.ci/s3.sh start)"   # exports AWS_* and S3_PID
#   .ci/s3.sh stop              # stops it (by the PID in target/moto.pid)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${S3_PORT:-9327}"
BUCKET="${LTX_TEST_S3_BUCKET:-ltx-test}"
PIDFILE=target/moto.pid
case "${1:-start}" in
start)
  mkdir -p target
  if [ ! -x .s3-venv/bin/moto_server ]; then
    python3 -m venv .s3-venv >&2
    .s3-venv/bin/pip install -q 'moto[s3]==5.2.5' 'flask==3.1.3' 'flask-cors==6.0.5' >&2
  fi
  if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    kill "$(cat "$PIDFILE")" || true
    sleep 0.5
  fi
  .s3-venv/bin/moto_server -H 127.0.0.1 -p "$PORT" > target/moto.log 2>&1 &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$PORT/moto-api/" > /dev/null 2>&1; then break; fi
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$PORT/moto-api/" > /dev/null
  curl -fsS -X PUT "http://127.0.0.1:$PORT/$BUCKET" > /dev/null
  cat <<ENV
export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export LTX_TEST_S3_BUCKET=$BUCKET S3_PID=$(cat "$PIDFILE")
ENV
  ;;
stop)
  if [ -f "$PIDFILE" ]; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; rm -f "$PIDFILE"; fi
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
