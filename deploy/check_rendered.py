#!/usr/bin/env python3
"""Assert properties of `helm template` output that a schema cannot see.

usage: check_rendered.py SCENARIO RENDERED.yaml [EXPRESSWAY_BINARY]

SCENARIO is the name of the ci values file (default, gateway, hpa, keda, tls-sasl, ...) and
selects the extra expectations in EXPECT below; every rendering gets the common checks:

- the executor Deployment runs `expressway serve`, and the gateway Deployment (when rendered)
  `expressway gateway`, with only flags that the real CLI defines (parsed from the clap structs
  in crates/cli/src/serve.rs and gateway.rs), `--brokers` and (gateway) `--listen`;
- liveness `/healthz` and readiness `/readyz` probes on a declared container port; for the
  gateway, the `--listen` port is that port;
- terminationGracePeriodSeconds longer than `--drain-timeout`;
- pod and container security: runAsNonRoot, readOnlyRootFilesystem, no privilege escalation,
  capabilities drop ALL;
- every `$(VAR)` in args is defined in the container's env; every volumeMount has a volume; files
  named by --definitions/--tasks-config/--credentials-file/ssl.*.location are under a mount;
- never both an HPA and a KEDA ScaledObject, never both a ServiceMonitor and a PodMonitor, and
  their targets (Deployment name, Service/pod selectors, port names) exist in the rendering;
- every Service selects the pods of a rendered Deployment, by a port name the pods declare.

With EXPRESSWAY_BINARY, each Deployment's args are also parsed by the real binary (ARGS --help).
"""
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# What each ci/*-values.yaml must (and must not) render. Kinds are counted over the whole output.
EXPECT = {
    "default": {
        "present": ["Deployment/executor", "Service/executor", "PodDisruptionBudget/executor", "ServiceAccount"],
        "absent": ["HorizontalPodAutoscaler", "ScaledObject", "TriggerAuthentication", "ServiceMonitor",
                   "PodMonitor", "Deployment/gateway", "ConfigMap"],
        "replicas": 3,
    },
    "gateway": {
        "present": ["Deployment/gateway", "Service/gateway", "PodDisruptionBudget/gateway", "PodMonitor"],
        "absent": ["ServiceMonitor", "HorizontalPodAutoscaler", "ScaledObject", "ConfigMap"],
        "executor_args": ["--bind=orders=order-processing", "--definitions=/etc/expressway/definitions", "--ordering=key",
                          "--guarantee=at-least-once", "--max-execution-seconds=600",
                          "--task-token-key-file=/etc/expressway/task-token/key",
                          "--tasks-config=/etc/expressway/tasks/tasks.json"],
        "gateway_args": ["--credentials-file=/etc/expressway/gateway-auth/credentials",
                         "--tasks-config=/etc/expressway/tasks/tasks.json",
                         "--definitions=/etc/expressway/definitions",
                         "--region=us-east-1", "--account=123456789012",
                         "--callbacks-topic=expressway.callbacks",
                         "--task-token-key-file=/etc/expressway/task-token/key"],
        "configmaps_used": ["my-definitions", "expressway-tasks"],
        "secrets_used": ["expressway-gateway-credentials", "expressway-task-token"],
    },
    "hpa": {
        "present": ["HorizontalPodAutoscaler", "ConfigMap"],
        "absent": ["ScaledObject", "ServiceMonitor", "PodMonitor"],
        "replicas": None,
        "definitions": ["hello"],
    },
    "keda": {
        "present": ["ScaledObject", "ServiceMonitor", "ConfigMap"],
        "absent": ["HorizontalPodAutoscaler", "TriggerAuthentication", "PodMonitor"],
        "replicas": None,
        "definitions": ["echo"],
    },
    "tls-sasl": {
        "present": ["ScaledObject", "TriggerAuthentication"],
        "absent": ["HorizontalPodAutoscaler"],
        "replicas": None,
        "executor_args": ["--kafka=security.protocol=SASL_SSL", "--kafka=sasl.mechanism=SCRAM-SHA-512",
                          "--kafka=sasl.password=$(KAFKA_SASL_PASSWORD)",
                          "--kafka=ssl.ca.location=/etc/expressway/kafka-tls/ca.crt",
                          "--drain-timeout=60s"],
        "gateway_args": ["--kafka=security.protocol=SASL_SSL",
                         "--credentials-file=/etc/expressway/gateway-auth/credentials"],
        "secrets_used": ["kafka-client-tls", "kafka-client-credentials", "expressway-gateway-credentials"],
        "grace": 90,
    },
    "definitions": {
        "present": ["Deployment/gateway", "Service/gateway", "ConfigMap"],
        "absent": ["PodDisruptionBudget/gateway", "HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor",
                   "PodMonitor"],
        "replicas": 2,
        "executor_args": ["--group=orders-executors", "--start-topic=orders.start", "--dlq-topic=orders.dlq",
                          "--definitions-topic=orders.definitions", "--log-format=protobuf",
                          "--bind=orders.raw=validate-order", "--definitions=/etc/expressway/definitions",
                          "--tasks-config=/etc/expressway/tasks/tasks.json", "--drain-timeout=45s"],
        "gateway_args": ["--no-auth", "--start-topic=orders.start", "--definitions-topic=orders.definitions",
                         "--callbacks-topic=orders.callbacks",
                         "--tasks-config=/etc/expressway/tasks/tasks.json",
                         "--definitions=/etc/expressway/definitions"],
        "definitions": ["greet", "validate-order", "echo"],
        "grace": 60,
        "labels": {"team": "payments"},
    },
}

