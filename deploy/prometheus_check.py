#!/usr/bin/env python3
"""Runs expressway dev under load, scraped by a real Prometheus with the repository's scrape
config and rules, and checks every dashboard panel and alert rule through Prometheus' HTTP API.

usage: prometheus_check.py --bin target/debug/expressway --work DIR   (see prometheus-check.sh)

Standard library only.
"""
import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRAPE = 1  # seconds; the repository's interval is 10 s, shortened so the check is short
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:"

MACHINES = {
    "ok": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
    "fail": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "on purpose"}}},
    "slow": {"StartAt": "W", "TimeoutSeconds": 1,
             "States": {"W": {"Type": "Wait", "Seconds": 3, "End": True}}},
    "hold": {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 4, "End": True}}},
    "tasks": {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::expressway:test",
              "Parameters": {"SleepSeconds": 0.05, "Result": {"n": 1}}, "Next": "E"},
        "E": {"Type": "Task", "Resource": "arn:aws:states:::expressway:test",
              "Parameters": {"Error": "Oops"}, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "U"}],
              "Next": "U"},
        "U": {"Type": "Task", "Resource": "arn:aws:states:::nothing:registered",
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "K"}], "Next": "K"},
        "K": {"Type": "Task", "Resource": "arn:aws:states:::kafka:publish",
              "Parameters": {"Topic": "expressway.results", "Value": {"from": "task"}}, "End": True}}},
    # Nested executions (the Tasks row's nested panel): a .sync:2 child and a fire-and-forget one.
    "nest": {"StartAt": "Child", "States": {
        "Child": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                  "Parameters": {"StateMachineArn": ARN + "ok", "Input": {"from": "nest"}}, "Next": "Spawn"},
        "Spawn": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution",
                  "Parameters": {"StateMachineArn": ARN + "ok", "Input": {}}, "End": True}}},
    # A Distributed Map (the Distributed Map row): it adds an item to prom.items, reads up to 20
    # of them with kafka:getRecords and runs them as children, batches of 5, across the pods.
    "fan": {"StartAt": "Seed", "States": {
        "Seed": {"Type": "Task", "Resource": "arn:aws:states:::kafka:publish",
                 "Parameters": {"Topic": "prom.items", "Value": {"n": 1}}, "Next": "Map"},
        "Map": {"Type": "Map",
                "ItemReader": {"Resource": "arn:aws:states:::kafka:getRecords",
                               "Parameters": {"Topic": "prom.items"}, "ReaderConfig": {"MaxItems": 20}},
                "ItemBatcher": {"MaxItemsPerBatch": 5},
                "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
                                  "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                "End": True}}},
    # Waits for a callback (the Callbacks row): the request goes to PAYMENTS, where the
    # responder thread below answers it through the gateway's SendTask* after a delay.
    "callback": {"StartAt": "Charge", "States": {
        "Charge": {"Type": "Task", "Resource": "arn:aws:states:::kafka:publish.waitForTaskToken",
                   "Parameters": {"Topic": "prom.payments", "Value": {"taskToken.$": "$$.Task.Token"}},
                   "HeartbeatSeconds": 10, "TimeoutSeconds": 30,
                   "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}], "Next": "Done"},
        "Done": {"Type": "Succeed"}}},
    # A Pass/Choice loop that never ends: at log level ALL (see CONFIGS) it fails when it keeps
    # more than 25,000 events (States.DataLimitExceeded, the budget panel).
    "loop": {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "C"},
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "D"}],
              "Default": "A"},
        "D": {"Type": "Succeed"}}},
}

CONFIGS = {"loop": {"loggingConfiguration": {"level": "ALL", "includeExecutionData": True}}}

# Every process shares one task token key, so any pod's tokens verify at the gateway.
TASK_TOKEN_KEY = "prometheus-check-task-token-key-0123456789"
PAYMENTS = "prom.payments"

# Alerts the load must raise (pending or firing), and what their texts must (not) look like.
EXPECTED_ALERTS = {
    "ExpresswayDeadLetters": None,
    "ExpresswayHighFailureRatio": None,
    "ExpresswayTargetDown": None,
}


def log(msg):
    print(f"== prometheus-check: {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, data=None, headers=None, timeout=10):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"FAIL: timed out waiting for {what}")


class Procs:
    def __init__(self):
        self.procs = []

    def start(self, name, args, work, **kw):
        out = open(os.path.join(work, f"{name}.log"), "w")
        kw.setdefault("env", {**os.environ, "EXPRESSWAY_TASK_TOKEN_KEY": TASK_TOKEN_KEY})
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p, timeout=30):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for _, p in reversed(self.procs):
            self.stop(p)


