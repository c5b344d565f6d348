#!/usr/bin/python3
"""A fake Kubernetes API server for tests: one Python file, standard library only.

It serves, over plain HTTP on 127.0.0.1, the part of the Kubernetes API that tw-operator, the
Helm chart and kubectl use: discovery, JSON CRUD with a global resourceVersion, merge, JSON and
server-side-apply patches with field managers, the status subresource split, generation,
finalizers, ownerReference garbage collection, CRD defaulting, pruning and schema validation,
watch streams with bookmarks and 410 Gone after a simulated compaction, and fault injection
through an admin API under /fake/. Every API request is recorded with its RBAC verb so tests
can compare what a client used with the RBAC rules it was granted. README.md beside this file
documents the flags and the admin API.

Threading: one thread per connection (ThreadingHTTPServer) plus one garbage-collector thread.
All state lives in one Store guarded by one lock; watch handlers wait on its condition
variable. Nothing here is meant for production or for untrusted clients.
"""

import argparse
import base64
import collections
import copy
import datetime
import json
import os
import random
import re
import select
import signal
import socket
import string
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# --------------------------------------------------------------------------------------------
# A YAML subset reader: block maps and sequences, plain and quoted scalars, one-line flow
# collections, literal and folded block scalars, comments and multiple documents. Enough for
# CRD manifests and apply-patch+yaml bodies; anything fancier must be sent as JSON.


class YamlError(ValueError):
    pass


_YAML_KEY = re.compile(
    r"""^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s'"#\-?:,\[\]{}][^#]*?|-[^\s#][^#]*?)"""
    r"""\s*:(?:\s+|$)(.*)$""")


