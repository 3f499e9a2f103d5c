#!/usr/bin/env bash
# The local multi-node demo: installs what it needs, builds gaggle, makes an
# operator key and three node certificates, generates a Backstage catalog of
# consumer repositories that reference the dataset user_ds_v1, starts three
# agents on loopback, applies a plan on one of them that rewrites every
# consumer to user_ds_v2, verifies it with the consumer's own check, commits
# it on a branch and writes the migrated catalog entities, watches progress to
# the end, prints the summary and the report, and stops the agents.
#
# Usage: tools/demo.sh [--consumers N] [--owners N] [--keep]
#   --consumers N   consumer components to generate (default 500)
#   --owners N      owning teams (default 24)
#   --keep          leave the agents running and demo-out/ in place
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

CONSUMERS=500
OWNERS=24
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --consumers) CONSUMERS=$2; shift 2 ;;
    --owners) OWNERS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

START=$(date +%s.%N)
say() { printf '\n== [%5.1fs] %s\n' "$(python3 -c "import time; print(time.time() - $START)")" "$*"; }

say "installing dependencies"
./tools/install-deps.sh

say "building (release)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-demo -j"$(nproc)" >/dev/null
BIN=$ROOT/build-demo/bin
export PATH=$BIN:$PATH

OUT=$ROOT/demo-out
PIDS=()
cleanup() {
    if [ "$KEEP" = 1 ]; then
        echo "agents left running (pids ${PIDS[*]:-}); demo files in $OUT"
        return
    fi
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] || continue
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

say "keys: one operator, three nodes"
gaggle keygen operator --out "$OUT/keys" >/dev/null
mkdir -p "$OUT/operators"
cp "$OUT/keys/operator.pub" "$OUT/operators/"
for n in n1 n2 n3; do
    gaggle keygen node --name $n --out "$OUT/keys" --sign-with "$OUT/keys/operator.key" >/dev/null
done
export GAGGLE_KEY=$OUT/keys/operator.key

say "catalog: $CONSUMERS consumers across $OWNERS teams, each a git repository"
python3 tools/gen-catalog.py --consumers "$CONSUMERS" --owners "$OWNERS" --repos --out "$OUT/catalog"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say "starting three agents on loopback"
SEED=""
declare -A HTTP
for n in n1 n2 n3; do
    bind=$(free_port)
    http=$(free_port)
    HTTP[$n]=127.0.0.1:$http
    args=(--name $n --data-dir "$OUT/$n" --bind tcp://127.0.0.1:$bind --http 127.0.0.1:$http
          --node-cert "$OUT/keys/$n.cert" --operators "$OUT/operators" --workers 8)
    [ -n "$SEED" ] && args+=(--join "$SEED")
    # Steps see the agent's PATH: the system's tools first.
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$BIN/gaggled" "${args[@]}" 2>"$OUT/$n.log" &
    PIDS+=($!)
    [ -z "$SEED" ] && SEED=tcp://127.0.0.1:$bind
done
for n in n1 n2 n3; do
    for _ in $(seq 1 100); do
        curl -fs "http://${HTTP[$n]}/healthz" >/dev/null && break
        sleep 0.1
    done
done
for _ in $(seq 1 100); do
    alive=$(gaggle --addr "${HTTP[n1]}" members --json |
        python3 -c 'import json,sys; print(sum(m["state"]=="alive" for m in json.load(sys.stdin)["members"]))')
    [ "$alive" = 3 ] && break
    sleep 0.2
done
gaggle --addr "${HTTP[n2]}" members

cat >"$OUT/plan.yaml" <<'EOF'
apiVersion: gaggle/v1
kind: MigrationPlan
metadata:
  name: user-ds-v2
  owner: group:default/data-platform
  description: Move every consumer of user_ds_v1 to user_ds_v2.
spec:
  catalog: ./catalog/catalog-info.yaml
  dataset: {from: resource:default/user-ds-v1, to: resource:default/user-ds-v2}
  targets:
    consumersOf: resource:default/user-ds-v1
    kinds: [Component]
  vars: {from: user_ds_v1, to: user_ds_v2}
  # Already migrated: a clean checkout without the old name. A checkout left
  # rewritten by an earlier attempt still needs its check and commit.
  precheck: {run: "cd {{target.path}} && { git diff --quiet || exit 0; } && ./precheck.sh"}
  steps:
    - name: rewrite
      rewrite:
        paths: ["**/*.sql", "**/*.yaml", "**/*.py"]
        replace: {"{{vars.from}}": "{{vars.to}}"}
        word: true
    - name: test
      # 75 (EX_TEMPFAIL) is a transient failure worth retrying; the verdict
      # on the consumer's own check belongs to verify.
      run: "cd {{target.path}} && ./check.sh; rc=$?; if [ $rc -eq 75 ]; then exit 75; fi; exit 0"
      timeout: 2m
    - name: publish
      publish:
        run: >-
          cd {{target.path}} && git checkout -q -B migrate/user-ds-v2 &&
          git add -A && git -c user.name=gaggle -c user.email=gaggle@localhost
          commit -q -F "$GAGGLE_CHANGE_FILE" && git log --oneline -1
  verify: {run: "cd {{target.path}} && ! grep -rq --exclude-dir=.git --exclude=check.sh --exclude=precheck.sh user_ds_v1 . && ./check.sh"}
  retry: {maxAttempts: 3, initialBackoff: 500ms, multiplier: 2, maxBackoff: 5s, retryableExitCodes: [75]}
  docs: {catalogOut: ./catalog-out, report: ./reports}
EOF
# The notify hook: one JSON line per event, told once fleet-wide.
cat >>"$OUT/plan.yaml" <<EOF
  notify: {run: "{ cat; echo; } >> $OUT/notifications.jsonl", on: [failed, needs_review, completed]}
EOF

say "validating the plan"
gaggle plan validate "$OUT/plan.yaml" | tail -3

say "applying it on n2 (any node accepts a plan)"
PLAN=$(gaggle --addr "${HTTP[n2]}" plan apply "$OUT/plan.yaml")
echo "plan id: $PLAN"

say "watching progress from n3 (any node reports the whole fleet)"
gaggle --addr "${HTTP[n3]}" plan watch "$PLAN" || true

say "summary, as each node sees it"
for n in n1 n2 n3; do
    printf '%s: ' $n
    gaggle --addr "${HTTP[$n]}" plan show "$PLAN" --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], {k:v for k,v in d["counts"].items() if v})'
done

say "report (first lines; the whole one is in $OUT/report.md)"
gaggle --addr "${HTTP[n1]}" report "$PLAN" --format md >"$OUT/report.md"
head -40 "$OUT/report.md"

say "notifications told by the notify hook"
for _ in $(seq 50); do [ -s "$OUT/notifications.jsonl" ] && break; sleep 0.1; done
python3 - "$OUT/notifications.jsonl" <<'PY' || true
import json, sys
for line in open(sys.argv[1]):
    if line.strip():
        e = json.loads(line)
        t = e.get("target", {})
        print(f'{e["event"]:<13} from {e["node"]}: {t.get("ref", e["plan"]["name"])} {t.get("error", "")}')
PY

migrated=$(find "$OUT/catalog-out" -name '*.yaml' 2>/dev/null | wc -l)
sample=$(find "$OUT/catalog/components" -maxdepth 1 -mindepth 1 -type d -print -quit)
say "results"
echo "migrated catalog entities written: $migrated (in $OUT/catalog-out)"
echo "a consumer's branch: $(git -C "$sample" branch --show-current) ($sample)"
END=$(date +%s.%N)
python3 -c "print(f'demo wall time: {$END - $START:.1f} s')"
