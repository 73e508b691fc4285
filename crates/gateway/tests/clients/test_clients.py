"""Drives the Expressway gateway with the real AWS clients from PyPI (boto3 and the AWS CLI).

Run by run.sh, which starts `expressway dev` (unsigned gateway) and a second `expressway gateway`
with SigV4 credentials on the same embedded broker. Arguments come from the environment:
DEV_URL, SIGNED_URL, BROKERS, EXPRESSWAY_BIN, AWS_CLI, ACCESS_KEY, SECRET_KEY.
Exits non-zero on the first failed check.
"""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import urllib.error

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

DEV_URL = os.environ["DEV_URL"]
SIGNED_URL = os.environ["SIGNED_URL"]
BROKERS = os.environ["BROKERS"]
BIN = os.environ["EXPRESSWAY_BIN"]
AWS = os.environ["AWS_CLI"]
ACCESS_KEY = os.environ["ACCESS_KEY"]
SECRET_KEY = os.environ["SECRET_KEY"]
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/expressway"

CHECKS = 0


def check(cond, what):
    global CHECKS
    CHECKS += 1
    if not cond:
        print(f"FAIL: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok   {what}")


def expect_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        check(got == code, f"{fn.__name__ if hasattr(fn, '__name__') else fn} -> {code} (got {got}: {e.response['Error'].get('Message')})")
        return e
    check(False, f"expected {code}")


# The `sync-` host prefix: SDKs send StartSyncExecution to sync-<host>. Besides disabling the
# injection, a hosts entry `127.0.0.1 sync-localhost` works; here the resolver is patched the
# same way, so the default SDK behaviour is exercised without editing /etc/hosts.
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    if isinstance(host, str) and host.startswith("sync-"):
        host = host[len("sync-"):]
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

PASS = {"StartAt": "Greet", "States": {"Greet": {"Type": "Pass", "Parameters": {"greeting.$": "States.Format('Hello, {}!', $.name)"}, "End": True}}}
V2 = {"StartAt": "Greet", "States": {"Greet": {"Type": "Pass", "Parameters": {"greeting.$": "States.Format('Hi, {}!', $.name)"}, "End": True}}}


def client(url, **config):
    return boto3.client(
        "stepfunctions",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 1}, **config),
    )