errors = []


def check(cond, msg):
    if not cond:
        errors.append(msg)
    return cond


def cli_flags(path, struct):
    """{flag: takes_value} of a clap Args struct: `#[arg(long...)] pub name: Type`, and those of
    the structs it flattens (`#[command(flatten)] pub name: path::Struct`, found in crates/cli/src)."""
    src = (ROOT / path).read_text()
    start = src.index(f"pub struct {struct}")
    body = src[start:src.index("\n}\n", start)]
    flags = {}
    for m in re.finditer(r"#\[command\(flatten\)\]\s*pub \w+: ([\w:]+),", body):
        name = m.group(1).rsplit("::", 1)[-1]
        homes = [p for p in sorted((ROOT / "crates/cli/src").glob("*.rs")) if f"pub struct {name}" in p.read_text()]
        if not homes:
            sys.exit(f"{path} {struct} flattens {name}, which is not in crates/cli/src")
        flags.update(cli_flags(str(homes[0].relative_to(ROOT)), name))
    for m in re.finditer(r"#\[arg\((.*?)\)\]\s*pub (\w+): ([^,\n]+),", body, re.S):
        attr, field, ty = m.groups()
        if not re.search(r"\blong\b", attr):
            continue
        named = re.search(r'long\s*=\s*"([^"]+)"', attr)
        flags["--" + (named.group(1) if named else field.replace("_", "-"))] = ty.strip() != "bool"
    if not flags:
        sys.exit(f"no flags parsed from {path} {struct}")
    return flags


SERVE = cli_flags("crates/cli/src/serve.rs", "ServeArgs")
GATEWAY = cli_flags("crates/cli/src/gateway.rs", "GatewayArgs")


