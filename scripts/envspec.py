"""Reads environments.toml: the environments, their cache folders and which notebook runs where."""
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "environments.toml"
KERNEL_PREFIX = "rosetta-"
DEVICES = ("cpu", "gpu")
# Keys that describe a GPU environment rather than build it: left out of its hash.
GPU_KEYS = ("gpu_of", "runs", "cuda_arch", "min_driver")
# Interpreters registered with `setup_env.py --use-python ENV=PATH`, in envs_root().
EXTERNAL_FILE = "use-python.json"


def load_spec(path=SPEC_FILE):
    with open(path, "rb") as f:
        spec = tomllib.load(f)
    if "env" not in spec or "threads" not in spec:
        raise ValueError(f"{path}: needs [threads] and [env.*] sections")
    check_gpu_envs(spec, path)
    return spec


def check_gpu_envs(spec, path=SPEC_FILE):
    """Each GPU environment stands in for a CPU one, for some of its frameworks, each framework
    in at most one GPU environment; raise ValueError naming the file and the section otherwise."""
    taken = {}
    for name, env in spec["env"].items():
        if "gpu_of" not in env:
            continue
        where = f"{path}: [env.{name}]"
        base = spec["env"].get(env["gpu_of"])
        if base is None or "gpu_of" in base:
            raise ValueError(f"{where}: gpu_of = {env['gpu_of']!r} is not a CPU environment")
        if "frameworks" in env:
            raise ValueError(f"{where}: a GPU environment runs its CPU environment's frameworks "
                             "(choose some with `runs`), it has no `frameworks`")
        if "cuda_arch" not in env:
            raise ValueError(f"{where}: needs cuda_arch (the compute capabilities of its kernels)")
        for prefix in gpu_frameworks(spec, name):
            if prefix not in base.get("frameworks", {}):
                raise ValueError(f"{where}: runs {prefix}, which is not a framework of {env['gpu_of']}")
            if prefix in taken:
                raise ValueError(f"{where}: {prefix} already runs in GPU environment {taken[prefix]}")
            taken[prefix] = name


def gpu_frameworks(spec, name):
    """The notebook prefixes a GPU environment runs: `runs`, or all of its CPU environment's."""
    env = spec["env"][name]
    return list(env.get("runs") or spec["env"][env["gpu_of"]].get("frameworks", {}))


def gpu_envs_of(spec, base, external=None):
    """The GPU environments standing in for CPU environment `base`. Where `base` is an installed
    interpreter (`external`, by default external_pythons()), only those that are one too: the
    interpreter chosen for a framework is used on any device."""
    external = external_pythons() if external is None else external
    gpu_envs = [n for n, env in spec["env"].items() if env.get("gpu_of") == base]
    return [n for n in gpu_envs if n in external] if base in external else gpu_envs


def envs_root():
    """Where environments are built: outside the clone, shared by every clone on the machine."""
    default = Path.home() / ".cache" / "dl-rosetta" / "envs"
    return Path(os.environ.get("ROSETTA_ENVS", default)).expanduser()


