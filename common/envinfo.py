"""What a result was measured on: CPU, cores, threads, memory, GPU, Python and library versions."""
import os
import platform
import re
import subprocess
import sys


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return ""


def cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_id(cpuinfo="/proc/cpuinfo"):
    """Vendor, family, model and the vector-instruction flags that decide which kernels run: a
    virtual CPU's model name ("Intel(R) Xeon(R) Processor") may not tell two machines apart."""
    fields = {}
    for line in _read(cpuinfo).splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    if not fields:
        return {"machine": platform.machine()}
    flags = fields.get("flags", "").split()
    return {"vendor": fields.get("vendor_id"), "family": fields.get("cpu family"),
            "model": fields.get("model"), "stepping": fields.get("stepping"),
            "vector_flags": [f for f in VECTOR_FLAGS if f in flags]}


def identified(ident):
    """Whether a cpu_id() reading names a CPU's kind (older records and roofline entries hold none,
    or only the machine's architecture)."""
    return bool(ident) and ident.get("family") is not None


def cpu_kind(ident):
    """(vendor, family, model, vector flags) of a cpu_id() reading: what tells one kind of CPU
    from another; None when the reading names no kind (identified)."""
    if not identified(ident):
        return None
    return (ident.get("vendor") or "", str(ident["family"]), str(ident.get("model") or ""),
            tuple(ident.get("vector_flags") or ()))


def same_cpu(a, b):
    """Whether two cpu_id() readings name the same kind of CPU (cpu_kind); a reading that names
    none (older records) matches any."""
    kind_a, kind_b = cpu_kind(a), cpu_kind(b)
    return kind_a is None or kind_b is None or kind_a == kind_b


def _slug(text):
    """"Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz" -> "intel-xeon-platinum-8480-cpu"."""
    text = re.sub(r"\((r|tm|c)\)", " ", str(text).lower()).split("@")[0]
    return "-".join(re.findall(r"[a-z0-9]+", text))


VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}


def machine_key(threads, gpus=None, name=None, ident=None):
    """A short name for the machine a run measures (its records' folder): where `gpus`
    (nvidia_gpus()) are given, the first one's name and their count ("nvidia-h200-1x"); else the
    CPU's model name (`name`, default cpu_model()), its vendor where the name lacks it, family and
    model (`ident`, default cpu_id()) and `threads` ("intel-xeon-processor-6-167-2t")."""
    if gpus:
        return "%s-%dx" % (_slug(gpus[0].get("name") or "") or "gpu", len(gpus))
    ident = cpu_id() if ident is None else ident
    words = _slug(cpu_model() if name is None else name) or "cpu"
    vendor = VENDORS.get(ident.get("vendor"), _slug(ident.get("vendor") or ""))
    parts = [vendor] if vendor and vendor not in words.split("-") else []
    parts += [words] + [_slug(ident.get(k) or "") for k in ("family", "model", "machine")]
    return "-".join(p for p in parts if p) + "-%dt" % threads


def cpu_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def memory_gib():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024.0 ** 2, 1)
    return None


def threads():
    """Threads the frameworks were told to use (set in the kernel spec before any import)."""
    value = os.environ.get("ROSETTA_THREADS") or os.environ.get("OMP_NUM_THREADS")
    return int(value) if value else cpu_count()


def thread_settings():
    names = ("ROSETTA_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_CORETYPE")
    return dict((n, os.environ[n]) for n in names if n in os.environ)


GPU_QUERY = ("name", "driver_version", "memory.total", "compute_cap")


def nvidia_gpus():
    """[{name, driver, memory, compute_cap}] from the nvidia-smi first on PATH, or [] where there is
    none or it fails. compute_cap ("9.0") is None where nvidia-smi is too old to report it."""
    for fields in (GPU_QUERY, GPU_QUERY[:3]):  # an nvidia-smi before 510 refuses compute_cap
        try:
            out = subprocess.check_output(
                ["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader"],
                stderr=subprocess.STDOUT, universal_newlines=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return []
        except subprocess.CalledProcessError:
            continue
        gpus = []
        for line in out.strip().splitlines():
            parts = [p.strip() for p in line.rsplit(",", len(fields) - 1)]  # the name may hold commas
            if len(parts) == len(fields):
                gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2],
                             "compute_cap": parts[3] if len(parts) > 3 else None})
        return gpus
    return []


def environment_info(versions=None):
    """A dict for result records; `versions` adds framework versions to Python's and numpy's."""
    import numpy
    all_versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    all_versions.update(versions or {})
    return {
        "cpu": cpu_model(),
        "cpu_id": cpu_id(),
        "cores": cpu_count(),
        "threads": threads(),
        "thread_settings": thread_settings(),
        "memory_gib": memory_gib(),
        "gpus": nvidia_gpus(),
        "os": platform.platform(),
        "python_executable": sys.executable,
        "kernel_env": os.environ.get("ROSETTA_ENV"),
        "versions": all_versions,
    }


def print_environment(info):
    """One short block a reader can compare between notebooks."""
    print("CPU:      %s (%s cores, %s threads in use)" % (info["cpu"], info["cores"], info["threads"]))
    print("Memory:   %s GiB" % info["memory_gib"])
    for gpu in info["gpus"]:
        print("GPU:      %s (driver %s, %s, compute capability %s)"
              % (gpu["name"], gpu["driver"], gpu["memory"], gpu.get("compute_cap") or "unknown"))
    print("Versions: " + ", ".join("%s %s" % kv for kv in sorted(info["versions"].items())))
