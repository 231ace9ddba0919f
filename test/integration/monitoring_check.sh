#!/usr/bin/env bash
# deploy/prometheus and deploy/grafana cannot drift from the broker's
# metrics: every simprov_* name that alerts.yml or simprov.json uses must
# be a metric the real broker serves on /metrics (histograms by their
# _bucket/_sum/_count series) or one docs/operations.md documents; and the
# dashboard is valid JSON whose panels take their data source from a
# variable. A deliberately misspelt name is refused (the check can fail).
# Usage: monitoring_check.sh SOURCE_DIR BROKER
set -uo pipefail
src=$1 broker=$2
tmp=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL $*"; exit 1; }

"$broker" --data-dir "$tmp/b" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  2>"$tmp/broker.log" &
pid=$!
for _ in $(seq 300); do [[ -s $tmp/b/listen-address ]] && break; sleep 0.1; done
[[ -s $tmp/b/listen-address ]] || fail "broker did not start: $(cat "$tmp/broker.log")"
curl -sf "http://$(cat "$tmp/b/http-address")/metrics" >"$tmp/metrics" ||
  fail "no /metrics"

# check RULES DASHBOARD: prints each unknown name, exits 1 if there is one.
check() {
  python3 - "$1" "$2" "$tmp/metrics" "$src/docs/operations.md" <<'PY'
import json, re, sys
rules_path, dash_path, metrics_path, docs_path = sys.argv[1:]
served = set()
for line in open(metrics_path):
    m = re.match(r'(?:# TYPE )?(simprov_\w+)', line)
    if m:
        served.add(m.group(1))
documented = set(re.findall(r'^\| `(simprov_\w+)`', open(docs_path).read(), re.M))
known = served | documented
# Histogram series of a documented histogram.
for name in list(documented):
    known |= {name + s for s in ('_bucket', '_sum', '_count')}
dash = json.load(open(dash_path))
names = ('datasource' in [v.get('type') for v in dash['templating']['list']])
if not names:
    print('simprov.json: no datasource variable')
    sys.exit(1)
exprs = []
def walk(panels):
    for p in panels:
        ds = p.get('datasource')
        if p.get('type') != 'row' and ds != {'type': 'prometheus', 'uid': '${datasource}'}:
            print(f'simprov.json: panel "{p.get("title")}" does not use the datasource variable')
            sys.exit(1)
        exprs.extend(t['expr'] for t in p.get('targets', []))
        walk(p.get('panels', []))
walk(dash['panels'])
exprs.extend(v['definition'] for v in dash['templating']['list'] if 'definition' in v)
if not exprs:
    print('simprov.json: no queries')
    sys.exit(1)
rules = open(rules_path).read()
exprs_rules = re.findall(r'simprov_\w+', '\n'.join(
    l for l in rules.splitlines() if not l.lstrip().startswith('#')))
used = set(re.findall(r'simprov_\w+', '\n'.join(exprs))) | set(exprs_rules)
unknown = sorted(n for n in used if n not in known)
for n in unknown:
    print(f'unknown metric {n}')
print(f'{len(used)} metric names used, {len(served)} served, {len(documented)} documented')
sys.exit(1 if unknown else 0)
PY
}
out=$(check "$src/deploy/prometheus/alerts.yml" "$src/deploy/grafana/simprov.json") ||
  fail "$out"
echo "ok   $out"
# Every documented metric is served (the docs do not promise one that
# does not exist).
missing=$(grep -o '^| `simprov_[a-z0-9_]*`' "$src/docs/operations.md" |
  tr -d '|` ' | while read -r n; do grep -q "^# TYPE $n " "$tmp/metrics" || echo "$n"; done)
[[ -z $missing ]] || fail "documented but not served: $missing"
echo "ok   every documented metric is served"
# A misspelt name in the rules or in the dashboard is caught.
sed 's/simprov_outbox_depth/simprov_outbox_depht/' \
  "$src/deploy/prometheus/alerts.yml" >"$tmp/alerts.yml"
out=$(check "$tmp/alerts.yml" "$src/deploy/grafana/simprov.json") &&
  fail "a misspelt rule metric passed"
[[ $out == *"unknown metric simprov_outbox_depht"* ]] || fail "$out"
sed 's/simprov_subscribers/simprov_subscriber/' \
  "$src/deploy/grafana/simprov.json" >"$tmp/simprov.json"
out=$(check "$src/deploy/prometheus/alerts.yml" "$tmp/simprov.json") &&
  fail "a misspelt dashboard metric passed"
[[ $out == *"unknown metric simprov_subscriber"* ]] || fail "$out"
echo "ok   misspelt names are refused"
