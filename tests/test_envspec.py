"""The environment spec, the set-up script and the conda file agree, and built envs are sound."""
import copy
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from scripts import envspec
from scripts import setup_env
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
    for name in envspec.machine_envs(spec)[0]:
        kernel = json.loads((envspec.kernel_dir(spec, name) / "kernel.json").read_text())
        assert kernel["env"]["OMP_NUM_THREADS"] == threads
        assert kernel["env"]["ROSETTA_THREADS"] == threads
        assert kernel["env"]["OMP_WAIT_POLICY"] == "PASSIVE"
        assert kernel["argv"][0] == str(envspec.env_python(spec, name))


@pytest.mark.parametrize("name", envspec.machine_envs(envspec.load_spec())[0])
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
    proc = run_script("setup_env", "tools")
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


# --- GPU environments and installed interpreters ---------------------------------------------

H200 = {"name": "NVIDIA H200", "driver": "580.95.05", "memory": "143771 MiB", "compute_cap": "9.0"}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "driver": "580.95.05", "memory": "81920 MiB", "compute_cap": "8.0"}
T4 = {"name": "Tesla T4", "driver": "580.95.05", "memory": "15360 MiB", "compute_cap": "7.5"}
# Which GPU environment runs on which GPU, from the facts in environments.toml's comments.
RUNS_ON = {  # env: (H200 9.0, A100 8.0, T4 7.5)
    "torch-gpu": (True, True, True),      # sm_75-120 + PTX 12.0
    "jax-gpu": (True, True, True),        # sm_75-120 + PTX 12.0
    "tf-gpu": (True, True, True),         # sm_60-89 + PTX 9.0 (the H200 compiles the PTX)
    "mxnet-gpu": (False, True, True),     # sm_50-86, no PTX
    "chainer-gpu": (True, True, True),    # NVRTC for the GPU in use, up to 9.0
    "cntk-gpu": (False, False, True),     # CUDA 10.0: up to sm_75
    "caffe2-gpu": (False, False, True),   # torch 1.8.1 cu102: sm_37-70, no PTX
    "theano-gpu": (True, True, True),     # NVRTC 12.1, up to 9.0
}


def test_gpu_keys_stay_out_of_the_hash(spec):
    """A CPU environment's hash (its build folder) ignores the GPU keys, present or not."""
    changed = copy.deepcopy(spec)
    changed["env"]["mxnet"].update(gpu_of="modern", runs=["X"], cuda_arch={"sm": ["8.0"]}, min_driver="1")
    assert envspec.env_hash(changed, "mxnet") == envspec.env_hash(spec, "mxnet")
    changed["env"]["mxnet-gpu"]["packages"].append("six==1.16.0")
    assert envspec.env_hash(changed, "mxnet-gpu") != envspec.env_hash(spec, "mxnet-gpu")


def test_each_gpu_environment_covers_its_frameworks(spec):
    gpu_envs = {n for n, env in spec["env"].items() if "gpu_of" in env}
    assert gpu_envs == set(RUNS_ON)
    for prefix, (base, _) in envspec.framework_table(spec).items():
        on_gpu = envspec.framework_env(spec, prefix, "gpu")
        assert on_gpu in gpu_envs and spec["env"][on_gpu]["gpu_of"] == base, prefix
        assert envspec.framework_env(spec, prefix, "cpu") == base
        assert envspec.kernel_for(spec, prefix, "gpu") == "rosetta-" + on_gpu
    assert envspec.framework_env(spec, "Keras_TF", "gpu") == "tf-gpu"
    assert envspec.framework_env(spec, "Keras_JAX", "gpu") == "jax-gpu"


