"""scripts/ is one package run from the repository's root: no module reaches another (or common)
through sys.path, and every command starts as `python -m scripts.<name>`."""
import re

import pytest

from conftest import ROOT, run_script

COMMANDS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py") if p.stem != "__init__")


def test_no_module_edits_sys_path():
    edits = [str(p.relative_to(ROOT)) for folder in ("scripts", "tests", "common")
             for p in sorted((ROOT / folder).rglob("*.py")) if re.search(r"sys\.path\.(insert|append)", p.read_text())]
    assert not edits, "sys.path edited in " + ", ".join(edits)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_runs_as_a_module(name):
    proc = run_script(name, "--help", timeout=120)
    if name == "envspec":  # not an argparse command: its usage line
        assert proc.returncode != 0 and "usage: python3 -m scripts.envspec python ENV" in proc.stdout, proc.stdout
    else:
        assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stdout