def scrape_config(metrics, second, gone, eos):
    """deploy/prometheus/prometheus.yml with its one target rewritten to the dev pod, plus the
    second pod and a target nothing listens on (same job and labels form)."""
    text = open(os.path.join(ROOT, "deploy/prometheus/prometheus.yml")).read()
    if "- expressway:9464" not in text or not text.rstrip().endswith("pod: expressway  # the dashboard's pod variable (Kubernetes adds it itself)"):
        sys.exit("FAIL: deploy/prometheus/prometheus.yml changed shape; update prometheus_check.py")
    text = text.replace("- expressway:9464", f"- 127.0.0.1:{metrics}")
    text = re.sub(r"scrape_interval: \d+s", f"scrape_interval: {SCRAPE}s", text)
    text = re.sub(r"evaluation_interval: \d+s", f"evaluation_interval: {SCRAPE}s", text)
    for port, pod in ((second, "expressway-b"), (gone, "expressway-gone"), (eos, "expressway-eos")):
        text += f"      - targets:\n          - 127.0.0.1:{port}\n        labels:\n          pod: {pod}\n"
    return text


class Api:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}/api/v1/"

    def get(self, path, **params):
        url = self.base + path + "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            _, body = http(url, timeout=30)
        except urllib.error.HTTPError as e:
            body = e.read()
        r = json.loads(body)
        if r.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {r.get('errorType')}: {r.get('error')}")
        return r["data"]


class Gateway:
    def __init__(self, port):
        self.url = f"http://127.0.0.1:{port}/"

    def try_call(self, op, body):
        """The call's HTTP status and body (no exit: for the responder thread)."""
        h = {"X-Amz-Target": f"AWSStepFunctions.{op}", "Content-Type": "application/x-amz-json-1.0"}
        try:
            return http(self.url, json.dumps(body).encode(), h, timeout=30)
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError as e:
            return 0, str(e).encode()

    def call(self, op, body):
        h = {"X-Amz-Target": f"AWSStepFunctions.{op}", "Content-Type": "application/x-amz-json-1.0"}
        try:
            status, out = http(self.url, json.dumps(body).encode(), h, timeout=30)
        except urllib.error.HTTPError as e:
            status, out = e.code, e.read()
        if status != 200:
            sys.exit(f"FAIL: gateway {op}: HTTP {status} {out[:300]!r}")
        return json.loads(out)

    def start(self, machine, input_=None):
        self.call("StartExecution", {"stateMachineArn": ARN + machine, "input": json.dumps(input_ or {})})