def test_spec_errors_name_the_file_and_section(spec):
    for change, message in [({"gpu_of": "nowhere"}, r"gpu_of = 'nowhere' is not a CPU environment"),
                            ({"runs": ["PyTorch"]}, r"runs PyTorch, which is not a framework of mxnet"),
                            ({"cuda_arch": None}, r"needs cuda_arch")]:
        broken = copy.deepcopy(spec)
        broken["env"]["mxnet-gpu"].update(change)
        if change.get("cuda_arch", 1) is None:
            del broken["env"]["mxnet-gpu"]["cuda_arch"]
        with pytest.raises(ValueError, match=r"environments\.toml: \[env\.mxnet-gpu\]: " + message):
            envspec.check_gpu_envs(broken)
    broken = copy.deepcopy(spec)
    broken["env"]["jax-gpu"]["runs"].append("PyTorch")
    with pytest.raises(ValueError, match=r"PyTorch already runs in GPU environment torch-gpu"):
        envspec.check_gpu_envs(broken)


def test_rosetta_device_chooses_the_environments(spec, monkeypatch):
    monkeypatch.setenv("ROSETTA_ENVS", "/nonexistent")  # no installed interpreters registered
    for setting, gpus, expected in [("cpu", [H200], "cpu"), ("gpu", [], "gpu"), ("auto", [H200], "gpu"),
                                    ("", [], "cpu"), ("GPU", [], "gpu")]:
        monkeypatch.setenv("ROSETTA_DEVICE", setting)
        assert envspec.device(gpus=gpus) == expected, setting
    monkeypatch.setenv("ROSETTA_DEVICE", "gpu")
    assert envspec.framework_env(spec, "MXNet") == "mxnet-gpu"
    assert envspec.kernel_for(spec, "PyTorch") == "rosetta-torch-gpu"
    chosen, skipped = envspec.machine_envs(spec, gpus=[H200])
    assert chosen == ["tools", "torch-gpu", "jax-gpu", "tf-gpu", "chainer-gpu", "theano-gpu"]
    assert set(skipped) == {"mxnet-gpu", "cntk-gpu", "caffe2-gpu"}
    assert envspec.machine_envs(spec, gpus=[T4], names=["modern", "caffe2"])[0] == \
        ["torch-gpu", "jax-gpu", "tf-gpu", "caffe2-gpu"]
    assert envspec.machine_envs(spec, gpus=[H200], names=["mxnet-gpu"]) == (["mxnet-gpu"], {})
    monkeypatch.setenv("ROSETTA_DEVICE", "cpu")
    assert envspec.framework_env(spec, "MXNet") == "mxnet"
    assert envspec.machine_envs(spec, gpus=[H200])[0] == [n for n in spec["env"] if "gpu_of" not in spec["env"][n]]
    monkeypatch.setenv("ROSETTA_DEVICE", "tpu")
    with pytest.raises(ValueError, match="ROSETTA_DEVICE='tpu': must be cpu, gpu or auto"):
        envspec.device()


@pytest.mark.parametrize("env_name", sorted(RUNS_ON))
def test_gpu_can_run_follows_the_compute_capability(spec, env_name):
    for gpu, expected in zip((H200, A100, T4), RUNS_ON[env_name]):
        ok, why = envspec.gpu_can_run(spec, env_name, gpu["compute_cap"], gpu["name"], gpu["driver"])
        assert ok == expected, (gpu["name"], why)
        assert why.startswith(env_name + ": ") and ("sm_%s (%s)" % (gpu["compute_cap"], gpu["name"])) in why


def test_gpu_can_run_says_why_not(spec, monkeypatch):
    assert envspec.gpu_can_run(spec, "mxnet-gpu", "9.0", "NVIDIA H200") == \
        (False, "mxnet-gpu: kernels sm_5.0-8.6, no PTX; this GPU is sm_9.0 (NVIDIA H200)")
    ok, why = envspec.gpu_can_run(spec, "torch-gpu", "9.0", "NVIDIA H200", "570.86.15")
    assert not ok and "needs NVIDIA driver 580.65.06 or newer" in why and "driver 570.86.15" in why
    assert envspec.gpu_can_run(spec, "tf-gpu", "9.0")[0]  # through its PTX
    assert envspec.gpu_can_run(spec, "mxnet", "9.0")[0]  # a CPU environment
    assert envspec.gpu_can_run(spec, "mxnet-gpu", "[N/A]")[0]  # unknown: tried
    rules = {"env": {"x": {"cuda_arch": {"sm": ["8.6"], "ptx": ["9.0"]}}}}
    assert [envspec.gpu_can_run(rules, "x", cc)[0] for cc in ("8.0", "8.6", "8.9", "9.0", "12.0")] == \
        [False, True, True, True, True]  # machine code only upwards within its major version
    monkeypatch.setenv("ROSETTA_ENVS", "/nonexistent")
    assert envspec.gpu_skip_reason(spec, "caffe2-gpu", [A100]).startswith("caffe2-gpu: kernels sm_3.7-7.0, no PTX")
    assert envspec.gpu_skip_reason(spec, "caffe2-gpu", [T4]) is None
    assert envspec.gpu_skip_reason(spec, "caffe2-gpu", []) is None


