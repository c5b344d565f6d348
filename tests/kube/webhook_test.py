#!/usr/bin/python3
"""The pod webhook on a real kube-apiserver (scripts/kube-env.sh), under the chart's RBAC.

The chart is rendered (helm template) and applied, with its MutatingWebhookConfiguration
pointed at https://127.0.0.1:<port>/mutate-pods instead of the in-cluster Service (this control
plane has no nodes and no Service routing). tw-operator runs with the rendered Deployment's
flags, a token of the chart's ServiceAccount, the webhook on that port and 127.0.0.1 among the
certificate's names. Then, in a namespace that enforces Pod Security "restricted":

  - the operator made its certificate: the Secret exists and the configuration's caBundle is
    its CA (the API server verifies the webhook with it: a wrong CA would skip the mutation);
  - a pod labelled tokenwarehouse.io/inject=cache (a TokenWarehouse with spec.csi.enabled) is
    created with the CSI volume (driver, readOnly, volumeAttributes.warehouse), a read-only
    mount at /run/tokenwarehouse in every container, TW_SOCKET and the group 65532, and passes
    the "restricted" admission that runs after the mutation;
  - a pod that already has all of it comes back exactly as sent (idempotent);
  - the pod of examples/vllm-inject.yaml (the label, and the warehouse's namespace in the
    annotation tokenwarehouse.io/inject-namespace) is mutated and admitted the same way;
  - a label naming an unknown warehouse or one without tw-csi: the pod is created unchanged,
    kubectl prints the webhook's warning, the operator logs it;
  - the operator stopped: a labelled pod is still created (failurePolicy Ignore), without the
    mutation;
  - no request of the operator was refused (audit log: no 403 for its ServiceAccount).

Exits 77 (skip) when etcd, kube-apiserver (or Go to build it), helm or tw-operator is missing.
"""

import base64
import copy
import json
import os
import signal
import subprocess
import sys
import unittest
import urllib.request
import ssl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kubelib  # noqa: E402
import chartlib  # noqa: E402  (tests/chart/, on sys.path through kubelib)
from kubelib import wait_for  # noqa: E402
import operator_test  # noqa: E402
from operator_test import free_port  # noqa: E402

RELEASE, RELEASE_NS, NS = "tw", "tw-system", "inference"
EXAMPLE = os.path.join(kubelib.SOURCE_DIR, "examples", "vllm-inject.yaml")
CP = None
CTX = {}


def engine_pod(name, warehouse="cache", extra_spec=None):
    """A pod that passes Pod Security "restricted" by itself (no volume of its own)."""
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"tokenwarehouse.io/inject": warehouse}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [{"name": "warm", "image": "busybox",
                                "securityContext": {"allowPrivilegeEscalation": False,
                                                    "capabilities": {"drop": ["ALL"]}}}],
            "containers": [{"name": name, "image": "vllm/vllm-openai",
                            "securityContext": {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}}
                           for name in ("engine", "proxy")],
        },
    }
    pod["spec"].update(extra_spec or {})
    return pod


