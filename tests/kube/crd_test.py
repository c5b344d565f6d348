#!/usr/bin/python3
"""The TokenWarehouse CRD on a real kube-apiserver (scripts/kube-env.sh).

  - the CRD is accepted and Established, and a valid TokenWarehouse gets the schema's defaults;
  - every example in examples/ passes the server's validation (create --dry-run=server);
  - an invalid TokenWarehouse is rejected by the server itself, with the message users see:
    one case per x-kubernetes-validations (CEL) rule and per important schema constraint
    (required fields, enums, bounds, patterns, list sizes, list-map keys, unknown fields).

One control plane for the whole file. Exits 77 (skip) when etcd or a kube-apiserver (or the Go
to build one) is missing.
"""

import copy
import glob
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubelib  # noqa: E402

CP = None

VALID = {
    "apiVersion": "tokenwarehouse.io/v1alpha1",
    "kind": "TokenWarehouse",
    "metadata": {"name": "valid", "namespace": "default"},
    "spec": {
        "tiers": {
            "dram": {"capacity": "8GiB"},
            "nvme": {"devices": [{"name": "nvme0", "hostPath": "/mnt/nvme0/tw.data",
                                  "capacity": "100Gi"}]},
        },
    },
}


def with_spec(mutate):
    obj = copy.deepcopy(VALID)
    mutate(obj["spec"])
    return obj


def tiers(spec):
    return spec["tiers"]


def device(spec):
    return spec["tiers"]["nvme"]["devices"][0]


def delete(d, key):
    del d[key]


