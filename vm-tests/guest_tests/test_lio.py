"""Scenarios for the LIO helper itself: many targets, CHAP ACLs, login statistics."""

from pathlib import Path

import pytest

from openiscsi import iscsi_sessions

MIB = 1 << 20
PORTAL = "127.0.0.1"


def test_many_targets_discovered(lio, openiscsi):
    """32 demo-mode targets on one portal are all returned by SendTargets."""
    targets = lio.create_many(32, prefix="iqn.2003-01.org.example.vm:many", luns=[MIB])
    out = openiscsi.iscsiadm("-m", "discovery", "-t", "st", "-p", PORTAL)
    found = {line.split()[1] for line in out.splitlines() if line.strip()}
    assert {t.iqn for t in targets} <= found


def _set_chap(openiscsi, iqn, user, password, user_in=None, password_in=None):
    node = ["-m", "node", "-T", iqn, "-p", PORTAL, "-o", "update"]
    settings = {"node.session.auth.authmethod": "CHAP",
                "node.session.auth.username": user, "node.session.auth.password": password}
    if user_in:
        settings |= {"node.session.auth.username_in": user_in,
                     "node.session.auth.password_in": password_in}
    for key, value in settings.items():
        openiscsi.iscsiadm(*node, "-n", key, "-v", value)


@pytest.mark.parametrize("mutual", [False, True], ids=["one-way", "mutual"])
def test_chap_acl(lio, openiscsi, mutual):
    """A CHAP ACL admits the right secret and counts a wrong one as an authentication failure."""
    auth = {"userid": "init0", "password": "secret1secret"}
    if mutual:
        auth |= {"mutual_userid": "tgt0", "mutual_password": "secret2secret"}
    target = lio.create("iqn.2003-01.org.example.vm:chap", luns=[8 * MIB], auth=auth,
                        initiator_iqn=openiscsi.initiator_name)
    openiscsi.iscsiadm("-m", "discovery", "-t", "st", "-p", PORTAL)

    _set_chap(openiscsi, target.iqn, "init0", "wrong-secret-x")
    openiscsi.iscsiadm("-m", "node", "-T", target.iqn, "-p", PORTAL, "--login", check=False)
    assert iscsi_sessions() == []
    assert target.login_counter("authenticate_fails") >= 1

    _set_chap(openiscsi, target.iqn, "init0", "secret1secret",
              *(("tgt0", "secret2secret") if mutual else ()))
    openiscsi.iscsiadm("-m", "node", "-T", target.iqn, "-p", PORTAL, "--login")
    openiscsi.wait_disk(target.iqn)
    username = Path(f"/sys/class/iscsi_session/{iscsi_sessions()[0]}/username").read_text()
    assert username.strip() == "init0"
    openiscsi.iscsiadm("-m", "node", "-T", target.iqn, "-p", PORTAL, "--logout")
    assert iscsi_sessions() == []
