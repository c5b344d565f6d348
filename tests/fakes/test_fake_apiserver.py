#!/usr/bin/python3
"""Tests of the fake Kubernetes API server (fake_apiserver.py), standard library only.

Each test class starts one server process on a free port with the Widget test CRD
(testdata/) and talks plain HTTP to it. Tests that wait for something asynchronous (garbage
collection, watch events) poll with a generous deadline: they check that a state is reached,
never how fast.
"""

import http.client
import json
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fake_apiserver  # noqa: E402  (the YAML reader and helpers are tested directly too)

SOURCE_DIR = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
WIDGETS = "/apis/fake.example.io/v1/namespaces/%s/widgets"
CMS = "/api/v1/namespaces/%s/configmaps"
DEADLINE = 30.0  # seconds a poll waits before the test fails; never a performance bound


class Server:
    """A fake API server process on a free port."""

    def __init__(self, *extra):
        self.dir = tempfile.TemporaryDirectory()
        port_file = os.path.join(self.dir.name, "port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_apiserver.py"), "--port", "0",
             "--port-file", port_file, "--crd-dir", os.path.join(HERE, "testdata"), *extra],
            stderr=subprocess.PIPE)
        end = time.monotonic() + DEADLINE
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("fake API server did not start: %s" %
                                   self.proc.stderr.read().decode())
            time.sleep(0.02)
        with open(port_file) as fh:
            self.port = int(fh.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        self.dir.cleanup()

    def call(self, method, path, body=None, ctype="application/json", headers=None,
             agent="fake-test/1.0"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        hdrs = {"User-Agent": agent}
        if data is not None:
            hdrs["Content-Type"] = ctype
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw.decode()
        return resp.status, obj, resp

    def watch(self, path):
        return Watch(self.port, path)


class Watch:
    """A watch stream read on a thread; events() hands them over in order."""

    def __init__(self, port, path):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
        self.conn.request("GET", path, headers={"User-Agent": "fake-test-watch/1.0"})
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.q = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = json.loads(self.resp.read())
            self.conn.close()

    def _read(self):
        # read1 (unlike readline) reports a stream cut inside a chunk as IncompleteRead.
        buf = b""
        try:
            while True:
                data = self.resp.read1(65536)
                if not data:
                    break
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self.q.put(json.loads(line))
        except (OSError, ValueError, AttributeError, http.client.HTTPException) as e:
            self.q.put({"type": "_error", "error": repr(e)})
            return
        self.q.put({"type": "_closed"})

    def next(self, skip_bookmarks=True):
        while True:
            ev = self.q.get(timeout=DEADLINE)
            if skip_bookmarks and ev["type"] == "BOOKMARK":
                continue
            return ev

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def poll(fn, what):
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def widget(name, size=3, **spec):
    spec = dict(spec, size=size)
    return {"apiVersion": "fake.example.io/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": spec}


def cm(name, data=None, labels=None):
    md = {"name": name}
    if labels:
        md["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": md, "data": data or {}}


class FakeApiServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--bookmark-interval", "0.2")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        # Each test works in its own namespace, so tests never see each other's objects.
        self.ns = self.id().rsplit(".", 1)[-1].replace("_", "-").lower()[:60]
        code, _, _ = self.call("POST", "/api/v1/namespaces",
                               {"apiVersion": "v1", "kind": "Namespace",
                                "metadata": {"name": self.ns}})
        self.assertEqual(code, 201)

    def tearDown(self):
        self.call("DELETE", "/fake/faults")

    def call(self, *args, **kwargs):
        return self.srv.call(*args, **kwargs)

    def watch(self, path):
        w = self.srv.watch(path)
        self.addCleanup(w.close)
        return w

    def create(self, path, obj, code=201):
        got, body, _ = self.call("POST", path, obj)
        self.assertEqual(got, code, body)
        return body


class DiscoveryTest(FakeApiServerTest):
    def test_version_healthz_and_groups(self):
        code, body, _ = self.call("GET", "/version")
        self.assertEqual((code, body["major"]), (200, "1"))
        self.assertEqual(self.call("GET", "/healthz")[1], "ok")
        code, body, _ = self.call("GET", "/api")
        self.assertEqual(body["versions"], ["v1"])
        code, body, _ = self.call("GET", "/apis")
        names = {g["name"] for g in body["groups"]}
        for g in ("apps", "coordination.k8s.io", "rbac.authorization.k8s.io",
                  "apiextensions.k8s.io", "monitoring.coreos.com", "fake.example.io"):
            self.assertIn(g, names)

    def test_resource_lists(self):
        code, body, _ = self.call("GET", "/apis/fake.example.io/v1")
        self.assertEqual(code, 200)
        res = {r["name"]: r for r in body["resources"]}
        self.assertEqual(res["widgets"]["shortNames"], ["wd"])
        self.assertTrue(res["widgets"]["namespaced"])
        self.assertIn("watch", res["widgets"]["verbs"])
        self.assertEqual(res["widgets/status"]["verbs"], ["get", "patch", "update"])
        code, body, _ = self.call("GET", "/api/v1")
        res = {r["name"]: r for r in body["resources"]}
        self.assertEqual(res["configmaps"]["shortNames"], ["cm"])
        self.assertFalse(res["namespaces"]["namespaced"])
        code, body, _ = self.call("GET", "/apis/rbac.authorization.k8s.io/v1")
        res = {r["name"]: r for r in body["resources"]}
        self.assertFalse(res["clusterroles"]["namespaced"])
        self.assertEqual(self.call("GET", "/apis/nope.example.io/v1")[0], 404)

    def test_openapi_v3_declares_field_validation(self):
        code, body, _ = self.call("GET", "/openapi/v3")
        url = body["paths"]["apis/fake.example.io/v1"]["serverRelativeURL"]
        code, doc, _ = self.call("GET", url)
        self.assertEqual(code, 200)
        op = doc["paths"]["/apis/fake.example.io/v1/namespaces/{namespace}/widgets/{name}"]
        self.assertIn("fieldValidation", [p["name"] for p in op["patch"]["parameters"]])


class CrudTest(FakeApiServerTest):
    def test_create_get_list_update_delete(self):
        path = CMS % self.ns
        a = self.create(path, cm("a", {"k": "1"}, {"app": "x"}))
        self.assertTrue(a["metadata"]["uid"])
        self.assertTrue(a["metadata"]["creationTimestamp"])
        rv_a = int(a["metadata"]["resourceVersion"])
        b = self.create(path, cm("b", {"k": "2"}, {"app": "y"}))
        self.assertGreater(int(b["metadata"]["resourceVersion"]), rv_a)
        code, got, _ = self.call("GET", path + "/a")
        self.assertEqual((code, got["data"]), (200, {"k": "1"}))
        code, lst, _ = self.call("GET", path)
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["a", "b"])
        self.assertGreaterEqual(int(lst["metadata"]["resourceVersion"]),
                                int(b["metadata"]["resourceVersion"]))
        code, lst, _ = self.call("GET", path + "?labelSelector=app%3Dy")
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["b"])
        code, lst, _ = self.call("GET", path + "?labelSelector=app+in+(x,z)")
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["a"])
        code, lst, _ = self.call("GET", path + "?fieldSelector=metadata.name%3Da")
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["a"])
        code, lst, _ = self.call("GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3D"
                                 + self.ns)
        self.assertEqual(len(lst["items"]), 2)
        a["data"] = {"k": "3"}
        code, upd, _ = self.call("PUT", path + "/a", a)
        self.assertEqual(code, 200, upd)
        self.assertGreater(int(upd["metadata"]["resourceVersion"]), rv_a)
        code, body, _ = self.call("DELETE", path + "/a",
                                  {"kind": "DeleteOptions", "apiVersion": "v1",
                                   "propagationPolicy": "Background"})
        self.assertEqual(code, 200)
        code, body, _ = self.call("GET", path + "/a")
        self.assertEqual((code, body["kind"], body["reason"]), (404, "Status", "NotFound"))

    def test_status_errors(self):
        path = CMS % self.ns
        self.create(path, cm("dup"))
        code, body, _ = self.call("POST", path, cm("dup"))
        self.assertEqual((code, body["reason"]), (409, "AlreadyExists"))
        code, body, _ = self.call("POST", path, cm("Bad_Name"))
        self.assertEqual((code, body["reason"]), (422, "Invalid"))
        self.assertEqual(body["details"]["causes"][0]["field"], "metadata.name")
        code, body, _ = self.call("POST", path, dict(cm("x"), metadata={
            "name": "x", "namespace": "other"}))
        self.assertEqual(code, 400)
        code, body, _ = self.call("PUT", path + "/missing", cm("missing"))
        self.assertEqual(code, 404)

    def test_stale_resource_version_conflicts(self):
        path = CMS % self.ns
        first = self.create(path, cm("c", {"v": "1"}))
        second = json.loads(json.dumps(first))
        first["data"]["v"] = "2"
        self.assertEqual(self.call("PUT", path + "/c", first)[0], 200)
        second["data"]["v"] = "3"
        code, body, _ = self.call("PUT", path + "/c", second)
        self.assertEqual((code, body["reason"]), (409, "Conflict"))
        patch = {"metadata": {"resourceVersion": second["metadata"]["resourceVersion"]},
                 "data": {"v": "4"}}
        code, body, _ = self.call("PATCH", path + "/c", patch, "application/merge-patch+json")
        self.assertEqual(code, 409)
        code, body, _ = self.call("PATCH", path + "/c", {"data": {"v": "5"}},
                                  "application/merge-patch+json")
        self.assertEqual((code, body["data"]["v"]), (200, "5"))

    def test_json_patch_and_strategic_merge(self):
        path = CMS % self.ns
        self.create(path, cm("j", {"a": "1", "b": "2"}))
        code, body, _ = self.call("PATCH", path + "/j", [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "remove", "path": "/data/b"},
            {"op": "add", "path": "/data/c", "value": "3"}], "application/json-patch+json")
        self.assertEqual((code, body["data"]), (200, {"a": "1", "c": "3"}))
        code, body, _ = self.call("PATCH", path + "/j", [
            {"op": "test", "path": "/data/a", "value": "wrong"}], "application/json-patch+json")
        self.assertEqual(code, 422)
        code, body, _ = self.call("PATCH", path + "/j", {"data": {"a": None, "d": "4"}},
                                  "application/strategic-merge-patch+json")
        self.assertEqual((code, body["data"]), (200, {"c": "3", "d": "4"}))

    def test_noop_update_keeps_resource_version(self):
        path = CMS % self.ns
        obj = self.create(path, cm("n", {"a": "1"}))
        code, body, _ = self.call("PUT", path + "/n", obj)
        self.assertEqual(body["metadata"]["resourceVersion"], obj["metadata"]["resourceVersion"])

    def test_pagination(self):
        path = CMS % self.ns
        for i in range(5):
            self.create(path, cm("p%d" % i))
        names, cont = [], ""
        while True:
            code, lst, _ = self.call("GET", path + "?limit=2" + (
                "&continue=" + cont if cont else ""))
            self.assertEqual(code, 200)
            names += [o["metadata"]["name"] for o in lst["items"]]
            cont = lst["metadata"].get("continue")
            if not cont:
                break
        self.assertEqual(names, ["p0", "p1", "p2", "p3", "p4"])

    def test_generate_name_secret_string_data_and_service_ip(self):
        body = self.create("/api/v1/namespaces/%s/secrets" % self.ns, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"generateName": "s-"},
            "stringData": {"x": "hi"}})
        self.assertTrue(body["metadata"]["name"].startswith("s-"))
        self.assertEqual(body["data"], {"x": "aGk="})
        svc = self.create("/api/v1/namespaces/%s/services" % self.ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
            "spec": {"ports": [{"port": 80}]}})
        self.assertTrue(svc["spec"]["clusterIP"])
        headless = self.create("/api/v1/namespaces/%s/services" % self.ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "mesh"},
            "spec": {"clusterIP": "None"}})
        self.assertEqual(headless["spec"]["clusterIP"], "None")


