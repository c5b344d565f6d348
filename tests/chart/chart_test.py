#!/usr/bin/python3
"""Tests of the Helm chart charts/tokenwarehouse with real helm 3 and helm 4 binaries.

  chart_test.py lint      helm lint --strict with default, extreme and namespace-scoped values
  chart_test.py template  render and check every object: parses, names, labels, the operator
                          Deployment (leader election, probes, resources, securityContext),
                          RBAC equal to operator/rbac-requirements.txt, Services, ServiceMonitor
  chart_test.py schema    values.schema.json (and the template guards) reject bad values
  chart_test.py docs      docs/tokenwarehouse-reference.md names every field of the CRD;
                          every metric docs/monitoring.md names is exported by the code

Exits 0 when every check holds, 1 on the first failure (with what and why), 77 (skip) when no
helm can be had. chartlib.py says where helm and kubectl come from.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartlib  # noqa: E402
from chartlib import CHART_DIR, SOURCE_DIR, Failure, log, run  # noqa: E402

VALUES_DIR = os.path.join(CHART_DIR, "ci")
RBAC_REQUIREMENTS = os.path.join(SOURCE_DIR, "operator", "rbac-requirements.txt")
RELEASE = "tw"
NAMESPACE = "tw-system"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"

# name -> (values files, extra helm template args): the value sets every check runs over.
VALUE_SETS = {
    "default": ([], []),
    "extreme": (["extreme-values.yaml"], ["--api-versions", SERVICE_MONITOR_API,
                                          "--api-versions", PROMETHEUS_RULE_API]),
    "namespace-scoped": (["namespace-values.yaml"], []),
    "cert-manager": ([], ["--set", "webhook.certManager.enabled=true",
                          "--api-versions", "cert-manager.io/v1"]),
}
# helm lint cannot declare API versions, and the chart refuses a ServiceMonitor or a
# PrometheusRule on a cluster without their CRDs: lint leaves them off (the template test
# renders them).
LINT_EXTRA = {"extreme": ["--set", "metrics.serviceMonitor.enabled=false",
                          "--set", "prometheusRule.enabled=false"],
              "cert-manager": ["--set", "webhook.certManager.enabled=false"]}


def helm_template(helm, value_files=(), extra=(), release=RELEASE, check=True):
    argv = [helm, "template", release, CHART_DIR, "--namespace", NAMESPACE]
    for f in value_files:
        argv += ["-f", os.path.join(VALUES_DIR, f)]
    return run(argv + list(extra), check=check)


# ------------------------------------------------------------------------------------------
# lint


# values.yaml blocks whose content is passed through as written (Kubernetes structures).
FREE_FORM_VALUES = {"resources", "livenessProbe", "readinessProbe", "podSecurityContext",
                    "securityContext", "spec"}


def check_values_commented():
    """Every value in values.yaml has a comment line right above it (pass-through blocks
    such as resources are documented as a whole)."""
    path = os.path.join(CHART_DIR, "values.yaml")
    with open(path) as f:
        lines = f.read().splitlines()
    stack, bare = [], []
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        stack = [(d, k) for d, k in stack if d < indent]
        free = any(k in FREE_FORM_VALUES for _, k in stack)
        stack.append((indent, key))
        if not free and (i == 0 or not lines[i - 1].lstrip().startswith("#")):
            bare.append("%d: %s" % (i + 1, line.strip()))
    if bare:
        raise Failure("values.yaml: values without a comment above them: %s" % bare)
    log("ok: every value in values.yaml is commented")


def test_lint(helms, _kubectl):
    check_values_commented()
    for major, helm in sorted(helms.items()):
        for name, (files, _) in VALUE_SETS.items():
            argv = [helm, "lint", "--strict", CHART_DIR, "--namespace", NAMESPACE]
            for f in files:
                argv += ["-f", os.path.join(VALUES_DIR, f)]
            rc, out, err = run(argv + LINT_EXTRA.get(name, []), check=False)
            if rc != 0:
                raise Failure("helm %d lint (%s values) failed:\n%s%s" % (major, name, out, err))
            log("ok: helm %d lint --strict, %s values" % (major, name))


# ------------------------------------------------------------------------------------------
# template


def read_requirements(unobserved=None, webhook=True):
    """operator/rbac-requirements.txt as a set of (verb, "group/resource") pairs.

    A pair whose line ends in "# unobserved: <why>" is one a single run against the fake API
    server may not show (a retry path, a permission checked without a request of its own);
    such pairs are added to `unobserved` when given. Pairs marked "# webhook" belong to the pod
    webhook's own certificate and are left out when `webhook` is false.
    """
    pairs = set()
    with open(RBAC_REQUIREMENTS) as f:
        for n, raw in enumerate(f, 1):
            line, _, comment = raw.partition("#")
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or "/" not in parts[1]:
                raise Failure("%s:%d: want '<verb> <group>/<resource>', got %r" %
                              (RBAC_REQUIREMENTS, n, line))
            verb, res = parts
            group, resource = res.split("/", 1)
            pair = (verb, "%s/%s" % ("core" if group in ("", "core") else group, resource))
            tags = [t.strip() for t in comment.split(";")]
            if "webhook" in tags and not webhook:
                continue
            pairs.add(pair)
            if unobserved is not None and any(t.startswith("unobserved:") for t in tags):
                unobserved.add(pair)
    if not pairs:
        raise Failure("%s lists no (verb, resource) pair" % RBAC_REQUIREMENTS)
    return pairs


# Rules that may name their objects: the Lease, the webhook's Secret and configuration.
NAMED_RULES = {("coordination.k8s.io", "leases"), ("", "secrets"),
               ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")}


def rule_pairs(rules, where, lease_names=None, named=None):
    """The (verb, "group/resource") pairs of RBAC rules. resourceNames are allowed on the rules
    of NAMED_RULES only (Lease names collected into lease_names, all into `named` as
    resource -> names, when given)."""
    pairs = set()
    for rule in rules:
        if rule.get("nonResourceURLs"):
            raise Failure("%s: unexpected nonResourceURLs rule %r" % (where, rule))
        if rule.get("resourceNames"):
            if len(rule["apiGroups"]) != 1 or len(rule["resources"]) != 1 or \
                    (rule["apiGroups"][0], rule["resources"][0]) not in NAMED_RULES:
                raise Failure("%s: resourceNames on a rule other than %s: %r" %
                              (where, sorted(NAMED_RULES), rule))
            if lease_names is not None and rule["resources"] == ["leases"]:
                lease_names.update(rule["resourceNames"])
            if named is not None:
                named.setdefault(rule["resources"][0], set()).update(rule["resourceNames"])
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in rule.get(field, []):
                raise Failure("%s: wildcard in %s: %r" % (where, field, rule))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    pairs.add((verb, "%s/%s" % (group or "core", resource)))
    return pairs


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind):
    found = by_kind(objects, kind)
    if len(found) != 1:
        raise Failure("want exactly one %s, rendered %d" % (kind, len(found)))
    return found[0]


def check_common(objects, name):
    seen = set()
    for o in objects:
        meta = o.get("metadata", {})
        ident = "%s %s" % (o.get("kind"), meta.get("name"))
        if not o.get("apiVersion") or not o.get("kind") or not meta.get("name"):
            raise Failure("%s: object without apiVersion, kind or name: %r" % (name, o))
        if len(meta["name"]) > 63:
            raise Failure("%s: %s: name longer than 63 characters" % (name, ident))
        key = (o["kind"], meta.get("namespace"), meta["name"])
        if key in seen:
            raise Failure("%s: %s rendered twice" % (name, ident))
        seen.add(key)
        labels = meta.get("labels", {})
        for label in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                      "app.kubernetes.io/managed-by", "helm.sh/chart"):
            if label not in labels:
                raise Failure("%s: %s lacks label %s" % (name, ident, label))
        for value in list(labels.values()) + list(meta.get("annotations", {}).values()):
            if not isinstance(value, str):
                raise Failure("%s: %s: label or annotation value %r is not a string" %
                              (name, ident, value))


def check_deployment(objects, name, namespaced):
    dep = one(objects, "Deployment")
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    selector = spec["selector"]["matchLabels"]
    pod_labels = spec["template"]["metadata"]["labels"]
    if any(pod_labels.get(k) != v for k, v in selector.items()):
        raise Failure("%s: Deployment selector %r does not match its pod labels" %
                      (name, selector))
    containers = pod["containers"]
    if len(containers) != 1:
        raise Failure("%s: want one operator container" % name)
    c = containers[0]
    args = c.get("args", [])
    flags = {a.split("=", 1)[0] for a in args}
    for flag in ("--leader-elect", "--leader-election-namespace", "--leader-election-id",
                 "--lease-duration", "--renew-deadline", "--retry-period",
                 "--metrics-address", "--health-address", "--twd-image"):
        if flag not in flags:
            raise Failure("%s: operator args lack %s: %r" % (name, flag, args))
    if "--leader-election-namespace=%s" % NAMESPACE not in args:
        raise Failure("%s: the Lease must live in the release namespace: %r" % (name, args))
    if namespaced != ("--namespace" in flags):
        raise Failure("%s: --namespace in args is %s, want %s" %
                      (name, "--namespace" in flags, namespaced))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("health", ports.get("health")):
            raise Failure("%s: %s is %r, want %s on the health port" % (name, probe, get, path))
    health = [a for a in args if a.startswith("--health-address=")][0]
    if not health.endswith(":%d" % ports["health"]):
        raise Failure("%s: %s does not match the health port %d" % (name, health,
                                                                    ports["health"]))
    res = c.get("resources", {})
    if "memory" not in res.get("limits", {}) or not res.get("requests"):
        raise Failure("%s: operator needs requests and a memory limit: %r" % (name, res))
    # securityContext: non-root, read-only root fs, no privilege escalation, no capabilities.
    psc, sc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        raise Failure("%s: runAsNonRoot is not set" % name)
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        raise Failure("%s: runs as uid 0" % name)
    seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        raise Failure("%s: seccompProfile is %r, want RuntimeDefault or Localhost" %
                      (name, seccomp))
    if sc.get("readOnlyRootFilesystem") is not True:
        raise Failure("%s: readOnlyRootFilesystem is not true" % name)
    if sc.get("allowPrivilegeEscalation") is not False:
        raise Failure("%s: allowPrivilegeEscalation is not false" % name)
    if sc.get("privileged"):
        raise Failure("%s: privileged container" % name)
    caps = sc.get("capabilities", {})
    if "ALL" not in caps.get("drop", []) or caps.get("add"):
        raise Failure("%s: capabilities must drop ALL and add none: %r" % (name, caps))
    if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
        raise Failure("%s: operator pod shares a host namespace" % name)
    if any("hostPath" in v for v in pod.get("volumes", [])):
        raise Failure("%s: operator pod mounts a hostPath" % name)
    return dep


def check_csi_driver(driver, name):
    """The CSIDriver of tw-csi: ephemeral inline volumes only, pod info passed, no attach."""
    want = {"attachRequired": False, "podInfoOnMount": True,
            "volumeLifecycleModes": ["Ephemeral"]}
    got = {k: driver["spec"].get(k) for k in want}
    if driver["metadata"]["name"] != "csi.tokenwarehouse.io" or got != want:
        raise Failure("%s: CSIDriver %s has %r, wants %r" %
                      (name, driver["metadata"]["name"], got, want))


def check_rbac(objects, name, dep, namespaced, watch_namespace, want):
    sa_name = dep["spec"]["template"]["spec"]["serviceAccountName"]
    if sa_name not in {o["metadata"]["name"] for o in by_kind(objects, "ServiceAccount")}:
        raise Failure("%s: ServiceAccount %s is not rendered" % (name, sa_name))
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    granted = set()
    lease_names = set()
    named = {}
    bound = 0
    for b in objects:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa_name and
                   s.get("namespace") == NAMESPACE for s in b.get("subjects", [])):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], ns, ref["name"]))
        if role is None:
            raise Failure("%s: %s %s refers to %s %s, which is not rendered" %
                          (name, b["kind"], b["metadata"]["name"], ref["kind"], ref["name"]))
        where = "%s %s" % (role["kind"], role["metadata"]["name"])
        pairs = rule_pairs(role.get("rules", []), where, lease_names, named)
        if any(r == "coordination.k8s.io/leases" for _, r in pairs):
            if role["kind"] != "Role" or role["metadata"].get("namespace") != NAMESPACE:
                raise Failure("%s: Lease rules belong in a Role of the release namespace, "
                              "not in %s" % (name, where))
        if namespaced:
            if b["kind"] == "ClusterRoleBinding" or ref["kind"] == "ClusterRole":
                raise Failure("%s: namespace-scoped install binds %s" % (name, where))
            if ns not in (NAMESPACE, watch_namespace):
                raise Failure("%s: %s is in namespace %s" % (name, where, ns))
        granted |= pairs
        bound += 1
    if namespaced and any(o["kind"] in ("ClusterRole", "ClusterRoleBinding") for o in objects):
        raise Failure("%s: namespace-scoped install renders cluster-wide RBAC objects" % name)
    if not bound:
        raise Failure("%s: nothing is bound to ServiceAccount %s" % (name, sa_name))
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    lease_id = [a.split("=", 1)[1] for a in args if a.startswith("--leader-election-id=")]
    if lease_names != set(lease_id):
        raise Failure("%s: the Lease rules name %s, the operator uses --leader-election-id=%s" %
                      (name, sorted(lease_names), lease_id))
    webhook_args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in args
                    if a.startswith(("--webhook-secret-name=", "--webhook-config-name="))}
    want_named = {}
    if "--webhook-secret-name" in webhook_args:
        want_named["secrets"] = {webhook_args["--webhook-secret-name"]}
    if "--webhook-config-name" in webhook_args:
        want_named["mutatingwebhookconfigurations"] = {webhook_args["--webhook-config-name"]}
    named.pop("leases", None)
    if named != want_named:
        raise Failure("%s: the RBAC rules name %r, the operator's webhook flags %r" %
                      (name, named, want_named))
    missing, extra = want - granted, granted - want
    if missing or extra:
        raise Failure("%s: the chart's RBAC differs from %s\n  missing: %s\n  extra: %s" %
                      (name, os.path.relpath(RBAC_REQUIREMENTS, SOURCE_DIR),
                       sorted(missing), sorted(extra)))


def check_services(objects, name, dep):
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for svc in by_kind(objects, "Service"):
        sel = svc["spec"]["selector"]
        if any(pod_labels.get(k) != v for k, v in sel.items()):
            raise Failure("%s: Service %s selects %r, not the operator pods" %
                          (name, svc["metadata"]["name"], sel))
        if [p.get("targetPort") for p in svc["spec"]["ports"]] not in (["metrics"],
                                                                      ["webhook"]):
            raise Failure("%s: Service %s must target the metrics or the webhook port" %
                          (name, svc["metadata"]["name"]))
    for sm in by_kind(objects, "ServiceMonitor"):
        svcs = by_kind(objects, "Service")
        sel = sm["spec"]["selector"]["matchLabels"]
        if not any(all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())
                   for s in svcs):
            raise Failure("%s: ServiceMonitor selects no rendered Service" % name)


def check_webhook(objects, name, dep, cert_manager):
    """The pod webhook: its configuration, its Service on the operator's webhook port, and the
    operator flags (its own certificate, or cert-manager's files)."""
    mwc = one(objects, "MutatingWebhookConfiguration")
    hooks = mwc["webhooks"]
    if len(hooks) != 1:
        raise Failure("%s: want one webhook, got %d" % (name, len(hooks)))
    hook = hooks[0]
    want = {"failurePolicy": "Ignore", "sideEffects": "None", "admissionReviewVersions": ["v1"]}
    got = {k: hook.get(k) for k in want}
    if got != want:
        raise Failure("%s: webhook has %r, wants %r" % (name, got, want))
    if not 1 <= hook.get("timeoutSeconds", 10) <= 30:
        raise Failure("%s: webhook timeoutSeconds %r: 1 to 30" % (name, hook["timeoutSeconds"]))
    if hook.get("objectSelector") != {"matchExpressions": [
            {"key": "tokenwarehouse.io/inject", "operator": "Exists"}]}:
        raise Failure("%s: webhook objectSelector %r" % (name, hook.get("objectSelector")))
    if hook["rules"] != [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                          "resources": ["pods"], "scope": "Namespaced"}]:
        raise Failure("%s: webhook rules %r" % (name, hook["rules"]))
    svc_ref = hook["clientConfig"]["service"]
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    svc = services.get(svc_ref["name"])
    if svc is None or svc_ref["namespace"] != NAMESPACE or svc_ref["path"] != "/mutate-pods":
        raise Failure("%s: webhook calls %r, which is not a rendered Service" % (name, svc_ref))
    if svc["spec"]["ports"][0]["port"] != svc_ref["port"]:
        raise Failure("%s: webhook port %r is not the Service's" % (name, svc_ref))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in c["args"] if "=" in a}
    if args.get("--webhook-address") != "0.0.0.0:%d" % ports.get("webhook", -1):
        raise Failure("%s: --webhook-address %r does not match the webhook port" %
                      (name, args.get("--webhook-address")))
    hosts = [a.split("=", 1)[1] for a in c["args"] if a.startswith("--webhook-host=")]
    if cert_manager:
        cert = one(objects, "Certificate")
        ann = mwc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from")
        if ann != "%s/%s" % (NAMESPACE, cert["metadata"]["name"]):
            raise Failure("%s: inject-ca-from %r does not name the Certificate" % (name, ann))
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        vol = vols.get(mounts.get(args.get("--webhook-cert-dir")), {})
        if vol.get("secret", {}).get("secretName") != cert["spec"]["secretName"]:
            raise Failure("%s: --webhook-cert-dir is not cert-manager's Secret" % name)
        if "--webhook-config-name" in args or hosts:
            raise Failure("%s: with cert-manager the operator must not manage certificates"
                          % name)
    else:
        if args.get("--webhook-config-name") != mwc["metadata"]["name"]:
            raise Failure("%s: --webhook-config-name does not name the configuration" % name)
        want_host = "%s.%s.svc" % (svc_ref["name"], NAMESPACE)
        if want_host not in hosts:
            raise Failure("%s: the certificate hosts %r lack %s" % (name, hosts, want_host))
        if args.get("--webhook-secret-namespace") != NAMESPACE:
            raise Failure("%s: the certificate Secret belongs in the release namespace" % name)


