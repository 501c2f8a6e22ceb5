#!/usr/bin/env python3
"""Build the environments of environments.toml and register their Jupyter kernels.

    python3 -m scripts.setup_env [ENV ...]       # default: every environment this machine uses
    python3 -m scripts.setup_env --device gpu    # the GPU environments (default: auto-detected)
    python3 -m scripts.setup_env --use-python torch-gpu=/usr/bin/python3   # an installed interpreter
    python3 -m scripts.setup_env --list

Where nvidia-smi lists a GPU (or with --device gpu, or ROSETTA_DEVICE=gpu), each CPU environment is
replaced by its GPU environments (those whose kernels this GPU can run) and a CPU environment's
name on the command line stands for them. --use-python ENV=PATH makes an existing interpreter
environment ENV, remembered for later runs (--forget-python ENV undoes it).

Idempotent: an environment whose marker matches its spec hash and whose import check passes is
reused in seconds; a changed spec gets a new folder, a broken one is rebuilt from scratch.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from scripts import envspec

MARKER = ".rosetta-ok"


class SetupError(RuntimeError):
    pass


def say(msg):
    print(msg, flush=True)


def run(cmd, what, env=None):
    """Run a command, printing a heartbeat while it works; raise with its output on failure."""
    start = time.time()
    done = threading.Event()

    def heartbeat():
        while not done.wait(20):
            say(f"      ... {what}: {time.time() - start:.0f}s")

    t = threading.Thread(target=heartbeat, daemon=True)
    t.start()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, shell=isinstance(cmd, str))
    finally:
        done.set()
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise SetupError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def find_interpreter(version):
    """The newest X.Y.* interpreter from pyenv, PATH or uv; a clear error when there is none."""
    candidates = []
    pyenv_root = os.environ.get("PYENV_ROOT") or (shutil.which("pyenv") and subprocess.run(
        ["pyenv", "root"], stdout=subprocess.PIPE, text=True).stdout.strip())
    if pyenv_root:
        versions = sorted(Path(pyenv_root, "versions").glob(f"{version}.*"),
                          key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()])
        candidates += [p / "bin" / "python" for p in reversed(versions)]
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    if shutil.which("uv"):
        out = subprocess.run(["uv", "python", "find", version], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout.strip()
        if out:
            candidates.append(Path(out))
    for c in candidates:
        if c.exists():
            probe = subprocess.run([str(c), "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            if probe.returncode == 0 and probe.stdout.strip() == version:
                return c
    raise SetupError(
        f"Python {version} not found (looked in pyenv, python{version} on PATH, `uv python find`). "
        f"Install it, e.g. `pyenv install {version}` or `uv python install {version}`, then re-run.")


def ensure_debian(packages):
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True).stdout.strip() != "install ok installed"]
    if not missing:
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    say(f"    installing Debian packages: {' '.join(missing)}")
    run(sudo + ["apt-get", "update", "-q"], "apt-get update")
    run(sudo + ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
        "apt-get install", env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def import_ok(spec, name):
    py = envspec.env_python(spec, name)
    if not py.exists():
        return False
    env = dict(os.environ, **envspec.kernel_env(spec, name))
    proc = subprocess.run([str(py), "-c", spec["env"][name]["import_check"]],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    return proc.returncode == 0


def register_kernel(spec, name):
    """Write the kernel spec (inside the environment, or beside the environments for an installed
    interpreter) and put the thread settings in its env."""
    py = str(envspec.env_python(spec, name))
    kname = envspec.kernel_name(name)
    kdir = envspec.kernel_dir(spec, name)
    external = name in envspec.external_pythons()
    if external:  # written here, so that nothing is added to the interpreter but ipykernel
        kdir.mkdir(parents=True, exist_ok=True)
        kernel = {"argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                  "display_name": f"Python ({kname})", "language": "python"}
    else:
        if not (kdir / "kernel.json").exists():
            run([py, "-m", "ipykernel", "install", "--prefix", str(envspec.env_dir(spec, name)),
                 "--name", kname, "--display-name", f"Python ({kname})"], "ipykernel install")
        kernel = json.loads((kdir / "kernel.json").read_text())
    kernel["env"] = envspec.kernel_env(spec, name)
    kernel["env"]["ROSETTA_ENV"] = name
    (kdir / "kernel.json").write_text(json.dumps(kernel, indent=1))
    if not external:
        # Lets a notebook opened by hand in this kernel import the repository's common/.
        site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "site path").strip()
        Path(site, "rosetta_repo.pth").write_text(str(envspec.ROOT) + "\n")


KERNEL_TOOLS = ("ipykernel", "papermill")
PROBE = """import json, os, sys, sysconfig, importlib.util as u
site = sysconfig.get_paths()["purelib"]
print(json.dumps({"version": "%d.%d" % sys.version_info[:2], "site": site,
                  "writable": os.access(site, os.W_OK),
                  "missing": [m for m in TOOLS if u.find_spec(m) is None]}))""".replace("TOOLS", repr(KERNEL_TOOLS))


def save_external(entries):
    path = envspec.envs_root() / envspec.EXTERNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")


def use_python(spec, name, python, step):
    """Make the installed interpreter `python` environment `name`: add ipykernel and papermill
    if they are missing (nothing else), run `name`'s import check there, register its kernel and
    remember the choice in the environments' folder. Raise SetupError saying what failed."""
    py = Path(shutil.which(python) if os.sep not in python and shutil.which(python) else python)
    py = py.expanduser().absolute()  # not resolved: a virtualenv's python is a link out of it
    if not (py.is_file() and os.access(py, os.X_OK)):
        raise SetupError(f"{name}: --use-python {python}: no executable interpreter there")
    step(f"{name}: using the installed interpreter {py}")
    proc = subprocess.run([str(py), "-c", PROBE], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SetupError(f"{name}: {py} does not run Python 3 code:\n{proc.stdout[-2000:]}")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    if facts["missing"]:
        missing = " ".join(facts["missing"])
        step(f"{name}: installing {missing} into {py}")
        where = [] if facts["writable"] else ["--user"]
        install = subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
                                 + where + facts["missing"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        if install.returncode != 0:
            tail = "\n".join(install.stdout.splitlines()[-15:])
            raise SetupError(
                f"{name}: {py} lacks {missing} and pip could not install them:\n{tail}\n"
                f"Without internet, bring their wheels: on a machine with internet run "
                f"`pip download {missing} -d WHEELS --only-binary :all: --python-version {facts['version']}`, "
                f"copy WHEELS here and re-run with PIP_NO_INDEX=1 PIP_FIND_LINKS=WHEELS. Where the "
                f"interpreter cannot be written to, make a venv on it first: `{py} -m venv "
                f"--system-site-packages DIR`, then --use-python {name}=DIR/bin/python.")
    entries = envspec.external_pythons()
    previous = entries.get(name)
    entries[name] = {"python": str(py), "site": facts["site"]}
    save_external(entries)  # kernel_env's {site} and env_python read it
    step(f"{name}: import check")
    env = dict(os.environ, **envspec.kernel_env(spec, name))
    check = subprocess.run([str(py), "-c", spec["env"][name]["import_check"]], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env=env)
    if check.returncode != 0:
        if previous:
            entries[name] = previous
        else:
            entries.pop(name)
        save_external(entries)
        raise SetupError(f"{name}: import check failed in {py} (it needs what [env.{name}] in "
                         f"environments.toml installs):\n{check.stdout[-3000:]}")
    register_kernel(spec, name)
    step(f"{name}: up to date (installed interpreter {py})")


def forget_python(spec, name, step):
    entries = envspec.external_pythons()
    if entries.pop(name, None) is None:
        raise SetupError(f"{name}: no installed interpreter registered for it")
    shutil.rmtree(envspec.envs_root() / "external" / name, ignore_errors=True)
    save_external(entries)
    step(f"{name}: installed interpreter forgotten; it is built as a virtualenv from now on")


def build(spec, name, step):
    external = envspec.external_pythons().get(name)
    if external:  # registered with --use-python: check it again instead of building
        use_python(spec, name, external["python"], step)
        return
    section = spec["env"][name]
    venv = envspec.env_dir(spec, name)
    if (venv / MARKER).exists() and (venv / MARKER).read_text().strip() == envspec.env_hash(spec, name):
        if import_ok(spec, name):
            register_kernel(spec, name)
            step(f"{name}: up to date ({venv})")
            return
        step(f"{name}: import check failed, rebuilding")
    interpreter = find_interpreter(section["python"])
    ensure_debian(section.get("debian", []))
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    step(f"{name}: creating virtualenv with {interpreter}")
    run([str(interpreter), "-m", "venv", str(venv)], "venv")
    py = str(venv / "bin" / "python")
    # Python 3.6's first pip reads PIP_NO_CACHE_DIR=1 as a folder name and crashes: pass the flag.
    pip_env = dict(os.environ)
    no_cache = pip_env.pop("PIP_NO_CACHE_DIR", None) is not None
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"] + (["--no-cache-dir"] if no_cache else [])
    for group in section.get("bootstrap", []):
        step(f"{name}: bootstrap {' '.join(group)}")
        run(pip + group, f"{name} bootstrap", env=pip_env)
    step(f"{name}: installing {len(section['packages'])} pinned packages")
    run(pip + section.get("pip_flags", []) + section["packages"], f"{name} packages", env=pip_env)
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "site path").strip()
    for cmd in section.get("post_install", []):
        step(f"{name}: post-install: {cmd}")
        run(cmd, f"{name} post-install", env=dict(os.environ, VENV=str(venv), PY=py, SITE=site))
    register_kernel(spec, name)
    step(f"{name}: import check")
    if not import_ok(spec, name):
        env = dict(os.environ, **envspec.kernel_env(spec, name))
        out = subprocess.run([py, "-c", section["import_check"]], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env).stdout
        raise SetupError(f"{name}: import check failed after install:\n{out[-3000:]}")
    (venv / MARKER).write_text(envspec.env_hash(spec, name) + "\n")
    prune_superseded(venv, name, step)


def prune_superseded(venv, name, step):
    """Delete this environment's builds from older specs (several GB each)."""
    for old in venv.parent.glob(f"{name}-*"):
        if old != venv and len(old.name) == len(venv.name) and old.is_dir():
            step(f"{name}: removing superseded build {old.name}")
            shutil.rmtree(old, ignore_errors=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("envs", nargs="*", help="environments to build (default: all this machine uses)")
    ap.add_argument("--list", action="store_true", help="print environments and their folders")
    ap.add_argument("--device", choices=("auto",) + envspec.DEVICES,
                    help="build the CPU or the GPU environments (default: ROSETTA_DEVICE, else auto: "
                         "the GPU ones where nvidia-smi lists a GPU)")
    ap.add_argument("--use-python", action="append", default=[], metavar="ENV=PATH",
                    help="use the installed interpreter PATH as environment ENV (repeatable; remembered)")
    ap.add_argument("--forget-python", action="append", default=[], metavar="ENV",
                    help="stop using the installed interpreter registered for ENV (alone: only that)")
    args = ap.parse_args(argv)
    spec = envspec.load_spec()
    use = dict(pair.split("=", 1) for pair in args.use_python if "=" in pair)
    if len(use) != len(args.use_python) or not all(use.values()):
        ap.error("--use-python takes ENV=PATH")
    unknown = [n for n in args.envs + list(use) + args.forget_python if n not in spec["env"]]
    if unknown:
        ap.error(f"unknown environment(s) {unknown}; known: {list(spec['env'])}")
    device = envspec.device(args.device)
    external = {n: e for n, e in envspec.external_pythons().items() if n not in args.forget_python}
    external.update({n: {"python": path} for n, path in use.items()})  # what this run will register
    names, skipped = envspec.machine_envs(spec, device, names=args.envs or None, external=external)
    names += [n for n in use if n not in names]
    if args.list:
        external = envspec.external_pythons()
        for n in (args.envs and names) or spec["env"]:
            if n in external:
                state, where = "installed", external[n]["python"]
            else:
                state = "built" if (envspec.env_dir(spec, n) / MARKER).exists() else "not built"
                where = envspec.env_dir(spec, n)
            role = "used here" if n in names else ("skipped" if n in skipped else "")
            say(f"{n:12s} python {spec['env'][n]['python']:5s} {state:10s} {role:10s} {where}")
        return 0
    t0 = time.time()
    failed = []
    only_forget = args.forget_python and not (args.envs or use)
    steps = [("forget", n) for n in args.forget_python] + ([] if only_forget else [("build", n) for n in names])
    if not only_forget:
        say(f"set-up for the {device.upper()}: {', '.join(names)}")
        for name, why in skipped.items():
            say(f"skipped {name}: {why}")
    for i, (action, name) in enumerate(steps, 1):
        def step(msg, i=i):
            say(f"[{i}/{len(steps)} {time.time() - t0:6.0f}s] {msg}")
        try:
            if action == "forget":
                forget_python(spec, name, step)
            elif name in use:
                use_python(spec, name, use[name], step)
            else:
                build(spec, name, step)
        except SetupError as e:
            failed.append(name)
            say(f"ERROR: {e}")
    say(f"set-up finished in {time.time() - t0:.0f}s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
