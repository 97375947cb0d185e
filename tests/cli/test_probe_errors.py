"""--probe against tgtd (LUN table, JSON, CHAP, mutual CHAP) and network failures with
iscsiadm's messages and exit codes."""

import json
import os
import socket
import threading

import pytest

from cli_targets import (CHAP_USER, MUTUAL_OUT, MUTUAL_USER, T_CHAP, T_MULTI, T_MUTUAL, T_OPEN)

pytestmark = pytest.mark.peer


def _node(cli, target, portal, **values):
    assert cli("-m", "node", "-o", "new", "-T", target, "-p", portal + ",1").rc == 0
    for k, v in values.items():
        r = cli("-m", "node", "-T", target, "-p", portal, "-o", "update", "-n", k, "-v", v)
        assert r.rc == 0, r.err


def test_probe_multi_lun(cli, tgt):
    _node(cli, T_MULTI, tgt.portal)
    r = cli("-m", "node", "-T", T_MULTI, "-p", tgt.portal, "--probe")
    assert r.rc == 0, r.err
    assert f"Target: {T_MULTI}" in r.out
    rows = [l.split() for l in r.out.splitlines() if l[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1", "2", "3", "4"]
    assert "Direct-Access" in r.out and "VIRTUAL-DISK" in r.out
    doc = json.loads(cli("--json", "-m", "node", "-T", T_MULTI, "-p", tgt.portal, "--probe").out)
    luns = doc["luns"]
    assert [l["lun"] for l in luns] == [0, 1, 2, 3, 4]
    disk = luns[1]
    assert disk["vendor"] == "IET" and disk["block_size"] == 512 and disk["serial"]
    assert disk["size_bytes"] == disk["blocks"] * 512 and disk["designators"]
    # the controller LUN has no capacity: not asked (its refusal was shown as an error)
    assert luns[0]["device_type"] != "Direct-Access" and luns[0]["errors"] == {}
    assert luns[0]["size_bytes"] is None and "ILLEGAL REQUEST" not in r.out + r.err


@pytest.mark.parametrize("timeout", ["0", "-1"])
def test_a_probe_with_a_login_timeout_of_none_logs_in(cli, tgt, timeout):
    """node.conn[0].timeo.login_timeout 0 (iscsid's "not set": 30 s) or -1: the probe
    logs in (before: a timeout at once, exit 8), as a session's login does."""
    _node(cli, T_MULTI, tgt.portal, **{"node.conn[0].timeo.login_timeout": timeout})
    r = cli("-m", "node", "-T", T_MULTI, "-p", tgt.portal, "--probe")
    assert r.rc == 0, r.err
    assert "VIRTUAL-DISK" in r.out


def test_probe_nonpersistent_and_missing_record(cli, tgt):
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe")
    assert r.rc == 21 and "No records found" in r.err
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe", "-o", "nonpersistent")
    assert r.rc == 0, r.err and "VIRTUAL-DISK" in r.out


def test_a_probe_says_the_initiator_name_it_generated(cli, tgt):
    """A probe without initiatorname.iscsi says the name it wrote and offered, as a
    discovery does (before: not a word, and a target's ACL refused a name never shown)."""
    name = os.path.join(cli.root, "initiatorname.iscsi")
    os.unlink(name)
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe", "-o", "nonpersistent")
    with open(name) as f:
        iqn = f.read().rsplit("InitiatorName=", 1)[1].strip()
    assert r.rc == 0 and f"{name} did not exist: wrote InitiatorName={iqn}" in r.err, r.err


def test_probe_nonpersistent_takes_iscsid_conf_as_a_new_record_would(cli, tgt):
    """No record: the probe logs in with what -o new would make, iscsid.conf's CHAP
    credentials (and timeouts) included, not with the compiled defaults alone."""
    import os

    with open(os.path.join(cli.root, "iscsid.conf"), "a") as f:
        f.write("node.session.auth.authmethod = CHAP\n"
                f"node.session.auth.username = {CHAP_USER[0]}\n"
                f"node.session.auth.password = {CHAP_USER[1]}\n")
    r = cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "--probe", "-o", "nonpersistent")
    assert r.rc == 0, r.err
    assert cli("-m", "node").rc == 21  # nothing written


def test_probe_unknown_target(cli, tgt):
    r = cli("-m", "node", "-T", "iqn.2026-11.test.tgt:nosuch", "-p", tgt.portal, "--probe",
            "-o", "nonpersistent")
    assert r.rc == 19, r.err  # 02/03 not found: non-retryable login failure
    assert "not found" in r.err


def test_probe_chap(cli, tgt):
    r = cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "--probe", "-o", "nonpersistent")
    assert r.rc == 24, r.err
    _node(cli, T_CHAP, tgt.portal, **{"node.session.auth.authmethod": "CHAP",
                                       "node.session.auth.username": CHAP_USER[0],
                                       "node.session.auth.password": CHAP_USER[1]})
    r = cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "--probe")
    assert r.rc == 0, r.err
    cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "-o", "update", "-n",
        "node.session.auth.password", "-v", "wrongsecret1234")
    r = cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "--probe")
    assert r.rc == 24 and "authentication" in r.err