def test_template(helms, kubectl):
    for major, helm in sorted(helms.items()):
        for name, (files, extra) in VALUE_SETS.items():
            label = "helm %d, %s values" % (major, name)
            _, out, _ = helm_template(helm, files, extra)
            objects = chartlib.parse_manifests(kubectl, out)
            kinds = sorted({o["kind"] for o in objects})
            check_common(objects, label)
            namespaced = name == "namespace-scoped"
            dep = check_deployment(objects, label, namespaced)
            watch_ns = None
            if namespaced:
                args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
                watch_ns = [a for a in args if a.startswith("--namespace=")][0].split("=")[1]
            webhook = bool(by_kind(objects, "MutatingWebhookConfiguration"))
            cert_manager = bool(by_kind(objects, "Certificate"))
            if webhook:
                check_webhook(objects, label, dep, cert_manager)
            elif not namespaced:
                raise Failure("%s: the pod webhook is on by default" % label)
            check_rbac(objects, label, dep, namespaced, watch_ns,
                       read_requirements(webhook=webhook and not cert_manager))
            check_services(objects, label, dep)
            if name == "extreme":
                for kind in ("ServiceMonitor", "TokenWarehouse"):
                    one(objects, kind)
            if name == "default":
                if by_kind(objects, "ServiceMonitor") or by_kind(objects, "TokenWarehouse"):
                    raise Failure("%s: ServiceMonitor and example are off by default" % label)
                check_csi_driver(one(objects, "CSIDriver"), label)
            if namespaced and by_kind(objects, "CSIDriver"):
                raise Failure("%s: a namespace-scoped install renders a CSIDriver" % label)
            log("ok: %s: %d objects (%s)" % (label, len(objects), ", ".join(kinds)))
        check_seccomp_profile(helm, kubectl, major)
        # The CRD ships in crds/ and is rendered only on request.
        _, out, _ = helm_template(helm, extra=["--include-crds"])
        crds = by_kind(chartlib.parse_manifests(kubectl, out), "CustomResourceDefinition")
        if [c["metadata"]["name"] for c in crds] != ["tokenwarehouses.tokenwarehouse.io"]:
            raise Failure("helm %d: --include-crds renders %r" % (major, crds))
        log("ok: helm %d: crds/ holds the TokenWarehouse CRD" % major)


