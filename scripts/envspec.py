"""Reads environments.toml: the environments, their cache folders and which notebook runs where."""
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILE = ROOT / "environments.toml"
KERNEL_PREFIX = "rosetta-"


def load_spec(path=SPEC_FILE):
    with open(path, "rb") as f:
        spec = tomllib.load(f)
    if "env" not in spec or "threads" not in spec:
        raise ValueError(f"{path}: needs [threads] and [env.*] sections")
    return spec


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


def kernel_env(spec, name):
    """The kernel's environment variables: [threads] and the environment's own kernel_env, with
    "{threads}" replaced by the thread count, "{cache}" by the folder beside the environments
    (compile caches that must outlive a clone) and "{openblas_coretype}" by openblas_coretype();
    a variable left empty is not set."""
    fill = {"{threads}": str(thread_count()), "{cache}": str(envs_root().parent),
            "{openblas_coretype}": openblas_coretype()}
    env = dict(spec["threads"], **spec["env"][name].get("kernel_env", {}))
    for key, value in list(env.items()):
        for placeholder, text in fill.items():
            value = value.replace(placeholder, text)
        env[key] = value
        if not value:
            del env[key]
    return env


CHILD = "ROSETTA_MEASURE_CHILD"


def is_child():
    """True inside a process started by run_json(): measure, print JSON, return."""
    return bool(os.environ.get(CHILD))


def run_json(script, args, env_name, python=None):
    """Run `python script args` (by default the interpreter of environment `env_name`) with that
    environment's kernel settings (threads as in every notebook) and CHILD set; return the JSON
    object its last line of output prints, and the thread count it ran with."""
    spec = load_spec()
    python = Path(python or env_python(spec, env_name))
    if not python.exists():
        raise FileNotFoundError("the %s environment is not built: python3 scripts/setup_env.py %s"
                                % (env_name, env_name))
    env = dict(os.environ, **kernel_env(spec, env_name))
    env[CHILD] = "1"
    out = subprocess.run([str(python), str(script)] + [str(a) for a in args], env=env,
                         stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    return json.loads(out.strip().splitlines()[-1]), int(env["ROSETTA_THREADS"])


def env_hash(spec, name):
    """Changes whenever the environment's own section changes (not the kernel's env vars)."""
    section = dict(spec["env"][name])
    for key in ("frameworks", "kernel_env", "notes"):
        section.pop(key, None)
    blob = json.dumps(section, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def env_dir(spec, name):
    return envs_root() / f"{name}-{env_hash(spec, name)}"


def env_python(spec, name):
    return env_dir(spec, name) / "bin" / "python"


def kernel_name(name):
    return KERNEL_PREFIX + name


def jupyter_path(spec):
    """JUPYTER_PATH entries under which each environment registered its kernel."""
    return [str(env_dir(spec, n) / "share" / "jupyter") for n in spec["env"]]


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
    # `python3 scripts/envspec.py python ENV`: the interpreter of a built environment (for make).
    if len(sys.argv) == 3 and sys.argv[1] == "python":
        print(env_python(load_spec(), sys.argv[2]))
    else:
        sys.exit("usage: envspec.py python ENV")
