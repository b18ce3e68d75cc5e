#!/usr/bin/env python3
"""Checks on the chart's rendered objects, the examples and the CRDs.

Run by check.sh (which renders the chart with helm and provides the venv);
each check prints `ok NAME` or `FAIL NAME: why`, and the last line counts them
("N passed, M failed"). Every check is written so that it can fail: each
compares against an explicit expectation, never "whatever was rendered".

Usage: checks.py REPO_ROOT RENDER_DIR
RENDER_DIR holds default.yaml, all-on.yaml, issuer.yaml and toa-reader.yaml
(helm template output for the defaults and tests/values-<name>.yaml).
"""
import copy
import filecmp
import os
import re
import sys
import traceback

import jsonschema
import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"

# The agent's capabilities per values.yaml `agent.capabilities`; the same
# sets as templates/_helpers.tpl "ballast.agentCapabilities" and the README.
AGENT_CAPABILITIES = {
    "bpf": {"BPF", "NET_ADMIN", "PERFMON"},
    "sysAdmin": {"NET_ADMIN", "SYS_ADMIN"},
}

# The TOA reader's capabilities per `agent.capabilities`; the same sets as
# templates/_helpers.tpl "ballast.toaReaderCapabilities" and the README
# (measured: each set the least that installs the reader).
TOA_READER_CAPABILITIES = {
    "bpf": {"BPF", "NET_ADMIN", "PERFMON"},
    "sysAdmin": {"SYS_ADMIN"},
}

# Kinds kubernetes-validate has no schema for, and what checks them instead.
CRD_KINDS = {"AddressPool", "VirtualServer"}  # the CRDs' openAPIV3Schema
FOREIGN_KINDS = {  # cert-manager and prometheus-operator: required fields below
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "helm.sh/chart",
]

RESULTS = []


def check(name):
    """Runs the decorated function now; an AssertionError, or a field missing
    from what it reads, is a failure."""

    def run(fn):
        try:
            fn()
            RESULTS.append((name, True))
            print(f"ok {name}")
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as e:
            # A bare assert says nothing: name its line instead.
            frame = traceback.extract_tb(e.__traceback__)[-1]
            why = str(e) or f"line {frame.lineno}: {frame.line}"
            if not isinstance(e, AssertionError):
                why = f"{type(e).__name__} {why}"
            RESULTS.append((name, False))
            print(f"FAIL {name}: {why}")
        return fn

    return run


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def one(objs, kind, name_suffix=""):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, found {len(found)}"
    return found[0]


def pod_specs(objs):
    for o in objs:
        if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]["spec"]


def containers(spec):
    return spec.get("containers", []) + spec.get("initContainers", [])


def args_map(container):
    """--flag=value arguments as a dict (flags without a value map to True)."""
    out = {}
    for a in container.get("args", []):
        if a.startswith("--"):
            k, _, v = a[2:].partition("=")
            out[k] = v if _ else True
    return out


def crd_schemas(repo):
    out = {}
    for f in sorted(os.listdir(os.path.join(repo, "crds"))):
        crd = load_all(os.path.join(repo, "crds", f))[0]
        for v in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])
            out[key] = strict_openapi(v["schema"]["openAPIV3Schema"])
    return out


def strict_openapi(schema):
    """The CRD's OpenAPI v3 schema as JSON Schema: `nullable` becomes a null
    type, and an object with listed properties refuses unknown ones (the API
    server would drop them silently; kubectl --validate=strict refuses them,
    so an example with a misspelt field fails here)."""
    s = copy.deepcopy(schema)

    def walk(n):
        if not isinstance(n, dict):
            return
        if n.pop("nullable", False) and "type" in n:
            n["type"] = [n["type"], "null"]
        if "properties" in n and "additionalProperties" not in n:
            n["additionalProperties"] = False
        for k, v in list(n.items()):
            if k.startswith("x-kubernetes-"):
                continue
            if isinstance(v, dict):
                walk(v)
            elif isinstance(v, list):
                for i in v:
                    walk(i)
        for v in n.get("properties", {}).values():
            walk(v)

    walk(s)
    # Object metadata is the API server's, not the CRD's.
    s.setdefault("properties", {})
    s["properties"]["metadata"] = {"type": "object"}
    s["properties"]["apiVersion"] = {"type": "string"}
    s["properties"]["kind"] = {"type": "string"}
    return s