def main():
    sfn = client(DEV_URL)
    sync = client(DEV_URL, inject_host_prefix=False)
    name = f"clients-{int(time.time())}"

    # --- create, describe, list, validate
    created = sfn.create_state_machine(name=name, definition=json.dumps(PASS), roleArn=ROLE, type="EXPRESS",
                                       loggingConfiguration={"level": "ALL", "includeExecutionData": True},
                                       tags=[{"key": "team", "value": "payments"}])
    arn = created["stateMachineArn"]
    check(arn == f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:{name}", "create_state_machine returns the ARN")
    d = sfn.describe_state_machine(stateMachineArn=arn)
    check(d["type"] == "EXPRESS" and json.loads(d["definition"]) == PASS, "describe_state_machine")
    check(d["loggingConfiguration"]["level"] == "ALL", "describe_state_machine logging configuration")
    expect_error("StateMachineTypeNotSupported", sfn.create_state_machine, name=name + "-std", definition=json.dumps(PASS), roleArn=ROLE)
    expect_error("InvalidDefinition", sfn.create_state_machine, name=name + "-bad", definition='{"StartAt":"X","States":{}}', roleArn=ROLE, type="EXPRESS")
    names = []
    for page in sfn.get_paginator("list_state_machines").paginate(PaginationConfig={"PageSize": 1}):
        names += [m["name"] for m in page["stateMachines"]]
    check(name in names and "hello" in names, f"list_state_machines paginates (pages of 1): {names}")
    v = sfn.validate_state_machine_definition(definition=json.dumps(PASS), type="EXPRESS")
    check(v["result"] == "OK" and v["diagnostics"] == [], "validate OK")
    v = sfn.validate_state_machine_definition(definition='{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"Nowhere"}}}')
    check(v["result"] == "FAIL" and v["diagnostics"][0]["code"] == "MISSING_TRANSITION_TARGET", f"validate FAIL: {v['diagnostics']}")

    # --- StartSyncExecution: inject_host_prefix=False, and the default sync- prefix
    r = sync.start_sync_execution(stateMachineArn=arn, input=json.dumps({"name": "Ada"}))
    check(r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"greeting": "Hello, Ada!"}, "start_sync_execution (inject_host_prefix=False)")
    check(r["billingDetails"]["billedDurationInMilliseconds"] >= 100, "billingDetails")
    r2 = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"name": "Bob"}), name="sync-prefixed")
    check(r2["status"] == "SUCCEEDED" and r2["name"] == "sync-prefixed", "start_sync_execution with the default sync- host prefix")
    failing = sfn.create_state_machine(name=name + "-fail", definition=json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "because"}}}), roleArn=ROLE, type="EXPRESS")
    r3 = sync.start_sync_execution(stateMachineArn=failing["stateMachineArn"])
    check(r3["status"] == "FAILED" and r3["error"] == "Boom" and r3["cause"] == "because", "start_sync_execution FAILED with error/cause")

    # --- StartExecution: the canonical snippet; the result arrives on the results topic
    canonical = boto3.client("stepfunctions", endpoint_url=DEV_URL)
    started = canonical.start_execution(stateMachineArn=arn, input=json.dumps({"name": "Eve"}))
    exec_arn = started["executionArn"]
    check(f":express:{name}:" in exec_arn, f"start_execution returns an express ARN {exec_arn}")
    found = wait_for_result(exec_arn)
    check(found is not None and found["status"] == "SUCCEEDED" and found["output"] == {"greeting": "Hello, Eve!"},
          f"the start_execution result arrived on expressway.results with the returned ARN: {found}")
    sync_result = wait_for_result(r["executionArn"])
    check(sync_result is not None and sync_result["output"] == {"greeting": "Hello, Ada!"}, "the sync execution's result record was published")

    # --- versions and a weighted alias
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")["stateMachineVersionArn"]
    check(v1 == arn + ":1", "publish_state_machine_version -> :1")
    u = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(V2), publish=True, versionDescription="second")
    v2 = u["stateMachineVersionArn"]
    check(v2 == arn + ":2", "update_state_machine(publish=True) -> :2")
    versions = [x["stateMachineVersionArn"] for x in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]]
    check(versions == [v2, v1], f"list_state_machine_versions newest first: {versions}")
    expect_error("ValidationException", sfn.create_state_machine_alias, name="live",
                 routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 60}, {"stateMachineVersionArn": v2, "weight": 60}])
    alias = sfn.create_state_machine_alias(name="live", description="canary",
                                           routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 50}, {"stateMachineVersionArn": v2, "weight": 50}])
    alias_arn = alias["stateMachineAliasArn"]
    check(alias_arn == arn + ":live", "create_state_machine_alias")
    da = sfn.describe_state_machine_alias(stateMachineAliasArn=alias_arn)
    check(da["name"] == "live" and len(da["routingConfiguration"]) == 2, "describe_state_machine_alias")
    check([a["stateMachineAliasArn"] for a in sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]] == [alias_arn], "list_state_machine_aliases")
    greetings = {}
    for i in range(20):
        out = json.loads(sync.start_sync_execution(stateMachineArn=alias_arn, input=json.dumps({"name": "A"}))["output"])["greeting"]
        greetings[out] = greetings.get(out, 0) + 1
    check(greetings == {"Hello, A!": 10, "Hi, A!": 10}, f"alias routes 50/50 between the versions: {greetings}")
    started = sfn.start_execution(stateMachineArn=alias_arn, input=json.dumps({"name": "Z"}))
    routed = wait_for_result(started["executionArn"])
    check(routed is not None and routed["output"]["greeting"] in ("Hello, Z!", "Hi, Z!"), "start_execution through the alias runs on the executor")
    expect_error("ConflictException", sfn.delete_state_machine_version, stateMachineVersionArn=v1)
    sfn.update_state_machine_alias(stateMachineAliasArn=alias_arn, routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}])
    out = json.loads(sync.start_sync_execution(stateMachineArn=alias_arn, input=json.dumps({"name": "B"}))["output"])
    check(out == {"greeting": "Hi, B!"}, "update_state_machine_alias to 100% v2")
    sfn.delete_state_machine_version(stateMachineVersionArn=v1)
    check([x["stateMachineVersionArn"] for x in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]] == [v2], "delete_state_machine_version")
    sfn.delete_state_machine_alias(stateMachineAliasArn=alias_arn)
    expect_error("ResourceNotFound", sfn.describe_state_machine_alias, stateMachineAliasArn=alias_arn)

    # --- tags
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "dev"}])
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]}
    check(tags == {"team": "payments", "env": "dev"}, f"tag_resource/list_tags_for_resource: {tags}")
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    tags = {t["key"]: t["value"] for t in sfn.list_tags_for_resource(resourceArn=arn)["tags"]}
    check(tags == {"env": "dev"}, "untag_resource")

    # --- TestState
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"n.$": "$.n"}, "ResultSelector": {"doubled.$": "$.Payload"}, "Next": "Done",
            "Retry": [{"ErrorEquals": ["Throttled"], "MaxAttempts": 2}], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Recover"}]}
    t = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input=json.dumps({"n": 2}), inspectionLevel="DEBUG", mock={"result": json.dumps({"Payload": 4})})
    check(t["status"] == "SUCCEEDED" and t["nextState"] == "Done" and json.loads(t["output"]) == {"doubled": 4}, f"test_state with a mock result: {t}")
    check(json.loads(t["inspectionData"]["input"]) == {"n": 2}, "test_state DEBUG inspectionData.input")
    t = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{\"n\":1}", mock={"errorOutput": {"error": "Throttled", "cause": "slow down"}})
    check(t["status"] == "RETRIABLE", "test_state RETRIABLE")
    t = sfn.test_state(definition=json.dumps(task), roleArn=ROLE, input="{\"n\":1}", mock={"errorOutput": {"error": "Broken", "cause": "no"}})
    check(t["status"] == "CAUGHT_ERROR" and t["nextState"] == "Recover" and t["error"] == "Broken", "test_state CAUGHT_ERROR")

    # --- Express refusals and unknown operations
    expect_error("InvalidArn", sfn.describe_execution, executionArn=exec_arn)
    expect_error("InvalidArn", sfn.get_execution_history, executionArn=exec_arn)
    expect_error("InvalidArn", sfn.stop_execution, executionArn=exec_arn)
    expect_error("StateMachineTypeNotSupported", sfn.list_executions, stateMachineArn=arn)
    expect_error("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=arn + "-nope")
    req = urllib.request.Request(DEV_URL + "/", data=b"{}", method="POST",
                                 headers={"X-Amz-Target": "AWSStepFunctions.Frobnicate", "Content-Type": "application/x-amz-json-1.0"})
    try:
        urllib.request.urlopen(req, timeout=5)
        check(False, "unknown operation must fail")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        check(e.code == 400 and body["__type"] == "UnknownOperationException", f"unknown operation -> 400 {body}")

    # --- SigV4: the signed gateway (`expressway gateway`) follows the same definitions topic
    signed = client(SIGNED_URL)
    deadline = time.time() + 20
    seen = []
    while time.time() < deadline:
        seen = [m["name"] for m in signed.list_state_machines()["stateMachines"]]
        if name in seen:
            break
        time.sleep(0.5)
    check(name in seen, "signed list_state_machines sees the machine created through the other gateway (definitions topic)")
    r = signed.start_sync_execution(stateMachineArn=arn, input=json.dumps({"name": "Sig"}))
    check(r["status"] == "SUCCEEDED", "signed start_sync_execution (sync- host prefix is part of the signed Host)")
    wrong = boto3.client("stepfunctions", endpoint_url=SIGNED_URL, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
                         aws_secret_access_key="not-the-secret", config=Config(retries={"max_attempts": 1}))
    expect_error("InvalidSignatureException", wrong.list_state_machines)
    unknown = boto3.client("stepfunctions", endpoint_url=SIGNED_URL, region_name="us-east-1", aws_access_key_id="AKIDUNKNOWN",
                           aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 1}))
    expect_error("UnrecognizedClientException", unknown.list_state_machines)
    unsigned = boto3.client("stepfunctions", endpoint_url=SIGNED_URL, region_name="us-east-1",
                            config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}))
    expect_error("MissingAuthenticationTokenException", unsigned.list_state_machines)

    # --- AWS CLI (the README's commands)
    aws_cli(name)

    sfn.delete_state_machine(stateMachineArn=failing["stateMachineArn"])
    sfn.delete_state_machine(stateMachineArn=arn)
    expect_error("StateMachineDoesNotExist", sfn.describe_state_machine, stateMachineArn=arn)
    print(f"all {CHECKS} checks passed")