def check_seccomp_profile(helm, kubectl, major):
    """seccompProfile.spo.enabled renders the SPO SeccompProfile from files/seccomp/twd.json,
    rule for rule; off by default."""
    _, out, _ = helm_template(helm)
    if by_kind(chartlib.parse_manifests(kubectl, out), "SeccompProfile"):
        raise Failure("helm %d: a SeccompProfile is rendered by default" % major)
    _, out, _ = helm_template(helm, extra=["--set", "seccompProfile.spo.enabled=true"])
    sp = one(chartlib.parse_manifests(kubectl, out), "SeccompProfile")
    with open(os.path.join(CHART_DIR, "files", "seccomp", "twd.json")) as f:
        profile = json.load(f)
    if sp["metadata"]["name"] != "tokenwarehouse-twd" or any(
            sp["spec"][k] != profile[k] for k in ("defaultAction", "architectures", "syscalls")):
        raise Failure("helm %d: the SeccompProfile differs from files/seccomp/twd.json" % major)
    log("ok: helm %d: seccompProfile.spo.enabled renders files/seccomp/twd.json" % major)


# ------------------------------------------------------------------------------------------
# schema

# (what, --set arguments, a piece of the error message helm must print)
BAD_VALUES = [
    ("unknown top-level value", ["--set", "replicaCount=2"], "replicaCount"),
    ("unknown operator value", ["--set", "operator.replica=2"], "replica"),
    ("zero replicas", ["--set", "operator.replicas=0"], "replicas"),
    ("replicas as a string", ["--set-string", "operator.replicas=two"], "replicas"),
    ("bad scope mode", ["--set", "scope.mode=everywhere"], "mode"),
    ("bad log level", ["--set", "operator.logLevel=verbose"], "logLevel"),
    ("zero workers", ["--set", "operator.workers=0"], "workers"),
    ("bad pull policy", ["--set", "operator.image.pullPolicy=Sometimes"], "pullPolicy"),
    ("bad digest", ["--set", "operator.image.digest=md5:abc"], "digest"),
    ("empty repository", ["--set", "twd.image.repository="], "repository"),
    ("port out of range", ["--set", "operator.metricsPort=70000"], "metricsPort"),
    ("bad duration", ["--set", "operator.leaderElection.leaseDuration=fifteen"],
     "leaseDuration"),
    ("upper-case fullnameOverride", ["--set", "fullnameOverride=TokenWarehouse"],
     "fullnameOverride"),
    ("too long fullnameOverride", ["--set", "fullnameOverride=" + "a" * 53],
     "fullnameOverride"),
    ("bad example name", ["--set", "example.name=My_Cache"], "name"),
    ("writable root filesystem",
     ["--set", "operator.securityContext.readOnlyRootFilesystem=false"],
     "readOnlyRootFilesystem"),
    ("privilege escalation",
     ["--set", "operator.securityContext.allowPrivilegeEscalation=true"],
     "allowPrivilegeEscalation"),
    ("root user", ["--set", "operator.securityContext.runAsNonRoot=false"], "runAsNonRoot"),
    ("root uid", ["--set", "operator.podSecurityContext.runAsUser=0"], "runAsUser"),
    ("uid above int32 (the API server refuses it)",
     ["--set", "operator.podSecurityContext.runAsUser=4294967294"], "runAsUser"),
    ("added capability", ["--set", "operator.securityContext.capabilities.add={SYS_ADMIN}"],
     "add"),
    ("capabilities not dropped",
     ["--set", "operator.securityContext.capabilities.drop={NET_RAW}"], "drop"),
    ("extra arg without --", ["--set", "operator.extraArgs={namespace=x}"], "extraArgs"),
    ("no ServiceAccount name", ["--set", "serviceAccount.create=false"], "serviceAccount"),
    ("same metrics and health port", ["--set", "operator.healthPort=8080"], "must differ"),
    ("a Kubernetes older than the tested 1.26", ["--kube-version", "1.25.0"], "kubeVersion"),
    ("ServiceMonitor without its CRDs", ["--set", "metrics.serviceMonitor.enabled=true"],
     "monitoring.coreos.com"),
    ("ServiceMonitor without the Service",
     ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false",
      "--api-versions", SERVICE_MONITOR_API], "metrics.service.enabled"),
    ("PrometheusRule without its CRDs", ["--set", "prometheusRule.enabled=true"],
     "monitoring.coreos.com/v1 PrometheusRule"),
    ("alert ratio above 1", ["--set", "prometheusRule.nvmeFullRatio=1.5"], "nvmeFullRatio"),
    ("empty twd job regex", ["--set", "prometheusRule.twdJob="], "twdJob"),
    ("unknown dashboards value", ["--set", "dashboards.folder=x"], "folder"),
    ("unknown csiDriver value", ["--set", "csiDriver.enable=true"], "enable"),
    ("the webhook in a namespace-scoped install", ["--set", "scope.mode=namespace"],
     "webhook.enabled needs scope.mode cluster"),
    ("cert-manager without its CRDs", ["--set", "webhook.certManager.enabled=true"],
     "cert-manager.io/v1"),
    ("webhook timeout above 30 s", ["--set", "webhook.timeoutSeconds=31"], "timeoutSeconds"),
    ("unknown webhook value", ["--set", "webhook.failurePolicy=Fail"], "failurePolicy"),
    ("bad certificate validity", ["--set", "webhook.certificate.validity=1year"], "validity"),
    ("issuerRef without a name", ["--set", "webhook.certManager.issuerRef.kind=Issuer",
                                  "--set", "webhook.certManager.issuerRef.name="], "name"),
    ("unconfined seccomp",
     ["--set", "operator.podSecurityContext.seccompProfile.type=Unconfined"], "seccompProfile"),
    ("unknown seccompProfile value", ["--set", "seccompProfile.spo.enable=true"], "enable"),
]


