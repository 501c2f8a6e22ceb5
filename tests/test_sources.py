"""common.datasets.sources: checksums, atomic downloads, npm tarballs, safe tar extraction, FetchError."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from scripts import envspec
from common.datasets import sources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def env(offline_data, monkeypatch):
    """offline_data (conftest.py), with `npm pack` an error unless a test fakes it."""
    def no_npm(*args, **kwargs):
        raise AssertionError("npm must not run here")
    monkeypatch.setattr(sources.subprocess, "run", no_npm)
    return offline_data


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def test_folders_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ROSETTA_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("ROSETTA_DATA_DIR", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert sources.cache_path("x", "y.bin") == str(tmp_path / "c" / "x" / "y.bin")
    assert (tmp_path / "c" / "x").is_dir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.txt").write_text("hi")
    assert sources.find_local("f.txt") == str(tmp_path / "b" / "f.txt")
    with pytest.raises(sources.Unavailable, match="no g.txt in"):
        sources.require_local("g.txt")
    monkeypatch.delenv("ROSETTA_CACHE")
    assert sources.cache_root() == os.path.expanduser("~/.cache/dl-rosetta/data")


def test_check_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"rosetta")
    assert sources.check_file(str(path), sha256=sha256(b"rosetta")) == "sha256:" + sha256(b"rosetta")
    assert sources.check_file(str(path), md5=hashlib.md5(b"rosetta").hexdigest()).startswith("md5:")
    with pytest.raises(sources.ChecksumError) as err:
        sources.check_file(str(path), md5="0" * 32)
    assert "md5 mismatch for %s" % path in str(err.value) and "expected " + "0" * 32 in str(err.value)
    assert path.exists()
    with pytest.raises(sources.ChecksumError, match="deleted"):
        sources.check_file(str(path), sha256="1" * 64, delete=True)
    assert not path.exists()


def test_corrupt_file_in_a_read_only_cache_says_so(env, monkeypatch, capsys):
    cache, _ = env
    path = cache / "weights.npz"
    cache.mkdir()
    path.write_bytes(b"corrupt")

    def read_only(target):
        raise PermissionError(13, "Permission denied", target)
    monkeypatch.setattr(sources, "remove", read_only)
    with pytest.raises(sources.ChecksumError) as err:
        sources.cached_ok(str(path), sha256=sha256(b"good"))
    message = str(err.value)
    assert message.startswith("sha256 mismatch for %s: expected %s" % (path, sha256(b"good")))
    assert "could not delete it (PermissionError: [Errno 13] Permission denied" in message
    assert "delete %s by hand" % path in message
    assert "rebuilding" not in capsys.readouterr().out, "no rebuild into a cache that cannot be written"


def test_download_file_url(env, tmp_path):
    src = tmp_path / "src.bin"
    payload = os.urandom(3 << 20)
    src.write_bytes(payload)
    dest = tmp_path / "out" / "data.bin"
    sources.download(src.as_uri(), str(dest), sha256=sha256(payload))
    assert dest.read_bytes() == payload
    assert not os.path.exists(str(dest) + ".part")
    # a corrupt download is rejected and leaves nothing behind
    dest2 = tmp_path / "out" / "bad.bin"
    with pytest.raises(sources.ChecksumError, match="md5 mismatch"):
        sources.download(src.as_uri(), str(dest2), md5="0" * 32)
    assert sorted(os.listdir(str(tmp_path / "out"))) == ["data.bin"]


class FakeResponse(object):
    """An HTTP response that sends `good` bytes then fails, or just stops early."""

    def __init__(self, total, good, fail=True):
        self.headers = {"Content-Length": str(total)}
        self.left, self.fail = good, fail

    def read(self, n):
        if self.left <= 0:
            if self.fail:
                raise ConnectionResetError("connection reset by peer")
            return b""
        n = min(n, self.left)
        self.left -= n
        return b"x" * n

    def close(self):
        pass


@pytest.mark.parametrize("fail", [True, False])
def test_interrupted_download_leaves_no_file(env, tmp_path, monkeypatch, fail):
    monkeypatch.setattr(sources, "urlopen", lambda url, timeout: FakeResponse(5 << 20, 2 << 20, fail))
    dest = tmp_path / "dl" / "big.bin"
    with pytest.raises((ConnectionResetError, IOError)) as err:
        sources.download("https://example.invalid/big.bin", str(dest))
    if not fail:
        assert "ended after 2097152 of 5242880 bytes" in str(err.value)
    assert os.listdir(str(tmp_path / "dl")) == []


def test_first_working_lists_every_source():
    def missing():
        raise sources.Unavailable("no a.tgz in ['/x']")

    def broken():
        raise IOError("URLError: no route")

    def corrupt():
        raise sources.ChecksumError("sha256 mismatch for b.tgz")

    with pytest.raises(sources.FetchError) as err:
        sources.first_working("Thing", [("local", missing), ("canonical http://u", broken), ("npm b@1", corrupt)])
    message = str(err.value)
    assert message.startswith("could not obtain Thing")
    assert "local: no a.tgz in ['/x']" in message
    assert "canonical http://u: OSError: URLError: no route" in message
    assert "npm b@1: ChecksumError: sha256 mismatch for b.tgz" in message
    assert len(err.value.reasons) == 3
    assert sources.first_working("Thing", [("local", missing), ("ok", lambda: 42)]) == 42


def fake_npm(content, calls, returncode=0):
    """A stand-in for subprocess.run that 'packs' `content` into the working folder."""
    def run(cmd, cwd=None, **kwargs):
        calls.append(cmd)
        assert cmd[:2] == ["npm", "pack"] and cmd[-1] == "pkg@1.0.0"
        if returncode == 0:
            with open(os.path.join(cwd, "pkg-1.0.0.tgz"), "wb") as f:
                f.write(content)
        return subprocess.CompletedProcess(cmd, returncode, "pkg-1.0.0.tgz\n", "npm ERR! 404 Not Found: pkg@1.0.0")
    return run


def test_npm_pack_caches_and_reverifies(env, monkeypatch):
    cache, _ = env
    content, calls = b"tarball bytes", []
    monkeypatch.setattr(sources.subprocess, "run", fake_npm(content, calls))
    path = sources.npm_pack("pkg", "1.0.0", sha256(content))
    assert path == str(cache / "npm" / "pkg-1.0.0.tgz")
    with open(path, "rb") as f:
        assert f.read() == content
    assert sources.npm_pack("pkg", "1.0.0", sha256(content)) == path
    assert len(calls) == 1, "a verified cached tarball is reused"
    with open(path, "wb") as f:  # corrupt the cache entry: detected, fetched again
        f.write(b"junk")
    assert sources.npm_pack("pkg", "1.0.0", sha256(content)) == path
    assert len(calls) == 2
    with open(path, "rb") as f:
        assert f.read() == content
    assert os.listdir(str(cache / "npm")) == ["pkg-1.0.0.tgz"], "no temporary folder left"


def test_npm_pack_rejects_wrong_checksum_and_failures(env, monkeypatch):
    cache, _ = env
    monkeypatch.setattr(sources.subprocess, "run", fake_npm(b"evil", []))
    with pytest.raises(sources.ChecksumError, match="sha256 mismatch"):
        sources.npm_pack("pkg", "1.0.0", sha256(b"good"))
    assert os.listdir(str(cache / "npm")) == []
    monkeypatch.setattr(sources.subprocess, "run", fake_npm(b"", [], returncode=1))
    with pytest.raises(sources.FetchError, match="exit 1.*404 Not Found"):
        sources.npm_pack("pkg", "1.0.0", sha256(b"good"))


# npm's real output (npm 10 offline; npm 6 for a missing package), shortened
NPM_OFFLINE = """npm error code ECONNREFUSED
npm error syscall connect
npm error errno ECONNREFUSED
npm error FetchError: request to https://registry.npmjs.org/pkg failed, reason: connect ECONNREFUSED 127.0.0.1:443
npm error     at ClientRequest.<anonymous> (/usr/lib/node_modules/npm/node_modules/minipass-fetch/lib/index.js:130:14)
npm error   code: 'ECONNREFUSED',
npm error   errno: 'ECONNREFUSED',
npm error }
npm error
npm error If you are behind a proxy, please make sure that the 'proxy' config is set properly.  See: 'npm help config'
npm error A complete log of this run can be found in: /root/.npm/_logs/2026-01-01T00_00_00_000Z-debug-0.log
"""
NPM_MISSING = """npm ERR! code E404
npm ERR! 404 Not Found - GET https://registry.npmjs.org/pkg - Not found
npm ERR! 404
npm ERR! 404  'pkg@1.0.0' is not in this registry.
npm ERR! 404 You should bug the author to publish it (or use the name yourself!)
npm ERR! 404
npm ERR! 404 Note that you can also install from a
npm ERR! 404 tarball, folder, http url, or git url.

