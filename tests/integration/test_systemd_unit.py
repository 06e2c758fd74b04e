"""test_systemd_unit.py — deploy/flamedb.service's LoadCredential= wiring,
as far as it can be checked without running systemd as PID 1: the unit,
with its LoadCredential= line uncommented as operations.md says, passes
`systemd-analyze verify` without a warning (the credential's name is
valid); and the node, given $CREDENTIALS_DIRECTORY as systemd sets it,
reads the credential of that name as its cluster secret (a secret readable
by others stops the start naming that file; a good one starts a signed
cluster port), unless cluster-secret-file says otherwise. That systemd
copies the file there for the service's user is not tested here.
Skips the verify step, saying why, without systemd-analyze.
"""
import os
import re
import shutil
import subprocess
import tempfile

from cluster import free_port
from harness import FLAMEDB_BIN, ROOT, Node, Skip, run_tests

UNIT = os.path.join(ROOT, "deploy", "flamedb.service")


def credential():
    """(id, source) of the unit's LoadCredential= line, commented or not."""
    with open(UNIT) as f:
        for line in f:
            m = re.match(r"#?LoadCredential=([^:\s]+):(\S+)", line)
            if m:
                return m.group(1), m.group(2)
    raise AssertionError("no LoadCredential= line in " + UNIT)


def test_unit_verifies_with_the_credential():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        raise Skip("systemd-analyze not installed")
    with tempfile.TemporaryDirectory(prefix="flamedb-unit-") as d:
        with open(UNIT) as f:
            text = f.read()
        text = text.replace("\n#LoadCredential=", "\nLoadCredential=")
        # the binary and env file of an installed unit are not on this machine
        text = text.replace("ExecStart=/usr/local/bin/flamedb", "ExecStart=" + FLAMEDB_BIN)
        text = text.replace("EnvironmentFile=/etc/", "EnvironmentFile=-/etc/")
        path = os.path.join(d, "flamedb.service")
        with open(path, "w") as f:
            f.write(text)
        assert "\nLoadCredential=" in text
        r = subprocess.run([tool, "verify", "--man=no", path], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stderr.strip() == "", (r.returncode, r.stderr)


def test_node_reads_the_credential():
    name, _ = credential()
    with tempfile.TemporaryDirectory(prefix="flamedb-cred-") as d:
        secret = os.path.join(d, name)
        with open(secret, "w") as f:
            f.write("0123456789abcdef0123456789abcdef\n")
        env = {"CREDENTIALS_DIRECTORY": d}
        r = subprocess.run([FLAMEDB_BIN, "--print-config"], capture_output=True, text=True,
                           env=dict(os.environ, **env), timeout=60)
        assert r.returncode == 0, r.stderr
        assert "cluster-secret-file = %s\n" % secret in r.stdout, r.stdout
        # the node really reads that file: readable by others, the start stops naming it
        os.chmod(secret, 0o644)
        args = ["--cluster-listen", "tcp://127.0.0.1:%d" % free_port()]
        r = subprocess.run([FLAMEDB_BIN, "--data-dir", os.path.join(d, "data"),
                            "--http-listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, env=dict(os.environ, **env), timeout=60)
        assert r.returncode != 0 and secret in r.stderr and "readable by others" in r.stderr, r.stderr
        os.chmod(secret, 0o600)
        with Node(name="cred", args=args, env=env) as node:
            assert node.get("/ready").status == 200
        # an explicit empty cluster-secret-file keeps signing off
        r = subprocess.run([FLAMEDB_BIN, "--print-config", "--cluster-secret-file="],
                           capture_output=True, text=True, env=dict(os.environ, **env), timeout=60)
        assert r.returncode == 0 and "cluster-secret-file = \n" in r.stdout, r.stdout


if __name__ == "__main__":
    run_tests(globals())
