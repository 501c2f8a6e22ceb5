"""Reads environments.toml: the environments, their cache folders and which notebook runs where."""
import hashlib
import json
import os
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


def kernel_env(spec, name):
    threads = str(thread_count())
    env = {k: v.replace("{threads}", threads) for k, v in spec["threads"].items()}
    env.update(spec["env"][name].get("kernel_env", {}))
    return env


def env_hash(spec, name):
    """Changes whenever the environment's own section changes (not the kernel's env vars)."""
    section = dict(spec["env"][name])
    section.pop("frameworks", None)
    section.pop("kernel_env", None)
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
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "python":
        print(env_python(load_spec(), sys.argv[2]))
    else:
        sys.exit("usage: envspec.py python ENV")
