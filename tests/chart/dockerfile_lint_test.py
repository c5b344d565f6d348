#!/usr/bin/python3
"""Structural checks of the container images' Dockerfiles (docker/*.Dockerfile).

No container engine runs where the tests run, so the images are not built here; this test
checks what can be checked without one:
  - multi-stage, every stage FROM debian:bookworm-slim (Debian 12) or an earlier stage;
  - the build stage runs scripts/bootstrap.sh and builds the release preset;
  - the runtime stage installs no compiler or -dev package, ends as a non-root USER and has
    an exec-form ENTRYPOINT;
  - no ADD at all (so no ADD of a URL or an auto-extracted archive), no curl/wget piped in;
  - every COPY source exists in the tree and is not excluded by .dockerignore, every
    COPY --from names an earlier stage, every --target names a CMake target of the tree;
  - the twd image carries twctl and tw-csi;
  - .dockerignore keeps build folders and .git out of the context;
  - docker/runtime-packages.sh maps a binary's libraries to Debian packages.
Exits 0 when all hold, 1 with the reason otherwise.
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys

SOURCE_DIR = os.environ.get(
    "TW_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BASE = "debian:bookworm-slim"
IMAGES = {
    "twd.Dockerfile": {"targets": {"twd", "twctl", "tw-csi"},
                       "binaries": {"twd", "twctl", "tw-csi"}},
    "operator.Dockerfile": {"targets": {"tw-operator"}, "binaries": {"tw-operator"}},
}


class Failure(Exception):
    pass


def instructions(path):
    """[(INSTRUCTION, argument text)] with comments dropped and continuations joined."""
    out, current = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not current and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if current and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                current += line[:-1] + " "
                continue
            current += line
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    if current:
        raise Failure("%s: ends inside a continued line" % path)
    return out


def dockerignore_patterns():
    path = os.path.join(SOURCE_DIR, ".dockerignore")
    if not os.path.exists(path):
        raise Failure(".dockerignore is missing at the repository root")
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def ignored(rel, patterns):
    result = False
    for p in patterns:
        negate = p.startswith("!")
        p = p.lstrip("!").rstrip("/")
        parts = rel.split("/")
        hit = any(fnmatch.fnmatch("/".join(parts[:i]), p.replace("**/", "*"))
                  for i in range(1, len(parts) + 1))
        if hit:
            result = not negate
    return result


def cmake_targets():
    targets = set()
    for root, dirs, files in os.walk(SOURCE_DIR):
        dirs[:] = [d for d in dirs if d not in (".git", "build") and not d.startswith(".")]
        if "CMakeLists.txt" in files:
            with open(os.path.join(root, "CMakeLists.txt")) as f:
                text = f.read()
            targets |= set(re.findall(r"add_executable\(\s*([A-Za-z0-9_.-]+)", text))
    return targets


def check(name, spec, patterns, targets):
    path = os.path.join(SOURCE_DIR, "docker", name)
    ins = instructions(path)
    stages, stage_lines = [], []
    for word, arg in ins:
        if word == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arg, re.I)
            if not m:
                raise Failure("%s: cannot read FROM %s" % (name, arg))
            image, alias = m.group(1), m.group(2)
            if image != BASE and image not in [s for s, _ in stages]:
                raise Failure("%s: FROM %s: every stage must start from %s (Debian 12)" %
                              (name, image, BASE))
            stages.append((alias, image))
            stage_lines.append([])
        elif not stages:
            if word != "ARG":
                raise Failure("%s: %s before the first FROM" % (name, word))
        else:
            stage_lines[-1].append((word, arg))
    if len(stages) < 2:
        raise Failure("%s: want a multi-stage build (a build and a runtime stage)" % name)
    build_text = " ".join(a for w, a in stage_lines[0] if w == "RUN")
    if "scripts/bootstrap.sh" not in build_text:
        raise Failure("%s: the build stage must install its toolchain with "
                      "scripts/bootstrap.sh" % name)
    if "--preset release" not in build_text:
        raise Failure("%s: the build stage must build the release preset" % name)
    named = set()
    for w, a in stage_lines[0]:
        for m in re.finditer(r"--target((?:\s+[A-Za-z0-9_.-]+)+)", a):
            named |= set(m.group(1).split())
    if named != spec["targets"]:
        raise Failure("%s: builds targets %s, want %s" % (name, sorted(named),
                                                          sorted(spec["targets"])))
    undefined = named - targets
    if undefined:
        raise Failure("%s: --target %s: no add_executable() of that name in the tree" %
                      (name, " ".join(sorted(undefined))))
    for i, lines in enumerate(stage_lines):
        earlier = {alias for alias, _ in stages[:i] if alias}
        for word, arg in lines:
            if word == "ADD":
                raise Failure("%s: ADD is not allowed (use COPY; never fetch URLs): ADD %s" %
                              (name, arg))
            if word == "RUN" and re.search(r"(curl|wget)\b[^|;&]*\|\s*(ba)?sh", arg):
                raise Failure("%s: RUN pipes a download into a shell: %s" % (name, arg))
            if word == "COPY":
                words = arg.split()
                from_stage = [w.split("=", 1)[1] for w in words if w.startswith("--from=")]
                paths = [w for w in words if not w.startswith("--")]
                if from_stage:
                    if from_stage[0] not in earlier:
                        raise Failure("%s: COPY --from=%s names no earlier stage" %
                                      (name, from_stage[0]))
                    continue
                for src in paths[:-1]:
                    if src == ".":
                        continue
                    if not os.path.exists(os.path.join(SOURCE_DIR, src)):
                        raise Failure("%s: COPY %s: no such path in the tree" % (name, src))
                    if ignored(src, patterns):
                        raise Failure("%s: COPY %s: excluded by .dockerignore" % (name, src))
    runtime = stage_lines[-1]
    runtime_text = " ".join(a for w, a in runtime if w == "RUN")
    for bad in ("build-essential", "cmake", "-dev", "clang", "g++", "bootstrap.sh"):
        if bad in runtime_text:
            raise Failure("%s: the runtime stage installs build tools (%s)" % (name, bad))
    users = [a for w, a in runtime if w == "USER"]
    if not users:
        raise Failure("%s: the runtime stage sets no USER (it would run as root)" % name)
    user = users[-1].split(":")[0]
    if user in ("root", "0") or not user:
        raise Failure("%s: the runtime stage runs as root (USER %s)" % (name, users[-1]))
    entry = [a for w, a in runtime if w == "ENTRYPOINT"]
    if not entry:
        raise Failure("%s: the runtime stage has no ENTRYPOINT" % name)
    try:
        argv = json.loads(entry[-1])
    except ValueError:
        raise Failure("%s: ENTRYPOINT must be in exec (JSON) form: %s" % (name, entry[-1]))
    copied = set()
    for w, a in runtime:
        if w == "COPY" and "--from=" in a:
            copied |= {os.path.basename(p) for p in a.split()[1:-1]}
    for binary in spec["binaries"]:
        if binary not in copied:
            raise Failure("%s: the runtime stage does not carry %s" % (name, binary))
    if os.path.basename(argv[0]) not in spec["binaries"]:
        raise Failure("%s: ENTRYPOINT %s is not one of the image's binaries" % (name, argv))
    print("ok: docker/%s: %d stages from %s, USER %s, ENTRYPOINT %s" %
          (name, len(stages), BASE, users[-1], argv[0]))


def check_runtime_packages():
    """docker/runtime-packages.sh maps a binary's shared libraries to Debian packages (the
    runtime stages install exactly those): try it on curl, which bootstrap.sh installs."""
    curl = shutil.which("curl")
    if curl is None or shutil.which("dpkg-query") is None:
        print("note: no curl or dpkg-query here: runtime-packages.sh not exercised")
        return
    script = os.path.join(SOURCE_DIR, "docker", "runtime-packages.sh")
    proc = subprocess.run(["bash", script, curl], capture_output=True, text=True, timeout=60)
    packages = proc.stdout.split()
    if proc.returncode != 0 or not {"libc6", "libcurl4"} <= set(packages):
        raise Failure("runtime-packages.sh %s: rc %d, packages %s, stderr %s" %
                      (curl, proc.returncode, packages, proc.stderr.strip()))
    if packages != sorted(set(packages)):
        raise Failure("runtime-packages.sh must print each package once, sorted: %s" % packages)
    print("ok: docker/runtime-packages.sh maps curl's libraries to %d packages" % len(packages))


def main():
    try:
        check_runtime_packages()
        patterns = dockerignore_patterns()
        for must in (".git", "build"):
            if not ignored(must, patterns):
                raise Failure(".dockerignore must exclude %s" % must)
        targets = cmake_targets()
        found = sorted(f for f in os.listdir(os.path.join(SOURCE_DIR, "docker"))
                       if f.endswith(".Dockerfile"))
        if found != sorted(IMAGES):
            raise Failure("docker/ holds %s, want %s" % (found, sorted(IMAGES)))
        for name, spec in sorted(IMAGES.items()):
            check(name, spec, patterns, targets)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    print("PASS: Dockerfiles (structure only: no container engine builds them here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