def duration_seconds(text):
    m = re.fullmatch(r"([0-9.]+)(ms|s|m)?", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[m.group(2)]


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_args(who, container, flags):
    args = container.get("args") or []
    check(not container.get("command"), f"{who}: command must not override the image entrypoint")
    parsed = {}
    for arg in args[1:]:
        if not check(arg.startswith("--"), f"{who}: positional argument {arg!r}"):
            continue
        name, eq, value = arg.partition("=")
        if not check(name in flags, f"{who}: {name} is not a flag of `expressway {args[0]}`"):
            continue
        check(bool(eq) == flags[name], f"{who}: {arg} (flag takes a value: {flags[name]})")
        parsed.setdefault(name, []).append(value)
    env = {e["name"] for e in container.get("env") or []}
    for var in re.findall(r"\$\((\w+)\)", " ".join(args)):
        check(var in env, f"{who}: args use $({var}) but env does not define it")
    return args, parsed


def check_security(who, pod_spec, container):
    psc = pod_spec.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    check(psc.get("runAsNonRoot") is True or csc.get("runAsNonRoot") is True, f"{who}: runAsNonRoot")
    check(csc.get("runAsNonRoot") is not False, f"{who}: container runAsNonRoot false")
    check(csc.get("readOnlyRootFilesystem") is True, f"{who}: readOnlyRootFilesystem")
    check(csc.get("allowPrivilegeEscalation") is False, f"{who}: allowPrivilegeEscalation must be false")
    check((csc.get("capabilities") or {}).get("drop") == ["ALL"], f"{who}: capabilities.drop must be [ALL]")
    check(not (csc.get("capabilities") or {}).get("add"), f"{who}: capabilities.add must be empty")


def check_probe(who, container, kind, path):
    probe = container.get(kind)
    if not check(probe is not None, f"{who}: no {kind}"):
        return None
    get = probe.get("httpGet") or {}
    check(get.get("path") == path, f"{who}: {kind} path {get.get('path')!r}, expected {path}")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports") or []}
    check(get.get("port") in ports, f"{who}: {kind} port {get.get('port')!r} is not a container port")
    return ports.get(get.get("port"))


def check_mounts(who, pod_spec, container, parsed):
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    mounts = container.get("volumeMounts") or []
    for m in mounts:
        check(m["name"] in volumes, f"{who}: volumeMount {m['name']} has no volume")
    paths = [m["mountPath"] for m in mounts]
    files = []
    for flag in ("--definitions", "--tasks-config", "--credentials-file", "--task-token-key-file"):
        files += parsed.get(flag, [])
    for kv in parsed.get("--kafka", []):
        key, _, value = kv.partition("=")
        if key.endswith(".location"):
            files.append(value)
    for f in files:
        check(any(f == p or f.startswith(p.rstrip("/") + "/") for p in paths), f"{who}: {f} is not under a mount")
    return volumes


# CRD kinds have no offline schema here. These are the fields of the upstream CRDs (KEDA 2.x
# ScaledObject/TriggerAuthentication and the Kafka scaler; prometheus-operator monitoring.coreos.com/v1
# ServiceMonitor/PodMonitor) that a chart like this one may set: a misspelt key or a bad enum value
# fails here. This is a spot check from the documentation, not the CRD schemas.
SCALEDOBJECT_SPEC = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                     "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "fallback", "triggers"}
KAFKA_TRIGGER = {"bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
                 "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
                 "limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls", "unsafeSsl"}
KAFKA_AUTH_PARAMS = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword", "keyEncoding",
                     "unsafeSsl", "oauthTokenEndpointUri", "scopes", "oauthExtensions"}
MONITOR_SPEC = {"jobLabel", "namespaceSelector", "selector", "endpoints", "podMetricsEndpoints", "targetLabels",
                "podTargetLabels", "sampleLimit"}
MONITOR_ENDPOINT = {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "scheme",
                    "honorLabels", "honorTimestamps", "params", "tlsConfig"}
PROM_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")


def check_crd_fields(d):
    kind, spec = d["kind"], d.get("spec") or {}
    if kind == "ScaledObject":
        check(d["apiVersion"] == "keda.sh/v1alpha1", f"ScaledObject apiVersion {d['apiVersion']}")
        check(set(spec) <= SCALEDOBJECT_SPEC, f"ScaledObject spec keys {sorted(set(spec) - SCALEDOBJECT_SPEC)}")
        for k in ("pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"):
            check(isinstance(spec.get(k, 0), int), f"ScaledObject {k} must be an integer")
        check(spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100), "ScaledObject min > max")
        check(set(spec.get("advanced", {})) <= {"horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount",
                                                "scalingModifiers"}, "ScaledObject spec.advanced keys")
        for t in spec.get("triggers", []):
            check(set(t) <= {"type", "name", "metadata", "authenticationRef", "metricType", "useCachedMetrics"},
                  f"ScaledObject trigger keys {sorted(t)}")
            md = t.get("metadata", {})
            check(set(md) <= KAFKA_TRIGGER, f"Kafka trigger metadata keys {sorted(set(md) - KAFKA_TRIGGER)}")
            check(md.get("sasl", "plaintext") in {"plaintext", "scram_sha256", "scram_sha512", "gssapi",
                                                   "oauthbearer", "none"}, f"Kafka trigger sasl {md.get('sasl')}")
            check(md.get("tls", "enable") in {"enable", "disable"}, f"Kafka trigger tls {md.get('tls')}")
            check(md.get("offsetResetPolicy", "latest") in {"earliest", "latest"}, "Kafka trigger offsetResetPolicy")
            for k in ("lagThreshold", "activationLagThreshold"):
                check(re.fullmatch(r"[0-9]+", md.get(k, "0")) is not None, f"Kafka trigger {k} {md.get(k)!r}")
    elif kind == "TriggerAuthentication":
        check(set(spec) == {"secretTargetRef"}, f"TriggerAuthentication spec keys {sorted(spec)}")
        for ref in spec.get("secretTargetRef", []):
            check(set(ref) == {"parameter", "name", "key"} and all(ref.values()),
                  f"TriggerAuthentication secretTargetRef {ref}")
            check(ref.get("parameter") in KAFKA_AUTH_PARAMS, f"TriggerAuthentication parameter {ref.get('parameter')}")
    elif kind in ("ServiceMonitor", "PodMonitor"):
        check(d["apiVersion"] == "monitoring.coreos.com/v1", f"{kind} apiVersion {d['apiVersion']}")
        check(set(spec) <= MONITOR_SPEC, f"{kind} spec keys {sorted(set(spec) - MONITOR_SPEC)}")
        eps = spec.get("endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints")
        check(bool(eps), f"{kind} has no endpoints")
        for ep in eps or []:
            check(set(ep) <= MONITOR_ENDPOINT, f"{kind} endpoint keys {sorted(set(ep) - MONITOR_ENDPOINT)}")
            for k in ("interval", "scrapeTimeout"):
                if k in ep:
                    check(PROM_DURATION.match(str(ep[k])) is not None, f"{kind} {k} {ep[k]!r} is not a duration")


