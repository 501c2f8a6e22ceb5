"""The environment spec, the set-up script and the conda file agree, and built envs are sound."""
import copy
import json
import subprocess
import time

import pytest
import yaml

import envspec
import setup_env
from conftest import ROOT, run_script


def test_environment_yml_matches_modern_spec(spec):
    conda = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = conda["dependencies"]
    assert "python=%s" % spec["env"]["modern"]["python"] in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert sorted(pip) == sorted(spec["env"]["modern"]["packages"])


def test_every_package_is_pinned(spec):
    for name, env in spec["env"].items():
        for pkg in env["packages"]:
            assert "==" in pkg, "%s: %s is not pinned" % (name, pkg)


def test_hash_follows_the_spec(spec):
    changed = copy.deepcopy(spec)
    assert envspec.env_hash(changed, "modern") == envspec.env_hash(spec, "modern")
    changed["env"]["modern"]["packages"].append("six==1.16.0")
    assert envspec.env_hash(changed, "modern") != envspec.env_hash(spec, "modern")
    assert envspec.env_hash(changed, "tools") == envspec.env_hash(spec, "tools")


def test_missing_interpreter_is_a_clear_error():
    with pytest.raises(setup_env.SetupError, match=r"Python 2\.5 not found.*pyenv install 2\.5"):
        setup_env.find_interpreter("2.5")


def test_thread_settings_reach_every_kernel(spec):
    threads = str(envspec.thread_count())
    for name in spec["env"]:
        kdir = envspec.env_dir(spec, name) / "share" / "jupyter" / "kernels" / envspec.kernel_name(name)
        kernel = json.loads((kdir / "kernel.json").read_text())
        assert kernel["env"]["OMP_NUM_THREADS"] == threads
        assert kernel["env"]["ROSETTA_THREADS"] == threads
        assert kernel["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
        assert kernel["argv"][0] == str(envspec.env_python(spec, name))


@pytest.mark.parametrize("name", list(envspec.load_spec()["env"]))
def test_common_imports_in_env(spec, name):
    py = envspec.env_python(spec, name)
    out = subprocess.run([str(py), "-c", "import common, sys; print(common.BATCHSIZE)"],
                         cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert out.stdout.strip().endswith("64"), out.stdout


def test_common_compiles_on_python36():
    try:
        py = setup_env.find_interpreter("3.6")
    except setup_env.SetupError as e:
        pytest.fail("Python 3.6 is needed to check common/: %s" % e)
    files = sorted(str(p) for p in (ROOT / "common").glob("*.py"))
    proc = subprocess.run([str(py), "-m", "py_compile"] + files, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert proc.returncode == 0, proc.stdout


def test_setup_is_idempotent_and_fast(spec):
    start = time.time()
    proc = run_script("setup_env.py", "tools")
    assert proc.returncode == 0, proc.stdout
    assert "tools: up to date" in proc.stdout
    assert time.time() - start < 60


def test_openblas_coretype_follows_the_cpu_flags(tmp_path, spec):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, expected in [("fpu sse2 avx2 fma avx512f avx512bw", "SkylakeX"),
                            ("fpu sse2 avx avx2 fma", "Haswell"), ("fpu sse2 sse4_2", "")]:
        cpuinfo.write_text("processor\t: 0\nflags\t\t: %s\n" % flags)
        assert envspec.openblas_coretype(str(cpuinfo)) == expected
    assert envspec.openblas_coretype(str(tmp_path / "missing")) == ""
    env = envspec.kernel_env(spec, "tools")
    assert env.get("OPENBLAS_CORETYPE", "") == envspec.openblas_coretype(), "an empty value is not set"