def test_an_algorithm_the_crypto_library_refuses_is_not_offered(cli, tgt, monkeypatch):
    """A FIPS host's crypto library refuses MD5 (Python's hashlib.new raises ValueError,
    simulated here).  It is left out of CHAP_A with a warning, as open-iscsi's
    acl_init_chap_digests does; with nothing left the login fails as an authentication
    failure (24) before anything is sent.  Before, MD5 was offered, tgtd chose it, and the
    login ended in that ValueError: "internal error" (9) through the daemon."""
    import hashlib

    from iscsictl.protocol import chap

    real = hashlib.new

    def fips_new(name, *args, **kw):
        if name.lower() == "md5":
            raise ValueError("[digital envelope routines: EVP_DigestInit_ex] disabled for FIPS")
        return real(name, *args, **kw)
    _node(cli, T_CHAP, tgt.portal, **{"node.session.auth.authmethod": "CHAP",
                                       "node.session.auth.username": CHAP_USER[0],
                                       "node.session.auth.password": CHAP_USER[1]})
    monkeypatch.setattr(hashlib, "new", fips_new)
    monkeypatch.setattr(chap, "_usable", chap._usable.__wrapped__)  # not the cached answer
    r = cli("-m", "node", "-T", T_CHAP, "-p", tgt.portal, "--probe")
    assert r.rc == 24, r.err
    assert "no CHAP algorithm asked for is one this host's crypto library allows (MD5 " \
           "refused)" in r.err
    offered = []
    initiator = chap.ChapInitiator(chap.ChapCredentials("u", b"s" * 12),
                                   (chap.ChapAlgorithm.MD5, chap.ChapAlgorithm.SHA256),
                                   warn=offered.append)
    assert initiator.offer() == [("CHAP_A", "7")]
    assert offered == ["Ignoring CHAP algorithm MD5: this host's crypto library refuses it"]


def test_probe_mutual_chap(cli, tgt):
    vals = {"node.session.auth.authmethod": "CHAP",
            "node.session.auth.username": MUTUAL_USER[0],
            "node.session.auth.password": MUTUAL_USER[1],
            "node.session.auth.username_in": MUTUAL_OUT[0],
            "node.session.auth.password_in": MUTUAL_OUT[1]}
    _node(cli, T_MUTUAL, tgt.portal, **vals)
    r = cli("-m", "node", "-T", T_MUTUAL, "-p", tgt.portal, "--probe")
    assert r.rc == 0, r.err
    cli("-m", "node", "-T", T_MUTUAL, "-p", tgt.portal, "-o", "update", "-n",
        "node.session.auth.password_in", "-v", "notthetargets12")
    r = cli("-m", "node", "-T", T_MUTUAL, "-p", tgt.portal, "--probe")
    assert r.rc == 24, r.err


# ---- network failures ------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused(cli):
    port = _closed_port()
    r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{port}")
    assert r.rc == 11  # iscsiadm's code once reopen_max runs out, whatever the failure
    assert r.err.splitlines() == [
        "iscsictl: cannot make connection to 127.0.0.1: Connection refused",
        "iscsictl: cannot make connection to 127.0.0.1: Connection refused",
        "iscsictl: connection login retries (reopen_max) 1 exceeded",
        "iscsictl: Could not perform SendTargets discovery: iSCSI PDU timed out"]


