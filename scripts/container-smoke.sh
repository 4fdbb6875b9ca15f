#!/usr/bin/env bash
# Container smoke test for mlp-service: builds the image, runs it with a published port and a fresh
# volume, trains a small job through the HTTP API, predicts, then restarts the container (and
# recreates it on the same volume) and checks that the dataset, the job and the model survived and
# predict answers the same. Removes the containers and the volume it created on exit.
#
#   scripts/container-smoke.sh                 # uses docker if it answers, else podman
#   CONTAINER_ENGINE=podman IMAGE=mlp-service:smoke scripts/container-smoke.sh
#   SKIP_BUILD=1 scripts/container-smoke.sh    # test an image that is already built
#   CHECK_RESUME=1 scripts/container-smoke.sh  # also stop the container mid-training (+~30 s)
#
# Needs on the host: bash, curl, python3 (stdlib only). Exits non-zero naming the failed step.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-mlp-service:smoke}
BUILD_ARGS=${BUILD_ARGS:-}            # e.g. "--build-arg BASE_IMAGE=localhost/python:3.11-slim"
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-60}  # seconds to wait for /healthz
JOB_TIMEOUT=${JOB_TIMEOUT:-180}       # seconds to wait for the training job
MAX_IMAGE_MB=${MAX_IMAGE_MB:-450}

if [[ -n ${CONTAINER_ENGINE:-} ]]; then
  ENGINE=$CONTAINER_ENGINE
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
elif command -v podman >/dev/null 2>&1; then
  ENGINE=podman
else
  echo "container-smoke: FAILED at step 'preflight': neither docker nor podman is available" >&2
  exit 1
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "container-smoke: FAILED at step 'preflight': $tool not found" >&2; exit 1; }
done

TAG=mlp-smoke-$$-$RANDOM
CTR=$TAG
VOL=$TAG-data
TMP=$(mktemp -d)
STEP=preflight
CREATED_CTR=0
CREATED_VOL=0

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
step() { STEP=$1; log "== $1"; }
# Clock in integer microseconds (bash 5's EPOCHREALTIME; python3 where bash is older).
now() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then echo "${EPOCHREALTIME/[.,]/}"
  else python3 -c 'import time; print(int(time.time() * 1e6))'; fi
}
elapsed() { local d=$(($2 - $1)); printf '%d.%02d\n' $((d / 1000000)) $((d % 1000000 / 10000)); }
deadline_in() { echo $(($(now) + $1 * 1000000)); }   # deadline_in SECONDS
past() { (($(now) > $1)); }                          # past DEADLINE

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc -ne 0 ]]; then
    echo "container-smoke: FAILED at step '$STEP' (exit $rc)" >&2
    if [[ $CREATED_CTR -eq 1 ]]; then
      echo "---- last container log lines ----" >&2
      "$ENGINE" logs --tail 40 "$CTR" >&2 2>&1 || true
      echo "----------------------------------" >&2
    fi
  fi
  if [[ $CREATED_CTR -eq 1 ]]; then "$ENGINE" rm -f -v "$CTR" >/dev/null 2>&1 || true; fi
  if [[ $CREATED_VOL -eq 1 ]]; then "$ENGINE" volume rm -f "$VOL" >/dev/null 2>&1 || true; fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "container-smoke: $*" >&2; exit 1; }

# eng ARGS...: run the container engine; its stderr is shown only when it fails (podman without
# systemd logs an error about healthcheck timers on every run/rm, which is noise here).
eng() {
  local rc=0
  "$ENGINE" "$@" 2>"$TMP/engine.err" || rc=$?
  if [[ $rc -ne 0 ]]; then cat "$TMP/engine.err" >&2; fi
  return "$rc"
}

# json FILE EXPR: evaluate a Python expression over the parsed JSON document `d`.
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); r = eval(sys.argv[2]); print(json.dumps(r) if isinstance(r, (dict, list)) else r)' "$1" "$2"; }

# api METHOD PATH [curl args...]: body -> $TMP/body, headers -> $TMP/headers, status -> $CODE
api() {
  local method=$1 path=$2; shift 2
  CODE=$(curl -sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 30 \
    -X "$method" "$BASE$path" "$@") || CODE=000
}
expect() {  # expect CODE WHAT
  [[ $CODE == "$1" ]] || die "$2: expected HTTP $1, got $CODE: $(head -c 600 "$TMP/body" 2>/dev/null)"
}

