#!/usr/bin/python3
"""Checks deploy/k8s: every file parses as YAML, every object has the fields Kubernetes
requires for its kind, and the objects fit together (selectors match pod labels, referenced
ConfigMaps/Secrets/keys exist, workers request a GPU and a volume, probes use gRPC health).

  tools/check_manifests.py deploy/k8s

Exit 0 when all is well, 1 with one line per problem otherwise, 77 (ctest's skip code) when
python3-yaml is missing.
"""
import os
import sys

try:
    import yaml
except ImportError:
    print("python3-yaml is not installed (tools/install_deps.sh installs it); skipping")
    sys.exit(77)

WORKLOADS = ("Deployment", "StatefulSet")
API_VERSIONS = {"ConfigMap": "v1", "Secret": "v1", "Service": "v1",
                "Deployment": "apps/v1", "StatefulSet": "apps/v1"}


def load(directory):
    objects = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith((".yaml", ".yml")):
            continue
        path = os.path.join(directory, name)
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is not None:
                    objects.append((name, doc))
    return objects


def get(obj, path, default=None):
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def check(objects):
    problems = []

    def need(cond, where, what):
        if not cond:
            problems.append(f"{where}: {what}")

    by_kind = {}
    for file, obj in objects:
        kind = obj.get("kind") if isinstance(obj, dict) else None
        where = f"{file}: {kind}/{get(obj, 'metadata.name', '?')}"
        need(isinstance(obj, dict), file, "a document is not a mapping")
        if not isinstance(obj, dict):
            continue
        need(kind in API_VERSIONS, where, f"unexpected kind {kind!r}")
        need(obj.get("apiVersion") == API_VERSIONS.get(kind), where,
             f"apiVersion should be {API_VERSIONS.get(kind)}")
        need(isinstance(get(obj, "metadata.name"), str), where, "metadata.name is missing")
        by_kind.setdefault(kind, {})[get(obj, "metadata.name")] = (where, obj)

    configmaps = {n: o for n, (_, o) in by_kind.get("ConfigMap", {}).items()}
    secrets = {n: o for n, (_, o) in by_kind.get("Secret", {}).items()}
    for name, (where, obj) in by_kind.get("ConfigMap", {}).items():
        need(isinstance(obj.get("data"), dict) and obj["data"], where, "data is empty")
        for k, v in (obj.get("data") or {}).items():
            need(isinstance(v, str), where, f"data.{k} must be a string (quote it)")
    for name, (where, obj) in by_kind.get("Secret", {}).items():
        need(obj.get("data") or obj.get("stringData"), where, "no data or stringData")

    pod_labels = []
    for kind in WORKLOADS:
        for name, (where, obj) in by_kind.get(kind, {}).items():
            spec = obj.get("spec") or {}
            match = get(spec, "selector.matchLabels")
            labels = get(spec, "template.metadata.labels") or {}
            need(isinstance(match, dict) and match, where, "spec.selector.matchLabels is missing")
            if isinstance(match, dict):
                need(all(labels.get(k) == v for k, v in match.items()), where,
                     "spec.selector.matchLabels does not match the pod template's labels")
            pod_labels.append(labels)
            containers = get(spec, "template.spec.containers") or []
            need(containers, where, "no containers")
            volumes = {v.get("name"): v for v in get(spec, "template.spec.volumes") or []}
            claims = {get(c, "metadata.name") for c in spec.get("volumeClaimTemplates") or []}
            for c in containers:
                cw = f"{where} container {c.get('name')}"
                need(c.get("name") and c.get("image"), cw, "name and image are required")
                for m in c.get("volumeMounts") or []:
                    need(m.get("name") in volumes or m.get("name") in claims, cw,
                         f"volumeMount {m.get('name')} has no volume")
                    need(str(m.get("mountPath", "")).startswith("/"), cw, "mountPath must be absolute")
                for ref in c.get("envFrom") or []:
                    cm = get(ref, "configMapRef.name")
                    if cm:
                        need(cm in configmaps, cw, f"ConfigMap {cm} is not defined")
                for v in volumes.values():
                    s = get(v, "secret.secretName")
                    if s:
                        need(s in secrets, where, f"Secret {s} is not defined")
            if kind == "StatefulSet":
                need(spec.get("serviceName") in by_kind.get("Service", {}), where,
                     "spec.serviceName names no Service")
                need(claims, where, "a StatefulSet here keeps its data in volumeClaimTemplates")
                for t in spec.get("volumeClaimTemplates") or []:
                    need(get(t, "spec.resources.requests.storage"), where,
                         "a volumeClaimTemplate needs resources.requests.storage")

    for name, (where, obj) in by_kind.get("Service", {}).items():
        selector = get(obj, "spec.selector") or {}
        ports = get(obj, "spec.ports") or []
        need(ports and all(isinstance(p.get("port"), int) for p in ports), where,
             "spec.ports needs integer ports")
        need(selector and any(all(l.get(k) == v for k, v in selector.items())
                              for l in pod_labels), where, "its selector matches no pod")

    # The Tome roles themselves.
    tomed = [(w, o, c) for kind in WORKLOADS for _, (w, o) in by_kind.get(kind, {}).items()
             for c in get(o, "spec.template.spec.containers") or [] if c.get("name") == "tomed"]
    roles = {}
    for where, obj, c in tomed:
        args = c.get("args") or []
        role = next((a.split("=", 1)[1] for a in args if a.startswith("--role=")), None)
        need(role in ("router", "worker"), where, "tomed needs --role=router or --role=worker")
        roles.setdefault(role, []).append((where, obj, c))
        need(any(a.startswith("--peer_token_file=") for a in args), where,
             "tomed needs --peer_token_file")
        need(any(a.startswith("--etcd=") for a in args), where, "tomed needs --etcd")
        for probe in ("readinessProbe", "livenessProbe"):
            need(get(c, f"{probe}.grpc.port") is not None, where,
                 f"{probe} should use the gRPC health service")
    need(roles.get("router") and all(o["kind"] == "Deployment" for _, o, _ in roles["router"]),
         "deploy", "routers must be a Deployment")
    need(roles.get("worker") and all(o["kind"] == "StatefulSet" for _, o, _ in roles["worker"]),
         "deploy", "workers must be a StatefulSet")
    for where, obj, c in roles.get("worker", []):
        need(get(c, "resources.limits", {}).get("nvidia.com/gpu"), where,
             "workers must request a GPU (resources.limits nvidia.com/gpu)")
    need(any(ct.get("name") == "etcd"
             for _, (_, o) in by_kind.get("StatefulSet", {}).items()
             for ct in get(o, "spec.template.spec.containers") or []), "deploy",
         "an etcd StatefulSet is missing")
    need(configmaps, "deploy", "a ConfigMap is missing")
    return problems


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else "deploy/k8s"
    try:
        objects = load(directory)
    except yaml.YAMLError as e:
        print(f"YAML error: {e}")
        return 1
    problems = check(objects)
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"{len(objects)} objects in {directory}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