class CustomResourceTest(FakeApiServerTest):
    def test_defaults_top_level_and_nested(self):
        body = self.create(WIDGETS % self.ns, widget("w", parts=[{"name": "p"}]))
        spec = body["spec"]
        self.assertEqual(spec["mode"], "fast")
        self.assertEqual(spec["options"], {"retries": 3})
        self.assertEqual(spec["parts"], [{"name": "p", "weight": 1.5}])
        self.assertEqual(body["metadata"]["generation"], 1)

    def test_validation_errors_are_422(self):
        path = WIDGETS % self.ns
        for spec, field in (({"size": 11}, "spec.size"), ({"size": 0}, "spec.size"),
                            ({"size": 2, "mode": "turbo"}, "spec.mode"),
                            ({"size": "big"}, "spec.size"),
                            ({"size": 2, "duration": "5 minutes"}, "spec.duration"),
                            ({"size": 2, "parts": [{}]}, "spec.parts[0].name"),
                            ({"mode": "fast"}, "spec.size")):
            code, body, _ = self.call("POST", path, {
                "apiVersion": "fake.example.io/v1", "kind": "Widget",
                "metadata": {"name": "bad"}, "spec": spec})
            self.assertEqual((code, body["reason"]), (422, "Invalid"), spec)
            self.assertIn(field, [c["field"] for c in body["details"]["causes"]], body)
        code, body, _ = self.call("POST", path, {"apiVersion": "fake.example.io/v1",
                                                 "kind": "Widget", "metadata": {"name": "bad"}})
        self.assertEqual(code, 422)

    def test_pruning_and_field_validation(self):
        path = WIDGETS % self.ns
        code, body, resp = self.call("POST", path, widget("u", unknown=1, extra={"free": 1}))
        self.assertEqual(code, 201)
        self.assertNotIn("unknown", body["spec"])
        self.assertEqual(body["spec"]["extra"], {"free": 1})
        self.assertIn("spec.unknown", resp.getheader("Warning") or "")
        code, body, _ = self.call("POST", path + "?fieldValidation=Strict",
                                  widget("s", unknown=1))
        self.assertEqual(code, 400)
        self.assertIn("unknown field", body["message"])

    def test_put_requires_resource_version(self):
        path = WIDGETS % self.ns
        obj = self.create(path, widget("r"))
        del obj["metadata"]["resourceVersion"]
        code, body, _ = self.call("PUT", path + "/r", obj)
        self.assertEqual(code, 422)

    def test_generation_bumps_on_spec_change_only(self):
        path = WIDGETS % self.ns
        obj = self.create(path, widget("g"))
        obj["metadata"]["labels"] = {"x": "y"}
        code, obj, _ = self.call("PUT", path + "/g", obj)
        self.assertEqual((code, obj["metadata"]["generation"]), (200, 1))
        obj["spec"]["size"] = 4
        code, obj, _ = self.call("PUT", path + "/g", obj)
        self.assertEqual(obj["metadata"]["generation"], 2)
        obj["status"] = {"phase": "Ready", "observedGeneration": 2}
        code, obj, _ = self.call("PUT", path + "/g/status", obj)
        self.assertEqual((code, obj["metadata"]["generation"]), (200, 2))
        code, obj, _ = self.call("PATCH", path + "/g", {"spec": {"size": 5}},
                                 "application/merge-patch+json")
        self.assertEqual(obj["metadata"]["generation"], 3)

    def test_status_subresource_split(self):
        path = WIDGETS % self.ns
        obj = self.create(path, dict(widget("st"), status={"phase": "Ignored"}))
        self.assertNotIn("status", obj)
        obj["status"] = {"phase": "Main"}
        obj["spec"]["size"] = 6
        code, obj, _ = self.call("PUT", path + "/st", obj)
        self.assertEqual((obj["spec"]["size"], obj.get("status")), (6, None))
        obj["status"] = {"phase": "Ready"}
        obj["spec"]["size"] = 9
        obj["metadata"]["labels"] = {"ignored": "yes"}
        code, obj, _ = self.call("PUT", path + "/st/status", obj)
        self.assertEqual(code, 200)
        self.assertEqual((obj["spec"]["size"], obj["status"]["phase"]), (6, "Ready"))
        self.assertNotIn("labels", obj["metadata"])
        code, obj, _ = self.call("PATCH", path + "/st/status", {"status": {"phase": "Gone"}},
                                 "application/merge-patch+json")
        self.assertEqual(obj["status"]["phase"], "Gone")
        code, got, _ = self.call("GET", path + "/st/status")
        self.assertEqual(got["status"]["phase"], "Gone")

    def test_table_output_with_printer_columns(self):
        path = WIDGETS % self.ns
        self.create(path, widget("t1", size=4))
        self.call("POST", "/fake/set-status", {"apiVersion": "fake.example.io/v1",
                                               "kind": "Widget", "namespace": self.ns,
                                               "name": "t1", "status": {"phase": "Ready"}})
        accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"}
        code, table, _ = self.call("GET", path, headers=accept)
        self.assertEqual((code, table["kind"]), (200, "Table"))
        self.assertEqual([c["name"] for c in table["columnDefinitions"]],
                         ["Name", "Size", "Phase", "Age"])
        self.assertEqual(table["rows"][0]["cells"][:3], ["t1", 4, "Ready"])
        self.assertRegex(table["rows"][0]["cells"][3], r"^[0-9]+s$")
        self.assertEqual(table["rows"][0]["object"]["kind"], "PartialObjectMetadata")
        code, table, _ = self.call("GET", path + "/t1", headers=accept)
        self.assertEqual(table["rows"][0]["cells"][0], "t1")
        code, plain, _ = self.call("GET", path)
        self.assertEqual(plain["kind"], "WidgetList")

    def test_crd_created_through_the_api(self):
        with open(os.path.join(HERE, "testdata", "widgets.fake.example.io.yaml")) as fh:
            crd = fake_apiserver.yaml_load_all(fh.read())[0]
        crd["metadata"]["name"] = "gadgets.other.example.io"
        crd["spec"]["group"] = "other.example.io"
        crd["spec"]["names"] = {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"}
        body = self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        code, body, _ = self.call("GET", "/apis/apiextensions.k8s.io/v1/"
                                  "customresourcedefinitions/gadgets.other.example.io")
        conds = {c["type"]: c["status"] for c in body["status"]["conditions"]}
        self.assertEqual(conds["Established"], "True")
        gadgets = "/apis/other.example.io/v1/namespaces/%s/gadgets" % self.ns
        g = widget("g1")
        g["apiVersion"], g["kind"] = "other.example.io/v1", "Gadget"
        self.create(gadgets, g)
        code, body, _ = self.call("DELETE", "/apis/apiextensions.k8s.io/v1/"
                                  "customresourcedefinitions/gadgets.other.example.io")
        self.assertEqual(code, 200)
        self.assertEqual(self.call("GET", gadgets)[0], 404)


class DeletionTest(FakeApiServerTest):
    def test_finalizers_and_deletion_timestamp(self):
        path = WIDGETS % self.ns
        obj = self.create(path, dict(widget("f"), metadata={
            "name": "f", "finalizers": ["fake.example.io/cleanup"]}))
        w = self.watch(path + "?watch=true&resourceVersion=" +
                           obj["metadata"]["resourceVersion"])
        code, body, _ = self.call("DELETE", path + "/f")
        self.assertEqual(code, 200)
        self.assertTrue(body["metadata"]["deletionTimestamp"])
        code, body, _ = self.call("GET", path + "/f")
        self.assertEqual(code, 200)
        self.assertTrue(body["metadata"]["deletionTimestamp"])
        self.assertEqual(w.next()["type"], "MODIFIED")
        code, body, _ = self.call("PATCH", path + "/f", {"metadata": {"finalizers": [
            "fake.example.io/cleanup", "another"]}}, "application/merge-patch+json")
        self.assertEqual(code, 422)
        code, body, _ = self.call("PATCH", path + "/f", {"metadata": {"finalizers": None}},
                                  "application/merge-patch+json")
        self.assertEqual(code, 200)
        self.assertEqual(self.call("GET", path + "/f")[0], 404)
        self.assertEqual(w.next()["type"], "DELETED")
        w.close()

    def owner_and_child(self, name):
        owner = self.create(WIDGETS % self.ns, widget(name))
        child = cm(name + "-child")
        child["metadata"]["ownerReferences"] = [{
            "apiVersion": "fake.example.io/v1", "kind": "Widget", "name": name,
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
        self.create(CMS % self.ns, child)
        return owner

    def test_garbage_collection_background(self):
        self.owner_and_child("bg")
        self.assertEqual(self.call("DELETE", WIDGETS % self.ns + "/bg",
                                   {"propagationPolicy": "Background"})[0], 200)
        poll(lambda: self.call("GET", CMS % self.ns + "/bg-child")[0] == 404, "GC of child")

    def test_garbage_collection_orphan(self):
        self.owner_and_child("or")
        self.assertEqual(self.call("DELETE", WIDGETS % self.ns + "/or",
                                   {"propagationPolicy": "Orphan"})[0], 200)
        code, child, _ = self.call("GET", CMS % self.ns + "/or-child")
        self.assertEqual(code, 200)
        self.assertNotIn("ownerReferences", child["metadata"])

    def test_garbage_collection_foreground(self):
        self.owner_and_child("fg")
        code, body, _ = self.call("DELETE", WIDGETS % self.ns + "/fg",
                                  {"propagationPolicy": "Foreground"})
        self.assertEqual(code, 200)
        self.assertIn("foregroundDeletion", body["metadata"]["finalizers"])
        poll(lambda: self.call("GET", WIDGETS % self.ns + "/fg")[0] == 404, "owner deleted")
        self.assertEqual(self.call("GET", CMS % self.ns + "/fg-child")[0], 404)

    def test_child_with_a_live_second_owner_survives(self):
        owner = self.owner_and_child("two")
        other = self.create(WIDGETS % self.ns, widget("other"))
        code, child, _ = self.call("GET", CMS % self.ns + "/two-child")
        child["metadata"]["ownerReferences"].append({
            "apiVersion": "fake.example.io/v1", "kind": "Widget", "name": "other",
            "uid": other["metadata"]["uid"]})
        self.assertEqual(self.call("PUT", CMS % self.ns + "/two-child", child)[0], 200)
        self.call("DELETE", WIDGETS % self.ns + "/two")
        self.assertTrue(owner)
        poll(lambda: len(self.call("GET", CMS % self.ns + "/two-child")[1]["metadata"].get(
            "ownerReferences", [])) == 1, "dangling reference removed")

    def test_delete_collection_and_preconditions(self):
        path = CMS % self.ns
        a = self.create(path, cm("a", labels={"del": "yes"}))
        self.create(path, cm("b", labels={"del": "yes"}))
        self.create(path, cm("keep"))
        code, body, _ = self.call("DELETE", path + "/a", {"preconditions": {"uid": "nope"}})
        self.assertEqual(code, 409)
        self.assertEqual(a["metadata"]["name"], "a")
        self.assertEqual(self.call("DELETE", path + "?labelSelector=del%3Dyes")[0], 200)
        code, lst, _ = self.call("GET", path)
        self.assertEqual([o["metadata"]["name"] for o in lst["items"]], ["keep"])


class MoreCrudTest(FakeApiServerTest):
    def test_dry_run_stores_nothing(self):
        path = CMS % self.ns
        code, body, _ = self.call("POST", path + "?dryRun=All", cm("dry"))
        self.assertEqual(code, 201)
        self.assertEqual(self.call("GET", path + "/dry")[0], 404)
        self.create(path, cm("wet", {"a": "1"}))
        code, body, _ = self.call("PATCH", path + "/wet?dryRun=All", {"data": {"a": "2"}},
                                  "application/merge-patch+json")
        self.assertEqual((code, body["data"]["a"]), (200, "2"))
        self.assertEqual(self.call("GET", path + "/wet")[1]["data"]["a"], "1")
        self.assertEqual(self.call("DELETE", path + "/wet?dryRun=All")[0], 200)
        self.assertEqual(self.call("GET", path + "/wet")[0], 200)

    def test_namespace_deletion_deletes_its_objects(self):
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": self.ns + "-x"}})
        path = CMS % (self.ns + "-x")
        self.create(path, cm("inside"))
        self.assertEqual(self.call("DELETE", "/api/v1/namespaces/" + self.ns + "-x")[0], 200)
        self.assertEqual(self.call("GET", path + "/inside")[0], 404)

    def test_cluster_scoped_kinds(self):
        path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
        body = self.create(path, {"apiVersion": "rbac.authorization.k8s.io/v1",
                                  "kind": "ClusterRole",
                                  "metadata": {"name": "system:" + self.ns},
                                  "rules": [{"apiGroups": [""], "resources": ["pods"],
                                             "verbs": ["get"]}]})
        self.assertNotIn("namespace", body["metadata"])
        self.assertEqual(self.call("GET", path + "/system:" + self.ns)[0], 200)
        self.assertEqual(self.call("GET", "/apis/rbac.authorization.k8s.io/v1/namespaces/"
                                   + self.ns + "/clusterroles")[0], 404)


class HistoryTest(unittest.TestCase):
    """A server that keeps only a few events: a slow watcher falls behind and gets 410."""

    @classmethod
    def setUpClass(cls):
        cls.srv = Server("--history", "10", "--no-servicemonitor")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_history_overflow_expires_old_resource_versions(self):
        path = CMS % "default"
        first = self.srv.call("POST", path, cm("h0"))[1]
        for i in range(1, 30):
            self.assertEqual(self.srv.call("POST", path, cm("h%d" % i))[0], 201)
        w = self.srv.watch(path + "?watch=true&resourceVersion=" +
                           first["metadata"]["resourceVersion"])
        self.assertEqual((w.status, w.body["reason"]), (410, "Expired"))
        code, lst, _ = self.srv.call("GET", path)
        self.assertEqual(len(lst["items"]), 30)

    def test_without_servicemonitor(self):
        code, body, _ = self.srv.call("GET", "/apis")
        self.assertNotIn("monitoring.coreos.com", [g["name"] for g in body["groups"]])


class WatchTest(FakeApiServerTest):
    def test_added_modified_deleted_in_order(self):
        path = CMS % self.ns
        code, lst, _ = self.call("GET", path)
        w = self.watch(path + "?watch=true&resourceVersion=" +
                           lst["metadata"]["resourceVersion"])
        self.assertEqual(w.status, 200)
        obj = self.create(path, cm("w", {"a": "1"}))
        obj["data"]["a"] = "2"
        self.call("PUT", path + "/w", obj)
        self.call("DELETE", path + "/w")
        events = [w.next() for _ in range(3)]
        self.assertEqual([e["type"] for e in events], ["ADDED", "MODIFIED", "DELETED"])
        self.assertEqual(events[0]["object"]["kind"], "ConfigMap")
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        self.assertEqual(events[1]["object"]["data"], {"a": "2"})
        w.close()

    def test_watch_from_resource_version_replays_history(self):
        path = CMS % self.ns
        first = self.create(path, cm("h1"))
        self.create(path, cm("h2"))
        w = self.watch(path + "?watch=true&resourceVersion=" +
                           first["metadata"]["resourceVersion"])
        ev = w.next()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("ADDED", "h2"))
        w.close()
        w = self.watch(path + "?watch=true")
        names = sorted(w.next()["object"]["metadata"]["name"] for _ in range(2))
        self.assertEqual(names, ["h1", "h2"])
        w.close()

    def test_field_and_label_selectors(self):
        path = CMS % self.ns
        code, lst, _ = self.call("GET", path)
        rv = lst["metadata"]["resourceVersion"]
        byname = self.watch(path + "?watch=true&fieldSelector=metadata.name%3Db&"
                                "resourceVersion=" + rv)
        bylabel = self.watch(path + "?watch=true&labelSelector=sel%3Don&resourceVersion="
                                 + rv)
        self.create(path, cm("a"))
        b = self.create(path, cm("b"))
        b["metadata"]["labels"] = {"sel": "on"}
        code, b, _ = self.call("PUT", path + "/b", b)
        b["metadata"]["labels"] = {"sel": "off"}
        self.call("PUT", path + "/b", b)
        ev = [byname.next() for _ in range(3)]
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev],
                         [("ADDED", "b"), ("MODIFIED", "b"), ("MODIFIED", "b")])
        ev = [bylabel.next() for _ in range(2)]
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in ev],
                         [("ADDED", "b"), ("DELETED", "b")])
        byname.close()
        bylabel.close()

    def test_bookmarks(self):
        path = CMS % self.ns
        w = self.watch(path + "?watch=true&allowWatchBookmarks=true&resourceVersion=1")
        self.create(path, cm("bm"))
        while True:
            ev = w.next(skip_bookmarks=False)
            if ev["type"] == "BOOKMARK":
                break
        self.assertEqual(ev["object"]["kind"], "ConfigMap")
        self.assertTrue(int(ev["object"]["metadata"]["resourceVersion"]) > 1)
        w.close()

    def test_timeout_seconds_ends_the_stream(self):
        w = self.watch(CMS % self.ns + "?watch=true&timeoutSeconds=1")
        self.assertEqual(w.next()["type"], "_closed")

    def test_compaction_gives_410(self):
        path = CMS % self.ns
        old = self.create(path, cm("old"))
        live = self.watch(path + "?watch=true&resourceVersion=" +
                              old["metadata"]["resourceVersion"])
        poll(lambda: self.call("GET", "/fake/watches")[1]["live"] >= 1, "watch registered")
        self.create(path, cm("new"))
        self.assertEqual(live.next()["type"], "ADDED")
        self.assertEqual(self.call("POST", "/fake/compact", {})[0], 200)
        ev = live.next()
        self.assertEqual((ev["type"], ev["object"]["code"], ev["object"]["reason"]),
                         ("ERROR", 410, "Expired"))
        self.assertEqual(live.next()["type"], "_closed")
        w = self.watch(path + "?watch=true&resourceVersion=" +
                           old["metadata"]["resourceVersion"])
        self.assertEqual((w.status, w.body["code"], w.body["reason"]), (410, 410, "Expired"))
        code, body, _ = self.call("GET", path + "?resourceVersionMatch=Exact&resourceVersion=" +
                                  old["metadata"]["resourceVersion"])
        self.assertEqual(code, 410)
        code, lst, _ = self.call("GET", path)
        self.assertEqual(len(lst["items"]), 2)
        w = self.watch(path + "?watch=true&resourceVersion=" +
                           lst["metadata"]["resourceVersion"])
        self.assertEqual(w.status, 200)
        w.close()

    def test_watch_list_and_client_disconnect(self):
        path = CMS % self.ns + "?watch=true&labelSelector=mine%3D" + self.ns
        w = self.srv.watch(path)

        def mine():
            return [x for x in self.call("GET", "/fake/watches")[1]["watches"]
                    if x["path"] == path]
        poll(lambda: len(mine()) == 1, "the watch to be listed")
        self.assertEqual(mine()[0]["user_agent"], "fake-test-watch/1.0")
        w.close()
        poll(lambda: not mine(), "the server to notice the client went away")

    def test_drop_watches(self):
        for abrupt in (False, True):
            w = self.watch(CMS % self.ns + "?watch=true")
            poll(lambda: self.call("GET", "/fake/watches")[1]["live"] >= 1, "watch registered")
            self.call("POST", "/fake/drop-watches", {"abrupt": abrupt})
            ev = w.next()
            self.assertEqual(ev["type"], "_error" if abrupt else "_closed", ev)


