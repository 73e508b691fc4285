#!/usr/bin/env python3
"""Builds the seed corpora crates/fuzz/corpus/<target>/ from the conformance data.

    python3 crates/fuzz/seed.py [--conformance /work/shared/conformance] [--max-bytes 8192]

* asl_definition: every LocalStack definition.json (recorded against AWS).
* jsonpath, intrinsic: every string of those definitions that starts with `$` / `States.`.
* jsonata: the JSONata test suite's expressions, each with its input (`EXPR\\0INPUT`), and the
  `{% ... %}` expressions of the LocalStack definitions with their execution input.
* start_event: the LocalStack execution inputs wrapped as JSON and protobuf start events
  (first byte: 0 no content-type, 1 JSON, 2 protobuf), plus a few hostile records.
* sigv4: requests signed the way the AWS SDKs sign them (hmac/hashlib, computed here).

Files are named by the SHA-1 of their content (duplicates collapse). Nothing here is committed:
the corpora are rebuilt from the data (and grown by the fuzzer) on every machine.
"""
import argparse
import datetime
import glob
import hashlib
import hmac
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(corpus, target, data, max_bytes):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        return
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            yield k
            yield from strings(x)


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_start(state_machine, name=None, input_text=None, trace=None):
    """expressway.v1.StartExecution: 1 state_machine, 2 name, 3 input, 4 trace_header."""
    out = bytearray()
    for field, value in ((1, state_machine), (2, name), (3, input_text), (4, trace)):
        if value is None:
            continue
        b = value.encode("utf-8")
        out += varint(field << 3 | 2) + varint(len(b)) + b
    return bytes(out)


def sigv4_request(body, amz_date, extra_headers=(), path="/", query=""):
    key_id, secret, region = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"
    headers = [
        ("content-type", "application/x-amz-json-1.0"),
        ("host", "localhost:8083"),
        ("x-amz-date", amz_date),
        ("x-amz-target", "AWSStepFunctions.ListStateMachines"),
    ] + list(extra_headers)
    names = sorted({k for k, _ in headers})
    canon_headers = "".join(
        f"{n}:{','.join(' '.join(v.split()) for k, v in headers if k == n)}\n" for n in names
    )
    creq = "\n".join(
        ["POST", path, query, canon_headers, ";".join(names), hashlib.sha256(body).hexdigest()]
    )
    date = amz_date[:8]
    scope = f"{date}/{region}/states/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (date, region, "states", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={';'.join(names)}, Signature={sig}"
    target = path + ("?" + query if query else "")
    lines = [f"POST {target}"] + [f"{k}: {v}" for k, v in headers] + [f"authorization: {auth}"]
    return ("\n".join(lines) + "\n\n").encode() + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conformance", default="/work/shared/conformance")
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus"))
    ap.add_argument("--max-bytes", type=int, default=8192)
    a = ap.parse_args()
    local = os.path.join(a.conformance, "localstack")
    suite = os.path.join(a.conformance, "jsonata")
    if not os.path.isdir(local) or not os.path.isdir(suite):
        sys.exit(f"conformance data not found under {a.conformance}")
    mb = a.max_bytes

    # LocalStack: definitions, their strings, their inputs.
    inputs = []
    for case in sorted(glob.glob(os.path.join(local, "*", "*"))):
        dpath = os.path.join(case, "definition.json")
        if not os.path.exists(dpath):
            continue
        text = open(dpath, encoding="utf-8").read()
        write(a.corpus, "asl_definition", text, mb)
        ipath = os.path.join(case, "input.json")
        input_text = open(ipath, encoding="utf-8").read() if os.path.exists(ipath) else "{}"
        inputs.append(input_text)
        try:
            definition = json.loads(text)
        except ValueError:
            continue
        for s in strings(definition):
            t = s.strip()
            if t.startswith("$"):
                write(a.corpus, "jsonpath", t, mb)
            elif t.startswith("States."):
                write(a.corpus, "intrinsic", t, mb)
            elif t.startswith("{%") and t.endswith("%}"):
                write(a.corpus, "jsonata", t[2:-2].strip() + "\0" + input_text, mb)

    # JSONata test suite.
    datasets = {}
    for f in glob.glob(os.path.join(suite, "datasets", "*.json")):
        datasets[os.path.basename(f)[:-5]] = open(f, encoding="utf-8").read()
    for f in sorted(glob.glob(os.path.join(suite, "groups", "*", "*.json"))):
        try:
            cases = json.load(open(f, encoding="utf-8"))
        except ValueError:
            continue
        for c in cases if isinstance(cases, list) else [cases]:
            expr = c.get("expr")
            if expr is None and "expr-file" in c:
                p = os.path.join(os.path.dirname(f), c["expr-file"])
                expr = open(p, encoding="utf-8").read() if os.path.exists(p) else None
            if not isinstance(expr, str):
                continue
            if "data" in c:
                data = json.dumps(c["data"])
            elif c.get("dataset") in datasets:
                data = datasets[c["dataset"]]
            else:
                data = None
            write(a.corpus, "jsonata", expr if data is None else expr + "\0" + data, mb)

    # Start events.
    machines = ["hello", "arn:aws:states:us-east-1:123456789012:stateMachine:hello:prod",
                "arn:aws:states:eu-west-1:000000000000:stateMachine:orders"]
    for i, input_text in enumerate(sorted(set(inputs))):
        sm = machines[i % len(machines)]
        try:
            value = json.loads(input_text)
        except ValueError:
            continue
        event = {"stateMachine": sm, "input": value}
        if i % 5 == 0:
            event["name"] = f"run-{i}"
        if i % 7 == 0:
            event["traceHeader"] = "Root=1-5759e988-bd862e3fe1be46a994272793"
        write(a.corpus, "start_event", b"\x00" + json.dumps(event).encode(), mb)
        write(a.corpus, "start_event", b"\x01" + json.dumps(event, indent=1).encode(), mb)
        write(a.corpus, "start_event",
              b"\x02" + pb_start(sm, event.get("name"), json.dumps(value), event.get("traceHeader")), mb)
    for raw in [b"\x00", b"\x00not json", b"\x00\xff\xfe", b"\x00[1,2]", b"\x00\"s\"", b"\x007",
                b'\x00{"stateMachine":"a","stateMachine":"b"}', b'\x00{"stateMachine":"a","input":1e400}',
                b'\x00{"stateMachine":"a","input":18446744073709551617123}',
                b'\x00{"stateMachine":1}', b'\x00{"input":{}}', b"\x02\x0a\x05hello\x1a\x02{}",
                b"\x02garbage", b"\x03\x0a\x01a"]:
        write(a.corpus, "start_event", raw, mb)

    # SigV4: properly signed requests.
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for i, body in enumerate([b"{}", b'{"maxResults": 10}', b"", "{\"name\":\"h\u00e9llo\"}".encode()]):
        amz = (now + datetime.timedelta(seconds=37 * i)).strftime("%Y%m%dT%H%M%SZ")
        extra = [("x-amz-user-agent", "aws-cli/2.15  md/a  b")] if i % 2 else []
        q = "b=2&a=%2F&c" if i == 3 else ""
        write(a.corpus, "sigv4", sigv4_request(body, amz, extra, query=q), mb)
    write(a.corpus, "sigv4", b"POST /\nhost: x\n\n{}", mb)

    for t in sorted(os.listdir(a.corpus)):
        print(f"{t}: {len(os.listdir(os.path.join(a.corpus, t)))} seeds")


if __name__ == "__main__":
    main()