def test_schema(helms, _kubectl):
    for major, helm in sorted(helms.items()):
        for what, args, needle in BAD_VALUES:
            rc, out, err = helm_template(helm, extra=args, check=False)
            if rc == 0:
                raise Failure("helm %d template accepted %s (%s)" % (major, what, " ".join(args)))
            if needle not in err:
                raise Failure("helm %d: the error for %s does not name %r:\n%s" %
                              (major, what, needle, err))
        log("ok: helm %d template rejects all %d bad value sets" % (major, len(BAD_VALUES)))
        # And the guards are not simply rejecting everything.
        helm_template(helm, extra=["--kube-version", "1.26.0"])
        helm_template(helm, extra=["--set", "metrics.serviceMonitor.enabled=true",
                                   "--api-versions", SERVICE_MONITOR_API])
        helm_template(helm, extra=["--set", "serviceAccount.create=false",
                                   "--set", "serviceAccount.name=existing"])


# ------------------------------------------------------------------------------------------
# docs

REFERENCE = os.path.join(SOURCE_DIR, "docs", "tokenwarehouse-reference.md")


def crd_field_paths(schema, path):
    """Yields every field path of an openAPIV3Schema: spec.tiers.nvme.devices[].name."""
    props = schema.get("properties", {})
    if schema.get("type") == "array":
        props = schema.get("items", {}).get("properties", {})
        path += "[]"
    for name, sub in props.items():
        child = "%s.%s" % (path, name)
        inner = sub.get("items", sub) if sub.get("type") == "array" else sub
        if not inner.get("properties"):
            yield child  # a leaf (or a free-form map): documented on its own row
        yield from crd_field_paths(sub, child)