class ServerSideApplyTest(FakeApiServerTest):
    def apply(self, name, spec, manager, force=False, code=None):
        obj = widget(name, **spec)
        got, body, _ = self.call(
            "PATCH", WIDGETS % self.ns + "/%s?fieldManager=%s&force=%s" % (
                name, manager, "true" if force else "false"), obj,
            "application/apply-patch+yaml")
        if code is not None:
            self.assertEqual(got, code, body)
        return got, body

    def test_apply_creates_then_updates(self):
        code, body = self.apply("a", {"size": 2}, "alpha", code=201)
        managers = [m["manager"] for m in body["metadata"]["managedFields"]]
        self.assertEqual(managers, ["alpha"])
        code, body = self.apply("a", {"size": 3}, "alpha", code=200)
        self.assertEqual(body["spec"]["size"], 3)

    def test_conflicts_between_managers(self):
        self.apply("c", {"size": 2}, "alpha", code=201)
        code, body = self.apply("c", {"size": 4}, "beta", code=409)
        self.assertEqual(body["reason"], "Conflict")
        self.assertEqual(body["details"]["causes"][0]["field"], ".spec.size")
        self.assertIn('conflict with "alpha"', body["message"])
        self.apply("c", {"size": 2, "mode": "slow"}, "beta", code=200)  # same value: shared
        code, body = self.apply("c", {"size": 5}, "beta", force=True, code=200)
        self.assertEqual(body["spec"]["size"], 5)
        owners = {m["manager"]: m["fieldsV1"] for m in body["metadata"]["managedFields"]}
        self.assertIn("f:size", owners["beta"]["f:spec"])
        self.assertNotIn("f:size", owners.get("alpha", {}).get("f:spec", {}))

    def test_fields_dropped_from_applied_config_are_removed(self):
        self.apply("d", {"size": 2, "duration": "5s"}, "alpha", code=201)
        code, body = self.apply("d", {"size": 2}, "alpha", code=200)
        self.assertNotIn("duration", body["spec"])

    def test_update_takes_ownership(self):
        code, obj = self.apply("u", {"size": 2}, "alpha", code=201)
        obj["spec"]["size"] = 7
        code, obj, _ = self.call("PUT", WIDGETS % self.ns + "/u?fieldManager=gamma", obj)
        self.assertEqual(code, 200)
        code, body = self.apply("u", {"size": 2}, "alpha", code=409)
        self.assertIn('conflict with "gamma"', body["message"])

    def test_apply_requires_field_manager_and_accepts_yaml(self):
        code, body, _ = self.call("PATCH", WIDGETS % self.ns + "/y", widget("y"),
                                  "application/apply-patch+yaml")
        self.assertEqual(code, 422)
        text = ("apiVersion: fake.example.io/v1\nkind: Widget\nmetadata:\n  name: y\n"
                "spec:\n  size: 4\n")
        code, body, _ = self.call("PATCH", WIDGETS % self.ns + "/y?fieldManager=yaml", text,
                                  "application/apply-patch+yaml")
        self.assertEqual((code, body["spec"]["size"]), (201, 4))

    def test_apply_to_status(self):
        self.apply("s", {"size": 2}, "alpha", code=201)
        code, body, _ = self.call(
            "PATCH", WIDGETS % self.ns + "/s/status?fieldManager=ctl&force=true",
            {"apiVersion": "fake.example.io/v1", "kind": "Widget", "metadata": {"name": "s"},
             "spec": {"size": 9}, "status": {"phase": "Ready"}}, "application/apply-patch+yaml")
        self.assertEqual((code, body["status"]["phase"], body["spec"]["size"]),
                         (200, "Ready", 2))