npm ERR! A complete log of this run can be found in:
npm ERR!     /root/.npm/_logs/2026-01-01T00_00_00_000Z-debug.log
"""


@pytest.mark.parametrize("stderr, cause", [
    (NPM_OFFLINE, "code ECONNREFUSED; errno ECONNREFUSED; FetchError: request to https://registry.npmjs.org/pkg "
                  "failed, reason: connect ECONNREFUSED 127.0.0.1:443"),
    (NPM_MISSING, "code E404; 404 Not Found - GET https://registry.npmjs.org/pkg - Not found"),
])
def test_npm_pack_failure_shows_npms_cause_first(env, monkeypatch, stderr, cause):
    monkeypatch.setattr(sources.subprocess, "run",
                        lambda cmd, **kwargs: subprocess.CompletedProcess(cmd, 1, "", stderr))
    with pytest.raises(sources.FetchError) as err:
        sources.npm_pack("pkg", "1.0.0", sha256(b"good"))
    message = str(err.value)
    assert message.startswith("npm pack pkg@1.0.0 failed (exit 1): " + cause + " [last lines: "), message
    assert message.rstrip("]").endswith("debug-0.log" if stderr is NPM_OFFLINE else "debug.log"), "a short tail"
    assert "minipass-fetch" not in message and "bug the author" not in message


def test_npm_pack_prefers_a_local_copy(env):
    cache, local = env
    (local / "pkg-1.0.0.tgz").write_bytes(b"good")
    assert sources.npm_pack("pkg", "1.0.0", sha256(b"good")) == str(local / "pkg-1.0.0.tgz")
    assert sources.npm_tarball_name("@scope/pkg", "2.0.0") == "scope-pkg-2.0.0.tgz"


def add(tar, name, data=b"", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def make_tar(path, entries):
    with tarfile.open(str(path), "w:gz") as tar:
        for entry in entries:
            add(tar, *entry)
    return str(path)


def test_safe_extract(tmp_path):
    tar = make_tar(tmp_path / "ok.tar.gz", [
        ("top/a.bin", b"abc"), ("top/sub", b"", tarfile.DIRTYPE), ("top/sub/b.bin", b"de")])
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "stale.txt").write_text("replaced whole")
    sources.safe_extract(tar, str(dest))
    assert (dest / "top" / "a.bin").read_bytes() == b"abc"
    assert (dest / "top" / "sub" / "b.bin").read_bytes() == b"de"
    assert not (dest / "stale.txt").exists()
    assert sorted(os.listdir(str(tmp_path))) == ["ok.tar.gz", "out"]
    assert dict(sources.iter_tar_files(tar, ["top/sub/b.bin", "top/missing"])) == {"top/sub/b.bin": b"de"}


@pytest.mark.parametrize("entry, why", [
    (("../evil", b"x"), "tar member '../evil' in {tar}: it lands outside the target folder"),
    (("ok/../../evil", b"x"), "tar member 'ok/../../evil' in {tar}: it lands outside the target folder"),
    (("/tmp/rosetta-evil-abs", b"x"), "tar member with an absolute path '/tmp/rosetta-evil-abs' in {tar}"),
    (("link", b"", tarfile.SYMTYPE, "../../evil"), "symlink 'link' -> '../../evil' in {tar}"),
    (("link", b"", tarfile.SYMTYPE, "/etc/passwd"), "symlink 'link' -> '/etc/passwd' in {tar}"),
    (("hard", b"", tarfile.LNKTYPE, "../evil"), "hard link 'hard' -> '../evil' in {tar}"),
    # links that stay inside are refused too: the data archives hold none
    (("link", b"", tarfile.SYMTYPE, "fine.txt"), "symlink 'link' -> 'fine.txt' in {tar}: data archives hold no links"),
    (("hard", b"", tarfile.LNKTYPE, "fine.txt"), "hard link 'hard' -> 'fine.txt' in {tar}"),
    (("fifo", b"", tarfile.FIFOTYPE), "special tar member 'fifo' in {tar}"),
])
def test_safe_extract_refuses_escapes_and_links(tmp_path, entry, why):
    tar = make_tar(tmp_path / "evil.tar.gz", [("fine.txt", b"ok"), entry])
    dest = tmp_path / "sub" / "out"
    with pytest.raises(ValueError) as err:
        sources.safe_extract(tar, str(dest))
    assert str(err.value).startswith("refusing " + why.format(tar=tar)), str(err.value)
    assert not dest.exists(), "nothing extracted"
    assert os.listdir(str(tmp_path / "sub")) == [], "no temporary folder left"
    assert not (tmp_path / "evil").exists() and not os.path.exists("/tmp/rosetta-evil-abs")


# Each link looks harmless when checked before anything is extracted, but once extracted, `b` is
# the extraction folder's parent, `c` its grandparent and `d` the folder above that.
CHAIN_SCRIPT = """
import io, json, os, sys, tarfile
from common.datasets import sources
base = sys.argv[1]
tar_path = os.path.join(base, "chain.tar")
with tarfile.open(tar_path, "w") as tar:
    for name, link in (("a", "."), ("a/b", ".."), ("c", "b/.."), ("d", "c/..")):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info)
    info = tarfile.TarInfo("d/x.txt")
    info.size = 3
    tar.addfile(info, io.BytesIO(b"bad"))