def thread_count():
    if os.environ.get("ROSETTA_THREADS"):
        return int(os.environ["ROSETTA_THREADS"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def openblas_coretype(cpuinfo="/proc/cpuinfo"):
    """The OpenBLAS kernel family this CPU's instructions allow, or "" when unknown.

    OpenBLAS picks its kernels from the CPU's model number; on a virtual CPU that names no model
    ("Intel(R) Xeon(R) Processor") it falls back to generic code: a float32 matmul ran 4.4x
    slower here. Chosen from the instruction flags on the machine that registers the kernel."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    if "avx512f" in flags and "avx512bw" in flags:
        return "SkylakeX"
    if "avx2" in flags and "fma" in flags:
        return "Haswell"
    return ""


def kernel_env(spec, name, threads=None):
    """The kernel's environment variables: [threads] and the environment's own kernel_env, with
    "{threads}" replaced by `threads` (default: thread_count()), "{cache}" by the folder beside the environments
    (compile caches that must outlive a clone), "{openblas_coretype}" by openblas_coretype(),
    "{site}" by the environment's site-packages and "{ld_library_path}" by the LD_LIBRARY_PATH
    the set-up runs with (a search path loses its empty entries); a variable left empty is not set."""
    fill = {"{threads}": str(threads or thread_count()), "{cache}": str(envs_root().parent),
            "{openblas_coretype}": openblas_coretype(), "{site}": str(site_packages(spec, name)),
            "{ld_library_path}": os.environ.get("LD_LIBRARY_PATH", "")}
    env = dict(spec["threads"], **spec["env"][name].get("kernel_env", {}))
    for key, value in list(env.items()):
        inherits = "{ld_library_path}" in value
        for placeholder, text in fill.items():
            value = value.replace(placeholder, text)
        if inherits:
            value = os.pathsep.join(p for p in value.split(os.pathsep) if p)
        env[key] = value
        if not value:
            del env[key]
    return env


def thread_keys(spec, name):
    """The kernel variables that carry the thread count ("{threads}" in their setting)."""
    env = dict(spec["threads"], **spec["env"][name].get("kernel_env", {}))
    return sorted(key for key, value in env.items() if "{threads}" in value)


CHILD = "ROSETTA_MEASURE_CHILD"


def is_child():
    """True inside a process started by run_json(): measure, print JSON, return."""
    return bool(os.environ.get(CHILD))


def run_json(module, args, env_name, python=None):
    """Run `python -m module args` in the repository's root (by default the interpreter of
    environment `env_name`) with that environment's kernel settings (threads as in every notebook)
    and CHILD set; return the JSON object its last line of output prints, and the thread count it
    ran with."""
    spec = load_spec()
    python = Path(python or env_python(spec, env_name))
    if not python.exists():
        raise FileNotFoundError("the %s environment is not built: python3 -m scripts.setup_env %s"
                                % (env_name, env_name))
    env = dict(os.environ, **kernel_env(spec, env_name))
    env[CHILD] = "1"
    out = subprocess.run([str(python), "-m", module] + [str(a) for a in args], env=env, cwd=str(ROOT),
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1]), int(env["ROSETTA_THREADS"])


def env_hash(spec, name):
    """Changes whenever the environment's own section changes (not the kernel's env vars, nor
    the keys that say where a GPU environment runs)."""
    section = dict(spec["env"][name])
    for key in ("frameworks", "kernel_env", "notes") + GPU_KEYS:
        section.pop(key, None)
    blob = json.dumps(section, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def env_dir(spec, name):
    return envs_root() / f"{name}-{env_hash(spec, name)}"


def external_pythons():
    """{env: {"python": path, "site": site-packages}}: the environments that are an installed
    interpreter (`setup_env.py --use-python ENV=PATH`) instead of a virtualenv built here."""
    path = envs_root() / EXTERNAL_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); delete it and register the interpreters again")


def env_python(spec, name):
    external = external_pythons().get(name)
    return Path(external["python"]) if external else env_dir(spec, name) / "bin" / "python"


def site_packages(spec, name):
    external = external_pythons().get(name)
    if external:
        return Path(external["site"])
    return env_dir(spec, name) / "lib" / f"python{spec['env'][name]['python']}" / "site-packages"


def kernel_name(name):
    return KERNEL_PREFIX + name


def kernel_prefix(spec, name):
    """The prefix whose share/jupyter/kernels holds the environment's kernel: its virtualenv, or
    a folder beside the environments for an installed interpreter (left untouched)."""
    if name in external_pythons():
        return envs_root() / "external" / name
    return env_dir(spec, name)


def kernel_dir(spec, name):
    return kernel_prefix(spec, name) / "share" / "jupyter" / "kernels" / kernel_name(name)


def jupyter_path(spec):
    """JUPYTER_PATH entries under which each environment registered its kernel."""
    return [str(kernel_prefix(spec, n) / "share" / "jupyter") for n in spec["env"]]


def visible_gpus():
    """common/envinfo.nvidia_gpus(), loaded by path: common/__init__ imports numpy, which the
    set-up's interpreter may lack."""
    loader = importlib.util.spec_from_file_location("rosetta_envinfo", ROOT / "common" / "envinfo.py")
    envinfo = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(envinfo)
    return envinfo.nvidia_gpus()