# (case name, mutation of a valid spec, substrings the server's error must contain).
# The first group are the CRD's x-kubernetes-validations rules, then the schema constraints.
INVALID = [
    # CEL: has(self.tiers.dram) || has(self.tiers.nvme).
    ("cel_no_tier", lambda s: s.update(tiers={}),
     ['spec: Invalid value: "object": at least one of tiers.dram and tiers.nvme is required']),
    # CEL on tiers.dram and tiers.nvme: lowWatermark <= highWatermark.
    ("cel_dram_watermarks", lambda s: tiers(s)["dram"].update(lowWatermark=0.9,
                                                              highWatermark=0.8),
     ["spec.tiers.dram: Invalid value", "lowWatermark must not exceed highWatermark"]),
    ("cel_dram_default_high_below_low", lambda s: tiers(s)["dram"].update(lowWatermark=0.99),
     ["spec.tiers.dram: Invalid value", "lowWatermark must not exceed highWatermark"]),
    ("cel_nvme_watermarks", lambda s: tiers(s)["nvme"].update(lowWatermark=0.5,
                                                              highWatermark=0.4),
     ["spec.tiers.nvme: Invalid value", "lowWatermark must not exceed highWatermark"]),
    # CEL on each NVMe device: exactly one of hostPath and persistentVolumeClaim.
    ("cel_device_both_paths", lambda s: device(s).update(persistentVolumeClaim={
        "claimName": "c"}),
     ["spec.tiers.nvme.devices[0]: Invalid value",
      "exactly one of hostPath and persistentVolumeClaim"]),
    ("cel_device_no_path", lambda s: delete(device(s), "hostPath"),
     ["spec.tiers.nvme.devices[0]: Invalid value",
      "exactly one of hostPath and persistentVolumeClaim"]),
    # CEL on federation: rdma needs rdmaResource or hostNetwork.
    ("cel_rdma_without_device", lambda s: s.update(federation={"enabled": True,
                                                               "transport": "rdma"}),
     ["spec.federation: Invalid value", "transport rdma requires rdmaResource or hostNetwork"]),
    # Required fields.
    ("required_tiers", lambda s: delete(s, "tiers"), ["spec.tiers: Required value"]),
    ("required_dram_capacity", lambda s: delete(tiers(s)["dram"], "capacity"),
     ["spec.tiers.dram.capacity: Required value"]),
    ("required_nvme_devices", lambda s: delete(tiers(s)["nvme"], "devices"),
     ["spec.tiers.nvme.devices: Required value"]),
    ("required_device_capacity", lambda s: delete(device(s), "capacity"),
     ["spec.tiers.nvme.devices[0].capacity: Required value"]),
    ("required_rdma_resource_name",
     lambda s: s.update(federation={"transport": "rdma", "rdmaResource": {"count": 1}}),
     ["spec.federation.rdmaResource.name: Required value"]),
    ("required_mesh_tls_secret_name",
     lambda s: s.update(federation={"enabled": True, "tls": {"serverName": "twd.mesh"}}),
     ["spec.federation.tls.secretName: Required value"]),
    ("pattern_mesh_tls_secret_name",
     lambda s: s.update(federation={"enabled": True, "tls": {"secretName": "Mesh_TLS"}}),
     ['spec.federation.tls.secretName: Invalid value: "Mesh_TLS"', "should match"]),
    # Enums.
    ("enum_image_pull_policy", lambda s: s.update(imagePullPolicy="Sometimes"),
     ['spec.imagePullPolicy: Unsupported value: "Sometimes"']),
    ("enum_log_level", lambda s: s.update(logLevel="trace"),
     ['spec.logLevel: Unsupported value: "trace"']),
    ("enum_durability", lambda s: s.update(defaultDurability="tape"),
     ['spec.defaultDurability: Unsupported value: "tape"']),
    ("enum_eviction", lambda s: tiers(s)["dram"].update(eviction="random"),
     ['spec.tiers.dram.eviction: Unsupported value: "random"']),
    ("enum_transport", lambda s: s.update(federation={"transport": "udp"}),
     ['spec.federation.transport: Unsupported value: "udp"']),
    ("enum_admission_policy", lambda s: s.update(admission={"policy": "never"}),
     ['spec.admission.policy: Unsupported value: "never"']),
    ("enum_host_path_type", lambda s: device(s).update(hostPathType="Directory"),
     ['spec.tiers.nvme.devices[0].hostPathType: Unsupported value: "Directory"']),
    ("enum_toleration_operator", lambda s: s.update(tolerations=[{"key": "k",
                                                                  "operator": "In"}]),
     ['spec.tolerations[0].operator: Unsupported value: "In"']),
    # Bounds.
    ("min_chunk_tokens", lambda s: s.update(chunkTokens=0),
     ["spec.chunkTokens: Invalid value: 0", "should be greater than or equal to 1"]),
    ("max_chunk_tokens", lambda s: s.update(chunkTokens=65537),
     ["spec.chunkTokens: Invalid value: 65537", "should be less than or equal to 65536"]),
    ("exclusive_min_watermark", lambda s: tiers(s)["dram"].update(lowWatermark=0),
     ["spec.tiers.dram.lowWatermark: Invalid value: 0", "should be greater than 0"]),
    ("max_watermark", lambda s: tiers(s)["nvme"].update(highWatermark=1.5),
     ["spec.tiers.nvme.highWatermark: Invalid value: 1.5", "less than or equal to 1"]),
    ("max_queue_depth", lambda s: tiers(s)["nvme"].update(queueDepth=4097),
     ["spec.tiers.nvme.queueDepth: Invalid value: 4097", "less than or equal to 4096"]),
    ("max_socket_mode", lambda s: s.update(socket={"mode": 512}),
     ["spec.socket.mode: Invalid value: 512", "less than or equal to 511"]),
    ("min_federation_port", lambda s: s.update(federation={"port": 0}),
     ["spec.federation.port: Invalid value: 0", "greater than or equal to 1"]),
    ("max_metrics_port", lambda s: s.update(metrics={"port": 65536}),
     ["spec.metrics.port: Invalid value: 65536", "less than or equal to 65535"]),
    # Patterns.
    ("pattern_capacity", lambda s: tiers(s)["dram"].update(capacity="lots"),
     ['spec.tiers.dram.capacity: Invalid value: "lots"', "should match"]),
    ("pattern_device_capacity", lambda s: device(s).update(capacity="-1Gi"),
     ['spec.tiers.nvme.devices[0].capacity: Invalid value: "-1Gi"', "should match"]),
    ("pattern_device_name", lambda s: device(s).update(name="NVMe_0"),
     ['spec.tiers.nvme.devices[0].name: Invalid value: "NVMe_0"', "should match"]),
    ("pattern_host_path", lambda s: device(s).update(hostPath="mnt/tw.data"),
     ['spec.tiers.nvme.devices[0].hostPath: Invalid value: "mnt/tw.data"', "should match"]),
    ("pattern_csi_kubelet_directory", lambda s: s.update(csi={
        "enabled": True, "kubeletDirectory": "var/lib/kubelet"}),
     ['spec.csi.kubeletDirectory: Invalid value: "var/lib/kubelet"', "should match"]),
    ("min_length_csi_registrar_image", lambda s: s.update(csi={"registrarImage": ""}),
     ["spec.csi.registrarImage", "at least 1 chars long"]),
    ("pattern_shutdown_grace", lambda s: s.update(shutdownGrace="20 seconds"),
     ['spec.shutdownGrace: Invalid value: "20 seconds"', "should match"]),
    ("pattern_quota_digest", lambda s: s.update(quotas={"namespaces": [
        {"digest": "ABC", "bytes": "1Gi"}]}),
     ['spec.quotas.namespaces[0].digest: Invalid value: "ABC"', "should match"]),
    ("pattern_monitor_interval", lambda s: s.update(metrics={"serviceMonitor": {
        "interval": "30"}}),
     ['spec.metrics.serviceMonitor.interval: Invalid value: "30"', "should match"]),
    ("pattern_socket_directory", lambda s: s.update(socket={"hostDirectory": "run/tw"}),
     ['spec.socket.hostDirectory: Invalid value: "run/tw"', "should match"]),
    # Lengths and list sizes.
    ("max_length_image", lambda s: s.update(image="r/" + "x" * 511),
     ["spec.image: Too long: may not be longer than 512"]),
    ("max_length_device_name", lambda s: device(s).update(name="d" * 41),
     ["spec.tiers.nvme.devices[0].name: Too long: may not be longer than 40"]),
    ("min_items_devices", lambda s: tiers(s)["nvme"].update(devices=[]),
     ["spec.tiers.nvme.devices: Invalid value: 0", "should have at least 1 items"]),
    ("max_items_devices", lambda s: tiers(s)["nvme"].update(devices=[
        {"name": "d%d" % i, "hostPath": "/d%d" % i, "capacity": "1Gi"} for i in range(17)]),
     ["spec.tiers.nvme.devices: Too many: 17: must have at most 16 items"]),
    ("max_items_tolerations", lambda s: s.update(tolerations=[{"key": "k%d" % i}
                                                              for i in range(65)]),
     ["spec.tolerations: Too many: 65: must have at most 64 items"]),
    # x-kubernetes-list-type: map keyed by name.
    ("list_map_duplicate_device", lambda s: tiers(s)["nvme"]["devices"].append(
        dict(device(s))),
     ['spec.tiers.nvme.devices[1]: Duplicate value: map[string]interface {}{"name":"nvme0"}']),
    # Types, int-or-string, unknown fields (strict field validation).
    ("type_pinned", lambda s: tiers(s)["dram"].update(pinned="yes"),
     ['spec.tiers.dram.pinned: Invalid value: "string": spec.tiers.dram.pinned in body must '
      'be of type boolean: "string"']),
    ("int_or_string_max_unavailable", lambda s: s.update(updateStrategy={
        "maxUnavailable": True}),
     ["spec.updateStrategy.maxUnavailable: Invalid value"]),
    ("unknown_field", lambda s: tiers(s)["dram"].update(capacty="8GiB"),
     ['unknown field "spec.tiers.dram.capacty"']),
]