wait_healthy() {  # prints seconds from $1 (a `now` stamp) until /healthz answered 200
  local start=$1 deadline i=0
  deadline=$(deadline_in "$HEALTH_TIMEOUT")
  while :; do
    if curl -fsS --max-time 2 -o /dev/null "$BASE/healthz" 2>/dev/null; then
      elapsed "$start" "$(now)"; return 0
    fi
    # asking the engine is slow: only every 2 s or so
    if ((++i % 20 == 0)) && [[ $("$ENGINE" inspect --format '{{.State.Running}}' "$CTR" 2>/dev/null) != true ]]; then
      die "container exited before /healthz answered"
    fi
    past "$deadline" && die "/healthz did not answer 200 within ${HEALTH_TIMEOUT}s"
    sleep 0.1
  done
}

run_container() {
  CREATED_CTR=1
  eng run -d --name "$CTR" -p "127.0.0.1:$PORT:8000" -v "$VOL:/data" "$IMAGE" >/dev/null
}

# ------------------------------------------------------------------------------------------------
step build
log "engine: $ENGINE ($("$ENGINE" --version 2>/dev/null | head -1))"
if [[ -z ${SKIP_BUILD:-} ]]; then
  fmt=()
  [[ $ENGINE == podman ]] && fmt=(--format docker)   # OCI format would drop HEALTHCHECK
  t0=$(now)
  # shellcheck disable=SC2086
  "$ENGINE" build "${fmt[@]}" $BUILD_ARGS -t "$IMAGE" . >"$TMP/build.log" 2>&1 \
    || { tail -40 "$TMP/build.log" >&2; die "image build failed"; }
  log "built $IMAGE in $(elapsed "$t0" "$(now)") s"
fi

step image-inspect
size_bytes=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1e6:.1f}")' "$size_bytes")
user=$("$ENGINE" image inspect --format '{{.Config.User}}' "$IMAGE")
health=$("$ENGINE" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
log "image size: ${size_mb} MB (limit ${MAX_IMAGE_MB} MB); user: ${user}"
python3 -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$size_mb" "$MAX_IMAGE_MB" \
  || die "image is ${size_mb} MB, over ${MAX_IMAGE_MB} MB"
[[ -n $user && $user != root && $user != 0 && $user != 0:0 ]] || die "image runs as root (User='$user')"
[[ $health == *healthz* ]] || die "image has no HEALTHCHECK on /healthz (got: $health)"

step image-contents
eng run --rm "$IMAGE" python -c '
import importlib.util, pathlib, shutil, site, sys
bad = [t for t in ("gcc", "cc", "c++", "g++", "clang", "make") if shutil.which(t)]
bad += [m for m in ("torch", "pytest", "sklearn") if importlib.util.find_spec(m)]
for sp in site.getsitepackages():
    bad += [str(p) for p in pathlib.Path(sp).glob("tests") if p.is_dir()]
if bad:
    sys.exit("image contains: " + ", ".join(bad))
import core, service.cli  # the packages import
print("no compilers, no torch/pytest/sklearn, no top-level tests package")
' || die "image contents check failed"
eng run --rm -e MLP_DATA_DIR=/tmp/migrate "$IMAGE" alembic upgrade head >/dev/null \
  || die "'alembic upgrade head' failed in the image (on an empty SQLite database)"
log "'alembic upgrade head' runs in the image"
if eng run --rm "$IMAGE" mlp-service worker --help >/dev/null 2>&1; then
  log "'mlp-service worker --help' runs in the image"
else
  log "WARNING: 'mlp-service worker --help' does not run in the image (worker command missing?)"
fi

step run
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT
CREATED_VOL=1
eng volume create "$VOL" >/dev/null
t0=$(now)
run_container
log "container $CTR on $BASE, volume $VOL"

step wait-healthy
START_HEALTHY=$(wait_healthy "$t0")
log "start to healthy: ${START_HEALTHY} s"
if [[ $ENGINE == podman ]]; then
  eng healthcheck run "$CTR" >/dev/null || die "the image's HEALTHCHECK command failed"
  log "image HEALTHCHECK command: healthy"
fi

step create-network
api POST /v1/networks -H 'Content-Type: application/json' -d '{
  "name": "smoke-mlp", "input_dim": 2,
  "layers": [{"type": "dense", "units": 16, "activation": "tanh"},
             {"type": "dense", "units": 2, "activation": "softmax"}],
  "loss": "cross_entropy"}'
expect 201 "POST /v1/networks"
NET_ID=$(json "$TMP/body" 'd["id"]')
log "network $NET_ID, n_params=$(json "$TMP/body" 'd.get("n_params")')"

step upload-dataset
python3 - "$TMP/smoke.csv" <<'EOF'
import random, sys
rng = random.Random(0)
with open(sys.argv[1], "w") as f:
    f.write("x1,x2,label\n")
    for _ in range(300):
        x1, x2 = rng.uniform(-2, 2), rng.uniform(-2, 2)
        f.write(f"{x1:.4f},{x2:.4f},{'pos' if x1 + x2 > 0 else 'neg'}\n")