def _yaml_strip_comment(s):
    quote = None
    for i, c in enumerate(s):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"" and (i == 0 or s[i - 1] in " [{,:"):
            quote = c
        elif c == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _yaml_scalar(s):
    s = s.strip()
    if s.startswith('"'):
        return json.loads(s)
    if s.startswith("'"):
        return s[1:-1].replace("''", "'")
    if s in ("", "~", "null", "Null", "NULL"):
        return None
    if s in ("true", "True", "TRUE"):
        return True
    if s in ("false", "False", "FALSE"):
        return False
    if re.fullmatch(r"[-+]?[0-9]+", s):
        return int(s)
    if re.fullmatch(r"0x[0-9a-fA-F]+", s):
        return int(s, 16)
    if re.fullmatch(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?", s):
        return float(s)
    return s


def _yaml_flow(s):
    """Parses a one-line flow collection or scalar; returns the value."""
    pos = 0

    def ws():
        nonlocal pos
        while pos < len(s) and s[pos] in " \t":
            pos += 1

    def value(stops):
        nonlocal pos
        ws()
        if pos < len(s) and s[pos] in "[{":
            close = "]" if s[pos] == "[" else "}"
            is_map = s[pos] == "{"
            pos += 1
            out = {} if is_map else []
            while True:
                ws()
                if pos < len(s) and s[pos] == close:
                    pos += 1
                    return out
                if is_map:
                    k = value(":,}")
                    ws()
                    v = None
                    if pos < len(s) and s[pos] == ":":
                        pos += 1
                        v = value(",}")
                    out[k] = v
                else:
                    out.append(value(",]"))
                ws()
                if pos < len(s) and s[pos] == ",":
                    pos += 1
                elif pos >= len(s) or s[pos] != close:
                    raise YamlError("bad flow collection: " + s)
        start = pos
        if pos < len(s) and s[pos] in "'\"":
            q = s[pos]
            pos += 1
            while pos < len(s) and s[pos] != q:
                pos += 2 if (q == '"' and s[pos] == "\\") else 1
            pos += 1
            return _yaml_scalar(s[start:pos])
        while pos < len(s) and s[pos] not in stops:
            pos += 1
        return _yaml_scalar(s[start:pos])

    out = value("")
    ws()
    if pos != len(s):
        raise YamlError("trailing characters: " + s)
    return out


class _YamlDoc:
    def __init__(self, lines):
        self.lines = lines  # list of [indent, text] with raw text kept for block scalars
        self.i = 0

    def _next(self):
        while self.i < len(self.lines):
            ind, text = self.lines[self.i]
            t = _yaml_strip_comment(text)
            if t.strip():
                return ind, t.strip()
            self.i += 1
        return None, None

    def node(self, min_indent):
        ind, t = self._next()
        if ind is None or ind < min_indent:
            return None
        if t == "-" or t.startswith("- "):
            return self.seq(ind)
        if _YAML_KEY.match(t):
            return self.map(ind)
        self.i += 1
        return _yaml_flow(t)

    def block_scalar(self, header, parent_indent):
        self.i += 1
        raw = []
        while self.i < len(self.lines):
            ind, text = self.lines[self.i]
            if text.strip() and ind <= parent_indent:
                break
            raw.append((ind, text))
            self.i += 1
        nonblank = [ind for ind, text in raw if text.strip()]
        base = min(nonblank) if nonblank else 0
        body = [(" " * (ind - base) + text) if text.strip() else "" for ind, text in raw]
        if header.startswith(">"):
            folded, para = [], []
            for ln in body:
                if ln and not ln.startswith(" "):
                    para.append(ln)
                else:
                    if para:
                        folded.append(" ".join(para))
                        para = []
                    folded.append(ln)
            if para:
                folded.append(" ".join(para))
            body = folded
        text = "\n".join(body)
        if header.endswith("-"):
            return text.rstrip("\n")
        if header.endswith("+"):
            return text + "\n"
        return text.rstrip("\n") + "\n" if text else ""

    def value_after_key(self, rest, ind):
        if rest in ("|", "|-", "|+", ">", ">-", ">+"):
            return self.block_scalar(rest, ind)
        self.i += 1
        if rest:
            return _yaml_flow(rest)
        nind, nt = self._next()
        dash = nt is not None and (nt == "-" or nt.startswith("- "))
        if nind is not None and (nind > ind or (nind == ind and dash)):
            return self.node(ind if nind == ind else ind + 1)
        return None

    def map(self, ind):
        out = {}
        while True:
            nind, t = self._next()
            if nind != ind:
                if nind is not None and nind > ind:
                    raise YamlError("bad indentation near: " + t)
                return out
            m = _YAML_KEY.match(t)
            if not m:
                if t == "-" or t.startswith("- "):
                    return out
                raise YamlError("expected a key near: " + t)
            key = _yaml_scalar(m.group(1)) if m.group(1)[0] in "'\"" else m.group(1)
            out[key] = self.value_after_key(m.group(2).strip(), ind)

    def seq(self, ind):
        out = []
        while True:
            nind, t = self._next()
            if nind != ind or not (t == "-" or t.startswith("- ")):
                return out
            rest = t[1:].lstrip()
            if not rest:
                self.i += 1
                out.append(self.node(ind + 1))
                continue
            # "- key: value" or "- - x": re-read the rest as a node indented past the dash.
            offset = len(t) - len(rest)
            self.lines[self.i] = [ind + offset, rest]
            out.append(self.node(ind + offset))


def yaml_load_all(text):
    docs, cur = [], []
    for raw in text.replace("\t", "    ").splitlines():
        if re.match(r"^---(\s|$)", raw) or raw.rstrip() == "...":
            docs.append(cur)
            cur = []
            rest = raw[3:].strip()
            if rest and not rest.startswith("#") and raw.startswith("---"):
                cur.append([0, rest])
            continue
        if raw.startswith("%"):
            continue
        stripped = raw.lstrip(" ")
        cur.append([len(raw) - len(stripped), stripped])
    docs.append(cur)
    out = []
    for lines in docs:
        d = _YamlDoc(lines)
        v = d.node(0)
        if d._next()[0] is not None:
            raise YamlError("unparsed content near: " + d._next()[1])
        if v is not None:
            out.append(v)
    return out


# --------------------------------------------------------------------------------------------
# Small helpers.


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def get_path(obj, dotted):
    cur = obj
    for part in dotted.strip(".").split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _pointer(path):
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch; raises ValueError on a failed op or test."""
    doc = copy.deepcopy(doc)

    def parent(parts):
        cur = doc
        for p in parts[:-1]:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def get(parts):
        cur = doc
        for p in parts:
            cur = cur[int(p)] if isinstance(cur, list) else cur[p]
        return cur

    def add(parts, value):
        par = parent(parts)
        if isinstance(par, list):
            par.insert(len(par) if parts[-1] == "-" else int(parts[-1]), value)
        else:
            par[parts[-1]] = value

    def remove(parts):
        par = parent(parts)
        if isinstance(par, list):
            return par.pop(int(parts[-1]))
        return par.pop(parts[-1])

    try:
        for op in ops:
            parts = _pointer(op["path"])
            kind = op["op"]
            if kind == "add":
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(parts)
            elif kind == "replace":
                remove(parts)
                add(parts, copy.deepcopy(op["value"]))
            elif kind == "move":
                add(parts, remove(_pointer(op["from"])))
            elif kind == "copy":
                add(parts, copy.deepcopy(get(_pointer(op["from"]))))
            elif kind == "test":
                if get(parts) != op["value"]:
                    raise ValueError("test operation failed at " + op["path"])
            else:
                raise ValueError("unknown op " + kind)
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError("json patch failed: %r" % (e,))
    return doc


def jsonpath_first(obj, path):
    """The first value of a printer-column JSONPath: .a.b, .a[0].b, .a[?(@.k=="v")].b."""
    cur = obj
    for m in re.finditer(r"""\.([^.\[\]]+)|\[(\d+)\]|"""
                         r"""\[\?\(@\.([\w.-]+)\s*==\s*["']([^"']*)["']\)\]""", path):
        if m.group(1) is not None:
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
        elif m.group(2) is not None:
            i = int(m.group(2))
            cur = cur[i] if isinstance(cur, list) and i < len(cur) else None
        else:
            cur = next((x for x in cur if isinstance(x, dict) and
                        str(get_path(x, m.group(3))) == m.group(4)), None) \
                if isinstance(cur, list) else None
        if cur is None:
            return None
    return cur


def human_age(timestamp):
    """Like kubectl's AGE: 45s, 3m20s, 12m, 5h10m, 20h, 3d."""
    try:
        t = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return timestamp
    s = max(0, int((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()))
    m, h = s // 60, s // 3600
    if s < 120:
        return "%ds" % s
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if h < 3:
        return "%dm" % m
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    return "%dd" % (h // 24)


# Label selectors: a=b, a==b, a!=b, a in (x,y), a notin (x), a, !a.
def parse_label_selector(sel):
    reqs = []
    if not sel:
        return reqs
    parts, depth, cur = [], 0, ""
    for c in sel:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "("
        depth -= c == ")"
        cur += c
    parts.append(cur)
    for p in (p.strip() for p in parts):
        if not p:
            continue
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", p)
        if m:
            vals = {v.strip() for v in m.group(3).split(",")}
            reqs.append((m.group(1), m.group(2), vals))
        elif p.startswith("!"):
            reqs.append((p[1:].strip(), "!exists", None))
        elif "!=" in p:
            k, v = p.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "=" in p:
            k, v = p.split("==", 1) if "==" in p else p.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif re.fullmatch(r"[A-Za-z0-9._/-]+", p):
            reqs.append((p, "exists", None))
        else:
            raise ValueError("unable to parse requirement: " + p)
    return reqs


def labels_match(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        have = key in labels
        v = labels.get(key)
        if op == "=" and v != val:
            return False
        if op == "!=" and have and v == val:
            return False
        if op == "in" and v not in val:
            return False
        if op == "notin" and have and v in val:
            return False
        if op == "exists" and not have:
            return False
        if op == "!exists" and have:
            return False
    return True


def parse_field_selector(sel):
    reqs = []
    for p in (sel or "").split(","):
        p = p.strip()
        if not p:
            continue
        if "!=" in p:
            k, v = p.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "=" in p:
            k, v = p.split("==", 1) if "==" in p else p.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        else:
            raise ValueError("invalid selector: " + p)
    return reqs


def fields_match(reqs, obj):
    for key, op, val in reqs:
        v = get_path(obj, key)
        v = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        if (op == "=") != (v == val):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Resource types.


class ResourceType:
    """One served resource: built in, or from a CustomResourceDefinition."""

    def __init__(self, group, versions, kind, plural, singular, namespaced, short_names=(),
                 status=False, generation=False, custom=False, categories=(), schemas=None,
                 printer_columns=None):
        self.group = group
        self.versions = list(versions)  # served versions; the first is preferred
        self.kind = kind
        self.plural = plural
        self.singular = singular
        self.namespaced = namespaced
        self.short_names = list(short_names)
        self.status = status  # has a status subresource
        self.generation = generation  # metadata.generation tracks spec changes
        self.custom = custom  # defined by a CRD: defaulting, pruning, validation, RV required
        self.categories = list(categories)
        self.schemas = schemas or {}  # version -> openAPIV3Schema
        self.printer_columns = printer_columns or {}  # version -> additionalPrinterColumns
        self._body_schemas = {}

    def body_schema(self, version):
        """The version's schema without apiVersion, kind and metadata (checked elsewhere);
        computed once. Pruning, defaulting and validation never modify it."""
        if version not in self._body_schemas:
            schema = copy.deepcopy(self.schemas.get(version) or {})
            for k in ("apiVersion", "kind", "metadata"):
                (schema.get("properties") or {}).pop(k, None)
            if "required" in schema:
                schema["required"] = [r for r in schema["required"] if r != "metadata"]
            self._body_schemas[version] = schema
        return self._body_schemas[version]

    @property
    def gk(self):
        return (self.group, self.plural)

    def api_version(self, version):
        return version if not self.group else "%s/%s" % (self.group, version)

    def group_resource(self):
        return self.plural if not self.group else "%s.%s" % (self.plural, self.group)

    def kind_group(self):
        return self.kind if not self.group else "%s.%s" % (self.kind, self.group)


def builtin_types(with_service_monitor):
    t = [
        ResourceType("", ["v1"], "ConfigMap", "configmaps", "configmap", True, ["cm"]),
        ResourceType("", ["v1"], "Secret", "secrets", "secret", True),
        ResourceType("", ["v1"], "ServiceAccount", "serviceaccounts", "serviceaccount", True,
                     ["sa"]),
        ResourceType("", ["v1"], "Service", "services", "service", True, ["svc"], status=True,
                     categories=["all"]),
        ResourceType("", ["v1"], "Pod", "pods", "pod", True, ["po"], status=True,
                     categories=["all"]),
        ResourceType("", ["v1"], "Event", "events", "event", True, ["ev"]),
        ResourceType("", ["v1"], "Namespace", "namespaces", "namespace", False, ["ns"],
                     status=True),
        ResourceType("", ["v1"], "Node", "nodes", "node", False, ["no"], status=True),
        ResourceType("apps", ["v1"], "DaemonSet", "daemonsets", "daemonset", True, ["ds"],
                     status=True, generation=True, categories=["all"]),
        ResourceType("apps", ["v1"], "Deployment", "deployments", "deployment", True,
                     ["deploy"], status=True, generation=True, categories=["all"]),
        ResourceType("coordination.k8s.io", ["v1"], "Lease", "leases", "lease", True),
        ResourceType("rbac.authorization.k8s.io", ["v1"], "Role", "roles", "role", True),
        ResourceType("rbac.authorization.k8s.io", ["v1"], "RoleBinding", "rolebindings",
                     "rolebinding", True),
        ResourceType("rbac.authorization.k8s.io", ["v1"], "ClusterRole", "clusterroles",
                     "clusterrole", False),
        ResourceType("rbac.authorization.k8s.io", ["v1"], "ClusterRoleBinding",
                     "clusterrolebindings", "clusterrolebinding", False),
        ResourceType("storage.k8s.io", ["v1"], "CSIDriver", "csidrivers", "csidriver", False),
        ResourceType("admissionregistration.k8s.io", ["v1"], "MutatingWebhookConfiguration",
                     "mutatingwebhookconfigurations", "mutatingwebhookconfiguration", False),
        ResourceType("apiextensions.k8s.io", ["v1"], "CustomResourceDefinition",
                     "customresourcedefinitions", "customresourcedefinition", False,
                     ["crd", "crds"], status=True, generation=True),
    ]
    if with_service_monitor:
        t.append(ResourceType("monitoring.coreos.com", ["v1"], "ServiceMonitor",
                              "servicemonitors", "servicemonitor", True, ["smon"],
                              generation=True))
    return t


def types_from_crd(crd):
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    served = [v for v in spec.get("versions") or [] if v.get("served", True)]
    if not served or not spec.get("group") or not names.get("plural") or not names.get("kind"):
        return None
    served.sort(key=lambda v: not v.get("storage", False))
    return ResourceType(
        spec["group"], [v["name"] for v in served], names["kind"], names["plural"],
        names.get("singular") or names["kind"].lower(), spec.get("scope") != "Cluster",
        names.get("shortNames") or [],
        status=any("status" in (v.get("subresources") or {}) for v in served), generation=True,
        custom=True, categories=names.get("categories") or [],
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {}
                 for v in served},
        printer_columns={v["name"]: v.get("additionalPrinterColumns") or [] for v in served})


# --------------------------------------------------------------------------------------------
# Structural schema: pruning, defaulting and validation of custom resources.


class FieldError:
    def __init__(self, reason, field, message):
        self.reason, self.field, self.message = reason, field, message


def _type_ok(schema, v):
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(v, (int, str)) and not isinstance(v, bool)
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    return True


def schema_prune(schema, v, path, unknown):
    """Drops fields the schema does not know (recording them in unknown) and non-nullable
    nulls. Returns the pruned value."""
    if not isinstance(schema, dict) or schema.get("x-kubernetes-preserve-unknown-fields"):
        if isinstance(v, dict) and isinstance(schema, dict) and "properties" in schema:
            for k in list(v):
                if k in schema["properties"]:
                    v[k] = schema_prune(schema["properties"][k], v[k], path + [k], unknown)
        return v
    if isinstance(v, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        for k in list(v):
            sub = (props or {}).get(k)
            if sub is None and isinstance(addl, dict):
                sub = addl
            if sub is None and props is not None and addl is not True:
                unknown.append(".".join(path + [k]))
                del v[k]
                continue
            if v[k] is None and isinstance(sub, dict) and not sub.get("nullable"):
                del v[k]
                continue
            if sub is not None:
                v[k] = schema_prune(sub, v[k], path + [k], unknown)
    elif isinstance(v, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(v):
            v[i] = schema_prune(schema["items"], item, path[:-1] + ["%s[%d]" % (path[-1], i)]
                                if path else ["[%d]" % i], unknown)
    return v


def schema_default(schema, v):
    if not isinstance(schema, dict):
        return v
    if isinstance(v, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k not in v and isinstance(sub, dict) and "default" in sub:
                v[k] = copy.deepcopy(sub["default"])
            if k in v:
                v[k] = schema_default(sub, v[k])
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for k in v:
                if k not in (schema.get("properties") or {}):
                    v[k] = schema_default(addl, v[k])
    elif isinstance(v, list) and isinstance(schema.get("items"), dict):
        for i in range(len(v)):
            v[i] = schema_default(schema["items"], v[i])
    return v


def _fmt(v):
    return json.dumps(v)


def schema_validate(schema, v, path, errs):
    if not isinstance(schema, dict):
        return
    if v is None:
        if not schema.get("nullable") and schema.get("type"):
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: \"null\": %s in "
                                   "body must be of type %s: \"null\"" % (path, schema["type"])))
        return
    if not _type_ok(schema, v):
        errs.append(FieldError("FieldValueTypeInvalid", path, "Invalid value: %s: %s in body "
                               "must be of type %s: \"%s\"" % (
                                   _fmt(v), path, schema.get("type"), type(v).__name__)))
        return
    if "enum" in schema and v not in schema["enum"]:
        errs.append(FieldError("FieldValueNotSupported", path, "Unsupported value: %s: "
                               "supported values: %s" % (_fmt(v), ", ".join(
                                   _fmt(e) for e in schema["enum"]))))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (v < lo or (schema.get("exclusiveMinimum") and v == lo)):
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s in body "
                                   "should be greater than or equal to %s" % (_fmt(v), path, lo)))
        if hi is not None and (v > hi or (schema.get("exclusiveMaximum") and v == hi)):
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s in body "
                                   "should be less than or equal to %s" % (_fmt(v), path, hi)))
    if isinstance(v, str):
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            errs.append(FieldError("FieldValueTooLong", path, "Too long: may not be longer "
                                   "than %d" % schema["maxLength"]))
        if "minLength" in schema and len(v) < schema["minLength"]:
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s in body "
                                   "should be at least %d chars long" % (
                                       _fmt(v), path, schema["minLength"])))
        if "pattern" in schema and not re.search(schema["pattern"], v):
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s in body "
                                   "should match '%s'" % (_fmt(v), path, schema["pattern"])))
    if isinstance(v, list):
        if "maxItems" in schema and len(v) > schema["maxItems"]:
            errs.append(FieldError("FieldValueTooMany", path, "Too many: %d: must have at most "
                                   "%d items" % (len(v), schema["maxItems"])))
        if "minItems" in schema and len(v) < schema["minItems"]:
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %d: %s in body "
                                   "should have at least %d items" % (
                                       len(v), path, schema["minItems"])))
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen = set()
            for i, item in enumerate(v):
                k = tuple(_fmt((item or {}).get(x)) for x in keys) if isinstance(item, dict) else ()
                if k in seen:
                    errs.append(FieldError("FieldValueDuplicate", "%s[%d]" % (path, i),
                                           "Duplicate value: %s" % _fmt(item)))
                seen.add(k)
        for i, item in enumerate(v):
            schema_validate(schema.get("items"), item, "%s[%d]" % (path, i), errs)
    if isinstance(v, dict):
        for r in schema.get("required") or []:
            if r not in v:
                errs.append(FieldError("FieldValueRequired", (path + "." if path else "") + r,
                                       "Required value"))
        if "maxProperties" in schema and len(v) > schema["maxProperties"]:
            errs.append(FieldError("FieldValueTooMany", path, "Too many: %d: must have at most "
                                   "%d items" % (len(v), schema["maxProperties"])))
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for k, item in v.items():
            sub = props.get(k, addl if isinstance(addl, dict) else None)
            schema_validate(sub, item, (path + "." if path else "") + k, errs)
    for sub in schema.get("allOf") or []:
        schema_validate(sub, v, path, errs)
    for name in ("anyOf", "oneOf"):
        if name in schema:
            ok = 0
            for sub in schema[name]:
                e = []
                schema_validate(sub, v, path, e)
                ok += not e
            if ok == 0 or (name == "oneOf" and ok > 1):
                errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s must "
                                       "validate %s" % (_fmt(v), path, name)))
    if isinstance(schema.get("not"), dict):
        e = []
        schema_validate(schema["not"], v, path, e)
        if not e:
            errs.append(FieldError("FieldValueInvalid", path, "Invalid value: %s: %s must not "
                                   "validate the schema (not)" % (_fmt(v), path)))