def validate_object(obj, schemas):
    """kubernetes-validate for Kubernetes' own kinds (and CRDs), the CRD
    schema for ours; returns how it was checked."""
    key = (obj["apiVersion"], obj["kind"])
    if obj["kind"] in CRD_KINDS:
        assert key in schemas, f"{key}: no CRD in crds/ defines it"
        errs = sorted(jsonschema.Draft7Validator(schemas[key]).iter_errors(obj), key=str)
        assert not errs, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errs
        )
        return "crd"
    if key in FOREIGN_KINDS:
        return "foreign"
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError:
        raise AssertionError(f"{key}: no Kubernetes {K8S_VERSION} schema and not a known custom kind")
    return "kubernetes"


def rbac_triples(rules, where):
    """(apiGroup, resource, verb) for each rule; wildcards and resourceNames
    are refused here (the chart grants neither)."""
    out = set()
    for r in rules:
        groups = r.get("apiGroups", [r.get("apiGroup")])
        for field in ("apiGroups", "resources", "verbs"):
            vals = r.get(field) or r.get(field.rstrip("s"), [])
            assert "*" not in (vals if isinstance(vals, list) else [vals]), f"{where}: wildcard in {field}: {r}"
        assert "resourceNames" not in r and "nonResourceURLs" not in r, f"{where}: unexpected {r}"
        for g in groups:
            for res in r["resources"]:
                for v in r["verbs"]:
                    assert (g, res, v) not in out, f"{where}: {g}/{res} {v} granted twice"
                    out.add((g, res, v))
    return out


def expected_rbac(repo, scope, cert_manager):
    with open(os.path.join(repo, "controller", "api-calls.yaml")) as f:
        calls = yaml.safe_load(f)
    assert calls["agent"] == {"cluster": [], "namespace": []}, "the agent calls no API: its RBAC list must be empty"
    rules = [r for r in calls["controller"][scope] if not (cert_manager and r.get("only") == "tls-bootstrap")]
    for r in rules:
        assert set(r) <= {"apiGroup", "resources", "verbs", "only"}, f"api-calls.yaml: unknown keys in {r}"
    return rbac_triples(rules, f"api-calls.yaml controller.{scope}")