def device(choice=None, gpus=None):
    """"gpu" or "cpu": `choice` (by default ROSETTA_DEVICE) when it is one of them, otherwise
    ("auto" or unset) "gpu" where nvidia-smi lists a GPU (`gpus`, by default visible_gpus())."""
    if choice is None:
        choice = os.environ.get("ROSETTA_DEVICE", "")
    choice = choice.strip().lower() or "auto"
    if choice in DEVICES:
        return choice
    if choice != "auto":
        raise ValueError(f"ROSETTA_DEVICE={choice!r}: must be cpu, gpu or auto")
    return "gpu" if (visible_gpus() if gpus is None else gpus) else "cpu"


def framework_env(spec, prefix, device_name=None):
    """The environment notebook prefix `prefix` runs in on `device_name` (by default device()):
    on a GPU, the GPU environment that runs it where there is one (gpu_envs_of: not where its
    CPU environment is an installed interpreter); else its CPU environment."""
    table = framework_table(spec)
    if prefix not in table:
        raise ValueError(f"{SPEC_FILE}: no environment runs {prefix}")
    base = table[prefix][0]
    if (device_name or device()) == "gpu":
        for name in gpu_envs_of(spec, base):
            if prefix in gpu_frameworks(spec, name):
                return name
    return base


def kernel_for(spec, prefix, device_name=None):
    """The Jupyter kernel notebook prefix `prefix` runs with on `device_name` (default device())."""
    return kernel_name(framework_env(spec, prefix, device_name))


def _numbers(text):
    """"8.6" -> (8, 6), "580.65.06" -> (580, 65, 6); None for "[N/A]", "" or None."""
    try:
        return tuple(int(part) for part in str(text).strip().split("."))
    except ValueError:
        return None


def gpu_can_run(spec, env_name, compute_cap, gpu_name="", driver=None):
    """(True, why) where environment `env_name`'s kernels run on a GPU of compute capability
    `compute_cap` ("9.0") and driver `driver`, else (False, why not). Runnable: machine code for
    the same major version and a minor version up to the GPU's, or PTX of a version up to the
    GPU's (compiled for it at start-up). An environment without cuda_arch runs on the CPU."""
    env = spec["env"][env_name]
    arch = env.get("cuda_arch")
    if arch is None:
        return True, f"{env_name}: no CUDA kernels, runs on the CPU"
    this_gpu = f"this GPU is sm_{compute_cap}" + (f" ({gpu_name})" if gpu_name else "")
    needed, have = _numbers(env.get("min_driver")), _numbers(driver)
    if needed and have and have < needed:
        return False, f"{env_name}: needs NVIDIA driver {env['min_driver']} or newer; {this_gpu} with driver {driver}"
    cc = _numbers(compute_cap)
    if cc is None or len(cc) != 2:
        return True, f"{env_name}: compute capability {compute_cap!r} unknown (nvidia-smi too old?), trying"
    sm = sorted(_numbers(v) for v in arch.get("sm", []))
    ptx = sorted(_numbers(v) for v in arch.get("ptx", []))
    for v in sm:
        if v[0] == cc[0] and v[1] <= cc[1]:
            return True, f"{env_name}: machine code for sm_{v[0]}.{v[1]}; {this_gpu}"
    for v in ptx:
        if v <= cc:
            return True, f"{env_name}: PTX {v[0]}.{v[1]}, compiled for the GPU at start-up; {this_gpu}"
    kernels = (f"sm_{sm[0][0]}.{sm[0][1]}-{sm[-1][0]}.{sm[-1][1]}" if sm else "no machine code") + ", " + \
        (("PTX " + ", ".join(f"{a}.{b}" for a, b in ptx)) if ptx else "no PTX")
    return False, f"{env_name}: kernels {kernels}; {this_gpu}"