def create(pod, dry_run=False):
    args = ["create", "-n", NS, "-o", "json", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    proc = CP.kubectl(*args, stdin=json.dumps(pod), check=False)
    if proc.returncode != 0:
        raise AssertionError("creating pod %s failed:\n%s" % (pod["metadata"]["name"],
                                                              proc.stderr))
    return json.loads(proc.stdout), proc.stderr


def mutated(pod):
    return any(v.get("csi", {}).get("driver") == "csi.tokenwarehouse.io"
               for v in pod["spec"].get("volumes", []))


class Operator:
    def __init__(self):
        self.log_path = os.path.join(CTX["dir"], "operator.log")
        self.health = free_port()
        args = [a for a in CTX["args"] if not a.startswith(
            ("--health-address=", "--metrics-address=", "--webhook-address="))]
        args += ["--kubeconfig", CTX["sa_kubeconfig"],
                 "--health-address=127.0.0.1:%d" % self.health,
                 "--metrics-address=127.0.0.1:%d" % free_port(),
                 "--webhook-address=127.0.0.1:%d" % CTX["port"], "--webhook-host=127.0.0.1"]
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([CTX["operator"]] + args, stdout=out,
                                         stderr=subprocess.STDOUT)

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("tw-operator exited with status %d:\n%s" %
                                 (self.proc.returncode, self.log()[-3000:]))
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.health,
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class WebhookTest(unittest.TestCase):

    def test_1_certificate(self):
        secret = CP.get("-n", RELEASE_NS, "secret", CTX["secret"])
        self.assertIsNotNone(secret, "the operator made no certificate Secret")
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        mwc = CP.get("mutatingwebhookconfiguration", CTX["mwc"])
        self.assertEqual(mwc["webhooks"][0]["clientConfig"]["caBundle"], secret["data"]["ca.crt"])
        # The endpoint answers with that certificate, for 127.0.0.1, and says no to garbage.
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
        url = "https://127.0.0.1:%d" % CTX["port"]
        with urllib.request.urlopen(url + "/healthz", context=ctx, timeout=5) as r:
            self.assertEqual(r.status, 200)
        req = urllib.request.Request(url + "/mutate-pods", data=b"{not json",
                                     headers={"Content-Type": "application/json"})
        with self.assertRaises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, context=ctx, timeout=5)
        self.assertEqual(err.exception.code, 400)
        self.assertIn(b"malformed AdmissionReview", err.exception.read())

    def test_2_labelled_pod_is_mutated_and_admitted(self):
        pod, stderr = create(engine_pod("engine-1"))
        self.assertNotIn("Warning", stderr)
        spec = pod["spec"]
        vols = [v for v in spec["volumes"] if "csi" in v]
        self.assertEqual(len(vols), 1, spec["volumes"])
        self.assertEqual(vols[0]["csi"], {"driver": "csi.tokenwarehouse.io", "readOnly": True,
                                          "volumeAttributes": {"warehouse": NS + "/cache"}})
        for c in spec["initContainers"] + spec["containers"]:
            mounts = [m for m in c["volumeMounts"] if m["mountPath"] == "/run/tokenwarehouse"]
            self.assertEqual(mounts, [{"name": vols[0]["name"], "mountPath": "/run/tokenwarehouse",
                                       "readOnly": True}], c["name"])
            self.assertIn({"name": "TW_SOCKET", "value": "/run/tokenwarehouse/twd.sock"},
                          c["env"])
        self.assertEqual(spec["securityContext"]["supplementalGroups"], [65532])
        self.assertEqual(pod["metadata"]["annotations"]["tokenwarehouse.io/injected"],
                         NS + "/cache")
        self.assertIsNotNone(CP.get("-n", NS, "pod", "engine-1"))
        self.assertIn("webhook: pod injected", CTX["op"].log())

        # Sent again as the server returned it (under a new name): nothing changes.
        again = copy.deepcopy(pod)
        again["metadata"] = {"name": "engine-2", "labels": pod["metadata"]["labels"],
                             "annotations": pod["metadata"]["annotations"]}
        again.pop("status", None)
        created, _ = create(again)
        self.assertEqual(created["spec"]["volumes"], spec["volumes"])
        self.assertEqual(created["spec"]["containers"], spec["containers"])
        self.assertEqual(created["spec"]["securityContext"], spec["securityContext"])

    def test_2_example_deployment(self):
        objects = chartlib.load_yaml_file(CP.kubectl_path, EXAMPLE)
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        self.assertEqual(len(deployments), 1)
        template = deployments[0]["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": dict(template["metadata"], name="llama-8b"),
               "spec": copy.deepcopy(template["spec"])}
        created, stderr = create(pod)
        self.assertNotIn("Warning", stderr)
        vols = {v["name"]: v for v in created["spec"]["volumes"]}
        self.assertEqual(vols["tokenwarehouse"]["csi"]["volumeAttributes"],
                         {"warehouse": "tokenwarehouse/cache"})
        engine = created["spec"]["containers"][0]
        self.assertIn({"name": "TW_SOCKET", "value": "/run/tokenwarehouse/twd.sock"},
                      engine["env"])
        self.assertIn("/run/tokenwarehouse", [m["mountPath"] for m in engine["volumeMounts"]])
        self.assertEqual(created["spec"]["securityContext"]["supplementalGroups"], [65532])

    def test_3_unknown_or_csi_less_warehouse_warns(self):
        for name, warehouse, why in (("engine-unknown", "nowhere", "no TokenWarehouse"),
                                     ("engine-plain", "plain", "spec.csi.enabled")):
            pod, stderr = create(engine_pod(name, warehouse))
            self.assertFalse(mutated(pod), pod["spec"].get("volumes"))
            self.assertIn("Warning", stderr)
            self.assertIn(why, stderr)
            self.assertIn(why, CTX["op"].log())

    def test_9_operator_down_pods_still_created(self):
        CTX["op"].stop()
        pod, _ = create(engine_pod("engine-down"))
        self.assertFalse(mutated(pod))
        self.assertNotIn("annotations", pod["metadata"])
        # No request of the operator was refused by RBAC.
        sa = "system:serviceaccount:%s:%s" % (RELEASE_NS, CTX["service_account"])
        events = [e for e in CP.audit_events() if e.get("user", {}).get("username") == sa]
        refused = ["%s %s" % (e["verb"], e["requestURI"]) for e in events
                   if e.get("responseStatus", {}).get("code") in (401, 403)]
        self.assertEqual(refused, [])
        self.assertTrue(any("secrets" in e["requestURI"] and e["verb"] == "create"
                            for e in events))