EOF
api POST /v1/datasets -F "file=@$TMP/smoke.csv;type=text/csv" -F name=smoke-linear -F target=label
expect 201 "POST /v1/datasets"
DS_ID=$(json "$TMP/body" 'd["id"]')
[[ $(json "$TMP/body" '[d["n_samples"], d["n_features"]]') == "[300, 2]" ]] \
  || die "dataset shape: expected n_samples=300, n_features=2: $(cat "$TMP/body")"
log "dataset $DS_ID: $(json "$TMP/body" '{k: d.get(k) for k in ("n_samples", "n_features", "task", "classes")}')"

step train
api POST /v1/jobs -H 'Content-Type: application/json' -d "{
  \"network_id\": \"$NET_ID\", \"dataset_id\": \"$DS_ID\",
  \"validation_split\": 0.2, \"epochs\": 25, \"batch_size\": 16,
  \"optimizer\": {\"type\": \"adam\", \"learning_rate\": 0.02},
  \"standardize\": true, \"seed\": 0}"
expect 202 "POST /v1/jobs"
JOB_ID=$(json "$TMP/body" 'd["id"]')
grep -qi "^location:.*/v1/jobs/$JOB_ID" "$TMP/headers" || log "WARNING: no 'Location: /v1/jobs/$JOB_ID' header"
t0=$(now)
deadline=$(deadline_in "$JOB_TIMEOUT")
while :; do
  api GET "/v1/jobs/$JOB_ID"
  expect 200 "GET /v1/jobs/$JOB_ID"
  status=$(json "$TMP/body" 'd["status"]')
  case $status in
    succeeded) break ;;
    failed|cancelled) die "job $JOB_ID ended $status: $(json "$TMP/body" 'd.get("error")')" ;;
  esac
  past "$deadline" && die "job $JOB_ID still '$status' after ${JOB_TIMEOUT}s"
  sleep 0.5
done
cp "$TMP/body" "$TMP/job.json"
MODEL_ID=$(json "$TMP/job.json" 'd["model_id"]')
[[ -n $MODEL_ID && $MODEL_ID != None ]] || die "job succeeded without a model_id: $(cat "$TMP/job.json")"
log "job $JOB_ID succeeded in $(elapsed "$t0" "$(now)") s -> model $MODEL_ID"
log "final metrics: $(json "$TMP/job.json" 'd.get("metrics") or d.get("latest_metrics")')"

PREDICT_BODY='{"inputs": [[1.5, 1.0], [-1.0, -1.5], [0.8, -0.2], [-0.3, 0.1]]}'
step predict
api POST "/v1/models/$MODEL_ID/predict" -H 'Content-Type: application/json' -d "$PREDICT_BODY"
expect 200 "POST /v1/models/$MODEL_ID/predict"
cp "$TMP/body" "$TMP/predict-before.json"
preds=$(json "$TMP/predict-before.json" 'd["predictions"]')
log "predictions: $preds"
[[ $(json "$TMP/predict-before.json" 'd["predictions"][:2]') == '["pos", "neg"]' ]] \
  || die "model did not learn the obvious cases: expected [\"pos\", \"neg\", ...], got $preds"

# check_persisted WHAT: the dataset, the job and the model are still there and predict is unchanged
check_persisted() {
  api GET "/v1/datasets/$DS_ID"; expect 200 "$1: GET /v1/datasets/$DS_ID"
  [[ $(json "$TMP/body" 'd["n_samples"]') == 300 ]] || die "$1: dataset changed: $(cat "$TMP/body")"
  api GET "/v1/networks/$NET_ID"; expect 200 "$1: GET /v1/networks/$NET_ID"
  api GET "/v1/jobs/$JOB_ID"; expect 200 "$1: GET /v1/jobs/$JOB_ID"
  [[ $(json "$TMP/body" '[d["status"], d["model_id"]]') == "[\"succeeded\", \"$MODEL_ID\"]" ]] \
    || die "$1: job changed: $(cat "$TMP/body")"
  api GET "/v1/models/$MODEL_ID"; expect 200 "$1: GET /v1/models/$MODEL_ID"
  api POST "/v1/models/$MODEL_ID/predict" -H 'Content-Type: application/json' -d "$PREDICT_BODY"
  expect 200 "$1: POST /v1/models/$MODEL_ID/predict"
  python3 - "$TMP/predict-before.json" "$TMP/body" <<'EOF' || die "$1: predict answers differently than before"
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
if a["predictions"] != b["predictions"]:
    sys.exit(f"predictions {a['predictions']} != {b['predictions']}")
pa, pb = a.get("probabilities") or [], b.get("probabilities") or []
flat = lambda rows: [x for r in rows for x in (r if isinstance(r, list) else [r])]
if len(flat(pa)) != len(flat(pb)) or any(not math.isclose(x, y, abs_tol=1e-6) for x, y in zip(flat(pa), flat(pb))):
    sys.exit(f"probabilities {pa} != {pb}")
EOF
  log "$1: dataset, network, job and model present; predict unchanged"
}

