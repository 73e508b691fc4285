#!/usr/bin/env python3
"""Every metric name used in PromQL by the Grafana dashboard and the alert rules is exported.

usage: check_metric_names.py METRICS_TXT[,MORE_TXT...] DASHBOARD_JSON ALERTS_YML

METRICS_TXT lists the executor's series names (one per line, with _bucket/_count/_sum forms);
crates/executor/tests/dashboard_metrics.rs checks a running executor exports every one of them.
Further comma-separated files list series of other Expressway processes (the gateway's, with the
console's: deploy/metrics-gateway.txt).
Metrics from other exporters the rules rely on are listed in EXTERNAL.
"""
import json
import re
import sys

import yaml

EXTERNAL = {
    "up": "Prometheus itself (scrape health)",
    "kube_pod_status_ready": "kube-state-metrics",
}
NAME = re.compile(r"\b(expressway_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")


def dashboard_exprs(dash):
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"dashboard panel {p.get('title')!r}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if q:
            yield f"dashboard variable {v.get('name')!r}", q


def alert_exprs(rules):
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            yield f"alert {r.get('alert') or r.get('record')!r}", r["expr"]


def main(metrics_txt, dashboard, alerts):
    known = {l.strip() for f in metrics_txt.split(",") for l in open(f) if l.strip() and not l.startswith("#")}
    with open(dashboard) as f:
        dash = json.load(f)
    with open(alerts) as f:
        rules = yaml.safe_load(f)
    bad, used = [], set()
    for where, expr in [*dashboard_exprs(dash), *alert_exprs(rules)]:
        # label values in quotes are not metric names
        text = re.sub(r'"[^"]*"', '""', expr)
        for name in NAME.findall(text):
            used.add(name)
            if name not in known:
                bad.append(f"{where}: {name} is not in {metrics_txt}")
        for name in SELECTOR.findall(text):
            if not name.startswith("expressway_") and name not in EXTERNAL and name != "label_values":
                bad.append(f"{where}: {name} is neither an executor metric nor in EXTERNAL")
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        sys.exit(1)
    print(f"ok -- {len(used)} executor metric names used by the dashboard and alerts, all in {metrics_txt}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