def wait_for_result(execution_arn, timeout=30):
    """Reads expressway.results (via `expressway tail --json`) until the execution's result shows up."""
    return wait_for_record(lambda rec: rec.get("executionArn") == execution_arn, timeout=timeout)


def wait_for_record(matches, topic=None, timeout=30):
    """Reads a topic (default: the results) with `expressway tail --json` until a record matches.

    A reader thread feeds a queue: `select()` on the pipe plus `readline()` would strand lines that
    already sit in Python's read buffer (several results arrive in one read), so a result behind
    another one in the same chunk would never be seen."""
    import queue
    import threading
    topic_args = ["--topic", topic] if topic else []
    proc = subprocess.Popen([BIN, "tail", "--brokers", BROKERS, "--from-beginning", "--json", *topic_args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and matches(rec):
                return rec
        return None
    finally:
        proc.kill()
        proc.wait()


def aws_cli(prefix):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1",
               AWS_DISABLE_HOST_PREFIX_INJECTION="true", AWS_MAX_ATTEMPTS="1")
    path = "/tmp/expressway-cli-hello.asl.json"
    with open(path, "w") as f:
        json.dump(PASS, f)
    name = prefix + "-cli"

    def run(*args):
        p = subprocess.run([AWS, "stepfunctions", "--endpoint-url", SIGNED_URL, *args], env=env, capture_output=True, text=True)
        check(p.returncode == 0, f"aws stepfunctions {args[0]} (exit {p.returncode}: {p.stderr.strip()[:300]})")
        return json.loads(p.stdout) if p.stdout.strip() else {}

    created = run("create-state-machine", "--name", name, "--type", "EXPRESS", "--role-arn", ROLE, "--definition", f"file://{path}")
    arn = created["stateMachineArn"]
    run("describe-state-machine", "--state-machine-arn", arn)
    run("list-state-machines")
    v = run("validate-state-machine-definition", "--definition", f"file://{path}")
    check(v["result"] == "OK", "aws validate-state-machine-definition OK")
    r = run("start-sync-execution", "--state-machine-arn", arn, "--input", '{"name":"Ada"}')
    check(r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"greeting": "Hello, Ada!"}, "aws start-sync-execution")
    s = run("start-execution", "--state-machine-arn", arn, "--input", '{"name":"Cli"}')
    found = wait_for_result(s["executionArn"])
    check(found is not None and found["output"] == {"greeting": "Hello, Cli!"}, "aws start-execution result on the results topic")
    ver = run("publish-state-machine-version", "--state-machine-arn", arn)
    run("create-state-machine-alias", "--name", "prod", "--routing-configuration", f"stateMachineVersionArn={ver['stateMachineVersionArn']},weight=100")
    r = run("start-sync-execution", "--state-machine-arn", arn + ":prod", "--input", '{"name":"Alias"}')
    check(json.loads(r["output"]) == {"greeting": "Hello, Alias!"}, "aws start-sync-execution through an alias")
    run("tag-resource", "--resource-arn", arn, "--tags", "key=env,value=dev")
    tags = run("list-tags-for-resource", "--resource-arn", arn)
    check(tags["tags"] == [{"key": "env", "value": "dev"}], "aws list-tags-for-resource")
    t = run("test-state", "--definition", '{"Type":"Pass","Result":{"x":1},"Next":"B"}', "--role-arn", ROLE, "--input", "{}")
    check(t["status"] == "SUCCEEDED" and t["nextState"] == "B", "aws test-state")
    run("delete-state-machine-alias", "--state-machine-alias-arn", arn + ":prod")
    run("delete-state-machine", "--state-machine-arn", arn)
    callbacks_with_the_cli(run, prefix)