class LeaseTest(FakeApiServerTest):
    def test_only_one_renewal_wins(self):
        path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % self.ns
        lease = self.create(path, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                   "metadata": {"name": "leader"},
                                   "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
        b = json.loads(json.dumps(lease))
        lease["spec"]["renewTime"] = "2026-01-01T00:00:01.000000Z"
        self.assertEqual(self.call("PUT", path + "/leader", lease)[0], 200)
        b["spec"]["holderIdentity"] = "b"
        self.assertEqual(self.call("PUT", path + "/leader", b)[0], 409)
        code, got, _ = self.call("GET", path + "/leader")
        self.assertEqual(got["spec"]["holderIdentity"], "a")


class AdminTest(FakeApiServerTest):
    def test_faults_429_500_and_reset(self):
        path = CMS % self.ns
        self.call("POST", "/fake/faults", {"status": 429, "count": 2,
                                           "path_regex": "namespaces/%s/configmaps" % self.ns})
        for _ in range(2):
            code, body, resp = self.call("GET", path)
            self.assertEqual((code, body["reason"]), (429, "TooManyRequests"))
            self.assertEqual(resp.getheader("Retry-After"), "1")
        self.assertEqual(self.call("GET", path)[0], 200)
        self.call("POST", "/fake/faults", {"status": 500, "count": 1, "verb": "create"})
        self.assertEqual(self.call("POST", path, cm("x"))[0], 500)
        self.assertEqual(self.call("POST", path, cm("x"))[0], 201)
        self.call("POST", "/fake/faults", {"reset": True, "count": 1, "path_regex": "/x$"})
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            self.call("GET", path + "/x")
        self.assertEqual(self.call("GET", path + "/x")[0], 200)

    def test_latency_rule_is_applied(self):
        self.call("POST", "/fake/faults", {"latency_ms": 50, "count": 1, "path_regex": "lat"})
        self.assertEqual(self.call("GET", CMS % self.ns + "/lat")[0], 404)
        faults = self.call("GET", "/fake/faults")[1]["faults"]
        self.assertEqual([f["hits"] for f in faults], [1])

    def test_requests_are_recorded_with_rbac_verbs(self):
        path = WIDGETS % self.ns
        agent = "recorder-%s/1.0" % self.ns
        self.call("POST", "/fake/reset-requests")
        obj = self.call("POST", path, widget("r"), agent=agent)[1]
        self.call("GET", path + "/r", agent=agent)
        self.call("GET", path, agent=agent)
        self.call("PUT", path + "/r", obj, agent=agent)
        obj = self.call("GET", path + "/r", agent=agent)[1]
        self.call("PUT", path + "/r/status", obj, agent=agent)
        self.call("PATCH", path + "/r", {"spec": {"size": 4}}, "application/merge-patch+json",
                  agent=agent)
        self.call("GET", path + "?watch=true&timeoutSeconds=1", agent=agent)
        self.call("DELETE", path + "/r", agent=agent)
        self.call("DELETE", path, agent=agent)
        self.call("GET", "/version", agent=agent)
        code, body, _ = self.call("GET", "/fake/requests?user_agent=recorder-" + self.ns)
        got = [(r["verb"], r["group"], r["resource"], r["namespace"]) for r in body["requests"]]
        g = "fake.example.io"
        self.assertEqual(got, [("create", g, "widgets", self.ns), ("get", g, "widgets", self.ns),
                               ("list", g, "widgets", self.ns), ("update", g, "widgets", self.ns),
                               ("get", g, "widgets", self.ns),
                               ("update", g, "widgets/status", self.ns),
                               ("patch", g, "widgets", self.ns), ("watch", g, "widgets", self.ns),
                               ("delete", g, "widgets", self.ns),
                               ("deletecollection", g, "widgets", self.ns)])
        self.assertTrue(all(r["user_agent"] == agent for r in body["requests"]))
        code, body, _ = self.call("GET", "/fake/requests?include_nonresource=1&user_agent="
                                  "recorder-" + self.ns)
        self.assertEqual(body["requests"][-1]["path"], "/version")
        self.call("POST", "/fake/reset-requests")
        code, body, _ = self.call("GET", "/fake/requests?user_agent=recorder-" + self.ns)
        self.assertEqual(body["requests"], [])

    def test_set_status_of_a_daemonset(self):
        path = "/apis/apps/v1/namespaces/%s/daemonsets" % self.ns
        ds = self.create(path, {"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "metadata": {"name": "twd"}, "spec": {"template": {}},
                                "status": {"numberReady": 99}})
        self.assertNotIn("status", ds)
        code, body, _ = self.call("POST", "/fake/set-status", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "namespace": self.ns, "name": "twd",
            "status": {"desiredNumberScheduled": 2, "numberReady": 1}})
        self.assertEqual(code, 200)
        code, got, _ = self.call("GET", path + "/twd")
        self.assertEqual(got["status"]["numberReady"], 1)
        got["status"]["numberReady"] = 5
        code, got, _ = self.call("PUT", path + "/twd", got)
        self.assertEqual(got["status"]["numberReady"], 1)


