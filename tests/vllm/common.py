"""What the vLLM connector tests share: the vLLM environment's interpreter, the environment a
child process needs to load libtwclient.so, and the real twd (tests/client/servers.py).

Stdlib only: the test drivers run under the system Python and start the vLLM environment's
interpreter (scripts/vllm-venv.sh) for what needs torch or vLLM. Exit status 77 (a skip for
ctest) with a message when that environment is not installed.
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TW_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE, "tests", "client"))
sys.path.insert(0, os.path.join(SOURCE, "client", "python"))

SKIP = 77


def vllm_python():
    """The vLLM environment's interpreter, or None when it is not installed."""
    if os.environ.get("TW_VLLM_PYTHON"):
        return os.environ["TW_VLLM_PYTHON"]
    r = subprocess.run([os.path.join(SOURCE, "scripts", "vllm-venv.sh"), "--no-install"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def require_vllm_python():
    py = vllm_python()
    if not py or not os.path.exists(py):
        print("SKIP: the vLLM environment is not installed (scripts/vllm-venv.sh installs "
              "it; scripts/bootstrap.sh runs that)")
        sys.exit(SKIP)
    return py


def child_env():
    """The environment of a process that loads libtwclient.so (sanitizer runtimes first
    when the library is instrumented, as ctest's own ENV says)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.join(SOURCE, "client", "python"), HERE] +
        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