step restart
t0=$(now)
eng stop -t 10 "$CTR" >/dev/null
eng start "$CTR" >/dev/null
RESTART_HEALTHY=$(wait_healthy "$t0")
log "stop+start to healthy: ${RESTART_HEALTHY} s"
check_persisted "after restart"

step recreate
# A restart keeps the container's own filesystem; a new container on the same volume proves that
# everything lives in /data.
eng rm -f -v "$CTR" >/dev/null
CREATED_CTR=0
t0=$(now)
run_container
RECREATE_HEALTHY=$(wait_healthy "$t0")
log "new container on the same volume, healthy in ${RECREATE_HEALTHY} s"
check_persisted "after recreate"

if [[ -n ${CHECK_RESUME:-} ]]; then
  step stop-during-training
  # Optional: stop the container while a job trains; after a start the job must still finish.
  python3 - "$TMP/big.csv" <<'EOF'
import random, sys
rng = random.Random(1)
with open(sys.argv[1], "w") as f:
    f.write(",".join(f"f{i}" for i in range(20)) + ",y\n")
    for _ in range(4000):
        xs = [rng.gauss(0, 1) for _ in range(20)]
        f.write(",".join(f"{x:.3f}" for x in xs) + f",{int(sum(xs[:3]) > 0)}\n")
EOF
  api POST /v1/datasets -F "file=@$TMP/big.csv;type=text/csv" -F name=smoke-big
  expect 201 "POST /v1/datasets (big)"
  BIG_ID=$(json "$TMP/body" 'd["id"]')
  api POST /v1/networks -H 'Content-Type: application/json' -d '{"input_dim": 20,
    "layers": [{"type": "dense", "units": 256, "activation": "relu"},
               {"type": "dense", "units": 256, "activation": "relu"},
               {"type": "dense", "units": 2, "activation": "softmax"}], "loss": "cross_entropy"}'
  expect 201 "POST /v1/networks (big)"
  BIGNET_ID=$(json "$TMP/body" 'd["id"]')
  api POST /v1/jobs -H 'Content-Type: application/json' -d "{\"network_id\": \"$BIGNET_ID\",
    \"dataset_id\": \"$BIG_ID\", \"epochs\": 30, \"batch_size\": 16, \"seed\": 0}"
  expect 202 "POST /v1/jobs (long)"
  LONG_ID=$(json "$TMP/body" 'd["id"]')
  EPOCH='(d.get("progress") or {}).get("epoch") or d.get("epoch") or 0'
  for _ in $(seq 600); do
    api GET "/v1/jobs/$LONG_ID"; expect 200 "GET /v1/jobs/$LONG_ID"
    [[ $(json "$TMP/body" "d['status'] == 'running' and ($EPOCH) >= 2") == True ]] && break
    sleep 0.2
  done
  [[ $(json "$TMP/body" 'd["status"]') == running ]] || die "job $LONG_ID did not reach epoch 2: $(cat "$TMP/body")"
  log "stopping the container while job $LONG_ID is at epoch $(json "$TMP/body" "$EPOCH") of 30"
  eng stop -t 10 "$CTR" >/dev/null
  t0=$(now)
  eng start "$CTR" >/dev/null
  wait_healthy "$t0" >/dev/null
  deadline=$(deadline_in "$JOB_TIMEOUT")
  while :; do
    api GET "/v1/jobs/$LONG_ID"; expect 200 "GET /v1/jobs/$LONG_ID"
    status=$(json "$TMP/body" 'd["status"]')
    [[ $status == succeeded ]] && break
    if [[ $status == failed || $status == cancelled ]]; then
      die "job $LONG_ID ended $status after the restart: $(json "$TMP/body" 'd.get("error")')"
    fi
    past "$deadline" && die "job $LONG_ID still '$status' ${JOB_TIMEOUT}s after the restart"
    sleep 0.5
  done
  resumed=$("$ENGINE" logs "$CTR" 2>&1 | grep -o "resuming after epoch [0-9]*" | tail -1 || true)
  log "job $LONG_ID succeeded after the restart (attempt $(json "$TMP/body" 'd.get("attempt")'))${resumed:+; log: $resumed}"
fi

step finished
echo
echo "container-smoke: OK"
echo "  engine:            $ENGINE"
echo "  image:             $IMAGE (${size_mb} MB)"
echo "  start to healthy:  ${START_HEALTHY} s (restart ${RESTART_HEALTHY} s, recreate ${RECREATE_HEALTHY} s)"
echo "  network/dataset/job/model: $NET_ID / $DS_ID / $JOB_ID / $MODEL_ID"