# --------------------------------------------------------------------------------------------
# Server-side apply bookkeeping: the fields each manager owns, as sets of paths, stored in
# metadata.managedFields in the FieldsV1 format. Lists are atomic (owned as a whole).

_META_OWNED = ("labels", "annotations", "finalizers", "ownerReferences")


def leaf_paths(obj, status_only=None):
    out = set()

    def walk(v, path):
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(sub, path + (k,))
        else:
            out.add(path)

    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "metadata":
            if status_only is True:
                continue
            for mk in _META_OWNED:
                if mk in (v or {}):
                    walk(v[mk], ("metadata", mk))
            continue
        if status_only is True and k != "status":
            continue
        if status_only is False and k == "status":
            continue
        walk(v, (k,))
    return out


def value_at(obj, path):
    cur = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return ("<absent>",)
        cur = cur[p]
    return cur


def remove_at(obj, path):
    cur = obj
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return
        cur = cur[p]
    if isinstance(cur, dict):
        cur.pop(path[-1], None)


def paths_to_fields(paths):
    root = {}
    for path in paths:
        cur = root
        for p in path:
            cur = cur.setdefault("f:" + p, {})
    return root


def fields_to_paths(fields, prefix=()):
    out = set()
    for k, v in (fields or {}).items():
        if not k.startswith("f:"):
            continue
        p = prefix + (k[2:],)
        if not v or "." in v:
            out.add(p)
        if v:
            out |= fields_to_paths(v, p)
    return out


def read_managers(obj):
    """Returns {(manager, operation, subresource): set(paths)}."""
    out = {}
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        key = (e.get("manager", ""), e.get("operation", "Update"), e.get("subresource", ""))
        out[key] = fields_to_paths(e.get("fieldsV1") or {})
    return out


def write_managers(obj, managers, api_version):
    entries = []
    for (manager, op, sub), paths in sorted(managers.items()):
        if not paths:
            continue
        e = {"manager": manager, "operation": op, "apiVersion": api_version,
             "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": paths_to_fields(paths)}
        if sub:
            e["subresource"] = sub
        entries.append(e)
    if entries:
        obj["metadata"]["managedFields"] = entries
    else:
        obj["metadata"].pop("managedFields", None)


def apply_value(live, applied):
    """Merges an applied configuration into the live object: maps merge, the rest replaces."""
    if not isinstance(applied, dict) or not isinstance(live, dict):
        return copy.deepcopy(applied)
    out = copy.deepcopy(live)
    for k, v in applied.items():
        out[k] = apply_value(out.get(k), v)
    return out


# --------------------------------------------------------------------------------------------
# The store: objects, the event history, the resourceVersion counter, garbage collection.