def test_docs(_helms, kubectl):
    crd_path = os.path.join(SOURCE_DIR, "crds", "tokenwarehouses.tokenwarehouse.io.yaml")
    crd = chartlib.load_yaml_file(kubectl, crd_path)[0]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    with open(REFERENCE) as f:
        lines = f.read().splitlines()
    text = "\n".join(lines)
    paths = []
    for top in ("spec", "status"):
        paths += list(crd_field_paths(schema[top], top))
    missing = []
    for path in paths:
        if "`%s`" % path in text:
            continue
        # A sub-field may instead be named on its parent's row: `spec.tolerations` ... `key`.
        parent, _, leaf = path.rpartition(".")
        parents = {parent, parent[:-2] if parent.endswith("[]") else parent}
        if any(any("`%s`" % p in l for p in parents) and "`%s`" % leaf in l for l in lines):
            continue
        missing.append(path)
    if missing:
        raise Failure("docs/tokenwarehouse-reference.md does not document %s" % missing)
    log("ok: the reference documents all %d fields of the CRD" % len(paths))
    check_monitoring_doc()


MONITORING = os.path.join(SOURCE_DIR, "docs", "monitoring.md")
# Where the exported metric names are defined: the docs' prefix of them -> source folders.
METRIC_SOURCES = {"tokenwarehouse_operator_": ["operator/src"],
                  "tokenwarehouse_": ["sidecar/twd/src", "sidecar/store/src", "common/src"]}