def test_an_installed_interpreter_is_used_on_any_device(spec, tmp_path, monkeypatch):
    """mxnet registered as an installed interpreter keeps MXNet there on a GPU; an installed
    mxnet-gpu is tried on an H200 (its cuda_arch describes the pinned build, not that one)."""
    monkeypatch.setenv("ROSETTA_ENVS", str(tmp_path))
    (tmp_path / "use-python.json").write_text(json.dumps({"mxnet": {"python": "/opt/py", "site": "/opt/site"}}))
    assert envspec.framework_env(spec, "MXNet", "gpu") == "mxnet"
    assert envspec.machine_envs(spec, "gpu", [H200], names=["mxnet"]) == (["mxnet"], {})
    assert envspec.env_python(spec, "mxnet") == envspec.Path("/opt/py")
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    path = envspec.kernel_env(spec, "mxnet-gpu")["LD_LIBRARY_PATH"]
    assert path.startswith(str(envspec.env_dir(spec, "mxnet-gpu") / "lib" / "python3.10" / "site-packages"))
    assert path.endswith("nvidia/nvtx/lib"), "no empty entry (the current folder) where none was inherited"
    (tmp_path / "use-python.json").write_text(json.dumps({"mxnet-gpu": {"python": "/opt/py", "site": "/opt/site"}}))
    assert envspec.gpu_skip_reason(spec, "mxnet-gpu", [H200]) is None
    assert envspec.machine_envs(spec, "gpu", [H200], names=["mxnet"]) == (["mxnet-gpu"], {})
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/nvidia/lib64")
    assert envspec.kernel_env(spec, "mxnet-gpu")["LD_LIBRARY_PATH"] == \
        "/opt/site/nvidia/cuda_runtime/lib:" + ":".join(
            "/opt/site/nvidia/%s/lib" % lib for lib in ("cuda_nvrtc", "cublas", "cufft", "curand", "cusolver",
                                                         "cusparse", "cudnn", "nccl", "nvtx")) + ":/usr/local/nvidia/lib64"


def stand_in_nvidia_smi(folder, script):
    folder.mkdir(exist_ok=True)
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)


def test_nvidia_gpus_reads_the_nvidia_smi_on_path(tmp_path, monkeypatch):
    from common import envinfo
    monkeypatch.setenv("PATH", "%s%s%s" % (tmp_path / "bin", os.pathsep, os.environ["PATH"]))
    stand_in_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA H200, 580.95.05, 143771 MiB, 9.0"\n'
                                          'echo "Tesla T4, 580.95.05, 15360 MiB, 7.5"\n')
    assert envinfo.nvidia_gpus() == [
        {"name": "NVIDIA H200", "driver": "580.95.05", "memory": "143771 MiB", "compute_cap": "9.0"},
        {"name": "Tesla T4", "driver": "580.95.05", "memory": "15360 MiB", "compute_cap": "7.5"}]
    # An nvidia-smi older than compute_cap refuses the field; the GPU is still listed.
    stand_in_nvidia_smi(tmp_path / "bin", 'case "$*" in *compute_cap*) echo \'Field "compute_cap" is not '
                                          'a valid field to query.\'; exit 2;; esac\n'
                                          'echo "Tesla V100-SXM2-16GB, 450.80.02, 16160 MiB"\n')
    assert envinfo.nvidia_gpus() == [{"name": "Tesla V100-SXM2-16GB", "driver": "450.80.02",
                                      "memory": "16160 MiB", "compute_cap": None}]
    stand_in_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA-SMI has failed because it could not communicate '
                                          'with the NVIDIA driver."; exit 9\n')
    assert envinfo.nvidia_gpus() == []
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert envinfo.nvidia_gpus() == []