class YamlReaderTest(unittest.TestCase):
    def test_subset(self):
        text = """
# comment
a: 1
b: "two # not a comment"
c: [x, 'y', {k: v}]
d:
  - name: n1
    v: true
  - - nested
e: |
  line 1
  line 2
f: >-
  folded
  text
g: ~
h: 0.5
i: {}
---
second: doc
"""
        docs = fake_apiserver.yaml_load_all(text)
        self.assertEqual(docs[0], {
            "a": 1, "b": "two # not a comment", "c": ["x", "y", {"k": "v"}],
            "d": [{"name": "n1", "v": True}, ["nested"]], "e": "line 1\nline 2\n",
            "f": "folded text", "g": None, "h": 0.5, "i": {}})
        self.assertEqual(docs[1], {"second": "doc"})

    def test_jsonpath_and_age(self):
        obj = {"status": {"conditions": [{"type": "A", "status": "False"},
                                         {"type": "Ready", "status": "True"}]},
               "spec": {"items": [{"name": "x"}]}}
        jp = fake_apiserver.jsonpath_first
        self.assertEqual(jp(obj, '.status.conditions[?(@.type=="Ready")].status'), "True")
        self.assertEqual(jp(obj, ".spec.items[0].name"), "x")
        self.assertIsNone(jp(obj, ".spec.items[3].name"))
        self.assertIsNone(jp(obj, ".status.missing"))
        self.assertEqual(fake_apiserver.human_age("not a time"), "not a time")
        self.assertEqual(fake_apiserver.human_age("2000-01-01T00:00:00Z")[-1], "d")

    def test_repository_crds_parse(self):
        crd_dir = os.path.join(SOURCE_DIR, "crds")
        if not os.path.isdir(crd_dir):
            self.skipTest("no crds/ folder")
        for f in os.listdir(crd_dir):
            with open(os.path.join(crd_dir, f)) as fh:
                docs = fake_apiserver.yaml_load_all(fh.read())
            self.assertEqual(docs[0]["kind"], "CustomResourceDefinition")


if __name__ == "__main__":
    unittest.main()
