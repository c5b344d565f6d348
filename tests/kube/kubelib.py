"""Helpers for the tests against a real Kubernetes control plane (scripts/kube-env.sh).

run_tests() runs a test file's cases against one control plane. ControlPlane starts etcd and
kube-apiserver through scripts/kube-env.sh in a folder of its own (parallel tests do not
collide) and stops them again; its kubectl() runs the kubectl that scripts/kubectl.sh finds
against it with the admin's kubeconfig, or with another one.
wait_for is the chart tests' (tests/chart/cluster_test.py): it polls under a bound.

When no kube-apiserver can be had (no Go to build one, no etcd), the tests exit with SKIP (77)
and say why; a build or start that fails otherwise is a failure.

Python standard library only: the tests run with Debian's /usr/bin/python3.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SKIP = 77
SOURCE_DIR = os.environ.get(
    "TW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
KUBE_ENV = os.path.join(SOURCE_DIR, "scripts", "kube-env.sh")
KUBE_BINARIES = os.path.join(SOURCE_DIR, "scripts", "kube-binaries.sh")
KUBECTL_SH = os.path.join(SOURCE_DIR, "scripts", "kubectl.sh")
CRD = os.path.join(SOURCE_DIR, "crds", "tokenwarehouses.tokenwarehouse.io.yaml")
CHART_DIR = os.path.join(SOURCE_DIR, "charts", "tokenwarehouse")

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "chart"))
from cluster_test import wait_for  # noqa: E402,F401


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def skip_unless_available():
    """Exits with SKIP when etcd is missing or kube-apiserver cannot be built (no Go)."""
    if shutil.which("etcd") is None:
        log("SKIP: no etcd on PATH (scripts/bootstrap.sh installs etcd-server)")
        sys.exit(SKIP)
    have = subprocess.run(["bash", KUBE_BINARIES, "--no-build"], capture_output=True)
    if have.returncode != 0 and shutil.which("go") is None:
        log("SKIP: no cached kube-apiserver and no Go to build one (scripts/bootstrap.sh)")
        sys.exit(SKIP)


def find_kubectl():
    proc = subprocess.run(["bash", KUBECTL_SH], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError("scripts/kubectl.sh found no kubectl: " + proc.stderr[-2000:])
    return proc.stdout.strip()


def run_tests(setup):
    """Starts a control plane, calls setup(control_plane, workdir), runs the calling file's
    unittest cases, stops the control plane and exits (0 when all passed, 1 otherwise)."""
    skip_unless_available()
    control_plane = ControlPlane()
    control_plane.start()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            setup(control_plane, workdir)
            result = unittest.main(exit=False, verbosity=2).result
    finally:
        control_plane.stop()
    sys.exit(0 if result.wasSuccessful() else 1)


class ControlPlane:
    """etcd + kube-apiserver from scripts/kube-env.sh; start() then stop() (or a with block)."""

    def __init__(self):
        self.env = {}
        self.kubectl_path = None

    def start(self):
        # The first start may build kube-apiserver (scripts/kube-binaries.sh): minutes.
        proc = subprocess.run(["bash", KUBE_ENV, "start"], capture_output=True, text=True,
                              timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError("scripts/kube-env.sh start failed:\n" + proc.stderr[-4000:])
        for line in proc.stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                self.env[key] = value
        self.kubeconfig = self.env["KUBECONFIG"]
        self.dir = self.env["TW_KUBE_ENV_DIR"]
        self.url = self.env["TW_KUBE_APISERVER_URL"]
        self.kubectl_path = find_kubectl()
        return self

    def stop(self):
        if self.env:
            subprocess.run(["bash", KUBE_ENV, "stop", self.dir], timeout=60, check=False)
            self.env = {}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def kubectl(self, *args, stdin=None, check=True, kubeconfig=None, timeout=120):
        """Runs kubectl; returns CompletedProcess (text). check raises AssertionError."""
        argv = [self.kubectl_path, "--kubeconfig", kubeconfig or self.kubeconfig] + list(args)
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("kubectl %s failed (rc %d):\n%s%s" %
                                 (" ".join(args), proc.returncode, proc.stdout[-3000:],
                                  proc.stderr[-3000:]))
        return proc

    def get(self, *args, kubeconfig=None):
        """kubectl get -o json ARGS, parsed; None when the object does not exist."""
        proc = self.kubectl("get", "-o", "json", "--show-managed-fields", *args, check=False,
                            kubeconfig=kubeconfig)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError("kubectl get %s: %s" % (" ".join(args), proc.stderr))
        return json.loads(proc.stdout)

    def apply_crd(self):
        """Applies the CRD and waits until the server reports it Established."""
        self.kubectl("apply", "--server-side", "-f", CRD)
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                     "crd/tokenwarehouses.tokenwarehouse.io")

    def token_kubeconfig(self, path, namespace, service_account, duration="1h"):
        """Writes a kubeconfig at path that authenticates with a token of the ServiceAccount
        (TokenRequest API, signed by the API server) and returns path."""
        token = self.kubectl("create", "token", service_account, "-n", namespace,
                             "--duration", duration).stdout.strip()
        cluster = json.loads(self.kubectl("config", "view", "--raw", "-o", "json").stdout)
        ca = cluster["clusters"][0]["cluster"]["certificate-authority-data"]
        with open(path, "w") as f:
            f.write(TOKEN_KUBECONFIG % {"url": self.url, "ca": ca, "token": token,
                                        "ns": namespace})
        return path

    def audit_events(self):
        """The API server's audit log (one JSON event a line, level Metadata)."""
        events = []
        with open(os.path.join(self.dir, "audit.log")) as f:
            for line in f:
                if line.strip():
                    events.append(json.loads(line))
        return events


TOKEN_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
  - name: tw-kube-env
    cluster:
      server: %(url)s
      certificate-authority-data: %(ca)s
contexts:
  - name: sa
    context:
      cluster: tw-kube-env
      user: sa
      namespace: %(ns)s
current-context: sa
users:
  - name: sa
    user:
      token: %(token)s
"""