def tokenwarehouse(name, csi, host_directory="/run/tokenwarehouse", namespace=NS):
    spec = {"tiers": {"dram": {"capacity": "1GiB"}},
            "socket": {"hostDirectory": host_directory}}
    if csi:
        spec["csi"] = {"enabled": True}
    return {"apiVersion": "tokenwarehouse.io/v1alpha1", "kind": "TokenWarehouse",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def setup(control_plane, workdir):
    global CP
    CP = control_plane
    CTX["dir"] = workdir
    CTX["port"] = free_port()
    CP.apply_crd()
    for ns in (RELEASE_NS, NS, "tokenwarehouse"):
        CP.kubectl("create", "namespace", ns)
    CP.kubectl("label", "namespace", NS, "pod-security.kubernetes.io/enforce=restricted",
               "pod-security.kubernetes.io/enforce-version=latest")
    CP.kubectl("create", "serviceaccount", "default", "-n", NS)  # no controller-manager here
    helm = CTX["helms"][max(CTX["helms"])]
    rendered = subprocess.run(
        [helm, "template", RELEASE, kubelib.CHART_DIR, "--namespace", RELEASE_NS],
        capture_output=True, text=True, timeout=120, check=True).stdout
    objects = chartlib.parse_manifests(CP.kubectl_path, rendered)
    for o in objects:
        if o["kind"] == "MutatingWebhookConfiguration":
            CTX["mwc"] = o["metadata"]["name"]
            for hook in o["webhooks"]:
                hook["clientConfig"] = {"url": "https://127.0.0.1:%d/mutate-pods" % CTX["port"]}
    CP.kubectl("apply", "--server-side", "-n", RELEASE_NS, "-f", "-",
               stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    dep = [o for o in objects if o["kind"] == "Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    CTX["service_account"] = pod["serviceAccountName"]
    CTX["args"] = pod["containers"][0]["args"]
    CTX["secret"] = [a.split("=", 1)[1] for a in CTX["args"]
                     if a.startswith("--webhook-secret-name=")][0]
    CTX["sa_kubeconfig"] = CP.token_kubeconfig(os.path.join(workdir, "sa.kubeconfig"),
                                               RELEASE_NS, CTX["service_account"])
    for tw in (tokenwarehouse("cache", True), tokenwarehouse("plain", False, "/run/tw-plain"),
               tokenwarehouse("cache", True, namespace="tokenwarehouse")):  # the example's
        CP.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(tw))
    op = CTX["op"] = Operator()
    wait_for("the operator to serve the webhook (/readyz)", op.ready, 30)
    # The API server picks the caBundle up through its own informer: wait until a dry-run
    # create is mutated.
    wait_for("the API server to call the webhook",
             lambda: op.ready() and mutated(create(engine_pod("probe"), dry_run=True)[0]), 30)


def stop_operator():
    if "op" in CTX:
        CTX["op"].stop()


if __name__ == "__main__":
    operator_test.main(CTX, setup, stop_operator)
