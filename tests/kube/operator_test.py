#!/usr/bin/python3
"""tw-operator on a real kube-apiserver (scripts/kube-env.sh) under the chart's RBAC.

The chart is rendered (helm template, cluster scope) and applied; tw-operator then runs with
the flags of the rendered Deployment and a token of the chart's ServiceAccount (`kubectl create
token`), never as admin, so the API server's RBAC judges every request it makes.

  - a TokenWarehouse is fully reconciled: finalizer, twd ConfigMap, peers ConfigMap, headless
    Service, DaemonSet (each controlled by the TokenWarehouse, owned by the field manager
    tw-operator through server-side apply), status with observedGeneration and conditions;
  - a label a user applies to the DaemonSet with its own field manager survives the operator's
    next apply; a field the user forced away from the operator is taken back, the conflict
    logged; a spec change is rolled out (config re-rendered, pod template changed, and with
    spec.csi.enabled the DaemonSet that carries tw-csi and the registrar is accepted);
  - deleting the TokenWarehouse runs the finalizer, which deletes the children (this control
    plane has no garbage collector, so only the operator can have removed them);
  - no request of the operator was refused: the API server's audit log holds no 403 for the
    ServiceAccount, and the operator's log says nothing of "forbidden";
  - leader election on the real Lease API: of two operators exactly one holds the Lease and
    reconciles; after SIGKILL of the leader the other takes over within the lease duration
    (plus one retry period) and reconciles.

Exits 77 (skip) when etcd, kube-apiserver (or Go to build it), helm or tw-operator is missing.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kubelib  # noqa: E402
import chartlib  # noqa: E402  (tests/chart/, on sys.path through kubelib)
from kubelib import wait_for  # noqa: E402

RELEASE = "tw"
RELEASE_NS = "tw-system"
TW_NS = "inference"
LEASE_S, RENEW_S, RETRY_S = 4, 3, 1

CP = None
CTX = {}


def find_operator():
    candidates = [os.environ.get("TW_OPERATOR_BIN", "")]
    if os.environ.get("TW_BIN_DIR"):
        candidates.append(os.path.join(os.environ["TW_BIN_DIR"], "tw-operator"))
    for preset in ("asan", "debug", "release"):
        candidates.append(os.path.join(kubelib.SOURCE_DIR, "build", preset, "bin", "tw-operator"))
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


def tokenwarehouse(name, capacity="1GiB", csi=False):
    obj = {
        "apiVersion": "tokenwarehouse.io/v1alpha1",
        "kind": "TokenWarehouse",
        "metadata": {"name": name, "namespace": TW_NS},
        "spec": {
            "tiers": {
                "dram": {"capacity": capacity},
                "nvme": {"devices": [{"name": "nvme0", "hostPath": "/mnt/nvme0/tw.data",
                                      "capacity": "10Gi"}]},
            },
            "federation": {"enabled": True},
        },
    }
    if csi:
        obj["spec"]["csi"] = {"enabled": True}
    return obj


class Operator:
    """One tw-operator process with the rendered Deployment's flags and the SA's token."""

    def __init__(self, name, extra=()):
        self.log_path = os.path.join(CTX["dir"], "operator-%s.log" % name)
        replaced = {a.split("=")[0] for a in extra} | {
            "--health-address", "--metrics-address", "--webhook-address", "--lease-duration",
            "--renew-deadline", "--retry-period"}
        args = [a for a in CTX["args"] if a.split("=")[0] not in replaced]
        args += ["--kubeconfig", CTX["sa_kubeconfig"],
                 "--health-address=127.0.0.1:%d" % free_port(),
                 "--metrics-address=127.0.0.1:%d" % free_port(),
                 "--webhook-address=127.0.0.1:%d" % free_port(),
                 "--lease-duration=%ds" % LEASE_S, "--renew-deadline=%ds" % RENEW_S,
                 "--retry-period=%ds" % RETRY_S] + list(extra)
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([CTX["operator"]] + args, stdout=out,
                                         stderr=subprocess.STDOUT)

    def running(self):
        if self.proc.poll() is not None:
            raise AssertionError("tw-operator exited with status %d" % self.proc.returncode)
        return True

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def identity(self):
        """The identity this process became leader with, or None."""
        for line in self.log().splitlines():
            if "became leader" in line:
                m = re.search(r'"?identity"?[=:] ?"?([^",} ]+)', line)
                return m.group(1) if m else line
        return None

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def owned_by(obj, tw):
    refs = obj["metadata"].get("ownerReferences", [])
    return any(r["uid"] == tw["metadata"]["uid"] and r.get("controller") for r in refs)


def reconciled(name):
    """The TokenWarehouse and its children once the operator has reconciled its generation."""
    tw = CP.get("-n", TW_NS, "tokenwarehouse", name)
    if tw is None:
        return None
    status = tw.get("status") or {}
    if status.get("observedGeneration") != tw["metadata"]["generation"]:
        return None
    children = {}
    for kind, child in (("configmap", name + "-twd-config"), ("configmap", name + "-twd-peers"),
                        ("service", name + "-twd"), ("daemonset", name + "-twd")):
        obj = CP.get("-n", TW_NS, kind, child)
        if obj is None or not owned_by(obj, tw):
            return None
        children[child if kind != "service" else "service"] = obj
    return tw, children


class OperatorTest(unittest.TestCase):

    def test_1_reconcile_apply_update_delete(self):
        op = Operator("main")
        try:
            self.run_lifecycle(op)
        except BaseException:
            kubelib.log("operator log (last 4000 characters):\n" + op.log()[-4000:])
            raise
        finally:
            op.stop()
        self.assertNotRegex(op.log().lower(), "forbidden", "the operator was refused a request")

    def run_lifecycle(self, op):
        CP.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(tokenwarehouse("pool")))
        tw, children = wait_for("the operator to reconcile inference/pool",
                                lambda: op.running() and reconciled("pool"), 90)
        self.assertIn("tokenwarehouse.io/finalizer", tw["metadata"].get("finalizers", []))
        types = {c["type"] for c in tw["status"].get("conditions", [])}
        self.assertIn("ConfigValid", types, tw["status"])
        self.assertIn(tw["status"].get("phase"), ("Pending", "Progressing", "Ready"))
        ds = children["pool-twd"]
        managers = {(m["manager"], m["operation"]) for m in ds["metadata"]["managedFields"]}
        self.assertIn(("tw-operator", "Apply"), managers)
        self.assertIn("1GiB", json.dumps(children["pool-twd-config"]["data"]))

        # A user's own field manager adds a label; the operator's next apply keeps it.
        CP.kubectl("apply", "--server-side", "--field-manager=user", "-f", "-", stdin=json.dumps({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "pool-twd", "namespace": TW_NS,
                         "labels": {"example.com/team": "inference"}}}))
        # The user also forces a change of a field the operator owns: the operator's next
        # apply hits a conflict, logs it, and takes the field back.
        owned = ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"]
        CP.kubectl("apply", "--server-side", "--field-manager=user", "--force-conflicts", "-f",
                   "-", stdin=json.dumps({
                       "apiVersion": "apps/v1", "kind": "DaemonSet",
                       "metadata": {"name": "pool-twd", "namespace": TW_NS,
                                    "labels": {"example.com/team": "inference"}},
                       "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {
                           "maxUnavailable": 7}}}}))
        template = ds["spec"]["template"]
        CP.kubectl("apply", "--server-side", "-f", "-",
                   stdin=json.dumps(tokenwarehouse("pool", capacity="2GiB", csi=True)))

        def rolled_out():
            current = reconciled("pool")
            if not current or current[0]["metadata"]["generation"] == tw["metadata"]["generation"]:
                return None
            cm, new_ds = current[1]["pool-twd-config"], current[1]["pool-twd"]
            return "2GiB" in json.dumps(cm["data"]) and \
                new_ds["spec"]["template"] != template and current
        tw2, children = wait_for("the operator to roll out a spec change", rolled_out, 90)
        ds = children["pool-twd"]
        self.assertEqual(ds["metadata"]["labels"].get("example.com/team"), "inference",
                         "the user's label did not survive the operator's apply")
        managers = {m["manager"] for m in ds["metadata"]["managedFields"]}
        self.assertLessEqual({"tw-operator", "user"}, managers)
        self.assertEqual(ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"], owned)
        # spec.csi.enabled: the server accepted the DaemonSet with tw-csi and the registrar.
        pod = ds["spec"]["template"]["spec"]
        self.assertEqual([c["name"] for c in pod["containers"]],
                         ["twd", "tw-csi", "csi-node-driver-registrar"])
        mounts = {m["name"]: m for m in pod["containers"][1]["volumeMounts"]}
        self.assertEqual(mounts["csi-kubelet-pods"].get("mountPropagation"), "Bidirectional")
        conflicts = [line for line in op.log().splitlines() if "field conflict" in line]
        self.assertTrue(conflicts and "pool-twd" in conflicts[0] and "user" in conflicts[0],
                        "the operator did not log the conflict: %r" % conflicts)
        kubelib.log("ok: reconciled, a user's label kept, generation %d rolled out" %
                    tw2["metadata"]["generation"])

        # Delete: the finalizer removes the children (no garbage collector runs here).
        CP.kubectl("-n", TW_NS, "delete", "tokenwarehouse", "pool", "--wait", "--timeout=60s",
                   timeout=90)
        for kind, child in (("configmap", "pool-twd-config"), ("configmap", "pool-twd-peers"),
                            ("service", "pool-twd"), ("daemonset", "pool-twd")):
            wait_for("%s %s to be deleted" % (kind, child),
                     lambda: CP.get("-n", TW_NS, kind, child) is None, 30)

    def test_9_no_request_refused(self):
        sa = "system:serviceaccount:%s:%s" % (RELEASE_NS, CTX["service_account"])
        events = [e for e in CP.audit_events() if e.get("user", {}).get("username") == sa]
        self.assertGreater(len(events), 10, "the audit log holds no requests of %s" % sa)
        refused = ["%s %s -> %d" % (e["verb"], e["requestURI"], e["responseStatus"]["code"])
                   for e in events if e.get("responseStatus", {}).get("code") in (401, 403) and
                   CTX.get("expected_refusals", "\0") not in e["requestURI"]]
        self.assertEqual(refused, [], "the API server refused the operator's requests")
        if "expected_refusals" in CTX:  # the check sees refusals: test_2's must be there
            self.assertTrue(any(CTX["expected_refusals"] in e["requestURI"] and
                                e.get("responseStatus", {}).get("code") == 403 for e in events))

    def test_2_lease_outside_rbac_is_reported(self):
        # The chart grants get and update on its own Lease only: an operator pointed at another
        # one is refused, and must say so rather than wait silently forever.
        op = Operator("wrong-lease", ["--leader-election-id=not-the-charts"])
        try:
            wait_for("the operator to report the refused Lease request", lambda: op.running() and
                     "leader election request failed" in op.log() and "forbidden" in
                     op.log().lower(), 30)
            self.assertNotIn("became leader", op.log())
        finally:
            op.stop()
        CTX["expected_refusals"] = "/leases/not-the-charts"

    def test_3_leader_election_hand_over(self):
        lease_id = CTX["lease"]
        a, b = Operator("a"), Operator("b")
        try:
            def holder():
                lease = CP.get("-n", RELEASE_NS, "lease", lease_id)
                return lease and lease["spec"].get("holderIdentity")
            first = wait_for("a leader", holder, 30)
            leaders = wait_for("the leader's log", lambda: [
                o for o in (a, b) if o.identity() is not None], 10)
            self.assertEqual(len(leaders), 1, "both operators lead")
            leader, follower = leaders[0], (b if leaders[0] is a else a)
            self.assertEqual(leader.identity(), first)
            # The follower stays a follower while the leader renews: watched over more than a
            # lease duration, since that is when a broken renewal would let it in.
            time.sleep(LEASE_S + RETRY_S)
            self.assertIsNone(follower.identity(), "the follower became leader too")
            self.assertEqual(holder(), first)

            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait()
            killed = time.monotonic()
            second = wait_for("the follower to take over", lambda: holder() != first and
                              follower.identity() is not None and holder(), LEASE_S * 3)
            took = time.monotonic() - killed
            self.assertEqual(second, follower.identity())
            # The follower counts the lease duration from when it last saw the record change
            # (up to one jittered retry period after the leader's last renewal) and notices the
            # expiry at its next poll: lease + 2 retry periods, plus slack for a loaded machine.
            self.assertLessEqual(took, LEASE_S + 3 * RETRY_S + 2.0,
                                 "hand-over took %.1fs" % took)
            CP.kubectl("apply", "--server-side", "-f", "-",
                       stdin=json.dumps(tokenwarehouse("after-handover")))
            wait_for("the new leader to reconcile", lambda: reconciled("after-handover"), 60)
            kubelib.log("ok: one leader; after SIGKILL the other led in %.1fs and reconciles" %
                        took)
        except BaseException:
            for o in (a, b):
                kubelib.log("log of %s:\n%s" % (o.log_path, o.log()[-2000:]))
            raise
        finally:
            for o in (a, b):
                o.stop()


def setup(control_plane, workdir):
    global CP
    CP = control_plane
    CTX["dir"] = workdir
    CP.apply_crd()
    for ns in (RELEASE_NS, TW_NS):
        CP.kubectl("create", "namespace", ns)
    helm = CTX["helms"][max(CTX["helms"])]
    rendered = subprocess.run(
        [helm, "template", RELEASE, kubelib.CHART_DIR, "--namespace", RELEASE_NS],
        capture_output=True, text=True, timeout=120, check=True).stdout
    CP.kubectl("apply", "--server-side", "-n", RELEASE_NS, "-f", "-", stdin=rendered)
    objects = chartlib.parse_manifests(CP.kubectl_path, rendered)
    dep = [o for o in objects if o["kind"] == "Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    CTX["service_account"] = pod["serviceAccountName"]
    CTX["args"] = pod["containers"][0]["args"]
    CTX["lease"] = [a.split("=", 1)[1] for a in CTX["args"]
                    if a.startswith("--leader-election-id=")][0]
    CTX["sa_kubeconfig"] = CP.token_kubeconfig(os.path.join(workdir, "sa.kubeconfig"),
                                               RELEASE_NS, CTX["service_account"])
    # The token really is the ServiceAccount's: it may list TokenWarehouses, not Secrets.
    who = CP.kubectl("auth", "can-i", "list", "secrets", "-A",
                     kubeconfig=CTX["sa_kubeconfig"], check=False)
    if who.stdout.strip() != "no":
        raise AssertionError("the operator's token may list Secrets: %r" % who.stdout)


def main(ctx, setup, cleanup=None):
    """Runs a suite that needs tw-operator and helm besides the API server (skipped, exit 77,
    without them); `cleanup` runs however the suite ends."""
    kubelib.skip_unless_available()
    ctx["operator"] = find_operator()
    if ctx["operator"] is None:
        kubelib.log("SKIP: tw-operator is not built ($TW_BIN_DIR, build/*/bin)")
        sys.exit(kubelib.SKIP)
    ctx["helms"] = chartlib.find_helms()
    if not ctx["helms"]:
        kubelib.log("SKIP: no helm to render the chart (tests/chart/chartlib.py)")
        sys.exit(kubelib.SKIP)
    try:
        kubelib.run_tests(setup)
    finally:
        if cleanup:
            cleanup()


if __name__ == "__main__":
    main(CTX, setup)