def main(scenario, rendered):
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    def component(d):
        return d["metadata"]["labels"].get("app.kubernetes.io/component")

    deployments = {component(d): d for d in by_kind.get("Deployment", [])}
    check(set(deployments) <= {"executor", "gateway"}, f"unexpected Deployments {sorted(deployments)}")
    executor = deployments.get("executor")
    if not check(executor is not None, "no executor Deployment"):
        return

    # --- executor ---------------------------------------------------------------------------------
    pod = executor["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args, parsed = check_args("executor", c, SERVE)
    check(args[:1] == ["serve"], f"executor: args start with {args[:1]}, expected serve")
    check("--brokers" in parsed, "executor: no --brokers")
    check_probe("executor", c, "livenessProbe", "/healthz")
    port = check_probe("executor", c, "readinessProbe", "/readyz")
    listen = parsed.get("--metrics-listen", ["0.0.0.0:9464"])[-1]
    check(port == int(listen.rsplit(":", 1)[1]), f"executor: probes on {port}, --metrics-listen {listen}")
    drain = duration_seconds(parsed.get("--drain-timeout", ["30s"])[-1])
    grace = pod.get("terminationGracePeriodSeconds", 30)
    check(grace > drain, f"executor: terminationGracePeriodSeconds {grace} <= --drain-timeout {drain}s")
    check_security("executor", pod, c)
    volumes = check_mounts("executor", pod, c, parsed)
    check(("--definitions" in parsed) == ("definitions" in volumes), "executor: --definitions without its volume")

    # --- gateway ----------------------------------------------------------------------------------
    gateway = deployments.get("gateway")
    if gateway:
        gpod = gateway["spec"]["template"]["spec"]
        g = gpod["containers"][0]
        gargs, gparsed = check_args("gateway", g, GATEWAY)
        check(gargs[:1] == ["gateway"], f"gateway: args start with {gargs[:1]}, expected gateway")
        check("--brokers" in gparsed and "--listen" in gparsed, "gateway: needs --brokers and --listen")
        check(gparsed.get("--brokers") == parsed.get("--brokers"), "gateway and executor use different brokers")
        for flag in ("--start-topic", "--logs-topic", "--results-topic", "--definitions-topic", "--callbacks-topic",
                     "--task-token-key-file", "--kafka"):
            check(gparsed.get(flag) == parsed.get(flag), f"gateway {flag} differs from the executor's")
        check(("--no-auth" in gparsed) != ("--credentials-file" in gparsed),
              "gateway: exactly one of --no-auth / --credentials-file")
        check_probe("gateway", g, "livenessProbe", "/healthz")
        gport = check_probe("gateway", g, "readinessProbe", "/readyz")
        if "--listen" in gparsed:
            check(gport == int(gparsed["--listen"][-1].rsplit(":", 1)[1]), "gateway: /readyz is not on --listen")
        check_security("gateway", gpod, g)
        gvol = check_mounts("gateway", gpod, g, gparsed)
        # One registry: the gateway reads the executor's definitions directory (the same
        # ConfigMap at the same path), so file machines are listed and started through the API,
        # and both answer for the same region and account.
        for flag in ("--definitions", "--region", "--account"):
            check(gparsed.get(flag) == parsed.get(flag), f"gateway {flag} differs from the executor's")
        if "--definitions" in parsed:
            check(gvol.get("definitions") == volumes.get("definitions"),
                  "gateway: the definitions volume is not the executor's ConfigMap")
            check(gateway["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/definitions")
                  == executor["spec"]["template"]["metadata"].get("annotations", {}).get("checksum/definitions"),
                  "gateway: does not roll with the executor when the definitions change")
        if "--credentials-file" in gparsed:
            check(any("secret" in v for v in gvol.values()), "gateway: credentials file is not from a Secret")

    # --- autoscaling ------------------------------------------------------------------------------
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    scaled = by_kind.get("ScaledObject", [])
    check(not (hpas and scaled), "both an HPA and a KEDA ScaledObject are rendered")
    for obj in hpas + scaled:
        ref = obj["spec"]["scaleTargetRef"]
        check(ref.get("kind", "Deployment") == "Deployment" and ref["name"] == executor["metadata"]["name"],
              f"{obj['kind']} targets {ref}, not the executor Deployment")
        check("replicas" not in executor["spec"], "autoscaled Deployment must not set replicas")
    for obj in scaled:
        for t in obj["spec"]["triggers"]:
            check(t["type"] == "kafka", f"ScaledObject trigger {t['type']}")
            md = t["metadata"]
            check(all(isinstance(v, str) for v in md.values()), "ScaledObject trigger metadata must be strings")
            check(md.get("bootstrapServers") == parsed["--brokers"][-1], "KEDA bootstrapServers != --brokers")
            check(md.get("consumerGroup") == parsed.get("--group", ["expressway"])[-1], "KEDA consumerGroup != --group")
            check(md.get("topic") == parsed.get("--start-topic", ["expressway.start"])[-1], "KEDA topic != --start-topic")
            ref = (t.get("authenticationRef") or {}).get("name")
            if ref:
                names = [a["metadata"]["name"] for a in by_kind.get("TriggerAuthentication", [])]
                check(ref in names, f"KEDA authenticationRef {ref} is not rendered")

    for d in docs:
        check_crd_fields(d)

    # --- monitoring -------------------------------------------------------------------------------
    sms = by_kind.get("ServiceMonitor", [])
    pms = by_kind.get("PodMonitor", [])
    check(not (sms and pms), "both a ServiceMonitor and a PodMonitor are rendered")
    pod_labels = executor["spec"]["template"]["metadata"]["labels"]
    pod_ports = {p["name"] for p in c.get("ports") or []}
    services = by_kind.get("Service", [])
    for sm in sms:
        sel = sm["spec"]["selector"]["matchLabels"]
        targets = [s for s in services if matches(sel, s["metadata"]["labels"])]
        if check(targets, "ServiceMonitor selects no rendered Service"):
            for ep in sm["spec"]["endpoints"]:
                check(any(ep["port"] in {p["name"] for p in s["spec"]["ports"]} for s in targets),
                      f"ServiceMonitor port {ep['port']} is not a Service port name")
    for pm in pms:
        check(matches(pm["spec"]["selector"]["matchLabels"], pod_labels), "PodMonitor does not select the executor pods")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            check(ep["port"] in pod_ports, f"PodMonitor port {ep['port']} is not an executor container port")

    # --- Services, PDBs -----------------------------------------------------------------------------
    for s in services:
        name = s["metadata"]["name"]
        pods = [d for d in deployments.values() if matches(s["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        if check(len(pods) == 1, f"Service {name} selects {len(pods)} Deployments"):
            ports = {p["name"] for p in pods[0]["spec"]["template"]["spec"]["containers"][0].get("ports") or []}
            for p in s["spec"]["ports"]:
                check(p["targetPort"] in ports, f"Service {name} targetPort {p['targetPort']} not declared")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        check(sum(matches(sel, d["spec"]["template"]["metadata"]["labels"]) for d in deployments.values()) == 1,
              f"PodDisruptionBudget {pdb['metadata']['name']} does not select exactly one Deployment")
    for d in deployments.values():
        check(matches(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]),
              f"Deployment {d['metadata']['name']} selector does not match its pods")

    # --- scenario expectations ------------------------------------------------------------------
    exp = EXPECT.get(scenario)
    if exp is None:
        return
    rendered_keys = set()
    for d in docs:
        rendered_keys.add(d["kind"])
        comp = d["metadata"]["labels"].get("app.kubernetes.io/component")
        if comp:
            rendered_keys.add(f"{d['kind']}/{comp}")
    for key in exp.get("present", []):
        check(key in rendered_keys, f"{scenario}: expected {key} to be rendered")
    for key in exp.get("absent", []):
        check(key not in rendered_keys, f"{scenario}: {key} must not be rendered")
    if "replicas" in exp:
        check(executor["spec"].get("replicas") == exp["replicas"],
              f"{scenario}: executor replicas {executor['spec'].get('replicas')}, expected {exp['replicas']}")
    for a in exp.get("executor_args", []):
        check(a in args, f"{scenario}: executor args lack {a}")
    for a in exp.get("gateway_args", []):
        check(gateway is not None and a in gateway["spec"]["template"]["spec"]["containers"][0]["args"],
              f"{scenario}: gateway args lack {a}")
    if "grace" in exp:
        check(grace == exp["grace"], f"{scenario}: terminationGracePeriodSeconds {grace}, expected {exp['grace']}")
    for key, value in exp.get("labels", {}).items():
        for d in docs:
            check(d["metadata"]["labels"].get(key) == value, f"{scenario}: {d['kind']} lacks label {key}={value}")
    # ConfigMaps and Secrets the pods mount: rendered here, or named in the values (existing ones).
    external = set(exp.get("configmaps_used", []) + exp.get("secrets_used", []))
    rendered_cms = {m["metadata"]["name"] for m in by_kind.get("ConfigMap", [])}
    for d in deployments.values():
        for v in d["spec"]["template"]["spec"].get("volumes") or []:
            if "configMap" in v:
                name = v["configMap"]["name"]
                check(name in rendered_cms or name in external, f"{scenario}: ConfigMap {name} is neither rendered nor expected")
            if "secret" in v:
                name = v["secret"]["secretName"]
                check(name in external, f"{scenario}: Secret {name} is not expected")
    text = json.dumps(docs)
    for name in exp.get("configmaps_used", []) + exp.get("secrets_used", []):
        check(f'"{name}"' in text, f"{scenario}: {name} is not referenced")
    for machine in exp.get("definitions", []):
        cms = [m for m in by_kind.get("ConfigMap", []) if f"{machine}.asl.json" in (m.get("data") or {})]
        if check(cms, f"{scenario}: no ConfigMap key {machine}.asl.json"):
            asl = json.loads(cms[0]["data"][f"{machine}.asl.json"])
            check("StartAt" in asl and "States" in asl, f"{scenario}: {machine}.asl.json is not an ASL definition")


def run_binary(binary, rendered):
    """Parse every rendered container's args with the real binary: ARGS... --help.

    clap parses (and validates the values of) the arguments before it reaches the trailing --help,
    so an unknown flag or a bad value exits 2; nothing connects to Kafka.
    """
    import subprocess

    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d and d["kind"] == "Deployment"]
    for d in docs:
        c = d["spec"]["template"]["spec"]["containers"][0]
        argv = [binary] + c["args"] + ["--help"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
        if check(p.returncode == 0 and f"Usage: expressway {c['args'][0]}" in p.stdout,
                 f"{binary} {' '.join(c['args'])} --help: exit {p.returncode}: {p.stderr.strip()[:400]}"):
            print(f"  {Path(binary).name} accepts the {d['metadata']['name']} args ({len(c['args'])})")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
    if len(sys.argv) == 4:
        run_binary(sys.argv[3], sys.argv[2])
    if errors:
        for e in errors:
            print(f"FAIL: {sys.argv[2]}: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {sys.argv[2]} ({sys.argv[1]}): serve flags {len(SERVE)}, gateway flags {len(GATEWAY)} known")
