#!/usr/bin/python3
"""The chart against the fake Kubernetes API server (tests/fakes/fake_apiserver.py).

  1. The chart's crds/ applied as helm installs them, then `helm install --dry-run=server`
     with helm 3 and helm 4: helm's own client maps every object through the fake's discovery
     and OpenAPI. (A real `helm install` cannot run here: helm writes its release Secret as
     protobuf, and the fake speaks JSON only.)
  2. The rendered manifests of a namespace-scoped install are applied with the real kubectl
     (`apply --server-side`), then applied again with changed values, as an upgrade would.
  3. Every TokenWarehouse example in docs/*.md is applied: the CRD's schema must accept it
     (and must reject a copy with a misspelt field, so the check can fail).
  4. When tw-operator is built, it runs against the fake with the flags the chart's Deployment
     passes, once for a cluster-wide and once for a namespace-scoped install: the example
     TokenWarehouse must be reconciled (status.observedGeneration, an owned DaemonSet and
     ConfigMap), re-applying the release with a changed example spec must be followed,
     /healthz and /readyz must answer on the health address, and deleting the
     TokenWarehouse must run the finalizer. In the cluster-wide install the pod webhook serves:
     /readyz waits for its certificate, which the operator writes into its Secret and the
     chart's MutatingWebhookConfiguration. Every request the fake recorded from the operator
     must be allowed by the chart's RBAC in the namespace it went to (nothing missing), and
     every granted pair must have been used or be marked "unobserved" in
     operator/rbac-requirements.txt (nothing extra).

Exits 0 when all hold, 1 on a failure, 77 when helm or the fake API server is missing.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chartlib  # noqa: E402
import chart_test  # noqa: E402
from chartlib import CHART_DIR, SOURCE_DIR, Failure, log, run  # noqa: E402

FAKE = os.path.join(SOURCE_DIR, "tests", "fakes", "fake_apiserver.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
RELEASE_NS = "tw-system"
WATCH_NS = "inference"
USER_AGENT = "tw-chart-test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, predicate, timeout=60.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (OSError, ValueError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise Failure("timed out after %.0fs waiting for %s (last: %r)" % (timeout, what, last))


class Fake:
    """The fake API server as a child process, with a kubeconfig pointing at it."""

    def __init__(self, workdir):
        self.workdir = workdir
        port_file = os.path.join(workdir, "port")
        self.log_path = os.path.join(workdir, "fake.log")
        self.proc = subprocess.Popen(
            [PYTHON, FAKE, "--port-file", port_file, "--namespace", RELEASE_NS,
             "--namespace", WATCH_NS],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))
        wait_for("the fake API server", lambda: os.path.exists(port_file) or
                 self.proc.poll() is not None, timeout=30)
        if self.proc.poll() is not None:
            raise Failure("the fake API server exited: %s" % open(self.log_path).read())
        self.port = int(open(port_file).read())
        self.url = "http://127.0.0.1:%d" % self.port
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(KUBECONFIG % {"url": self.url, "ns": RELEASE_NS})

    def get(self, path):
        req = urllib.request.Request(self.url + path, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def post(self, path, body):
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"User-Agent": USER_AGENT,
                                                             "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
      server: %(url)s
contexts:
  - name: fake
    context:
      cluster: fake
      user: fake
      namespace: %(ns)s
current-context: fake
users:
  - name: fake
    user:
      token: fake-token
"""


def kubectl(ctx, *args, stdin=None, check=True):
    return run([ctx["kubectl"], "--kubeconfig", ctx["fake"].kubeconfig] + list(args),
               stdin=stdin, check=check, env=ctx["env"])


def get_json(ctx, *args):
    _, out, _ = kubectl(ctx, "get", "-o", "json", *args)
    return json.loads(out)


# ------------------------------------------------------------------------------------------