# Publishes the task token to PAYMENTS, then waits for send-task-success / send-task-failure.
PAYMENTS = "clients.payments"
WAIT = {"StartAt": "Charge", "States": {"Charge": {
    "Type": "Task", "Resource": "arn:aws:states:::kafka:publish.waitForTaskToken",
    "Parameters": {"Topic": PAYMENTS, "Value": {"taskToken.$": "$$.Task.Token", "order.$": "$.order"}},
    "TimeoutSeconds": 60, "End": True}}}


def callbacks_with_the_cli(run, prefix):
    """`.waitForTaskToken` through the signed gateway with the AWS CLI, run by dev's pod (the
    gateways and the pod share EXPRESSWAY_TASK_TOKEN_KEY, see run.sh)."""
    path = "/tmp/expressway-cli-wait.asl.json"
    with open(path, "w") as f:
        json.dump(WAIT, f)
    machine = run("create-state-machine", "--name", prefix + "-wait", "--type", "EXPRESS", "--role-arn", ROLE,
                  "--definition", f"file://{path}")["stateMachineArn"]

    def start_and_token(order):
        started = run("start-execution", "--state-machine-arn", machine, "--input", json.dumps({"order": order}))
        request = wait_for_record(lambda r: r.get("order") == order, topic=PAYMENTS, timeout=60)
        check(request is not None and request.get("taskToken", "").startswith("v1."), f"the task published its token ({order})")
        return started["executionArn"], request["taskToken"]

    execution, token = start_and_token(prefix + "-paid")
    run("send-task-heartbeat", "--task-token", token)
    check(run("send-task-success", "--task-token", token, "--task-output", '{"paid":true}') == {},
          "aws send-task-success answers {}")
    found = wait_for_result(execution, timeout=60)
    check(found is not None and found["status"] == "SUCCEEDED" and found["output"] == {"paid": True},
          f"the execution succeeded with the callback's output: {found}")
    execution, token = start_and_token(prefix + "-declined")
    run("send-task-failure", "--task-token", token, "--error", "Card.Declined", "--cause", "insufficient funds")
    found = wait_for_result(execution, timeout=60)
    check(found is not None and found["status"] == "FAILED" and found["error"] == "Card.Declined"
          and found["cause"] == "insufficient funds", f"the execution failed with the callback's error: {found}")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    p = subprocess.run([AWS, "stepfunctions", "--endpoint-url", SIGNED_URL, "send-task-success", "--task-token", forged,
                        "--task-output", "{}"], env=env, capture_output=True, text=True)
    check(p.returncode != 0 and "InvalidToken" in p.stderr, f"a forged token is InvalidToken ({p.stderr.strip()[:200]})")
    p = subprocess.run([AWS, "stepfunctions", "--endpoint-url", SIGNED_URL, "send-task-success", "--task-token", token,
                        "--task-output", "{not json"], env=env, capture_output=True, text=True)
    check(p.returncode != 0 and "InvalidOutput" in p.stderr, f"output that is not JSON is InvalidOutput ({p.stderr.strip()[:200]})")
    run("delete-state-machine", "--state-machine-arn", machine)


if __name__ == "__main__":
    main()