def main(repo, render_dir):
    chart = os.path.join(repo, "charts", "ballast")
    names = ("default", "all-on", "issuer", "toa-reader")
    renders = {n: load_all(os.path.join(render_dir, f"{n}.yaml")) for n in names}
    given = {"default": {}}
    for n in names[1:]:
        with open(os.path.join(chart, "tests", f"values-{n}.yaml")) as f:
            given[n] = yaml.safe_load(f)
    all_on = given["all-on"]
    schemas = crd_schemas(repo)
    cert_manager = {"default": False, "all-on": True, "issuer": True, "toa-reader": False}
    caps_mode = {"default": "bpf", "all-on": all_on["agent"]["capabilities"], "issuer": "bpf", "toa-reader": "bpf"}
    assert caps_mode["all-on"] == "sysAdmin", "values-all-on.yaml must take the other capability set"

    for name, objs in renders.items():

        @check(f"{name}: every object validates (Kubernetes {K8S_VERSION} --strict, CRD schemas)")
        def _():
            how = [validate_object(o, schemas) for o in objs]
            assert how.count("kubernetes") >= 10, f"only {how.count('kubernetes')} objects validated"

        @check(f"{name}: standard labels on every object")
        def _():
            for o in objs:
                labels = o["metadata"].get("labels", {})
                missing = [k for k in STANDARD_LABELS if k not in labels]
                assert not missing, f"{o['kind']}/{o['metadata']['name']} lacks {missing}"

        @check(f"{name}: no privileged container, no host PID/IPC, no escalation without need")
        def _():
            for o, spec in pod_specs(objs):
                assert not spec.get("hostPID") and not spec.get("hostIPC"), f"{o['metadata']['name']}: host PID/IPC"
                for c in containers(spec):
                    sc = c.get("securityContext", {})
                    assert sc.get("privileged") is False, f"{c['name']}: privileged must be set false"
                    assert sc.get("readOnlyRootFilesystem") is True, f"{c['name']}: writable root filesystem"
                    assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{c['name']}: does not drop ALL"
                    added = set(sc.get("capabilities", {}).get("add", []))
                    if "SYS_ADMIN" not in added:
                        assert sc.get("allowPrivilegeEscalation") is False, f"{c['name']}: may escalate"
                seccomp = spec.get("securityContext", {}).get("seccompProfile", {}).get("type")
                assert seccomp == "RuntimeDefault", f"{o['metadata']['name']}: seccomp {seccomp}"

        @check(f"{name}: agent capabilities are exactly the {caps_mode[name]} set")
        def _():
            ds = one(objs, "DaemonSet", "-agent")
            (c,) = ds["spec"]["template"]["spec"]["containers"]
            got = set(c["securityContext"]["capabilities"]["add"])
            assert got == AGENT_CAPABILITIES[caps_mode[name]], f"{sorted(got)}"
            ctl = one(objs, "Deployment", "-controller")
            for c in containers(ctl["spec"]["template"]["spec"]):
                assert not c["securityContext"]["capabilities"].get("add"), "the controller adds capabilities"

        @check(f"{name}: the agent's /sys/fs/bpf and /run/ballast are the host's")
        def _():
            spec = one(objs, "DaemonSet", "-agent")["spec"]["template"]["spec"]
            vols = {v["name"]: v for v in spec["volumes"]}
            mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
            for path in ("/sys/fs/bpf", "/run/ballast"):
                assert path in mounts, f"{path} not mounted"
                hp = vols[mounts[path]].get("hostPath", {})
                assert hp.get("path") == path, f"{path} is not a hostPath of the same path: {vols[mounts[path]]}"
            assert vols[mounts["/sys/fs/bpf"]]["hostPath"]["type"] == "Directory", "bpffs must exist on the host"

        @check(f"{name}: agent pod: host network, NODE_NAME, rolling one at a time, no cleanup hook")
        def _():
            ds = one(objs, "DaemonSet", "-agent")
            spec = ds["spec"]["template"]["spec"]
            assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
            (c,) = spec["containers"]
            env = {e["name"]: e for e in c["env"]}
            assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
            want = all_on["agent"]["maxUnavailable"] if name == "all-on" else 1
            assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == want
            assert "cleanup" not in yaml.safe_dump(c.get("lifecycle", {})), "a hook would stop forwarding"
            assert c["args"][0] == "node", c["args"]
            assert spec["automountServiceAccountToken"] is False, "the agent needs no API token"

        toa = given[name].get("toaReader", {})

        @check(f"{name}: TOA reader DaemonSet {'runs realserver --toa --hold as values.yaml says' if toa.get('enabled') else 'absent'}")
        def _():
            found = [o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"].endswith("-toa-reader")]
            if not toa.get("enabled"):
                assert not found, "rendered while toaReader.enabled is false"
                return
            (ds,) = found
            spec = ds["spec"]["template"]["spec"]
            root = toa.get("cgroupRoot", "/sys/fs/cgroup")
            mount = "/host" + root.rstrip("/")
            cgroup = mount + (f"/{toa['cgroup']}" if toa.get("cgroup") else "")
            (c,) = spec["containers"]
            assert c["args"] == [
                "realserver", "--toa", "--hold",
                "--toa-from=" + ",".join(toa["trustedDirectors"]),
                f"--cgroup={cgroup}",
                f"--recheck-seconds={toa.get('recheckSeconds', 30)}",
            ], c["args"]
            want_image = all_on["agent"]["image"] if name == "all-on" else {"repository": "ballast/agent"}
            assert c["image"].startswith(want_image["repository"] + ":"), f"not the agent image: {c['image']}"
            # The holders' design: the new pod joins before the old one stops.
            assert ds["spec"]["updateStrategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
            assert not c.get("lifecycle"), "SIGTERM decides removal; no hook may remove the reader"
            assert spec["hostNetwork"] is False and spec["hostPID"] is False
            assert spec["automountServiceAccountToken"] is False, "the reader calls no API"
            got = set(c["securityContext"]["capabilities"]["add"])
            assert got == TOA_READER_CAPABILITIES[caps_mode[name]], f"{sorted(got)}"
            vols = {v["name"]: v for v in spec["volumes"]}
            mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
            for path, host, kind in (("/sys/fs/bpf", "/sys/fs/bpf", "Directory"),
                                     ("/run/ballast", "/run/ballast", "DirectoryOrCreate"),
                                     (mount, root, "Directory")):
                assert path in mounts, f"{path} not mounted: {sorted(mounts)}"
                hp = vols[mounts[path]["name"]].get("hostPath")
                assert hp == {"path": host, "type": kind}, f"{path}: {hp}"
            assert mounts[mount].get("readOnly") is True, "the host's cgroup tree is mounted writable"
            assert not any(m.get("readOnly") for p, m in mounts.items() if p != mount), "pins and holders need writes"
            if name == "all-on":
                # Helm merges maps into the defaults' (kubernetes.io/os: linux).
                assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", **toa["nodeSelector"]}, spec["nodeSelector"]
                assert spec["tolerations"] == toa["tolerations"], spec["tolerations"]
                assert c["resources"] == toa["resources"], c["resources"]
                assert spec["priorityClassName"] == toa["priorityClassName"]

        @check(f"{name}: controller pod: non-root, probes on the metrics port, resources, anti-affinity")
        def _():
            d = one(objs, "Deployment", "-controller")
            spec = d["spec"]["template"]["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
            (c,) = spec["containers"]
            port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
            assert args_map(c)["metrics-addr"].endswith(f":{port}")
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
            assert c["resources"]["requests"] and c["resources"]["limits"], "requests and limits"
            aa = spec["affinity"]["podAntiAffinity"]
            assert aa, "no anti-affinity"
            want = all_on["controller"]["replicas"] if name == "all-on" else 2
            assert d["spec"]["replicas"] == want
            env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"] if "valueFrom" in e}
            assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}, env
            pdb = one(objs, "PodDisruptionBudget", "-controller")
            assert pdb["spec"]["selector"]["matchLabels"] == d["spec"]["selector"]["matchLabels"]

        @check(f"{name}: RBAC is exactly controller/api-calls.yaml, no wildcard")
        def _():
            cr = one(objs, "ClusterRole", "-controller")
            role = one(objs, "Role", "-controller")
            got_c = rbac_triples(cr["rules"], "ClusterRole")
            got_n = rbac_triples(role["rules"], "Role")
            for got, scope in ((got_c, "cluster"), (got_n, "namespace")):
                want = expected_rbac(repo, scope, cert_manager[name])
                assert got == want, f"{scope}: extra {sorted(got - want)}, missing {sorted(want - got)}"
            # Bound to the controller's account only; nothing bound to the agent's.
            sa = one(objs, "Deployment", "-controller")["spec"]["template"]["spec"]["serviceAccountName"]
            bindings = [o for o in objs if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
            assert len(bindings) == 2, f"{len(bindings)} bindings"
            for b in bindings:
                assert [s["name"] for s in b["subjects"]] == [sa], b["subjects"]
                role_kind = "ClusterRole" if b["kind"] == "ClusterRoleBinding" else "Role"
                assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                        "name": (cr if role_kind == "ClusterRole" else role)["metadata"]["name"]}

        @check(f"{name}: agents dial the headless link Service and check the name the controller's certificate carries")
        def _():
            ns = "ballast-system"
            svc = one(objs, "Service", "-controller")
            assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is False
            d = one(objs, "Deployment", "-controller")
            pod_labels = d["spec"]["template"]["metadata"]["labels"]
            assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "selector misses the pods"
            host = f"{svc['metadata']['name']}.{ns}.svc"
            ds_c = one(objs, "DaemonSet", "-agent")["spec"]["template"]["spec"]["containers"][0]
            a = args_map(ds_c)
            link = [p for p in svc["spec"]["ports"] if p["name"] == "link"][0]["port"]
            assert a["controller"] == f"https://{host}:{link}", a["controller"]
            assert a["tls-server-name"] == host
            ctl = args_map(d["spec"]["template"]["spec"]["containers"][0])
            assert ctl["link-addr"].endswith(f":{link}") and ctl["agent-identity"] == "shared"
            agent_secret = [v for v in one(objs, "DaemonSet", "-agent")["spec"]["template"]["spec"]["volumes"]
                            if v["name"] == "tls"][0]["secret"]
            assert agent_secret["optional"] is False
            if cert_manager[name]:
                certs = {c["metadata"]["name"]: c["spec"] for c in objs if c["kind"] == "Certificate"}
                ctl_cert = [c for c in certs.values() if "server auth" in c.get("usages", [])]
                agent_cert = [c for c in certs.values() if "client auth" in c.get("usages", [])]
                assert len(ctl_cert) == 1 and len(agent_cert) == 1, certs.keys()
                assert host in ctl_cert[0]["dnsNames"], ctl_cert[0]["dnsNames"]
                assert agent_cert[0]["uris"] == ["spiffe://ballast/agent"]
                assert agent_cert[0]["secretName"] == agent_secret["secretName"]
                vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
                assert vols["tls"]["secret"]["secretName"] == ctl_cert[0]["secretName"]
                assert "tls-bootstrap" not in ctl and ctl["tls-client-ca"] == "/etc/ballast/tls/ca.crt"
            else:
                assert ctl["tls-bootstrap"] is True
                assert host in ctl["tls-service-names"].split(","), ctl["tls-service-names"]
                assert ctl["tls-agent-secret"] == agent_secret["secretName"]
                assert not any(o["apiVersion"].startswith("cert-manager.io") for o in objs)

        @check(f"{name}: cert-manager and ServiceMonitor objects carry what they need")
        def _():
            for o in objs:
                if (o["apiVersion"], o["kind"]) not in FOREIGN_KINDS:
                    continue
                spec = o["spec"]
                if o["kind"] == "Certificate":
                    assert spec["secretName"] and spec["issuerRef"]["name"], o["metadata"]["name"]
                    issuers = {i["metadata"]["name"] for i in objs if i["kind"] == "Issuer"}
                    if spec["issuerRef"]["kind"] == "Issuer":
                        assert spec["issuerRef"]["name"] in issuers, f"no Issuer {spec['issuerRef']['name']}"
                elif o["kind"] == "Issuer":
                    assert ("selfSigned" in spec) != ("ca" in spec), o["metadata"]["name"]
                else:
                    sel = spec["selector"]["matchLabels"]
                    svcs = [s for s in objs if s["kind"] == "Service"
                            and all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
                    assert len(svcs) == 1 and svcs[0]["spec"]["ports"][0]["name"] == spec["endpoints"][0]["port"]
            if name == "issuer":
                assert not [o for o in objs if o["kind"] == "Issuer"], "an issuerRef was given: no Issuer of ours"
            if name == "all-on":
                kinds = [o["kind"] for o in objs]
                assert kinds.count("Issuer") == 2 and kinds.count("Certificate") == 3, kinds
                assert kinds.count("ServiceMonitor") == 2 and kinds.count("AddressPool") == 1, kinds

    @check("crds: charts/ballast/crds is byte-identical to crds/")
    def _():
        top, ours = os.path.join(repo, "crds"), os.path.join(chart, "crds")
        names = sorted(os.listdir(top))
        assert names == sorted(os.listdir(ours)), f"{names} vs {sorted(os.listdir(ours))}"
        _, mismatch, errors = filecmp.cmpfiles(top, ours, names, shallow=False)
        assert not mismatch and not errors, f"differ: {mismatch + errors} (cp crds/*.yaml charts/ballast/crds/)"

    @check("examples: every object validates (CRD schemas, Kubernetes --strict)")
    def _():
        ex = os.path.join(repo, "examples")
        seen = set()
        for f in sorted(os.listdir(ex)):
            for o in load_all(os.path.join(ex, f)):
                validate_object(o, schemas)
                seen.add(o.get("spec", {}).get("forwarding") or o["kind"])
        want = {"FullNAT", "DR", "Service", "AddressPool"}
        assert want <= seen, f"examples lack {want - seen}"
        svc = [o for f in os.listdir(ex) for o in load_all(os.path.join(ex, f)) if o["kind"] == "Service"]
        assert all(s["spec"]["type"] == "LoadBalancer" and s["spec"]["loadBalancerClass"] == "ballast.dev/xdp"
                   for s in svc), "the Service example must be ours"

    @check("values: values.yaml and values.schema.json name the same keys")
    def _():
        import json
        with open(os.path.join(chart, "values.yaml")) as f:
            values = yaml.safe_load(f)
        with open(os.path.join(chart, "values.schema.json")) as f:
            schema = json.load(f)

        def walk(v, s, path):
            if s.get("type") != "object" or s.get("additionalProperties") is not False:
                return
            if path.rsplit("/", 1)[-1] in ("requests", "limits"):
                return  # resource names the schema allows, each optional
            props = set(s["properties"]) - ({"global"} if path == "" else set())
            assert set(v) == props, f"{path or '/'}: values.yaml has {sorted(set(v) - props)} beyond the schema, " \
                                    f"the schema {sorted(props - set(v))} beyond values.yaml"
            for k in v:
                walk(v[k], s["properties"][k], f"{path}/{k}")

        walk(values, schema, "")

    @check("images: each Dockerfile builds its one package with `cargo build --release --locked -p`")
    def _():
        for comp, pkg in (("controller", "ballast-controller"), ("agent", "ballast-agent")):
            with open(os.path.join(repo, "images", comp, "Dockerfile")) as f:
                runs = [l for l in f if l.startswith("RUN cargo")]
            assert runs == [f"RUN cargo build --release --locked -p {pkg}\n"], f"{comp}: {runs}"
            with open(os.path.join(repo, "controller" if comp == "controller" else "node-agent", "Cargo.toml")) as f:
                assert re.search(rf'^name = "{pkg}"', f.read(), re.M), f"no package {pkg}"

    failed = [r for r in RESULTS if not r[1]]
    print(f"{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