class ApiError(Exception):
    """Becomes a metav1.Status reply."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def status(self):
        s = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s


def not_found(rt, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (rt.group_resource(), name),
                    {"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt, name, msg):
    return ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": %s' % (
        rt.group_resource(), name, msg), {"name": name, "group": rt.group, "kind": rt.plural})


def invalid(rt, name, errs):
    lines = ["%s: %s" % (e.field, e.message) if e.field else e.message for e in errs]
    body = lines[0] if len(lines) == 1 else "[" + ", ".join(lines) + "]"
    return ApiError(422, "Invalid", '%s "%s" is invalid: %s' % (rt.kind_group(), name, body), {
        "name": name, "group": rt.group, "kind": rt.kind,
        "causes": [{"reason": e.reason, "message": e.message, "field": e.field} for e in errs]})


def expired(msg):
    return ApiError(410, "Expired", msg)


Event = collections.namedtuple("Event", "rv type gk obj prev")

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class Store:
    """All API state. Every method takes self.lock; watchers wait on self.cond."""

    def __init__(self, history, with_service_monitor):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.objects = {}  # (group, plural) -> {(namespace, name): object}
        self.events = []  # Event, oldest first; events[i] has sequence number events_base + i
        self.events_base = 0
        self.history = history  # events kept before the oldest are compacted away
        self.compacted_rv = 0  # resourceVersions <= this are gone (410 Gone)
        self.types = {}  # (group, version, plural) -> ResourceType
        self.by_gk = {}  # (group, plural) -> ResourceType
        self.watch_epoch = 0  # bumped to drop every live watch
        self.expire_epoch = 0  # bumped to send 410 ERROR events to every live watch
        self.drop_abrupt = False
        self.shutting_down = False
        self.live_watches = {}  # id -> {"path", "user_agent"} of each open watch
        self.gc_wanted = False
        self.uids = set()  # uids of the stored objects, for garbage collection
        self.encoded = {}  # (gk, namespace, name, version, typed) -> (resourceVersion, JSON)
        self.ip_counter = 0
        for rt in builtin_types(with_service_monitor):
            self.add_type(rt)

    # ---- types

    def add_type(self, rt):
        old = self.by_gk.get(rt.gk)
        if old:
            for v in old.versions:
                self.types.pop((old.group, v, old.plural), None)
        self.by_gk[rt.gk] = rt
        for v in rt.versions:
            self.types[(rt.group, v, rt.plural)] = rt
        self.objects.setdefault(rt.gk, {})

    def remove_type(self, gk):
        rt = self.by_gk.pop(gk, None)
        if rt:
            for v in rt.versions:
                self.types.pop((rt.group, v, rt.plural), None)
            for key, obj in list(self.objects.pop(gk, {}).items()):
                self._record("DELETED", gk, obj, obj)

    def groups(self):
        """Returns {group: [versions]} in a stable order, the core group as ''."""
        out = collections.OrderedDict()
        for rt in sorted(self.by_gk.values(), key=lambda r: (r.group != "", r.group)):
            vs = out.setdefault(rt.group, [])
            for v in rt.versions:
                if v not in vs:
                    vs.append(v)
        return out

    # ---- events

    def _next_rv(self):
        self.rv += 1
        return self.rv

    def _record(self, etype, gk, obj, prev):
        self.events.append(Event(int(obj["metadata"]["resourceVersion"]), etype, gk, obj, prev))
        if etype == "ADDED":
            self.uids.add(obj["metadata"]["uid"])
        elif etype == "DELETED":
            self.uids.discard(obj["metadata"]["uid"])
        if len(self.events) > self.history:
            drop = len(self.events) - self.history // 2
            self.compacted_rv = self.events[drop - 1].rv
            del self.events[:drop]
            self.events_base += drop
        self.cond.notify_all()

    def compact(self, expire_watches):
        with self.lock:
            self.compacted_rv = self.rv
            self.events_base += len(self.events)
            self.events = []
            if expire_watches:
                self.expire_epoch += 1
            self.cond.notify_all()
            return self.rv

    def drop_watches(self, abrupt):
        with self.lock:
            self.watch_epoch += 1
            self.drop_abrupt = abrupt
            self.cond.notify_all()

    def check_rv_available(self, rv):
        if rv < self.compacted_rv:
            raise expired("too old resource version: %d (%d)" % (rv, self.compacted_rv + 1))

    # ---- reads

    def get(self, rt, ns, name):
        with self.lock:
            obj = self.objects[rt.gk].get((ns, name))
            if obj is None:
                raise not_found(rt, name)
            return dict(obj)

    # Stored objects are never modified in place (a write stores a new object), so reads hand
    # out shallow copies: callers may set top-level keys, nothing deeper.

    def list(self, rt, ns, label_reqs, field_reqs):
        with self.lock:
            items = [dict(o) for (ons, _), o in sorted(self.objects[rt.gk].items())
                     if (ns is None or ons == ns)
                     and labels_match(label_reqs, o["metadata"].get("labels"))
                     and fields_match(field_reqs, o)]
            return items, self.rv

    # ---- writes (callers hold no lock; each runs atomically under self.lock)

    def _stamp(self, obj):
        obj["metadata"]["resourceVersion"] = str(self._next_rv())

    def _spec_part(self, rt, obj):
        return {k: v for k, v in obj.items()
                if k not in ("metadata", "apiVersion", "kind") and (k != "status" or not rt.status)}

    def create(self, rt, obj, dry_run=False):
        with self.lock:
            md = obj["metadata"]
            key = (md.get("namespace", ""), md["name"])
            if key in self.objects[rt.gk]:
                raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (
                    rt.group_resource(), md["name"]),
                    {"name": md["name"], "group": rt.group, "kind": rt.plural})
            for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                md.pop(k, None)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            if rt.generation:
                md["generation"] = 1
            else:
                md.pop("generation", None)
            self._builtin_defaults(rt, obj)
            if dry_run:
                md["resourceVersion"] = ""
                return copy.deepcopy(obj)
            self._stamp(obj)
            self.objects[rt.gk][key] = obj
            self._record("ADDED", rt.gk, copy.deepcopy(obj), None)
            self._after_write(rt, obj)
            self._want_gc_if_dangling(md)
            return copy.deepcopy(obj)

    def update(self, rt, old, new, dry_run=False):
        """Stores new in place of old (same key), keeping immutable metadata and enforcing
        generation and finalizer semantics. old must be the stored object; the caller has
        already applied the status split."""
        with self.lock:
            md, omd = new["metadata"], old["metadata"]
            key = (omd.get("namespace", ""), omd["name"])
            if self.objects[rt.gk].get(key) is not old:
                raise conflict(rt, omd["name"], "the object has been modified; please apply "
                               "your changes to the latest version and try again")
            for k in ("uid", "creationTimestamp", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "generation"):
                if k in omd:
                    md[k] = omd[k]
                else:
                    md.pop(k, None)
            if omd.get("deletionTimestamp"):
                added = set(md.get("finalizers") or []) - set(omd.get("finalizers") or [])
                if added:
                    raise ApiError(422, "Invalid", '%s "%s" is invalid: metadata.finalizers: '
                                   'Forbidden: no new finalizers can be added if the object is '
                                   'being deleted, found new finalizers %s' % (
                                       rt.kind_group(), omd["name"], json.dumps(sorted(added))))
            if rt.generation and self._spec_part(rt, new) != self._spec_part(rt, old):
                md["generation"] = omd.get("generation", 1) + 1
            self._builtin_defaults(rt, new)
            if self._same(old, new):
                return copy.deepcopy(old)  # a no-op write does not bump the resourceVersion
            if dry_run:
                return copy.deepcopy(new)
            self._stamp(new)
            if md.get("deletionTimestamp") and not md.get("finalizers"):
                del self.objects[rt.gk][key]
                self._record("DELETED", rt.gk, copy.deepcopy(new), old)
                self._after_delete(rt, new)
                return copy.deepcopy(new)
            self.objects[rt.gk][key] = new
            self._record("MODIFIED", rt.gk, copy.deepcopy(new), old)
            self._after_write(rt, new)
            if md.get("ownerReferences") != omd.get("ownerReferences"):
                self._want_gc_if_dangling(md)
            return copy.deepcopy(new)

    @staticmethod
    def _same(a, b):
        def strip(o):
            o = copy.copy(o)
            o["metadata"] = {k: v for k, v in o["metadata"].items()
                             if k not in ("resourceVersion", "managedFields")}
            return o
        if strip(a) != strip(b):
            return False
        ma = [{k: v for k, v in e.items() if k != "time"}
              for e in a["metadata"].get("managedFields") or []]
        mb = [{k: v for k, v in e.items() if k != "time"}
              for e in b["metadata"].get("managedFields") or []]
        return ma == mb

    def delete(self, rt, ns, name, propagation, preconditions, dry_run=False):
        with self.lock:
            key = (ns, name)
            obj = self.objects[rt.gk].get(key)
            if obj is None:
                raise not_found(rt, name)
            pre = preconditions or {}
            md = obj["metadata"]
            if pre.get("uid") and pre["uid"] != md["uid"]:
                raise conflict(rt, name, "Precondition failed: UID in precondition: %s, UID in "
                               "object meta: %s" % (pre["uid"], md["uid"]))
            if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
                raise conflict(rt, name, "Precondition failed: ResourceVersion in precondition:"
                               " %s, ResourceVersion in object meta: %s" % (
                                   pre["resourceVersion"], md["resourceVersion"]))
            propagation = propagation or "Background"
            finalizers = list(md.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                if self._dependents(md["uid"]):
                    finalizers.append("foregroundDeletion")
            if propagation == "Orphan":
                self._orphan(md["uid"])
            if dry_run:
                return copy.deepcopy(obj)
            if finalizers:
                if md.get("deletionTimestamp") and finalizers == md.get("finalizers"):
                    return copy.deepcopy(obj)
                new = copy.deepcopy(obj)
                new["metadata"]["finalizers"] = finalizers
                new["metadata"].setdefault("deletionTimestamp", now_rfc3339())
                new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                if rt.generation:
                    new["metadata"]["generation"] = md.get("generation", 1) + 1
                self._stamp(new)
                self.objects[rt.gk][key] = new
                self._record("MODIFIED", rt.gk, copy.deepcopy(new), obj)
                if "foregroundDeletion" in finalizers:
                    self.gc_wanted = True
                    self.cond.notify_all()
                return copy.deepcopy(new)
            del self.objects[rt.gk][key]
            gone = copy.deepcopy(obj)
            self._stamp(gone)
            self._record("DELETED", rt.gk, copy.deepcopy(gone), obj)
            self._after_delete(rt, gone)
            return gone

    def set_status(self, rt, ns, name, status, merge):
        with self.lock:
            old = self.objects[rt.gk].get((ns, name))
            if old is None:
                raise not_found(rt, name)
            new = copy.deepcopy(old)
            new["status"] = merge_patch(old.get("status") or {}, status) if merge else status
            self._stamp(new)
            self.objects[rt.gk][(ns, name)] = new
            self._record("MODIFIED", rt.gk, copy.deepcopy(new), old)
            return copy.deepcopy(new)

    def set_raw(self, rt, ns, name, fields):
        """Replaces top-level fields of an object (metadata: merged key by key) with no schema
        check, defaulting or validation: how tests hand a client malformed objects."""
        with self.lock:
            old = self.objects[rt.gk].get((ns, name))
            if old is None:
                raise not_found(rt, name)
            new = copy.deepcopy(old)
            for k, v in fields.items():
                if k == "metadata" and isinstance(v, dict):
                    new["metadata"].update(v)
                else:
                    new[k] = v
            self._stamp(new)
            self.objects[rt.gk][(ns, name)] = new
            self._record("MODIFIED", rt.gk, copy.deepcopy(new), old)
            return copy.deepcopy(new)

    # ---- hooks

    def _builtin_defaults(self, rt, obj):
        if rt.gk == ("", "services"):
            spec = obj.setdefault("spec", {})
            if "clusterIP" not in spec:
                self.ip_counter += 1
                n = self.ip_counter
                spec["clusterIP"] = "10.96.%d.%d" % (n // 250, n % 250 + 2)
            spec.setdefault("type", "ClusterIP")
        elif rt.gk == ("", "secrets"):
            sd = obj.pop("stringData", None)
            if sd:
                data = obj.setdefault("data", {})
                for k, v in sd.items():
                    data[k] = base64.b64encode(v.encode()).decode()
            obj.setdefault("type", "Opaque")
        elif rt.gk == ("", "pods"):
            obj.setdefault("status", {}).setdefault("phase", "Pending")
        elif rt.gk == ("", "namespaces"):
            obj.setdefault("status", {}).setdefault("phase", "Active")

    def _after_write(self, rt, obj):
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            crt = types_from_crd(obj)
            if crt:
                self.add_type(crt)
            if not obj.get("status", {}).get("acceptedNames"):
                names = obj["spec"]["names"]
                obj["status"] = {"acceptedNames": names, "storedVersions": [
                    v["name"] for v in obj["spec"].get("versions", []) if v.get("storage")],
                    "conditions": [
                        {"type": t, "status": "True", "reason": r, "message": m,
                         "lastTransitionTime": now_rfc3339()}
                        for t, r, m in (("NamesAccepted", "NoConflicts", "no conflicts found"),
                                        ("Established", "InitialNamesAccepted",
                                         "the initial names have been accepted"))]}
                self._stamp(obj)
                self._record("MODIFIED", rt.gk, copy.deepcopy(obj), None)

    def _after_delete(self, rt, obj):
        if rt.gk == ("apiextensions.k8s.io", "customresourcedefinitions"):
            spec = obj.get("spec") or {}
            self.remove_type((spec.get("group"), (spec.get("names") or {}).get("plural")))
        if rt.gk == ("", "namespaces"):
            ns = obj["metadata"]["name"]
            for gk, objs in self.objects.items():
                for key in [k for k in objs if k[0] == ns]:
                    gone = objs.pop(key)
                    self._stamp(gone)
                    self._record("DELETED", gk, copy.deepcopy(gone), gone)
        self.gc_wanted = True
        self.cond.notify_all()

    # ---- garbage collection (run by the GC thread)

    def _want_gc_if_dangling(self, md):
        """An object written with a reference to a missing owner is collected too."""
        if any(r.get("uid") not in self.uids for r in md.get("ownerReferences") or []):
            self.gc_wanted = True
            self.cond.notify_all()

    def _dependents(self, uid):
        return [(gk, key) for gk, objs in self.objects.items() for key, o in objs.items()
                if any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])]

    def _orphan(self, uid):
        for gk, key in self._dependents(uid):
            old = self.objects[gk][key]
            new = copy.deepcopy(old)
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._stamp(new)
            self.objects[gk][key] = new
            self._record("MODIFIED", gk, copy.deepcopy(new), old)

    def gc_pass(self):
        """One garbage-collector pass; returns True if it changed anything."""
        with self.lock:
            self.gc_wanted = False
            uids = self.uids
            changed = False
            for gk, objs in list(self.objects.items()):
                for key, o in list(objs.items()):
                    refs = o["metadata"].get("ownerReferences") or []
                    if not refs:
                        continue
                    live = [r for r in refs if r.get("uid") in uids]
                    if live and len(live) < len(refs):
                        new = copy.deepcopy(o)
                        new["metadata"]["ownerReferences"] = live
                        self.update(self.by_gk[gk], o, new)
                        changed = True
                    if live:
                        continue
                    if o["metadata"].get("deletionTimestamp"):
                        continue
                    try:
                        self.delete(self.by_gk[gk], key[0], key[1], "Background", None)
                        changed = True
                    except ApiError:
                        pass
            # Foreground deletion: owners wait until no dependent is left.
            for gk, objs in list(self.objects.items()):
                for key, o in list(objs.items()):
                    md = o["metadata"]
                    if "foregroundDeletion" not in (md.get("finalizers") or []):
                        continue
                    deps = self._dependents(md["uid"])
                    for dgk, dkey in deps:
                        d = self.objects[dgk].get(dkey)
                        if d is not None and not d["metadata"].get("deletionTimestamp"):
                            self.delete(self.by_gk[dgk], dkey[0], dkey[1], "Foreground", None)
                            changed = True
                    if not self._dependents(md["uid"]):
                        new = copy.deepcopy(o)
                        new["metadata"]["finalizers"] = [
                            f for f in md["finalizers"] if f != "foregroundDeletion"]
                        self.update(self.by_gk[gk], o, new)
                        changed = True
            return changed

    def gc_loop(self, delay):
        while True:
            with self.lock:
                while not self.gc_wanted:
                    self.cond.wait()
            if delay:
                time.sleep(delay)
            while self.gc_pass():
                pass


# --------------------------------------------------------------------------------------------
# Requests log and fault injection (the /fake/ admin API drives both).


RBAC_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


class Admin:
    """Recorded requests and fault rules; guarded by its own lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []
        self.next_fault = 1

    def record(self, entry):
        with self.lock:
            self.requests.append(entry)

    def add_fault(self, rule):
        with self.lock:
            rule = dict(rule)
            rule["id"] = self.next_fault
            rule["_re"] = re.compile(rule.get("path_regex") or "")
            rule["hits"] = 0
            self.next_fault += 1
            self.faults.append(rule)
            return rule["id"]

    def match_fault(self, method, verb, target):
        """Returns the first matching rule with budget left (consuming one), or None."""
        with self.lock:
            for rule in self.faults:
                if rule.get("count") is not None and rule["hits"] >= rule["count"]:
                    continue
                if rule.get("method") and rule["method"].upper() != method:
                    continue
                if rule.get("verb") and rule["verb"] != verb:
                    continue
                if not rule["_re"].search(target):
                    continue
                rule["hits"] += 1
                return dict(rule)
            return None

    def list_faults(self):
        with self.lock:
            return [{k: v for k, v in r.items() if k != "_re"} for r in self.faults]