def respond(bin_, bootstrap, gw, work, procs):
    """The payment service of the `callback` machine: follows PAYMENTS and answers each
    request through the gateway after 1.5 s (every 4th a failure, every 3rd after a
    heartbeat), so executions wait while Prometheus scrapes."""
    import threading
    tail = subprocess.Popen([bin_, "tail", "--brokers", bootstrap, "--topic", PAYMENTS, "--json",
                             "--from-beginning"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs.procs.append(("responder-tail", tail))
    errors = open(os.path.join(work, "responder.log"), "w")

    def answer(i, token):
        calls = []
        if i % 3 == 0:
            calls.append(("SendTaskHeartbeat", {"taskToken": token}))
        if i % 4 == 0:
            calls.append(("SendTaskFailure", {"taskToken": token, "error": "Card.Declined", "cause": "test"}))
        else:
            calls.append(("SendTaskSuccess", {"taskToken": token, "output": json.dumps({"paid": i})}))
        for op, body in calls:
            status, out = gw.try_call(op, body)
            if status != 200:
                print(f"{op}: HTTP {status} {out[:300]!r}", file=errors, flush=True)

    def follow():
        for i, line in enumerate(tail.stdout):
            try:
                token = json.loads(line)["taskToken"]
            except (ValueError, KeyError, TypeError):
                continue
            threading.Timer(1.5, answer, (i, token)).start()

    threading.Thread(target=follow, daemon=True).start()


def rate_interval():
    # Grafana: max($__interval + scrape interval, 4 x scrape interval); the panels are read
    # with a 5 s step here.
    return f"{max(5 + SCRAPE, 4 * SCRAPE) * 2}s"


def substitute(expr, variables):
    expr = expr.replace("$__rate_interval", rate_interval())
    for name, value in variables.items():
        expr = expr.replace("${" + name + "}", value).replace("$" + name, value)
    if "$" in expr:
        sys.exit(f"FAIL: unsubstituted variable in {expr}")
    return expr


def dashboard_variables(dash):
    """Each query variable as the dashboard defines it: with includeAll, its allValue (All is the
    default selection)."""
    values = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "datasource":
            continue
        if v["type"] != "query" or not v.get("includeAll") or "allValue" not in v:
            sys.exit(f"FAIL: variable {v['name']}: only query variables with includeAll/allValue are handled")
        values[v["name"]] = v["allValue"]
    return values


def check_panels(api, dash, start, end):
    variables = dashboard_variables(dash)
    failures = []
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", v["query"]["query"])
        if not m:
            failures.append(f"variable {v['name']}: unsupported query {v['query']['query']}")
            continue
        vals = api.get(f"label/{m.group(2)}/values", **{"match[]": m.group(1)})
        print(f"  variable ${v['name']}: {vals}")
        if not vals:
            failures.append(f"variable {v['name']}: no values")
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    for p in panels:
        series, nonzero, errors = 0, 0, []
        for t in p["targets"]:
            expr = substitute(t["expr"], variables)
            try:
                data = api.get("query_range", query=expr, start=start, end=end, step="5s")
            except RuntimeError as e:
                errors.append(str(e))
                continue
            series += len(data["result"])
            nonzero += sum(1 for r in data["result"]
                           if any(v[1] not in ("0", "NaN") and float(v[1]) != 0 for v in r["values"]))
        ok = not errors and series > 0 and nonzero > 0
        print(f"  {'ok  ' if ok else 'FAIL'} panel {p['title']!r}: {series} series, {nonzero} with data")
        if not ok:
            failures.append(f"panel {p['title']!r}: " + ("; ".join(errors) or f"{series} series, {nonzero} non-zero"))
    return failures, len(panels)


def check_rules(api):
    failures, n = [], 0
    for g in api.get("rules")["groups"]:
        for r in g["rules"]:
            n += 1
            ok = r.get("health") == "ok" and r.get("lastEvaluation", "").startswith("2")
            print(f"  {'ok  ' if ok else 'FAIL'} rule {r['name']}: health {r.get('health')}, state {r.get('state')}")
            if not ok:
                failures.append(f"rule {r['name']}: {r.get('health')} {r.get('lastError', '')}")
    if n < 7:
        failures.append(f"only {n} rules loaded from alerts.yml")
    alerts = api.get("alerts")["alerts"]
    for name in EXPECTED_ALERTS:
        found = [a for a in alerts if a["labels"]["alertname"] == name and a["state"] in ("pending", "firing")]
        if not found:
            failures.append(f"alert {name} is neither pending nor firing")
            continue
        for a in found:
            text = a["annotations"].get("summary", "") + " | " + a["annotations"].get("description", "")
            print(f"  ok   alert {name} {a['state']}: {text}")
            if re.search(r"\d\.\d{4,}", text):
                failures.append(f"alert {name}: unformatted value in {text!r}")
            if "{{" in text or "<no value>" in text:
                failures.append(f"alert {name}: template not rendered in {text!r}")
    down = [a["annotations"]["summary"] for a in alerts if a["labels"]["alertname"] == "ExpresswayTargetDown"]
    if not any("(pod expressway-gone)" in t for t in down):
        failures.append(f"ExpresswayTargetDown does not name the pod expressway-gone: {down!r}")
    return failures, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    work = os.path.abspath(args.work)
    defs = os.path.join(work, "definitions")
    os.makedirs(defs)
    for name, m in MACHINES.items():
        with open(os.path.join(defs, f"{name}.asl.json"), "w") as f:
            json.dump(m, f)
        if name in CONFIGS:
            with open(os.path.join(defs, f"{name}.config.json"), "w") as f:
                json.dump(CONFIGS[name], f)
    metrics, gateway_port, second, gone, prom, eos = (free_port() for _ in range(6))
    procs = Procs()
    try:
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(scrape_config(metrics, second, gone, eos))
        with open(os.path.join(ROOT, "deploy/prometheus/alerts.yml")) as src, \
                open(os.path.join(work, "alerts.yml"), "w") as dst:
            dst.write(src.read())
        check = subprocess.run(["promtool", "check", "config", os.path.join(work, "prometheus.yml")],
                               capture_output=True, text=True)
        if check.returncode:
            sys.exit(f"FAIL: promtool check config\n{check.stdout}{check.stderr}")

        log(f"expressway dev (metrics 127.0.0.1:{metrics}, gateway 127.0.0.1:{gateway_port})")
        dev = procs.start("dev", [args.bin, "dev", "--definitions", defs,
                                  "--metrics-listen", f"127.0.0.1:{metrics}",
                                  "--gateway-listen", f"127.0.0.1:{gateway_port}"], work)
        wait_for("dev /readyz", lambda: http(f"http://127.0.0.1:{metrics}/readyz")[0] == 200)
        bootstrap = re.search(r"bootstrap: (\S+)", open(os.path.join(work, "dev.log")).read()).group(1)

        log(f"prometheus on 127.0.0.1:{prom} (scrape and rule interval {SCRAPE}s)")
        procs.start("prometheus", ["prometheus", f"--config.file={work}/prometheus.yml",
                                   f"--storage.tsdb.path={work}/tsdb", f"--web.listen-address=127.0.0.1:{prom}"],
                    work)
        api = Api(prom)
        wait_for("prometheus ready", lambda: http(f"http://127.0.0.1:{prom}/-/ready")[0] == 200)
        t_start = time.time()
        gw = Gateway(gateway_port)

        def wave(n):
            for i in range(n):
                for m in ("ok", "ok", "fail", "tasks", "hold"):
                    gw.start(m, {"i": i})
                if i % 2 == 0:
                    gw.start("callback", {"i": i})
                if i % 3 == 0:
                    gw.start("nest", {"i": i})
                if i % 4 == 0:
                    gw.start("fan", {"i": i})
                if i % 5 == 0:
                    gw.start("slow")
            gw.call("StartSyncExecution", {"stateMachineArn": ARN + "ok", "input": "{}"})
            start_cli("ok", "--topic", "eos.start")

        def start_cli(*a):
            subprocess.run([args.bin, "start", "--brokers", bootstrap, *a], check=True,
                           stdout=subprocess.DEVNULL)

        # An exactly-once pod (the dashboard's Exactly-once row) on its own start topic and group;
        # the first start event creates the topic (the mock cluster creates topics on produce).
        start_cli("ok", "--topic", "eos.start")
        log(f"an exactly-once pod (metrics 127.0.0.1:{eos}) on its own start topic")
        procs.start("serve-eos", [args.bin, "serve", "--brokers", bootstrap, "--definitions", defs,
                                  "--metrics-listen", f"127.0.0.1:{eos}", "--group", "eos-check",
                                  "--start-topic", "eos.start", "--guarantee", "exactly-once",
                                  "--transaction-interval", "200ms",
                                  "--kafka", "session.timeout.ms=6000", "--kafka", "heartbeat.interval.ms=500"],
                    work)
        wait_for("exactly-once pod /readyz", lambda: http(f"http://127.0.0.1:{eos}/readyz")[0] == 200)

        respond(args.bin, bootstrap, gw, work, procs)
        log("load: successes, failures, timeouts, tasks, waits, callbacks; dead letters; budgets; a stalled client")
        # A client that never finishes its request head: the gateway's header timeout closes it.
        stalled = socket.create_connection(("127.0.0.1", gateway_port))
        stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        wave(40)
        start_cli("no-such-machine")                              # UnknownStateMachine
        start_cli("ok", "--name", "not a valid name")              # InvalidStartEvent (when the pod sees it)
        log("a second pod joins the group (rebalance), runs for a while, leaves")
        pod_b = procs.start("serve-b", [args.bin, "serve", "--brokers", bootstrap, "--definitions", defs,
                                        "--metrics-listen", f"127.0.0.1:{second}", "--drain-timeout", "2s",
                                        "--kafka", "session.timeout.ms=6000", "--kafka", "heartbeat.interval.ms=500"],
                            work)
        deadline = time.time() + 25
        while time.time() < deadline:
            wave(10)
            time.sleep(1)
        procs.stop(pod_b)
        stalled.close()
        # Late in the run, so Prometheus has scraped the budget counter at 0 first.
        for _ in range(3):
            gw.start("loop")
        for _ in range(5):
            wave(10)
            time.sleep(1)
        start_cli("no-such-machine")
        log("waiting for the last scrapes and rule evaluations")
        time.sleep(8 * SCRAPE + 5)
        t_end = time.time()

        log(f"panels of deploy/grafana/expressway.json over the last {int(t_end - t_start)} s")
        with open(os.path.join(ROOT, "deploy/grafana/expressway.json")) as f:
            dash = json.load(f)
        panel_failures, n_panels = check_panels(api, dash, t_start, t_end)
        log("rules of deploy/prometheus/alerts.yml")
        rule_failures, n_rules = check_rules(api)
        if dev.poll() is not None:
            panel_failures.append(f"expressway dev exited early ({dev.returncode})")
        failures = panel_failures + rule_failures
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        if failures:
            print(f"(logs in {work})", file=sys.stderr)
            sys.exit(1)
        log(f"all {n_panels} panels show data, all {n_rules} rules evaluate, "
            f"{', '.join(EXPECTED_ALERTS)} pending or firing")
    finally:
        procs.stop_all()


if __name__ == "__main__":
    main()