def helm_install(ctx):
    """The CRD as helm installs it, then `helm install --dry-run=server` with each helm."""
    kubectl(ctx, "apply", "--server-side", "-f", os.path.join(CHART_DIR, "crds"))
    crd = get_json(ctx, "crd", "tokenwarehouses.tokenwarehouse.io")
    if crd["spec"]["names"]["shortNames"] != ["tw"]:
        raise Failure("unexpected CRD names: %r" % crd["spec"]["names"])
    for major, helm in sorted(ctx["helms"].items()):
        _, out, _ = run([helm, "install", "tw", CHART_DIR, "--kubeconfig",
                         ctx["fake"].kubeconfig, "--namespace", RELEASE_NS,
                         "--set", "example.enabled=true", "--dry-run=server"],
                        env=ctx["env"], timeout=180)
        if "STATUS: pending-install" not in out or "kind: TokenWarehouse" not in out:
            raise Failure("helm %d install --dry-run=server printed:\n%s" % (major, out[:3000]))
        notes = out[out.find("NOTES:"):]
        for want in ("rollout status deployment/tw-tokenwarehouse-operator",
                     "get tokenwarehouse example -w", "kubectl delete tokenwarehouses"):
            if want not in notes:
                raise Failure("helm %d: NOTES.txt lacks %r:\n%s" % (major, want, notes))
        log("ok: helm %d install --dry-run=server against the fake (discovery, OpenAPI, "
            "release lookup)" % major)


def kubectl_apply(ctx):
    helm = ctx["helms"][max(ctx["helms"])]
    base = [helm, "template", "tw-ns", CHART_DIR, "--namespace", RELEASE_NS, "-f",
            os.path.join(CHART_DIR, "ci", "namespace-values.yaml"),
            "--set", "example.name=ns-example"]
    _, out, _ = run(base)
    _, applied, _ = kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=out)
    objects = chartlib.parse_manifests(ctx["kubectl"], out)
    if len(applied.strip().splitlines()) != len(objects):
        raise Failure("kubectl applied %d objects of %d:\n%s" %
                      (len(applied.strip().splitlines()), len(objects), applied))
    role = get_json(ctx, "-n", WATCH_NS, "role", "tw-ns-tokenwarehouse-operator")
    want = chart_test.read_requirements()
    granted = chart_test.rule_pairs(role["rules"], "Role")
    if not granted <= want:
        raise Failure("namespace Role grants more than the operator needs: %r" % (granted - want))
    # An upgrade: new values, applied over the live objects by the same field manager.
    _, out, _ = run(base + ["--set", "operator.replicas=2",
                            "--set", "operator.leaderElection.leaseDuration=30s"])
    kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=out)
    dep = get_json(ctx, "-n", RELEASE_NS, "deployment", "tw-ns-tokenwarehouse-operator")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    if dep["spec"]["replicas"] != 2 or "--lease-duration=30s" not in args:
        raise Failure("re-applied values did not reach the Deployment: %r" % dep["spec"])
    log("ok: kubectl apply --server-side of a namespace-scoped rendering (%d objects), "
        "then of changed values" % len(objects))


def docs_examples(ctx):
    examples = []
    docs = os.path.join(SOURCE_DIR, "docs")
    for name in sorted(os.listdir(docs)):
        if not name.endswith(".md"):
            continue
        text = open(os.path.join(docs, name)).read()
        for block in re.findall(r"```yaml\n(.*?)```", text, re.S):
            if re.search(r"^kind: TokenWarehouse$", block, re.M):
                examples.append((name, block))
    if len(examples) < 3:
        raise Failure("want at least 3 TokenWarehouse examples in docs/, found %d" %
                      len(examples))
    for name, block in examples:
        rc, out, err = kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=block,
                               check=False)
        if rc != 0:
            raise Failure("docs/%s: the CRD rejects an example:\n%s\n%s" % (name, block, err))
    # The same check must fail for a misspelt field and for a value out of range.
    name, block = examples[0]
    for bad, why in ((block.replace("capacity:", "capacty:", 1), "a misspelt field"),
                     (block.replace("spec:", "spec:\n  chunkTokens: 0", 1), "chunkTokens 0")):
        bad = bad.replace("name: ", "name: bad-", 1)
        rc, _, _ = kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=bad, check=False)
        if rc == 0:
            raise Failure("the fake accepted an example with %s: the docs check is blind" % why)
    log("ok: %d TokenWarehouse examples from docs/ accepted by the CRD" % len(examples))