def check_monitoring_doc():
    """Every metric docs/monitoring.md names is exported by the code (when that code exists);
    metrics the code exports but the page leaves out are listed, not failed."""
    with open(MONITORING) as f:
        documented = set(re.findall(r"`(tokenwarehouse_[a-z0-9_]+?)(?:_bucket)?[`{ ]", f.read()))
    for prefix, folders in METRIC_SOURCES.items():
        names, seen_source = set(), False
        for folder in folders:
            path = os.path.join(SOURCE_DIR, folder)
            if not os.path.isdir(path):
                continue
            for fname in os.listdir(path):
                if fname.endswith((".cc", ".h")):
                    seen_source = True
                    with open(os.path.join(path, fname)) as f:
                        names |= set(re.findall(r'"(tokenwarehouse_[a-z0-9_]+)"', f.read()))
        names = {n for n in names if n.startswith(prefix)}
        if prefix == "tokenwarehouse_":
            names = {n for n in names if not n.startswith("tokenwarehouse_operator_")}
        docs = {n for n in documented if n.startswith(prefix) and
                (prefix != "tokenwarehouse_" or not n.startswith("tokenwarehouse_operator_"))}
        if not seen_source or not names:
            log("note: no source exports %s* metrics yet; docs/monitoring.md not checked "
                "against it" % prefix)
            continue
        stale = docs - names
        if stale:
            raise Failure("docs/monitoring.md names metrics the code does not export: %s" %
                          sorted(stale))
        if names - docs:
            log("note: metrics not yet in docs/monitoring.md: %s" % sorted(names - docs))
        log("ok: the %d %s* metrics docs/monitoring.md names are all exported" %
            (len(docs), prefix))


TESTS = {"lint": test_lint, "template": test_template, "schema": test_schema,
         "docs": test_docs}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TESTS:
        print("usage: chart_test.py {%s}" % "|".join(TESTS), file=sys.stderr)
        return 2
    helms, kubectl = chartlib.require_tools()
    try:
        TESTS[sys.argv[1]](helms, kubectl)
    except Failure as e:
        log("FAIL: %s" % e)
        return 1
    log("PASS: chart %s" % sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
