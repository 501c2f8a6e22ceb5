"""Result records: one JSON file per executed notebook, written atomically."""
import datetime
import json
import os
import subprocess
import tempfile

from . import envinfo, provenance

SCHEMA = 1
TASKS = ("cnn", "rnn", "inference")
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
    """Write to a temporary file beside `path`, then rename: a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def default_record_dir(profile):
    return os.environ.get("ROSETTA_RECORD_DIR") or os.path.join(REPO_ROOT, "results", profile)


def validate(record):
    """Raise ValueError naming what is missing or wrong in a record."""
    for key in ("notebook", "framework", "task", "profile", "status"):
        if not record.get(key):
            raise ValueError("result record lacks %r" % key)
    if record["task"] not in TASKS:
        raise ValueError("task %r is not one of %s" % (record["task"], TASKS))
    if record["status"] not in ("ok", "failed"):
        raise ValueError("status must be 'ok' or 'failed', not %r" % record["status"])
    if record["status"] == "failed" and not record.get("error"):
        raise ValueError("a failed record must say why (error)")
    if record["status"] == "ok":
        missing = [m for m in REQUIRED_METRICS[record["task"]] if record["metrics"].get(m) is None]
        if missing:
            raise ValueError("%s record lacks metrics %s" % (record["task"], missing))


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
        }
        record.update(extra or {})
        validate(record)
        return record

    def finish(self, metrics, params, versions, device=None, extra=None):
        """Validate and write the `ok` record; return it."""
        record = self.record("ok", metrics, params, versions, device, extra=extra)
        write_json_atomic(self.path, record)
        print("Result record written to %s" % self.path)
        return record


def start_run(notebook, framework, task, profile, record_dir=None):
    return Run(notebook, framework, task, profile, record_dir)


def load_records(folder):
    """Every record (*.json with a schema key) under `folder`, recursively."""
    records = []
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith(".json") and not name.startswith("."):
                with open(os.path.join(dirpath, name)) as f:
                    try:
                        data = json.load(f)
                    except ValueError:
                        continue
                if isinstance(data, dict) and "schema" in data and "notebook" in data:
                    data["_path"] = os.path.join(dirpath, name)
                    records.append(data)
    return records
