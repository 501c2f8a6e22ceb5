#!/usr/bin/env python3
"""Build the environments of environments.toml and register their Jupyter kernels.

    python3 scripts/setup_env.py [ENV ...]       # default: every environment
    python3 scripts/setup_env.py --list

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envspec  # noqa: E402

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
    """Write the kernel spec inside the environment and put the thread settings in its env."""
    venv = envspec.env_dir(spec, name)
    py = str(venv / "bin" / "python")
    kname = envspec.kernel_name(name)
    kdir = venv / "share" / "jupyter" / "kernels" / kname
    if not (kdir / "kernel.json").exists():
        run([py, "-m", "ipykernel", "install", "--prefix", str(venv), "--name", kname,
             "--display-name", f"Python ({kname})"], "ipykernel install")
    kernel = json.loads((kdir / "kernel.json").read_text())
    kernel["env"] = envspec.kernel_env(spec, name)
    kernel["env"]["ROSETTA_ENV"] = name
    (kdir / "kernel.json").write_text(json.dumps(kernel, indent=1))
    # Lets a notebook opened by hand in this kernel import the repository's common/.
    site = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "site path").strip()
    Path(site, "rosetta_repo.pth").write_text(str(envspec.ROOT) + "\n")


def build(spec, name, step):
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
    ap.add_argument("envs", nargs="*", help="environments to build (default: all)")
    ap.add_argument("--list", action="store_true", help="print environments and their folders")
    args = ap.parse_args(argv)
    spec = envspec.load_spec()
    names = args.envs or list(spec["env"])
    unknown = [n for n in names if n not in spec["env"]]
    if unknown:
        ap.error(f"unknown environment(s) {unknown}; known: {list(spec['env'])}")
    if args.list:
        for n in names:
            state = "built" if (envspec.env_dir(spec, n) / MARKER).exists() else "not built"
            say(f"{n:10s} python {spec['env'][n]['python']:5s} {state:10s} {envspec.env_dir(spec, n)}")
        return 0
    t0 = time.time()
    failed = []
    for i, name in enumerate(names, 1):
        def step(msg, i=i):
            say(f"[{i}/{len(names)} {time.time() - t0:6.0f}s] {msg}")
        try:
            build(spec, name, step)
        except SetupError as e:
            failed.append(name)
            say(f"ERROR: {e}")
    say(f"set-up finished in {time.time() - t0:.0f}s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
