"""Result records: one JSON file per executed notebook, written atomically."""
import datetime
import json
import math
import os
import re
import subprocess
import tempfile

from . import envinfo, precision
from .datasets import provenance
from . import params as protocol
from .catalogue import TASKS

SCHEMA = 1
# The profiles whose records the tables and pages show: the timed ones on real data (not smoke's
# synthetic runs, nor the runner's thread probes).
PUBLISHED_PROFILES = ("cpu", "full")
REQUIRED_METRICS = {
    "cnn": ("train_seconds", "test_accuracy"),
    "rnn": ("train_seconds", "test_accuracy"),
    "inference": ("seconds_per_1000_images", "images_per_second"),
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_state(root=REPO_ROOT):
    """(commit, dirty) of the repository the code ran from, or (None, None) outside git."""
    try:
        commit = subprocess.check_output(["git", "-C", root, "rev-parse", "HEAD"],
                                         stderr=subprocess.DEVNULL, universal_newlines=True).strip()
        status = subprocess.check_output(["git", "-C", root, "status", "--porcelain", "--",
                                          "common", "notebooks", "environments.toml"],
                                         stderr=subprocess.DEVNULL, universal_newlines=True)
        return commit, bool(status.strip())
    except (OSError, subprocess.CalledProcessError):
        return None, None


def write_json_atomic(path, data):
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file. The
    file is readable by all (0644; mkstemp's own mode is 0600)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            os.chmod(tmp, 0o644)
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def default_record_dir(profile):
    """Where a notebook run by hand (RECORD_DIR None) writes its record: ROSETTA_RECORD_DIR, else
    this machine's folder, as run_matrix.py chooses it (results/<profile>[-amp]/<machine key>)."""
    if os.environ.get("ROSETTA_RECORD_DIR"):
        return os.environ["ROSETTA_RECORD_DIR"]
    gpus = [] if os.environ.get("ROSETTA_DEVICE") == "cpu" else envinfo.nvidia_gpus()
    folder = profile + ("-amp" if precision.notebook_parameter("MIXED_PRECISION", False) else "")
    return os.path.join(REPO_ROOT, "results", folder, envinfo.machine_key(envinfo.threads(), gpus))


class RecordError(ValueError):
    """A record that cannot be used: unreadable, not JSON, or failing validate(). str() is
    "<path>: <reason>" when the file is known, else the reason alone."""

    def __init__(self, reason, path=None):
        ValueError.__init__(self, "%s: %s" % (path, reason) if path else reason)
        self.reason, self.path = reason, path


STATUSES = ("ok", "failed", "skipped")  # failed and skipped records say why in `error`
# What each metric must be, where a record has it (None counts as absent); others are not checked.
METRIC_KINDS = {
    "test_accuracy": "fraction",
    "train_seconds": "positive", "test_seconds": "positive", "compile_seconds": "positive",
    "inference_seconds": "positive", "seconds_per_1000_images": "positive",
    "images_per_second": "positive", "parameters": "count",
}
PARAM_KINDS = {"epochs": "count", "batchsize": "count", "batch_size": "count",
               "train_images": "count", "train_sequences": "count"}
WANTED = {"fraction": "a number in [0, 1]", "positive": "a positive number",
          "count": "a positive integer", "nonnegative": "a number >= 0"}


def _shown(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_number(value):
    """A finite int or float; bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _fits(value, kind):
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if not _is_number(value):
        return False
    return {"fraction": 0 <= value <= 1, "positive": value > 0, "nonnegative": value >= 0}[kind]


def _check(name, value, kind):
    if not _fits(value, kind):
        raise RecordError("%s is %s, not %s" % (name, _shown(value), WANTED[kind]))


def _check_type(name, value, types, wanted, optional=True):
    if not (isinstance(value, types) or (optional and value is None)):
        raise RecordError("%s is %s, not %s" % (name, _shown(value), wanted))


def _check_passes(passes):
    """metrics.inference_passes: the summary of timing.time_passes."""
    _check_type("metrics.inference_passes", passes, dict, "a dict")
    _check("metrics.inference_passes.repeats", passes.get("repeats"), "count")
    for key in ("min", "median", "max"):
        _check("metrics.inference_passes." + key, passes.get(key), "positive")
    if not passes["min"] <= passes["median"] <= passes["max"]:
        raise RecordError("metrics.inference_passes has min %s, median %s, max %s: not in order"
                          % (passes["min"], passes["median"], passes["max"]))
    seconds = passes.get("seconds")
    if not isinstance(seconds, list) or len(seconds) != passes["repeats"]:
        raise RecordError("metrics.inference_passes.seconds is %s, not a list of %d times"
                          % (_shown(seconds), passes["repeats"]))
    for i, value in enumerate(seconds):
        _check("metrics.inference_passes.seconds[%d]" % i, value, "positive")


def _check_cpu_id(cpu_id):
    _check_type("environment.cpu_id", cpu_id, dict, "a dict")
    if cpu_id and cpu_id.get("model"):  # the tables name vendor, family, model and vector flags
        for key in ("vendor", "family"):
            if key not in cpu_id:
                raise RecordError("environment.cpu_id lacks %r" % key)
        flags = cpu_id.get("vector_flags")
        if not (isinstance(flags, list) and all(isinstance(f, str) for f in flags)):
            raise RecordError("environment.cpu_id.vector_flags is %s, not a list of strings" % _shown(flags))


def _check_harness(harness):
    _check_type("harness", harness, dict, "a dict", optional=False)
    for key in ("notebook_wall_seconds", "timed_seconds", "untimed_seconds"):
        if harness.get(key) is not None:
            _check("harness." + key, harness[key], "nonnegative")
    probe = harness.get("thread_probe")  # the runner's thread rule: {threads: seconds}
    _check_type("harness.thread_probe", probe, dict, "a dict")
    for threads, seconds in sorted((probe or {}).items()):
        if not threads.isdigit() or int(threads) < 1:
            raise RecordError("harness.thread_probe has %s, not a thread count" % _shown(threads))
        _check("harness.thread_probe[%s]" % threads, seconds, "positive")
    rates = harness.get("machine_gflops_before_after")
    _check_type("harness.machine_gflops_before_after", rates, list, "a list")
    for i, rate in enumerate(rates or []):
        if rate is not None:
            _check("harness.machine_gflops_before_after[%d]" % i, rate, "positive")


def _check_fidelity(fid):
    _check_type("fidelity", fid, dict, "a dict")
    if fid is None:
        return
    _check_type("fidelity.passed", fid.get("passed"), bool, "true or false", optional=False)
    checks = fid.get("checks")
    if not (isinstance(checks, list) and all(isinstance(c, dict) and isinstance(c.get("check"), str)
                                             for c in checks)):
        raise RecordError("fidelity.checks is %s, not a list of checks" % _shown(checks))


def validate(record):
    """Raise RecordError (a ValueError) naming the first thing missing or wrong in a record: its
    keys and their types, its status (a failed or skipped record says why in `error`), and every
    figure the tables, pages and runner use (accuracies in [0, 1], times and rates > 0, counts
    positive integers, all finite; bools are not numbers)."""
    if not isinstance(record, dict):
        raise RecordError("not a JSON object but %s" % type(record).__name__)
    if "schema" not in record:
        raise RecordError("result record lacks 'schema'")
    if type(record["schema"]) is not int or record["schema"] != SCHEMA:
        raise RecordError("schema is %s, not %d" % (_shown(record["schema"]), SCHEMA))
    if record.get("arithmetic", "float32") not in ("float32", "tf32"):
        raise RecordError("arithmetic is %s, not 'float32' or 'tf32'" % _shown(record.get("arithmetic")))
    for key in ("notebook", "framework", "task", "profile", "status"):
        if not record.get(key):
            raise RecordError("result record lacks %r" % key)
        _check_type(key, record[key], str, "a string", optional=False)
    if record["task"] not in TASKS:
        raise RecordError("task %r is not one of %s" % (record["task"], TASKS))
    if record["status"] not in STATUSES:
        raise RecordError("status is %r, not one of %s" % (record["status"], STATUSES))
    error = record.get("error")
    _check_type("error", error, str, "a string")
    if record["status"] != "ok" and not (error and error.strip()):
        raise RecordError("a %s record must say why (error)" % record["status"])
    for key in ("metrics", "params", "device"):
        _check_type(key, record.get(key), dict, "a dict", optional=False)
    for key in ("versions", "environment", "data_source"):
        _check_type(key, record.get(key), dict, "a dict")
    for key in ("started_at", "finished_at"):
        _check_type(key, record.get(key), str, "a string")
    _check_type("synthetic_data", record.get("synthetic_data"), bool, "true or false")

    metrics = record["metrics"]
    if record["status"] == "ok":
        missing = [m for m in REQUIRED_METRICS[record["task"]] if metrics.get(m) is None]
        if missing:
            raise RecordError("%s record lacks metrics %s" % (record["task"], missing))
    for name, kind in sorted(METRIC_KINDS.items()):
        if metrics.get(name) is not None:
            _check("metrics." + name, metrics[name], kind)
    if metrics.get("inference_passes") is not None:
        _check_passes(metrics["inference_passes"])

    params = record["params"]
    for name, kind in sorted(PARAM_KINDS.items()):
        if params.get(name) is not None:
            _check("params." + name, params[name], kind)
    _check_type("params.gru_variant", params.get("gru_variant"), str, "a string")
    _check_type("params.mixed_precision", params.get("mixed_precision"), (bool, str), "true, false or a type")

    device = record["device"]
    for key in ("kind", "name"):
        _check_type("device." + key, device.get(key), str, "a string")
    if device.get("threads") is not None:
        _check("device.threads", device["threads"], "count")
    _check_cpu_id((record.get("environment") or {}).get("cpu_id"))
    if "harness" in record:
        _check_harness(record["harness"])
    _check_fidelity(record.get("fidelity"))


def protocol_params(task, profile):
    """The hyperparameters every notebook of `task` runs with in `profile` (common.params), as its
    record's params name them."""
    p = protocol.profile(profile)
    if task == "inference":
        return {"batch_size": protocol.BATCH_SIZE, "batches": p["inference_batches"], "image_size": protocol.IMAGE_SIZE}
    if task == "cnn":
        return {"epochs": p["cnn_epochs"], "batchsize": protocol.BATCHSIZE, "lr": protocol.LR, "momentum": protocol.MOMENTUM}
    return {"epochs": p["rnn_epochs"], "batchsize": protocol.BATCHSIZE, "lr": protocol.RNN_LR,
            "betas": [protocol.BETA_1, protocol.BETA_2], "eps": protocol.EPS, "maxlen": protocol.MAXLEN,
            "max_features": protocol.MAXFEATURES, "padding": protocol.PADDING}


def training_metrics(train_timer, test_timer, test_accuracy, parameters, compile_seconds=None):
    """A training notebook's metrics: its timed epochs and test pass (common.Timer), the test
    accuracy and the parameter count; and the seconds spent compiling before the timed loop, where
    the framework compiles apart from it."""
    metrics = {"train_seconds": train_timer.seconds, "test_accuracy": test_accuracy,
               "test_seconds": test_timer.seconds, "parameters": parameters}
    if compile_seconds is not None:
        metrics["compile_seconds"] = compile_seconds
    return metrics


def inference_metrics(passes, features, parameters, photo_check, compile_seconds=None):
    """An inference notebook's metrics: its timed passes (common.time_passes: the median is the
    figure), the features they returned (an array), the parameter count, the photo check's result;
    and the seconds spent compiling, where the framework compiles apart from the passes."""
    seconds = passes["median"]
    metrics = {"seconds_per_1000_images": 1000.0 * seconds / len(features),
               "images_per_second": len(features) / seconds, "inference_seconds": seconds,
               "inference_passes": passes, "parameters": parameters, "features_shape": list(features.shape),
               "photo_check": photo_check}
    if compile_seconds is not None:
        metrics["compile_seconds"] = compile_seconds
    return metrics


def device_name(kind, gpus=None):
    """A record's device name: the first NVIDIA GPU's as nvidia-smi names it on "cuda" (one name
    for every framework, so that their runs share a table column; `gpus`: envinfo.nvidia_gpus(),
    if already listed), else the CPU's model name."""
    if kind == "cuda":
        gpus = envinfo.nvidia_gpus() if gpus is None else gpus
        if gpus:
            return gpus[0]["name"]
    return envinfo.cpu_model()


def thread_probe(record):
    """{threads: seconds} of the runner's thread-rule probe behind a record (empty: none)."""
    return {int(k): v for k, v in ((record.get("harness") or {}).get("thread_probe") or {}).items()}


def machine_threads(record):
    """The threads the machine granted a run: the most its thread-rule probe tried (the run may
    have used fewer: device.threads), else the record's own count."""
    probe = thread_probe(record)
    return max(probe) if probe else (record.get("device") or {}).get("threads")


def publishable(record):
    """Whether the tables and side-by-side pages may show a record: an ok run on real data in a
    published profile (the one rule for both)."""
    return (record.get("status") == "ok" and not record.get("synthetic_data")
            and record.get("profile") in PUBLISHED_PROFILES)


class Run(object):
    """Started at the top of a notebook, finished by its last cell, which writes the record."""

    def __init__(self, notebook, framework, task, profile, record_dir=None):
        self.notebook = notebook
        self.framework = framework
        self.task = task
        self.profile = profile
        self.record_dir = record_dir or default_record_dir(profile)
        self.started_at = now()
        if task not in TASKS:
            raise ValueError("task %r is not one of %s" % (task, TASKS))

    @property
    def path(self):
        return os.path.join(self.record_dir, self.notebook + ".json")

    def record(self, status, metrics=None, params=None, versions=None, device=None, error=None,
               extra=None):
        info = envinfo.environment_info(versions)
        commit, dirty = git_state()
        device = dict(device or {"kind": "cpu", "name": info["cpu"]})
        device.setdefault("threads", info["threads"])
        sources = dict(provenance.DATA_SOURCES)
        record = {
            "schema": SCHEMA,
            "notebook": self.notebook,
            "framework": self.framework,
            "task": self.task,
            "profile": self.profile,
            "status": status,
            "error": error,
            "synthetic_data": any(s.get("synthetic") for s in sources.values()),
            "data_source": sources,
            "device": device,
            "versions": info["versions"],
            "environment": info,
            "params": params or {},
            "metrics": metrics or {},
            "git_commit": commit,
            "git_dirty": dirty,
            "started_at": self.started_at,
            "finished_at": now(),
            "arithmetic": precision.arithmetic(),  # of the float32 operations: "float32" or "tf32"
        }
        record.update(extra or {})
        validate(record)
        return record

    def finish(self, metrics, params, versions, device=None, extra=None):
        """Validate and write the `ok` record; return it. `params` holds what the notebook chose
        (layout, compilation, GRU variant...): the protocol's hyperparameters are added from
        common (protocol_params), and the device's name from the machine (device_name)."""
        params = dict(protocol_params(self.task, self.profile), **(params or {}))
        device = dict(device or {"kind": "cpu"})
        device.setdefault("name", device_name(device.get("kind", "cpu")))
        record = self.record("ok", metrics, params, versions, device, extra=extra)
        write_json_atomic(self.path, record)
        print("Result record written to %s" % self.path)
        return record


def start_run(notebook, framework, task, profile, record_dir=None):
    """The run of a notebook, begun at its Set-up; stops a notebook asked for mixed precision that
    has no such path (common.precision)."""
    precision.check_mixed_precision(notebook)
    precision.check_tf32(notebook, envinfo.nvidia_gpus() if precision.notebook_parameter("TF32") else [])
    return Run(notebook, framework, task, profile, record_dir)


RECORD_NAME = re.compile(r"^.+_(CNN|RNN|Inference)(\.failed)?\.json$")  # as run_matrix.py writes them


def _parse(path):
    """The JSON in `path`; RecordError when it cannot be read or parsed (a truncated file)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError("cannot be read (%s)" % (getattr(e, "strerror", None) or e), path)
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError("invalid JSON%s (%s)" % (", empty file" if not text.strip() else "", e), path)


def load_record(path):
    """The record at `path`, validated, with "_path" set; RecordError("<path>: <reason>") when the
    file cannot be read, is not JSON (a truncated file), is not an object, or fails validate()."""
    record = _parse(path)
    try:
        validate(record)
    except RecordError as e:
        raise RecordError(e.reason, path)
    record["_path"] = path
    return record


def load_records(folder, problems=None):
    """Every valid record under `folder`, recursively, each with "_path" set.

    A *.json file is taken for a record when it is named like one
    (<Framework>_<CNN|RNN|Inference>[.failed].json), when it holds an object with a "notebook" or
    "status" key (not "schema": fidelity.json has one too), or when it cannot be read or parsed
    and lies in a subfolder of `folder` (results/<profile>/). A record that fails validate() is
    left out and, when `problems` is a list, (path, reason) is appended to it. Other JSON
    (results/roofline.json, fidelity.json, layer_ceiling.json) is not a record and is ignored, as
    are files and folders whose names begin with a dot (atomic writes in progress, the runner's
    staging folders)."""
    records, found = [], []
    for dirpath, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        top_level = os.path.abspath(dirpath) == os.path.abspath(folder)
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            named_like_one = RECORD_NAME.match(name)
            try:
                data = _parse(path)
            except RecordError as e:
                if named_like_one or not top_level:
                    found.append((path, e.reason))
                continue
            if not (named_like_one or isinstance(data, dict) and ("notebook" in data or "status" in data)):
                continue  # some other JSON
            try:
                validate(data)
            except RecordError as e:
                found.append((path, e.reason))
                continue
            data["_path"] = path
            records.append(data)
    if problems is not None:
        problems.extend(found)
    return records
