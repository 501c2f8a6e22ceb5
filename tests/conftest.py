import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import envspec  # noqa: E402


@pytest.fixture(scope="session")
def spec():
    return envspec.load_spec()


def run_script(script, *args, timeout=3600):
    """Run one of scripts/ with this interpreter; return the CompletedProcess (text output)."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script)] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def read_json(path):
    with open(path) as f:
        return json.load(f)