def find_operator():
    candidates = [os.environ.get("TW_OPERATOR_BIN", "")]
    if os.environ.get("TW_BIN_DIR"):
        candidates.append(os.path.join(os.environ["TW_BIN_DIR"], "tw-operator"))
    for preset in ("release", "debug", "asan"):
        candidates.append(os.path.join(SOURCE_DIR, "build", preset, "bin", "tw-operator"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


def operator_reconciles(ctx, mode, release, values, tw_ns, tw_name):
    """Runs tw-operator with the flags of the rendered Deployment until it has reconciled
    tw_ns/tw_name and run its finalizer; checks its requests against the rendered RBAC."""
    binary = find_operator()
    if binary is None:
        log("SKIPPED PART: tw-operator is not built (looked in $TW_BIN_DIR and "
            "build/{release,debug,asan}/bin): the %s-mode reconcile step is left out" % mode)
        return
    fake = ctx["fake"]
    helm = ctx["helms"][max(ctx["helms"])]
    template = [helm, "template", release, CHART_DIR, "--namespace", RELEASE_NS,
                "--set", "example.enabled=true", "--set", "example.name=" + tw_name,
                "--set", "example.spec.metrics.serviceMonitor.enabled=true"] + values
    _, out, _ = run(template)
    kubectl(ctx, "apply", "--server-side", "-f", "-", stdin=out)
    objects = chartlib.parse_manifests(ctx["kubectl"], out)
    dep = [o for o in objects if o["kind"] == "Deployment"][0]
    # What the operator's ServiceAccount is granted, and in which namespace (None: cluster).
    grants = []
    for o in objects:
        if o["kind"] in ("Role", "ClusterRole") and not o["metadata"]["name"].endswith(
                ("-view", "-edit")):
            ns = o["metadata"].get("namespace") if o["kind"] == "Role" else None
            grants.append((ns, chart_test.rule_pairs(o["rules"], o["metadata"]["name"])))
    granted = set().union(*(pairs for _, pairs in grants))
    health, metrics = free_port(), free_port()
    args = []
    for a in dep["spec"]["template"]["spec"]["containers"][0]["args"]:
        if a.startswith("--health-address="):
            a = "--health-address=127.0.0.1:%d" % health
        elif a.startswith("--metrics-address="):
            a = "--metrics-address=127.0.0.1:%d" % metrics
        elif a.startswith("--webhook-address="):
            a = "--webhook-address=127.0.0.1:%d" % free_port()
        elif a.startswith(("--lease-duration=", "--renew-deadline=", "--retry-period=")):
            continue  # short elections so the test does not wait 15 s
        args.append(a)
    args += ["--kubeconfig", fake.kubeconfig, "--lease-duration=4s", "--renew-deadline=3s",
             "--retry-period=1s"]
    fake.post("/fake/reset-requests", {})
    log_path = os.path.join(ctx["dir"], "operator-%s.log" % mode)
    proc = subprocess.Popen([binary] + args, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT, env=ctx["env"])
    try:
        def reconciled():
            if proc.poll() is not None:
                raise Failure("tw-operator exited with status %d before reconciling" %
                              proc.returncode)
            tw = fake.get("/apis/tokenwarehouse.io/v1alpha1/namespaces/%s/tokenwarehouses/%s" %
                          (tw_ns, tw_name))
            status = tw.get("status") or {}
            if status.get("observedGeneration") != tw["metadata"]["generation"]:
                return None
            ds = fake.get("/apis/apps/v1/namespaces/%s/daemonsets/%s-twd" % (tw_ns, tw_name))
            cm = fake.get("/api/v1/namespaces/%s/configmaps/%s-twd-config" % (tw_ns, tw_name))
            owners = [r.get("uid") for o in (ds, cm)
                      for r in o["metadata"].get("ownerReferences", [])]
            return owners == [tw["metadata"]["uid"]] * 2 and tw
        tw = wait_for("the operator to reconcile %s/%s" % (tw_ns, tw_name), reconciled,
                      timeout=90)
        log("ok: %s mode: tw-operator reconciled %s/%s: phase %s, conditions %s" %
            (mode, tw_ns, tw_name, tw["status"].get("phase"),
             [(c["type"], c["status"]) for c in tw["status"].get("conditions", [])]))
        # An upgrade of the release that changes the example's spec: the operator must
        # follow (new generation observed, the twd config re-rendered).
        _, out2, _ = run(template + ["--set", "example.spec.tiers.dram.capacity=12GiB"])
        # Not the MutatingWebhookConfiguration: the fake owns lists as a whole, so the
        # operator's caBundle makes all of .webhooks its own; the real API server keys webhooks
        # by name and the chart, which sets no caBundle, co-owns them without a conflict.
        upgraded = [o for o in chartlib.parse_manifests(ctx["kubectl"], out2)
                    if o["kind"] != "MutatingWebhookConfiguration"]
        kubectl(ctx, "apply", "--server-side", "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": upgraded}))

        def updated():
            current = reconciled()
            if not current or current["metadata"]["generation"] == tw["metadata"]["generation"]:
                return None
            cm = fake.get("/api/v1/namespaces/%s/configmaps/%s-twd-config" % (tw_ns, tw_name))
            return "12GiB" in json.dumps(cm.get("data", {})) and current
        tw = wait_for("the operator to follow a spec change of %s/%s" % (tw_ns, tw_name),
                      updated, timeout=90)
        log("ok: %s mode: a changed spec was reconciled (generation %d observed, twd config "
            "re-rendered)" % (mode, tw["metadata"]["generation"]))
        if mode == "cluster":
            mwc = fake.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
            bundles = [w["clientConfig"].get("caBundle") for i in mwc["items"]
                       for w in i["webhooks"]]
            secret = [a.split("=", 1)[1] for a in args
                      if a.startswith("--webhook-secret-name=")][0]
            cert = fake.get("/api/v1/namespaces/%s/secrets/%s" % (RELEASE_NS, secret))
            if not bundles or bundles != [cert["data"]["ca.crt"]]:
                raise Failure("the webhook's caBundle %r is not its Secret's ca.crt" % bundles)
            log("ok: cluster mode: the webhook's certificate is in Secret %s and its CA in the "
                "caBundle" % secret)
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (health, path),
                                        timeout=5) as r:
                if r.status != 200:
                    raise Failure("operator %s answered %d" % (path, r.status))
        kubectl(ctx, "-n", tw_ns, "delete", "tokenwarehouse", tw_name, "--wait",
                "--timeout=60s")
        log("ok: %s mode: /healthz and /readyz answer; deleting the TokenWarehouse ran the "
            "finalizer" % mode)
    except Failure:
        log("operator log (last 3000 characters):\n" + open(log_path).read()[-3000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    used = set()
    for r in fake.get("/fake/requests")["requests"]:
        ua = r["user_agent"]
        if ua == USER_AGENT or ua.startswith(("kubectl", "Helm")):
            continue
        pair = (r["verb"], "%s/%s" % (r["group"] or "core", r["resource"]))
        used.add(pair)
        # The grant must hold where the request went: a Role covers its namespace only.
        if not any(pair in pairs and ns in (None, r["namespace"]) for ns, pairs in grants):
            raise Failure("%s mode: tw-operator sent %s %s (namespace %r), which the chart's "
                          "RBAC does not allow there" % (mode, r["method"], r["path"],
                                                         r["namespace"]))
    # Nothing extra: every granted pair not seen in this run must be explained.
    unobserved = set()
    chart_test.read_requirements(unobserved)
    explained = set(unobserved)
    explained |= {("create", r) for v, r in used if v == "patch" and
                  not r.startswith("tokenwarehouse.io/")}  # server-side apply of a new object
    extra = granted - used - explained
    if extra:
        raise Failure("the chart grants %s, which tw-operator did not use against the fake; "
                      "drop them from operator/rbac-requirements.txt and the chart, or mark "
                      "their lines '# unobserved: <why>'" % sorted(extra))
    log("ok: %s mode: the operator used %d (verb, resource) pairs, each allowed where it went; "
        "granted but not seen, each explained: %s" % (mode, len(used), sorted(granted - used)))


def main():
    helms, kubectl_path = chartlib.require_tools()
    if not os.path.exists(FAKE):
        log("SKIP: %s is missing" % FAKE)
        return chartlib.SKIP
    workdir = tempfile.mkdtemp(prefix="tw-chart-cluster-")
    env = dict(os.environ, HOME=workdir, KUBECACHEDIR=os.path.join(workdir, "kube-cache"),
               HELM_CACHE_HOME=os.path.join(workdir, "helm-cache"),
               HELM_CONFIG_HOME=os.path.join(workdir, "helm-config"),
               HELM_DATA_HOME=os.path.join(workdir, "helm-data"))
    fake = None
    try:
        fake = Fake(workdir)
        ctx = {"helms": helms, "kubectl": kubectl_path, "fake": fake, "env": env,
               "dir": workdir}
        helm_install(ctx)
        kubectl_apply(ctx)
        docs_examples(ctx)
        operator_reconciles(ctx, "cluster", "tw", [], RELEASE_NS, "example")
        operator_reconciles(ctx, "namespace", "tw-ns",
                            ["-f", os.path.join(CHART_DIR, "ci", "namespace-values.yaml")],
                            WATCH_NS, "scoped")
    except Failure as e:
        log("FAIL: %s" % e)
        if fake:
            log("fake API server log (last 2000 characters):\n" +
                open(fake.log_path).read()[-2000:])
        return 1
    finally:
        if fake:
            fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    log("PASS: chart against the fake API server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