class _Listener:
    """A loopback listener that accepts and then either never answers or closes after
    reading the first bytes (a target dying mid-login)."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            if self.mode == "close":
                c.settimeout(2)
                try:
                    c.recv(48)
                except OSError:
                    pass
                c.close()
            else:
                self.conns.append(c)

    def close(self):
        self.stop = True
        self.t.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_a_target_that_drops_each_login_is_tried_reopen_max_times(cli):
    import time
    lst = _Listener("close")
    try:
        t0 = time.monotonic()
        r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{lst.port}",
                "-o", "nonpersistent")
        took = time.monotonic() - t0
    finally:
        lst.close()
    assert r.rc == 11, r.err
    assert "by the target" in r.err and "reopen_max" in r.err
    assert took >= 1  # a pause between the attempts: no spin


def test_a_target_that_never_answers_the_login_is_given_up_after_active_timeout(cli):
    """iscsiadm's discovery waits active_timeout for each Login Response (login.c
    iscsi_login) and gives up on the first silence: LOGIN_FAILED, "discovery login ...
    failed, giving up", 19 (usr/discovery.c); before, iscsictl waited login_timeout and
    tried reopen_max times more (95 s and exit 11 with the defaults, against 30 s)."""
    lst = _Listener("silent")
    try:
        r = cli("-m", "discovery", "-t", "st", "-p", f"127.0.0.1:{lst.port}",
                "-o", "nonpersistent")
        conns = len(lst.conns)
    finally:
        lst.close()
    assert r.rc == 19, r.err
    assert "no Login Response within 3 s (discovery.sendtargets.timeo.active_timeout): " \
        "giving up" in r.err
    assert "encountered non-retryable iSCSI login failure" in r.err
    assert conns == 1


def test_probe_refused(cli):
    port = _closed_port()
    r = cli("-m", "node", "-T", T_OPEN, "-p", f"127.0.0.1:{port}", "--probe",
            "-o", "nonpersistent")
    assert r.rc == 4 and "Connection refused" in r.err


def test_discovery_by_host_name(cli, tgt):
    r = cli("-m", "discovery", "-t", "st", "-p", f"localhost:{tgt.port}", "-o", "nonpersistent")
    assert r.rc == 0, r.err
    assert f"{tgt.portal},1 {T_OPEN}" in r.out.splitlines()


def test_discovery_by_host_name_keeps_the_name(cli, tgt):
    """As iscsiadm: the discovery record is the name as given (resolved at each connect),
    and so is each node record's node.discovery_address (before: the resolved address)."""
    r = cli("-m", "discovery", "-t", "st", "-p", f"localhost:{tgt.port}")
    assert r.rc == 0, r.err
    assert cli("-m", "discovery").out == f"localhost:{tgt.port} via sendtargets\n"
    assert os.path.isdir(os.path.join(cli.root, "send_targets", f"localhost,{tgt.port}"))
    rec = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal).out
    assert "node.discovery_address = localhost\n" in rec
    r = cli("-m", "discovery", "-p", f"localhost:{tgt.port}", "-D")
    assert r.rc == 0 and f"{tgt.portal},1 {T_OPEN}" in r.out.splitlines(), r.err
    r = cli("-m", "discovery", "-p", f"localhost:{tgt.port},1", "-D")  # a tag is ignored
    assert r.rc == 0 and f"{tgt.portal},1 {T_OPEN}" in r.out.splitlines(), r.err


def test_discovery_by_a_name_that_does_not_resolve(cli):
    r = cli("-m", "discovery", "-t", "st", "-p", "no-such-host.invalid", "-o", "nonpersistent")
    assert r.rc == 4 and "cannot resolve host name" in r.err, (r.rc, r.err)
    assert "Traceback" not in r.err


def test_chap_set_for_a_target_that_needs_none_logs_in(cli, tgt):
    """CHAP set once for a mixed fleet (iscsid.conf, or the record) and a target with no
    account: the login offers AuthMethod=CHAP,None as iscsiadm's does, the target picks
    None, the login succeeds (before: CHAP alone was offered, tgtd refused it, exit 24).
    With mutual CHAP set, None stays refused: the target has to prove itself."""
    chap = {"node.session.auth.authmethod": "CHAP",
            "node.session.auth.username": CHAP_USER[0],
            "node.session.auth.password": CHAP_USER[1]}
    _node(cli, T_OPEN, tgt.portal, **chap)
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe")
    assert r.rc == 0, r.err
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "-o", "update",
            "-n", "node.session.auth.username_in", "-v", MUTUAL_OUT[0])
    assert r.rc == 0, r.err
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "-o", "update",
            "-n", "node.session.auth.password_in", "-v", MUTUAL_OUT[1])
    assert r.rc == 0, r.err
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe")
    assert r.rc == 24, r.err  # CHAP alone offered: tgtd, with no account, refuses it


def test_a_probe_with_incoming_chap_only_is_refused(cli, tgt):
    _node(cli, T_OPEN, tgt.portal, **{"node.session.auth.username_in": MUTUAL_OUT[0],
                                      "node.session.auth.password_in": MUTUAL_OUT[1]})
    r = cli("-m", "node", "-T", T_OPEN, "-p", tgt.portal, "--probe")
    assert r.rc == 7 and "has no outgoing credentials configured" in r.err, (r.rc, r.err)
    assert "Traceback" not in r.err