# --------------------------------------------------------------------------------------------
# The HTTP front: routing, discovery, CRUD verbs, watches.


class Request:
    """A parsed resource request: /api/v1/... or /apis/<group>/<version>/..."""

    def __init__(self, rt, version, ns, name, sub, query):
        self.rt, self.version, self.ns, self.name, self.sub, self.query = (
            rt, version, ns, name, sub, query)

    def q(self, key, default=None):
        v = self.query.get(key)
        return v[-1] if v else default


def parse_resource_path(parts):
    """parts: path segments after /api or /apis. Returns (group, version, rest) or None."""
    if parts and parts[0] == "api":
        return ("", parts[1], parts[2:]) if len(parts) >= 2 else None
    if parts and parts[0] == "apis":
        return (parts[1], parts[2], parts[3:]) if len(parts) >= 3 else None
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver/1"
    store = None  # set by main
    admin = None
    options = None

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every request on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):
        if self.options.verbose:
            sys.stderr.write("fake-apiserver: %s\n" % (fmt % args))

    # ---- plumbing

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, code, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_text(self, code, text):
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_status(self, err):
        if self.options.verbose:
            sys.stderr.write("fake-apiserver: %s %s -> %d %s: %s\n" % (
                self.command, self.path, err.code, err.reason, err.message))
        self.send_json(err.code, err.status(), err.headers)

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        try:
            self.body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        try:
            if parts and parts[0] == "fake":
                return self.admin_api(parts[1:], query)
            if url.path in ("/healthz", "/readyz", "/livez"):
                return self.send_text(200, "ok")
            self.api(url, parts, query)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- the admin API

    def admin_api(self, parts, query):
        store, admin = self.store, self.admin
        body = json.loads(self.body or b"{}") if self.body.strip() else {}
        what = "/".join(parts)
        if what == "faults" and self.command == "POST":
            rules = body if isinstance(body, list) else [body]
            return self.send_json(200, {"ids": [admin.add_fault(r) for r in rules]})
        if what == "faults" and self.command == "GET":
            return self.send_json(200, {"faults": admin.list_faults()})
        if (what == "faults" and self.command == "DELETE") or what == "faults/clear":
            with admin.lock:
                admin.faults = []
            return self.send_json(200, {})
        if what == "drop-watches":
            store.drop_watches(bool(body.get("abrupt")))
            return self.send_json(200, {})
        if what == "compact":
            rv = store.compact(body.get("expire_watches", True))
            return self.send_json(200, {"compactedResourceVersion": str(rv)})
        if what == "requests" and self.command == "GET":
            with admin.lock:
                reqs = list(admin.requests)
            if query.get("user_agent"):
                reqs = [r for r in reqs if query["user_agent"][-1] in r["user_agent"]]
            if not query.get("include_nonresource"):
                reqs = [r for r in reqs if r["resource"]]
            return self.send_json(200, {"requests": reqs})
        if what == "reset-requests":
            with admin.lock:
                admin.requests = []
            return self.send_json(200, {})
        if what == "set-status":
            rt = self.type_for(body.get("apiVersion", ""), body.get("kind", ""))
            obj = store.set_status(rt, body.get("namespace", "") if rt.namespaced else "",
                                   body["name"], body.get("status") or {},
                                   body.get("merge", False))
            return self.send_json(200, obj)
        if what == "set-raw":
            rt = self.type_for(body.get("apiVersion", ""), body.get("kind", ""))
            obj = store.set_raw(rt, body.get("namespace", "") if rt.namespaced else "",
                                body["name"], body.get("fields") or {})
            return self.send_json(200, obj)
        if what == "watches":
            with store.lock:
                return self.send_json(200, {"live": len(store.live_watches),
                                            "watches": list(store.live_watches.values()),
                                            "resourceVersion": str(store.rv)})
        if what == "objects":
            with store.lock:
                out = [dict(o, apiVersion=store.by_gk[gk].api_version(
                    store.by_gk[gk].versions[0]), kind=store.by_gk[gk].kind)
                    for gk, objs in store.objects.items() for o in objs.values()]
            return self.send_json(200, {"items": out})
        raise ApiError(404, "NotFound", "no admin endpoint /fake/" + what)

    def type_for(self, api_version, kind):
        group, _, version = api_version.rpartition("/")
        with self.store.lock:
            for rt in self.store.by_gk.values():
                if rt.group == group and rt.kind == kind and version in rt.versions:
                    return rt
        raise ApiError(404, "NotFound", "no resource for %s %s" % (api_version, kind))

    # ---- the Kubernetes API

    def api(self, url, parts, query):
        store = self.store
        target = self.path
        gv = parse_resource_path(parts)
        req = None
        verb = self.command.lower()
        if gv and gv[2]:
            req = self.resolve(gv, query)
            verb = self.rbac_verb(req)
        entry = {"verb": verb, "method": self.command, "path": url.path,
                 "user_agent": self.headers.get("User-Agent", ""), "resource": "",
                 "group": "", "namespace": "", "name": ""}
        if req:
            entry.update(resource=req.rt.plural + ("/" + req.sub if req.sub else ""),
                         group=req.rt.group, namespace=req.ns or "", name=req.name or "")
        self.admin.record(entry)
        fault = self.admin.match_fault(self.command, verb, target)
        if fault:
            if fault.get("latency_ms"):
                time.sleep(fault["latency_ms"] / 1000.0)
            if fault.get("reset"):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if fault.get("status"):
                code = int(fault["status"])
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                          504: "Timeout", 409: "Conflict", 410: "Expired"}.get(code, "Unknown")
                headers = {}
                if code == 429:
                    headers["Retry-After"] = str(fault.get("retry_after", 1))
                raise ApiError(code, reason, fault.get("message") or "injected fault",
                               {"retryAfterSeconds": fault.get("retry_after", 1)}
                               if code == 429 else None, headers)
        if req:
            return self.resource(req, verb)
        if url.path == "/version":
            return self.send_json(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                                        "gitCommit": "0" * 40, "gitTreeState": "clean",
                                        "buildDate": "2026-01-01T00:00:00Z",
                                        "goVersion": "go1.23", "compiler": "gc",
                                        "platform": "linux/amd64"})
        if url.path == "/api":
            return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                        "serverAddressByClientCIDRs": [{
                                            "clientCIDR": "0.0.0.0/0",
                                            "serverAddress":
                                                "%s:%d" % self.server.server_address[:2]}]})
        if url.path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                self.group_doc(g, vs) for g, vs in store.groups().items() if g]})
        if len(parts) == 2 and parts[0] == "apis":
            vs = store.groups().get(parts[1])
            if vs:
                return self.send_json(200, dict(self.group_doc(parts[1], vs), kind="APIGroup",
                                                apiVersion="v1"))
        if gv and not gv[2]:
            doc = self.resource_list(gv[0], gv[1])
            if doc:
                return self.send_json(200, doc)
        if parts[:1] == ["openapi"]:
            return self.openapi(parts, query)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    @staticmethod
    def group_doc(group, versions):
        vs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group, version):
        with self.store.lock:
            rts = [rt for (g, v, _), rt in self.store.types.items() if g == group and v == version]
        if not rts:
            return None
        res = []
        for rt in sorted(rts, key=lambda r: r.plural):
            r = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": sorted(RBAC_VERBS),
                 "storageVersionHash": base64.b64encode(rt.plural.encode()).decode()[:11]}
            if rt.short_names:
                r["shortNames"] = rt.short_names
            if rt.categories:
                r["categories"] = rt.categories
            res.append(r)
            if rt.status:
                res.append({"name": rt.plural + "/status", "singularName": "",
                            "namespaced": rt.namespaced, "kind": rt.kind,
                            "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": version if not group else "%s/%s" % (group, version),
                "resources": res}

    def openapi(self, parts, query):
        """A minimal OpenAPI: v3 lists every group-version, each declaring the fieldValidation
        and dryRun query parameters on PATCH/PUT/POST so kubectl lets the server validate."""
        store = self.store
        if parts == ["openapi", "v2"]:
            # An empty document (swagger, info, no paths) so that older kubectl releases, which
            # read only v2, fall back to no client-side schema. Protobuf when asked for it
            # (gnostic openapiv2.Document: 1 swagger, 2 info{1 title, 2 version}, 8 paths).
            if "protobuf" in (self.headers.get("Accept") or ""):
                def field(num, payload):
                    return bytes([num << 3 | 2, len(payload)]) + payload
                data = field(1, b"2.0") + field(2, field(1, b"Kubernetes") +
                                                field(2, b"v1.32.0-fake")) + field(8, b"")
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            return self.send_json(200, {"swagger": "2.0", "info": {
                "title": "Kubernetes", "version": "v1.32.0-fake"}, "paths": {}})
        if parts == ["openapi", "v3"]:
            paths = {}
            for g, vs in store.groups().items():
                for v in vs:
                    p = "api/" + v if not g else "apis/%s/%s" % (g, v)
                    paths[p] = {"serverRelativeURL": "/openapi/v3/%s?hash=%d" % (p, store.rv)}
            return self.send_json(200, {"paths": paths})
        if len(parts) >= 4 and parts[:2] == ["openapi", "v3"]:
            if parts[2] == "api":
                group, version = "", parts[3]
            else:
                group, version = parts[3], parts[4] if len(parts) > 4 else ""
            return self.send_json(200, self.openapi_gv(group, version))
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def openapi_gv(self, group, version):
        with self.store.lock:
            rts = [rt for (g, v, _), rt in self.store.types.items() if g == group and v == version]
        params = [{"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        paths, schemas = {}, {}
        prefix = "/api/" + version if not group else "/apis/%s/%s" % (group, version)
        for rt in rts:
            gvk = [{"group": rt.group, "version": version, "kind": rt.kind}]
            base = prefix + ("/namespaces/{namespace}/" if rt.namespaced else "/") + rt.plural
            op = {"parameters": params, "x-kubernetes-group-version-kind": gvk[0],
                  "responses": {"200": {"description": "OK"}}}
            paths[base] = {"post": dict(op, **{"x-kubernetes-action": "post"}),
                           "get": dict(op, **{"x-kubernetes-action": "list"})}
            paths[base + "/{name}"] = {
                "put": dict(op, **{"x-kubernetes-action": "put"}),
                "patch": dict(op, **{"x-kubernetes-action": "patch"}),
                "get": dict(op, **{"x-kubernetes-action": "get"}),
                "delete": dict(op, **{"x-kubernetes-action": "delete"})}
            prefix_name = ".".join(reversed(rt.group.split("."))) if rt.group \
                else "io.k8s.api.core"
            name = "%s.%s.%s" % (prefix_name, version, rt.kind)
            schema = copy.deepcopy(rt.schemas.get(version)) if rt.custom else {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            schema["x-kubernetes-group-version-kind"] = gvk
            schemas[name] = schema
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0-fake"},
                "paths": paths, "components": {"schemas": schemas}}

    # ---- resource requests

    def resolve(self, gv, query):
        group, version, rest = gv
        store = self.store
        with store.lock:
            types = {p: rt for (g, v, p), rt in store.types.items() if g == group and v == version}
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in types and \
                types[rest[2]].namespaced:
            ns, rest = rest[1], rest[2:]
        rt = types.get(rest[0])
        if rt is None or len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and not (sub == "status" and rt.status):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and ns is None and self.command not in ("GET", "HEAD"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rt.namespaced and ns is not None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Request(rt, version, ns if rt.namespaced else "", name, sub, query)

    def rbac_verb(self, req):
        m = self.command
        if m in ("GET", "HEAD"):
            if req.q("watch") in ("true", "1"):
                return "watch"
            return "get" if req.name else "list"
        if m == "POST":
            return "create"
        if m == "PUT":
            return "update"
        if m == "PATCH":
            return "patch"
        if m == "DELETE":
            return "delete" if req.name else "deletecollection"
        return m.lower()

    def resource(self, req, verb):
        if verb == "get":
            obj = self.out(req, self.store.get(req.rt, req.ns, req.name))
            if self.wants_table(req):
                return self.send_json(200, self.table(req, [obj], obj["metadata"]))
            return self.send_json(200, obj)
        if verb == "list":
            return self.do_list(req)
        if verb == "watch":
            return self.do_watch(req)
        if verb == "create":
            return self.do_create(req)
        if verb in ("update", "patch"):
            return self.do_write(req, verb)
        if verb == "delete":
            return self.do_delete(req)
        if verb == "deletecollection":
            items = self.do_list(req, send=False)
            opts = json.loads(self.body) if self.body.strip() else {}
            for o in items:
                try:
                    self.store.delete(req.rt, o["metadata"].get("namespace", ""),
                                      o["metadata"]["name"], opts.get("propagationPolicy"), None,
                                      dry_run=bool(req.q("dryRun")))
                except ApiError:
                    pass
            return self.send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                        "status": "Success"})
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method")

    def out(self, req, obj, with_type=True):
        if with_type:
            obj["apiVersion"] = req.rt.api_version(req.version)
            obj["kind"] = req.rt.kind
        else:
            obj.pop("apiVersion", None)
            obj.pop("kind", None)
        return obj

    def selectors(self, req):
        try:
            labels = parse_label_selector(req.q("labelSelector", ""))
            fields = parse_field_selector(req.q("fieldSelector", ""))
        except ValueError as e:
            raise ApiError(400, "BadRequest", "unable to parse requirement: %s" % e)
        for key, _, _ in fields:
            if key not in ("metadata.name", "metadata.namespace") and not (
                    req.rt.gk == ("", "pods") and key in ("spec.nodeName", "status.phase")) and \
                    not (req.rt.gk == ("", "events") and key.startswith("involvedObject.")):
                raise ApiError(400, "BadRequest", '"%s" is not a known field selector: only '
                               '"metadata.name", "metadata.namespace"' % key)
        if req.name:
            fields.append(("metadata.name", "=", req.name))
        return labels, fields

    def do_list(self, req, send=True):
        labels, fields = self.selectors(req)
        store = self.store
        cont = req.q("continue")
        rv_param = req.q("resourceVersion")
        with store.lock:
            if cont:
                try:
                    token = json.loads(base64.urlsafe_b64decode(cont.encode()))
                except ValueError:
                    raise ApiError(400, "BadRequest", "continue key is not valid")
                if token["rv"] <= store.compacted_rv:
                    raise ApiError(410, "Expired", "The provided continue parameter is too old to "
                                   "display a consistent list result. You can start a new list "
                                   "without the continue parameter.", headers={})
            elif rv_param and rv_param != "0" and req.q("resourceVersionMatch") == "Exact":
                store.check_rv_available(int(rv_param))
            items, rv = store.list(req.rt, req.ns, labels, fields)
        if not send:
            return items
        if cont:
            rv = token["rv"]
            after = tuple(token["after"])
            items = [o for o in items if (o["metadata"].get("namespace", ""),
                                          o["metadata"]["name"]) > after]
        limit = int(req.q("limit") or 0)
        md = {"resourceVersion": str(rv)}
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            md["continue"] = base64.urlsafe_b64encode(json.dumps({
                "rv": rv, "after": [last.get("namespace", ""), last["name"]]}).encode()).decode()
            md["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        typed = req.rt.custom
        if self.wants_table(req):
            return self.send_json(200, self.table(req, [self.out(req, o) for o in items], md))
        # Items are encoded once per resourceVersion: lists of many objects, polled often,
        # would otherwise spend the server's time in json.dumps.
        head = json.dumps({"kind": req.rt.kind + "List",
                           "apiVersion": req.rt.api_version(req.version), "metadata": md})
        data = b"%s,\"items\":[%s]}" % (head[:-1].encode(), b",".join(
            self.encoded(req, o, typed) for o in items))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    def encoded(self, req, obj, typed):
        cache = self.store.encoded
        md = obj["metadata"]
        key = (req.rt.gk, md.get("namespace", ""), md["name"], req.version, typed)
        hit = cache.get(key)
        if hit and hit[0] == md["resourceVersion"]:
            return hit[1]
        if len(cache) > 200000:
            cache.clear()
        data = json.dumps(self.out(req, obj, typed)).encode()
        cache[key] = (md["resourceVersion"], data)
        return data

    # ---- Table output (kubectl get) for custom resources with printer columns

    def wants_table(self, req):
        return bool(req.rt.printer_columns.get(req.version)) and \
            "as=Table" in (self.headers.get("Accept") or "")

    def table(self, req, objs, md, with_columns=True):
        cols = req.rt.printer_columns[req.version]
        include = req.q("includeObject", "Metadata")
        rows = []
        for o in objs:
            cells = [o["metadata"]["name"]]
            for c in cols:
                v = jsonpath_first(o, c.get("jsonPath", ""))
                if c.get("type") == "date" and isinstance(v, str):
                    v = human_age(v)
                cells.append(v)
            row = {"cells": cells}
            if include == "Object":
                row["object"] = o
            elif include == "Metadata":
                row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                 "metadata": o["metadata"]}
            rows.append(row)
        table = {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                 "metadata": {k: v for k, v in md.items()
                              if k in ("resourceVersion", "continue", "remainingItemCount")},
                 "rows": rows}
        if with_columns:
            table["columnDefinitions"] = [
                {"name": "Name", "type": "string", "format": "name", "priority": 0,
                 "description": "Name must be unique within a namespace."}] + [
                {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
                 "description": c.get("description", ""), "priority": c.get("priority", 0)}
                for c in cols]
        return table

    def parse_body(self, apply=False):
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if "protobuf" in ctype:
            raise ApiError(415, "UnsupportedMediaType", "the fake API server speaks JSON only; "
                           "use kubectl apply --server-side or -o json bodies")
        text = self.body.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            if not (apply or "yaml" in ctype):
                raise ApiError(400, "BadRequest", "the body of the request was in an unknown "
                               "format - accepted media types include: application/json")
        try:
            docs = yaml_load_all(text)
        except (YamlError, ValueError) as e:
            raise ApiError(400, "BadRequest", "error decoding YAML: %s" % e)
        if len(docs) != 1:
            raise ApiError(400, "BadRequest", "expected one YAML document, got %d" % len(docs))
        return docs[0]

    def manager(self, req):
        return req.q("fieldManager") or self.headers.get("User-Agent", "unknown").split("/")[0]

    def check_kind(self, req, obj):
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        av, kind = obj.get("apiVersion"), obj.get("kind")
        if (av and av != req.rt.api_version(req.version)) or (kind and kind != req.rt.kind):
            raise ApiError(400, "BadRequest", "the API version in the data (%s) does not match "
                           "the expected API version (%s)" % (av, req.rt.api_version(req.version)))
        obj["apiVersion"], obj["kind"] = req.rt.api_version(req.version), req.rt.kind
        md = obj.setdefault("metadata", {})
        if not isinstance(md, dict):
            raise ApiError(400, "BadRequest", "metadata must be an object")
        if req.rt.namespaced:
            if md.get("namespace") and md["namespace"] != req.ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not "
                               "match the namespace sent on the request")
            md["namespace"] = req.ns
        else:
            md.pop("namespace", None)
        if req.name and md.get("name") and md["name"] != req.name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the "
                           "name on the URL (%s)" % (md["name"], req.name))
        return obj

    def admit(self, req, obj):
        """Pruning, defaulting and validation; returns warnings. Raises 422."""
        rt, md = req.rt, obj["metadata"]
        name = md.get("name", "")
        errs = []
        if not name:
            errs.append(FieldError("FieldValueRequired", "metadata.name",
                                   "Required value: name or generateName is required"))
        elif rt.group == "rbac.authorization.k8s.io":
            if "/" in name or "%" in name or name in (".", ".."):
                errs.append(FieldError("FieldValueInvalid", "metadata.name",
                                       "Invalid value: %s: may not contain '/' or '%%'" %
                                       _fmt(name)))
        elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            errs.append(FieldError("FieldValueInvalid", "metadata.name", "Invalid value: %s: a "
                                   "lowercase RFC 1123 subdomain must consist of lower case "
                                   "alphanumeric characters, '-' or '.'" % _fmt(name)))
        for i, ref in enumerate(md.get("ownerReferences") or []):
            for f in ("apiVersion", "kind", "name", "uid"):
                if not ref.get(f):
                    errs.append(FieldError("FieldValueRequired", "metadata.ownerReferences[%d].%s"
                                           % (i, f), "Required value"))
        if sum(1 for r in md.get("ownerReferences") or [] if r.get("controller")) > 1:
            errs.append(FieldError("FieldValueInvalid", "metadata.ownerReferences",
                                   "Invalid value: only one reference can have Controller set to "
                                   "true"))
        warnings = []
        if rt.custom:
            schema = rt.body_schema(req.version)
            body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
            unknown = []
            body = schema_prune(schema, body, [], unknown)
            mode = req.q("fieldValidation", "Warn")
            if unknown and mode == "Strict":
                raise ApiError(400, "BadRequest", "%s in version \"%s\" cannot be handled as a "
                               "%s: strict decoding error: %s" % (
                                   rt.kind, req.version, rt.kind, ", ".join(
                                       'unknown field "%s"' % u for u in unknown)))
            if unknown and mode == "Warn":
                warnings = ['unknown field "%s"' % u for u in unknown]
            body = schema_default(schema, body)
            schema_validate(schema, body, "", errs)
            for k in list(obj):
                if k not in ("apiVersion", "kind", "metadata"):
                    del obj[k]
            obj.update(body)
        if errs:
            raise invalid(rt, name, errs)
        return warnings

    def warn_headers(self, warnings):
        return {"Warning": ", ".join('299 - "%s"' % w for w in warnings)} if warnings else {}

    def do_create(self, req):
        if req.sub:
            raise ApiError(405, "MethodNotAllowed", "create is not allowed on a subresource")
        obj = self.check_kind(req, self.parse_body())
        md = obj["metadata"]
        if not md.get("name") and md.get("generateName"):
            md["name"] = md["generateName"] + "".join(
                random.choice(string.ascii_lowercase + string.digits) for _ in range(5))
        if md.get("resourceVersion"):
            raise ApiError(400, "BadRequest", "resourceVersion should not be set on objects to "
                           "be created")
        md.pop("managedFields", None)
        if req.rt.status:
            obj.pop("status", None)
        warnings = self.admit(req, obj)
        paths = leaf_paths(obj, False if req.rt.status else None)
        write_managers(obj, {(self.manager(req), "Update", ""): paths},
                       req.rt.api_version(req.version))
        created = self.store.create(req.rt, obj, dry_run=bool(req.q("dryRun")))
        self.send_json(201, self.out(req, created), self.warn_headers(warnings))

    def do_write(self, req, verb):
        store, rt = self.store, req.rt
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        is_apply = verb == "patch" and ctype == "application/apply-patch+yaml"
        body = self.parse_body(apply=is_apply)
        sub = req.sub or ""
        mgr = self.manager(req)
        if is_apply and not req.q("fieldManager"):
            raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager:'
                           ' Required value: is required for apply patch')
        with store.lock:
            old = store.objects[rt.gk].get((req.ns, req.name))
            if old is None:
                if is_apply and not sub:
                    return self.apply_create(req, body, mgr)
                raise not_found(rt, req.name)
            if verb == "update":
                new = self.check_kind(req, body)
                rv = new["metadata"].get("resourceVersion")
                if not rv and rt.custom:
                    raise invalid(rt, req.name, [FieldError(
                        "FieldValueInvalid", "metadata.resourceVersion",
                        "Invalid value: 0x0: must be specified for an update")])
            elif ctype == "application/json-patch+json":
                try:
                    new = json_patch(old, body)
                except ValueError as e:
                    raise ApiError(422, "Invalid", str(e))
                rv = new["metadata"].get("resourceVersion")
                if rv == old["metadata"]["resourceVersion"]:
                    rv = None
            elif is_apply:
                new, rv = self.apply_patch(req, old, self.check_kind(req, body), mgr, sub)
            elif ctype in ("application/merge-patch+json",
                           "application/strategic-merge-patch+json"):
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                rv = (body.get("metadata") or {}).get("resourceVersion")
                new = merge_patch(old, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt, req.name, "the object has been modified; please apply your "
                               "changes to the latest version and try again")
            new = self.check_kind(req, new)
            new["metadata"]["name"] = req.name
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if rt.status:
                keep = copy.deepcopy(old)
                if sub:
                    keep.pop("status", None)
                    if "status" in new:
                        keep["status"] = new["status"]
                else:
                    for k in list(keep):
                        if k not in ("status",):
                            keep.pop(k)
                    keep.update({k: v for k, v in new.items() if k != "status"})
                keep["metadata"]["managedFields"] = new["metadata"].get("managedFields", [])
                new = keep
            warnings = self.admit(req, new)
            if not is_apply:
                self.track_update(req, old, new, mgr, sub)
            updated = store.update(rt, old, new, dry_run=bool(req.q("dryRun")))
        self.send_json(200, self.out(req, updated), self.warn_headers(warnings))

    def track_update(self, req, old, new, mgr, sub):
        managers = read_managers(old)
        scope = True if sub else (False if req.rt.status else None)
        before, after = leaf_paths(old, scope), leaf_paths(new, scope)
        changed = {p for p in after if value_at(old, p) != value_at(new, p)}
        removed = before - after
        for k in managers:
            managers[k] -= changed | removed
        key = (mgr, "Update", sub)
        managers[key] = managers.get(key, set()) | changed
        write_managers(new, managers, req.rt.api_version(req.version))

    def apply_patch(self, req, old, applied, mgr, sub):
        """Server-side apply; returns (new object, resourceVersion precondition)."""
        rt = req.rt
        rv = applied["metadata"].pop("resourceVersion", None)
        for k in ("managedFields", "uid", "creationTimestamp", "generation"):
            applied["metadata"].pop(k, None)
        scope = True if sub else (False if rt.status else None)
        mine = leaf_paths(applied, scope)
        managers = read_managers(old)
        me = (mgr, "Apply", sub)
        conflicts = collections.defaultdict(list)
        for k, paths in managers.items():
            if k == me:
                continue
            for p in sorted(mine & paths):
                if value_at(old, p) != value_at(applied, p):
                    conflicts[k[0]].append(p)
        if conflicts and req.q("force") not in ("true", "1"):
            n = sum(len(v) for v in conflicts.values())
            lines = []
            for m, paths in sorted(conflicts.items()):
                for p in paths:
                    lines.append('conflict with "%s": .%s' % (m, ".".join(p)))
            msg = "Apply failed with %d conflict%s: %s" % (n, "" if n == 1 else "s",
                                                         "\n".join(lines))
            raise ApiError(409, "Conflict", msg, {"causes": [
                {"reason": "FieldManagerConflict", "message": 'conflict with "%s"' % m,
                 "field": "." + ".".join(p)} for m, paths in sorted(conflicts.items())
                for p in paths]})
        for k in managers:
            if k != me:
                managers[k] -= {p for ps in conflicts.values() for p in ps}
        new = copy.deepcopy(old)
        others = set().union(*[p for k, p in managers.items() if k != me]) if managers else set()
        for p in managers.get(me, set()) - mine:
            if p not in others:
                remove_at(new, p)
        new = apply_value(new, {k: v for k, v in applied.items()
                                if not (scope is False and k == "status")
                                and not (scope is True and k not in ("status", "apiVersion",
                                                                     "kind", "metadata"))})
        if scope is True:
            new["metadata"] = copy.deepcopy(old["metadata"])
        managers[me] = mine
        write_managers(new, managers, rt.api_version(req.version))
        return new, rv

    def apply_create(self, req, body, mgr):
        obj = self.check_kind(req, body)
        obj["metadata"]["name"] = req.name
        if obj["metadata"].pop("resourceVersion", None):
            raise not_found(req.rt, req.name)
        obj["metadata"].pop("managedFields", None)
        if req.rt.status:
            obj.pop("status", None)
        paths = leaf_paths(obj, False if req.rt.status else None)
        warnings = self.admit(req, obj)
        write_managers(obj, {(mgr, "Apply", ""): paths}, req.rt.api_version(req.version))
        created = self.store.create(req.rt, obj, dry_run=bool(req.q("dryRun")))
        self.send_json(201, self.out(req, created), self.warn_headers(warnings))

    def do_delete(self, req):
        if req.sub:
            raise ApiError(405, "MethodNotAllowed", "delete is not allowed on a subresource")
        opts = {}
        if self.body.strip():
            try:
                opts = json.loads(self.body)
            except ValueError:
                raise ApiError(400, "BadRequest", "the body of a DELETE must be DeleteOptions")
        policy = opts.get("propagationPolicy") or req.q("propagationPolicy")
        if opts.get("orphanDependents") is True:
            policy = "Orphan"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(422, "Invalid", "DeleteOptions.meta.k8s.io \"\" is invalid: "
                           "propagationPolicy: Unsupported value: %s" % _fmt(policy))
        dry = bool(opts.get("dryRun") or req.q("dryRun"))
        obj = self.store.delete(req.rt, req.ns, req.name, policy, opts.get("preconditions"),
                                dry_run=dry)
        self.send_json(200, self.out(req, obj))

    # ---- watches

    def do_watch(self, req):
        labels, fields = self.selectors(req)
        store, rt = self.store, req.rt
        rv_param = req.q("resourceVersion") or ""
        timeout = float(req.q("timeoutSeconds") or self.options.watch_timeout)
        bookmarks = req.q("allowWatchBookmarks") in ("true", "1")
        api_version = rt.api_version(req.version)

        def matches(o):
            return o is not None and (req.ns is None or
                                      o["metadata"].get("namespace", "") == req.ns) and \
                labels_match(labels, o["metadata"].get("labels")) and fields_match(fields, o)

        as_table = self.wants_table(req)
        first_table = [True]

        def typed(o):
            o = dict(o, apiVersion=api_version, kind=rt.kind)
            if as_table:
                # Like the real server: column definitions only in the first event.
                o = self.table(req, [o], {}, with_columns=first_table[0])
                first_table[0] = False
            return o

        with store.lock:
            initial = []
            if rv_param in ("", "0"):
                items, _ = store.list(rt, req.ns, labels, fields)
                initial = [{"type": "ADDED", "object": typed(o)} for o in items]
                cursor = store.rv
            else:
                try:
                    cursor = int(rv_param)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resource version %r" % rv_param)
                store.check_rv_available(cursor)
            seq = store.events_base + len(store.events)
            while seq > store.events_base and store.events[seq - 1 - store.events_base].rv > cursor:
                seq -= 1
            epoch, expire = store.watch_epoch, store.expire_epoch
            watch_id = object()
            store.live_watches[watch_id] = {"path": self.path,
                                            "user_agent": self.headers.get("User-Agent", "")}
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            self.end_headers()
            self.wfile.flush()
            self.write_events(initial)
            deadline = time.monotonic() + timeout
            interval = self.options.bookmark_interval
            next_bookmark = time.monotonic() + interval
            while True:
                out, end, abrupt = [], False, False
                with store.lock:
                    while (seq == store.events_base + len(store.events) and
                           store.watch_epoch == epoch and store.expire_epoch == expire and
                           not store.shutting_down):
                        wake = min(deadline, next_bookmark if bookmarks else deadline)
                        left = wake - time.monotonic()
                        if left <= 0 or self.client_gone():
                            break
                        # Wake at least every second to notice a client that went away.
                        store.cond.wait(min(left, 1.0))
                    if self.client_gone():
                        end, abrupt = True, True
                    elif store.watch_epoch != epoch or store.shutting_down:
                        end, abrupt = True, store.drop_abrupt
                    elif store.expire_epoch != expire or seq < store.events_base:
                        out.append({"type": "ERROR", "object": expired(
                            "The resourceVersion for the provided watch is too old.").status()})
                        end = True
                    else:
                        batch = store.events[seq - store.events_base:]
                        seq = store.events_base + len(store.events)
                        for ev in batch:
                            if ev.gk != rt.gk:
                                continue
                            now_in, was_in = matches(ev.obj), matches(ev.prev)
                            if ev.type == "DELETED":
                                if now_in or was_in:
                                    out.append({"type": "DELETED", "object": typed(ev.obj)})
                            elif now_in and was_in:
                                out.append({"type": "MODIFIED", "object": typed(ev.obj)})
                            elif now_in:
                                out.append({"type": "ADDED", "object": typed(ev.obj)})
                            elif was_in:
                                out.append({"type": "DELETED", "object": typed(ev.obj)})
                        if bookmarks and time.monotonic() >= next_bookmark:
                            out.append({"type": "BOOKMARK", "object": {
                                "kind": rt.kind, "apiVersion": api_version,
                                "metadata": {"resourceVersion": str(store.rv)}}})
                            next_bookmark = time.monotonic() + interval
                if abrupt:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.write_events(out)
                if end or time.monotonic() >= deadline:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            with store.lock:
                del store.live_watches[watch_id]

    def client_gone(self):
        """True once the client closed its side (a watch client sends nothing more)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def write_events(self, events):
        for ev in events:
            data = json.dumps(ev).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        if events:
            self.wfile.flush()


# --------------------------------------------------------------------------------------------
# Start-up.


def load_crd_dir(store, path):
    files = sorted(f for f in os.listdir(path) if f.endswith((".yaml", ".yml", ".json")))
    rt = store.by_gk[("apiextensions.k8s.io", "customresourcedefinitions")]
    for f in files:
        with open(os.path.join(path, f), encoding="utf-8") as fh:
            text = fh.read()
        docs = [json.loads(text)] if f.endswith(".json") else yaml_load_all(text)
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            doc = copy.deepcopy(doc)
            doc["metadata"].pop("namespace", None)
            doc["metadata"]["managedFields"] = [{
                "manager": "fake-apiserver", "operation": "Update",
                "apiVersion": "apiextensions.k8s.io/v1", "time": now_rfc3339(),
                "fieldsType": "FieldsV1", "fieldsV1": paths_to_fields(leaf_paths(doc, False))}]
            store.create(rt, doc)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake Kubernetes API server for tests.")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    ap.add_argument("--port-file", help="write the chosen port here once listening")
    ap.add_argument("--crd-dir", action="append", default=[],
                    help="load every CustomResourceDefinition in this folder (repeatable)")
    ap.add_argument("--bookmark-interval", type=float, default=1.0,
                    help="seconds between BOOKMARK events on watches that allow them")
    ap.add_argument("--watch-timeout", type=float, default=1800.0,
                    help="seconds a watch without timeoutSeconds stays open")
    ap.add_argument("--history", type=int, default=100000,
                    help="watch events kept; older resourceVersions become 410 Gone")
    ap.add_argument("--gc-delay", type=float, default=0.0,
                    help="seconds the garbage collector waits before each pass")
    ap.add_argument("--no-servicemonitor", action="store_true",
                    help="do not serve monitoring.coreos.com/v1 ServiceMonitor")
    ap.add_argument("--namespace", action="append", default=["default", "kube-system"],
                    help="namespaces that exist at start")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="log every request to stderr (also: TW_FAKE_APISERVER_VERBOSE=1)")
    opts = ap.parse_args(argv)
    opts.verbose = opts.verbose or bool(os.environ.get("TW_FAKE_APISERVER_VERBOSE"))

    store = Store(opts.history, not opts.no_servicemonitor)
    ns_rt = store.by_gk[("", "namespaces")]
    for ns in dict.fromkeys(opts.namespace):
        store.create(ns_rt, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    try:
        for d in opts.crd_dir:
            load_crd_dir(store, d)
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write("fake-apiserver: cannot load CRDs: %s\n" % e)
        return 2

    Handler.store, Handler.admin, Handler.options = store, Admin(), opts
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((opts.host, opts.port), Handler)
    port = server.server_address[1]
    threading.Thread(target=store.gc_loop, args=(opts.gc_delay,), daemon=True).start()
    if opts.port_file:
        tmp = opts.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("%d\n" % port)
        os.replace(tmp, opts.port_file)
    sys.stderr.write("fake-apiserver: listening on http://%s:%d\n" % (opts.host, port))
    sys.stderr.flush()

    def stop(*_):
        with store.lock:
            store.shutting_down = True
            store.cond.notify_all()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