try:
    sources.safe_extract(tar_path, os.path.join(base, "cache", "data", "out"))
    error = None
except Exception as e:
    error = "%s: %s" % (type(e).__name__, e)
written = sorted(os.path.relpath(os.path.join(folder, name), base)
                 for folder, dirs, files in os.walk(base) for name in files + dirs)
print(json.dumps({"error": error, "written": written, "version": sys.version_info[:2]}))
"""


def check_chain_refused(python, tmp_path):
    proc = subprocess.run([str(python), "-c", CHAIN_SCRIPT, str(tmp_path)], cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["written"] == ["cache", "cache/data", "chain.tar"], "nothing extracted, nothing left"
    assert result["error"] == "ValueError: refusing symlink 'a' -> '.' in %s: data archives hold no links" % (
        tmp_path / "chain.tar")
    return result["version"]


def test_safe_extract_refuses_a_chain_of_links(tmp_path):
    check_chain_refused(sys.executable, tmp_path)


@pytest.mark.parametrize("name, version", [("cntk", [3, 6]), ("caffe2", [3, 7])], ids=["cntk-py3.6", "caffe2-py3.7"])
def test_safe_extract_refuses_a_chain_of_links_on_old_pythons(spec, tmp_path, name, version):
    """These interpreters' tarfile has no data filter: check_member alone must stop the chain."""
    python = envspec.env_python(spec, name)
    if not python.exists():
        pytest.skip("environment %s (Python %d.%d) is not built here: no %s" % ((name,) + tuple(version) + (python,)))
    assert check_chain_refused(python, tmp_path) == version


def test_cached_array_computes_once_and_rebuilds_a_corrupt_copy(env, capsys):
    import numpy as np
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float64).reshape(2, 3) / 7

    first = sources.cached_array("demo", "k1", compute)
    again = sources.cached_array("demo", "k1", compute)
    assert len(calls) == 1 and np.array_equal(first, again) and again.dtype == np.float64
    sources.cached_array("demo", "k2", compute)  # another key: computed anew
    assert len(calls) == 2
    path = sources.cache_path("derived", "demo-k1.npy")
    with open(path, "r+b") as f:  # a flipped byte in the stored array
        f.seek(-1, 2)
        byte = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([byte[0] ^ 1]))
    rebuilt = sources.cached_array("demo", "k1", compute)
    assert len(calls) == 3 and np.array_equal(rebuilt, first)
    assert "corrupt cache entry" in capsys.readouterr().out