def dry_run_create(obj):
    return CP.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-",
                      stdin=json.dumps(obj), check=False)


class CrdTest(unittest.TestCase):

    def test_crd_established_with_names(self):
        crd = CP.get("crd", "tokenwarehouses.tokenwarehouse.io")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        self.assertEqual(conditions.get("Established"), "True", conditions)
        self.assertEqual(conditions.get("NamesAccepted"), "True", conditions)
        self.assertEqual(crd["status"]["acceptedNames"]["shortNames"], ["tw"])

    def test_valid_object_gets_defaults(self):
        proc = dry_run_create(VALID)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        spec = json.loads(proc.stdout)["spec"]
        self.assertEqual(spec["imagePullPolicy"], "IfNotPresent")
        self.assertEqual(spec["chunkTokens"], 256)
        self.assertEqual(spec["tiers"]["dram"]["highWatermark"], 0.95)
        self.assertEqual(spec["tiers"]["nvme"]["devices"][0]["hostPathType"], "FileOrCreate")
        self.assertNotIn("updateStrategy", spec)  # defaults fill objects that are present

    def test_csi_defaults(self):
        obj = copy.deepcopy(VALID)
        obj["spec"]["csi"] = {"enabled": True}
        proc = dry_run_create(obj)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        csi = json.loads(proc.stdout)["spec"]["csi"]
        self.assertEqual(csi["kubeletDirectory"], "/var/lib/kubelet")
        self.assertTrue(csi["registrarImage"].startswith(
            "registry.k8s.io/sig-storage/csi-node-driver-registrar:v"))

    def test_examples_validate(self):
        examples = sorted(glob.glob(os.path.join(kubelib.SOURCE_DIR, "examples", "*.yaml")))
        self.assertGreaterEqual(len(examples), 3)
        for path in examples:
            with self.subTest(example=os.path.basename(path)):
                proc = CP.kubectl("create", "--dry-run=server", "-n", "default", "-f", path,
                                  check=False)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                self.assertIn("created (server dry run)", proc.stdout)

    def test_status_is_a_subresource(self):
        # A status in a create is dropped by the server: only /status writes it.
        obj = copy.deepcopy(VALID)
        obj["status"] = {"phase": "Ready"}
        proc = dry_run_create(obj)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("status", json.loads(proc.stdout))


def make_case(mutate, wants):
    def test(self):
        obj = with_spec(mutate)
        obj["metadata"]["name"] = "invalid"
        proc = dry_run_create(obj)
        self.assertNotEqual(proc.returncode, 0, "the server accepted %s" % json.dumps(obj))
        for want in wants:
            self.assertIn(want, proc.stderr)
    return test


for _name, _mutate, _wants in INVALID:
    setattr(CrdTest, "test_rejects_" + _name, make_case(_mutate, _wants))


def setup(control_plane, _workdir):
    global CP
    CP = control_plane
    CP.apply_crd()


if __name__ == "__main__":
    kubelib.run_tests(setup)