def gpu_skip_reason(spec, env_name, gpus=None, external=None):
    """Why environment `env_name` cannot run on this machine's first GPU (`gpus`, by default
    visible_gpus()), or None where it can, has no CUDA kernels, no GPU is visible, or it is an
    installed interpreter (`external`, by default external_pythons()): that one is not the
    build cuda_arch describes, so it is tried."""
    gpus = visible_gpus() if gpus is None else gpus
    external = external_pythons() if external is None else external
    if not gpus or "cuda_arch" not in spec["env"][env_name] or env_name in external:
        return None
    gpu = gpus[0]
    ok, why = gpu_can_run(spec, env_name, gpu.get("compute_cap"), gpu.get("name", ""), gpu.get("driver"))
    return None if ok else why


def machine_envs(spec, device_name=None, gpus=None, names=None, external=None):
    """([env], {GPU env: why skipped}): the environments this machine uses, in file order. On a
    CPU, the CPU environments; on a GPU, each CPU environment's GPU environments (gpu_envs_of)
    that its GPU can run (the others skipped, with the reason) and the CPU environment itself
    where some of its frameworks have no GPU environment (tools). `names` limits this to the
    environments named (a CPU environment's name stands for its GPU environments on a GPU).
    `external`: the installed interpreters, by default external_pythons()."""
    device_name = device_name or device(gpus=gpus)
    if device_name == "gpu" and gpus is None:
        gpus = visible_gpus()
    external = external_pythons() if external is None else external
    chosen, skipped = [], {}
    for base, env in spec["env"].items():
        if "gpu_of" in env:
            continue
        gpu_envs = gpu_envs_of(spec, base, external) if device_name == "gpu" else []
        covered = {p for g in gpu_envs for p in gpu_frameworks(spec, g)}
        wanted = names is None or base in names
        if wanted and (not gpu_envs or covered != set(env.get("frameworks", {}))):
            chosen.append(base)
        for g in gpu_envs:
            why = wanted and gpu_skip_reason(spec, g, gpus, external)
            if why:
                skipped[g] = why
            elif wanted:
                chosen.append(g)
    for n in names or ():  # a GPU environment named itself is built as asked, whatever the device
        if "gpu_of" in spec["env"].get(n, {}) and n not in chosen:
            chosen.append(n)
            skipped.pop(n, None)
    return chosen, skipped


def framework_notes(spec):
    """{README row name: note} from the environments' `notes` (what a row's reader must know)."""
    table = framework_table(spec)
    notes = {}
    for name, env in spec["env"].items():
        for prefix, note in env.get("notes", {}).items():
            if prefix not in table:
                raise ValueError("note for %s, which is not a framework of any environment" % prefix)
            notes[table[prefix][1]] = note
    return notes


def framework_table(spec):
    """{notebook prefix: (env name, README row name)} for every framework in the spec."""
    table = {}
    for name, env in spec["env"].items():
        for prefix, row in env.get("frameworks", {}).items():
            if prefix in table:
                raise ValueError(f"framework {prefix} is listed in two environments")
            table[prefix] = (name, row)
    return table


if __name__ == "__main__":
    # `python3 -m scripts.envspec python ENV`: the interpreter of an environment (for make).
    if len(sys.argv) == 3 and sys.argv[1] == "python":
        print(env_python(load_spec(), sys.argv[2]))
    else:
        sys.exit("usage: python3 -m scripts.envspec python ENV")