def test_a_probe_logs_in_with_the_iface_initiator_name_as_a_login_would(cli, tgt):
    """A record bound to an iface with its own ``iface.initiatorname`` is probed under that
    name, as iscsictld's login (and iscsid's) logs in: tgtd admits that initiator only.  The
    probe used initiatorname.iscsi's name, and the target refused it."""
    target, own = "iqn.2026-11.test.probe:own-name", "iqn.2026-11.test.probe:initiator"
    tid = tgt.add_target(target, luns=1, initiator_name=own)
    try:
        assert cli("-m", "iface", "-I", "named", "-o", "new").rc == 0
        assert cli("-m", "iface", "-I", "named", "-o", "update", "-n", "iface.initiatorname",
                   "-v", own).rc == 0
        assert cli("-m", "node", "-o", "new", "-T", target, "-p", tgt.portal + ",1",
                   "-I", "named").rc == 0
        r = cli("-m", "node", "-T", target, "-p", tgt.portal, "--probe")
        assert r.rc == 0, r.err
        assert "VIRTUAL-DISK" in r.out
    finally:  # (the tgtd is the other tests' too: their SendTargets answers are counted)
        tgt.delete_target(tid)


def test_a_probe_goes_through_the_records_iface_as_its_session_would(cli, tgt):
    """A record bound to a network device is probed through that device (bind_socket, as
    a login and a discovery bind); the probe connected through the routing table, so it
    could pass where the session's path fails.  "lo" binds; a device not there fails the
    probe's one connect, as a refused one (4)."""
    target = "iqn.2026-11.test.probe:bound"
    tid = tgt.add_target(target, luns=1)
    try:
        for name, dev in (("onlo", "lo"), ("nowhere", "nosuch0")):
            assert cli("-m", "iface", "-I", name, "-o", "new", "-n", "iface.net_ifacename",
                       "-v", dev).rc == 0
            assert cli("-m", "node", "-o", "new", "-T", target, "-p", tgt.portal + ",1",
                       "-I", name).rc == 0
        r = cli("-m", "node", "-T", target, "-p", tgt.portal, "-I", "onlo", "--probe")
        assert r.rc == 0 and "VIRTUAL-DISK" in r.out, r.err
        r = cli("-m", "node", "-T", target, "-p", tgt.portal, "-I", "nowhere", "--probe")
        assert r.rc == 4 and "Could not bind connection 0 to nosuch0" in r.err, (r.out, r.err)
    finally:
        tgt.delete_target(tid)


@pytest.mark.parametrize("extra, said", [
    (("-l",), "-l"), (("-u",), "-u"), (("-R",), "-R"), (("-s",), "-s"),
    (("-o", "show"), "-o show"), (("-o", "new"), "-o new"),
    (("-o", "nonpersistent", "-o", "delete"), "-o delete")])
def test_probe_beside_another_operation_is_refused(cli, extra, said):
    """--probe beside -l went to a login through the daemon, beside -o show it probed and
    dropped the show, each without a word: refused (7), nothing done."""
    r = cli("-m", "node", "-T", T_OPEN, "-p", "127.0.0.1:3260", "--probe", *extra)
    assert (r.rc, r.out) == (7, "")
    assert r.err == f"iscsictl: --probe is an operation of its own: not with {said} " \
                    "(-o nonpersistent is the one it takes)\n"


def test_a_user_told_how_to_probe_without_root():
    """A user's --probe on root's config (its initiatorname.iscsi root's only): the error
    says what to do, as the README does (a config root of the user's own)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    root = tempfile.mkdtemp(dir="/tmp")  # (pytest's tmp_path is root's 0700)
    try:
        os.chmod(root, 0o755)
        with open(os.path.join(root, "initiatorname.iscsi"), "w") as f:
            f.write("InitiatorName=iqn.2026-11.org.example:root\n")
        os.chmod(os.path.join(root, "initiatorname.iscsi"), 0o600)
        r = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             sys.executable, "-m", "iscsictl.cli", "--config-root", root, "--db-root",
             os.path.join(root, "db"), "-m", "node", "-T", T_OPEN, "-p", "127.0.0.1:3260",
             "--probe", "-o", "nonpersistent"],
            capture_output=True, text=True, timeout=60, cwd=os.path.dirname(
                os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    finally:
        shutil.rmtree(root)
    assert (r.returncode, r.stdout) == (6, "")
    assert r.stderr == (f"iscsictl: cannot read {root}/initiatorname.iscsi: Permission "
                        "denied; not root: --config-root DIR (a directory of yours, where a "
                        "name of your own is made) and --db-root DIR\n")