def test_setup_chooses_by_the_gpu_it_sees(tmp_path, monkeypatch):
    """The set-up's choice follows the stand-in nvidia-smi: GPU environments, unrunnable ones skipped."""
    stand_in_nvidia_smi(tmp_path / "bin", 'echo "NVIDIA H200, 580.95.05, 143771 MiB, 9.0"\n')
    env = dict(os.environ, PATH="%s%s%s" % (tmp_path / "bin", os.pathsep, os.environ["PATH"]),
               ROSETTA_ENVS=str(tmp_path / "envs"))
    env.pop("ROSETTA_DEVICE", None)
    out = run_script("setup_env", "--list", env=env).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "used here" in rows["torch-gpu"] and "used here" in rows["tools"], out
    assert "skipped" in rows["mxnet-gpu"] and "used here" not in rows["modern"], out
    out = run_script("setup_env", "--list", "--device", "cpu", env=env).stdout
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert "used here" in rows["modern"] and "used here" not in rows["torch-gpu"], out


def test_use_python_registers_an_installed_interpreter(spec, tmp_path, monkeypatch):
    """The tools interpreter (papermill and ipykernel already in) stands in for a GPU image's."""
    from jupyter_client.kernelspec import KernelSpecManager
    monkeypatch.setenv("ROSETTA_ENVS", str(tmp_path / "envs"))
    monkeypatch.setenv("ROSETTA_DEVICE", "cpu")
    assert setup_env.main(["--use-python", "tools=" + sys.executable, "tools"]) == 0
    saved = json.loads((tmp_path / "envs" / "use-python.json").read_text())
    assert saved["tools"]["python"] == sys.executable
    assert envspec.env_python(spec, "tools") == envspec.Path(sys.executable)
    kdir = envspec.kernel_dir(spec, "tools")
    assert str(kdir).startswith(str(tmp_path / "envs" / "external"))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(envspec.jupyter_path(spec)))
    found = KernelSpecManager().get_kernel_spec("rosetta-tools")
    assert found.argv[0] == sys.executable and found.resource_dir == str(kdir)
    assert found.env["ROSETTA_ENV"] == "tools" and found.env["OMP_NUM_THREADS"] == str(envspec.thread_count())
    # Remembered: a later set-up checks the interpreter instead of building a virtualenv.
    assert setup_env.main(["tools"]) == 0
    assert not list((tmp_path / "envs").glob("tools-*"))
    # An interpreter without an environment's frameworks is refused, and not remembered.
    assert setup_env.main(["--use-python", "modern=" + sys.executable, "modern"]) == 1
    assert "modern" not in envspec.external_pythons()
    assert setup_env.main(["--forget-python", "tools"]) == 0  # alone, it builds nothing
    assert envspec.external_pythons() == {} and not kdir.exists()
    assert envspec.env_python(spec, "tools") == envspec.env_dir(spec, "tools") / "bin" / "python"


def test_use_python_without_kernel_tools_or_index_names_the_wheels(tmp_path, monkeypatch, capsys):
    """An interpreter lacking ipykernel and papermill whose pip reaches no index (air-gapped)."""
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", str(bare)], check=True)
    (tmp_path / "no-wheels").mkdir()
    for key, value in [("PIP_CONFIG_FILE", os.devnull), ("PIP_NO_INDEX", "1"),
                       ("PIP_FIND_LINKS", str(tmp_path / "no-wheels")),
                       ("ROSETTA_ENVS", str(tmp_path / "envs")), ("ROSETTA_DEVICE", "cpu")]:
        monkeypatch.setenv(key, value)
    assert setup_env.main(["--use-python", "tools=%s" % (bare / "bin" / "python"), "tools"]) == 1
    out = capsys.readouterr().out
    assert "lacks ipykernel papermill and pip could not install them" in out
    assert "pip download ipykernel papermill -d WHEELS" in out and "PIP_FIND_LINKS=WHEELS" in out
    assert envspec.external_pythons() == {}
