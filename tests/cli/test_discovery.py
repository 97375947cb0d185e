"""SendTargets discovery against tgtd: records in open-iscsi's format, rediscovery,
nonpersistent, CHAP and mutual CHAP discovery, 1,000 targets, JSON."""

import json
import os
import re

import pytest

from cli_targets import (DISC_OUT, DISC_USER, T_CHAP, T_MULTI, T_MUTUAL, T_OPEN)

pytestmark = pytest.mark.peer

ALL = sorted([T_OPEN, T_CHAP, T_MUTUAL, T_MULTI])


def test_discovery_writes_records(cli, tgt):
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert sorted(lines) == sorted(f"{tgt.portal},1 {t}" for t in ALL)
    # open-iscsi layout: st_config, node dirs, links from send_targets/
    sdir = os.path.join(cli.root, "send_targets", f"127.0.0.1,{tgt.port}")
    st = open(os.path.join(sdir, "st_config")).read()
    assert st.startswith("# BEGIN RECORD 2.1.8\n") and st.endswith("# END RECORD\n")
    assert f"discovery.sendtargets.port = {tgt.port}" in st
    for t in ALL:
        link = os.path.join(sdir, f"{t},127.0.0.1,{tgt.port},1,default")
        assert os.path.islink(link)
        assert os.path.realpath(link) == os.path.join(cli.root, "nodes", t,
                                                      f"127.0.0.1,{tgt.port},1")
        rec = open(os.path.join(cli.root, "nodes", t, f"127.0.0.1,{tgt.port},1",
                                "default")).read()
        assert f"node.name = {t}\n" in rec
        assert "node.discovery_type = send_targets\n" in rec
        assert f"node.discovery_port = {tgt.port}\n" in rec
    r = cli("-m", "node")
    assert r.rc == 0 and sorted(r.out.splitlines()) == sorted(lines)
    r = cli("-m", "discovery")
    assert r.out == f"127.0.0.1:{tgt.port} via sendtargets\n"
    r = cli("-m", "discovery", "-P", "1")
    assert r.out.startswith(f"SENDTARGETS:\nDiscoveryAddress: 127.0.0.1,{tgt.port}\n"
                            f"Target: {T_CHAP}\n")
    assert r.out.endswith("iSNS:\nNo targets found.\nSTATIC:\nNo targets found.\n"
                          "FIRMWARE:\nNo targets found.\n")


def test_listing_leaves_out_links_whose_record_was_removed_by_hand(cli, tgt):
    """``rm -rf nodes/<target>``: the discovery's link stays; iscsiadm's -P 1 and JSON
    listings leave the target out, and so do ours (before: listed as if present)."""
    import shutil
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    shutil.rmtree(os.path.join(cli.root, "nodes", T_OPEN))
    r = cli("-m", "discovery", "-P", "1")
    assert r.rc == 0 and T_OPEN not in r.out and f"Target: {T_CHAP}\n" in r.out, r.out
    listed = json.loads(cli("-m", "discovery", "--json").out)[0]["nodes"]
    assert sorted(n["target"] for n in listed) == sorted(set(ALL) - {T_OPEN})


def test_an_unreadable_initiator_name_is_a_clear_error(cli, tgt):
    name = os.path.join(cli.root, "initiatorname.iscsi")
    os.unlink(name)
    os.mkdir(name)
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 6 and "cannot read" in r.err and "initiatorname.iscsi" in r.err
    assert "Traceback" not in r.err and "unexpected" not in r.err


def test_a_missing_initiator_name_is_generated_and_said(cli, tgt):
    """iscsid warns of a missing initiatorname.iscsi (missing_iname_warn); iscsictl writes
    one, as Debian's packaging does, and says which name the targets will see (before: not a
    word).  The next command reads it and says nothing."""
    name = os.path.join(cli.root, "initiatorname.iscsi")
    os.unlink(name)
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    with open(name) as f:
        iqn = f.read().rsplit("InitiatorName=", 1)[1].strip()
    assert r.rc == 0 and iqn.startswith("iqn.1993-08.org.debian:01:"), r.err
    assert f"{name} did not exist: wrote InitiatorName={iqn} (the targets' ACLs must allow " \
           "it)" in r.err
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0 and "InitiatorName" not in r.err


def test_rediscovery_deletes_stale_from_same_source_only(cli, tgt):
    src = f"127.0.0.1,{tgt.port}"
    # a stale record from this source and a static record that must survive
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    stale = "iqn.2026-11.test.tgt:gone"
    assert cli("-m", "node", "-o", "new", "-T", stale, "-p", f"{tgt.portal},1").rc == 0
    # as this source found it (what a rediscovery checks first)
    _found_by(os.path.join(cli.root, "nodes", stale, f"127.0.0.1,{tgt.port},1", "default"),
              "127.0.0.1", tgt.port)
    os.symlink(f"../../nodes/{stale}/127.0.0.1,{tgt.port},1",
               os.path.join(cli.root, "send_targets", src, f"{stale},127.0.0.1,{tgt.port},1,default"))
    keep = "iqn.2026-11.test.other:static"
    assert cli("-m", "node", "-o", "new", "-T", keep, "-p", "10.1.2.3:3260,1").rc == 0
    # a user setting on a found record survives rediscovery
    assert cli("-m", "node", "-T", T_OPEN, "-o", "update", "-n", "node.startup",
               "-v", "automatic").rc == 0
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0, r.err
    names = [l.split(" ", 1)[1] for l in cli("-m", "node").out.splitlines()]
    assert stale not in names and keep in names and T_OPEN in names
    assert "node.startup = automatic" in cli("-m", "node", "-T", T_OPEN).out


def _found_by(path: str, address: str, port: int) -> None:
    """Make the record at ``path`` say that SendTargets at address:port found it."""
    with open(path) as f:
        text = f.read()
    text = re.sub(r"^node\.discovery_.*\n", "", text, flags=re.M).replace(
        "# END RECORD", f"node.discovery_address = {address}\nnode.discovery_port = {port}\n"
        "node.discovery_type = send_targets\n# END RECORD")
    with open(path, "w") as f:
        f.write(text)


def test_rediscovery_deletes_a_stale_record_no_link_names(cli, tgt):
    """A record this source found that no send_targets/ link names (a nodes/ tree restored
    without send_targets/, a link name over NAME_MAX) is stale all the same: iscsiadm's
    delete_stale_rec judges every record by its discovery fields (before: it stayed for
    ever, and -L all logged in to a target that was gone).  One another portal of the
    same address found stays, and so does a record of this source's that is found."""
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    stale, other = "iqn.2026-11.test.tgt:gone", "iqn.2026-11.test.tgt:elsewhere"
    for name, port in ((stale, tgt.port), (other, tgt.port + 1)):
        assert cli("-m", "node", "-o", "new", "-T", name, "-p", f"{tgt.portal},1").rc == 0
        _found_by(os.path.join(cli.root, "nodes", name, f"127.0.0.1,{tgt.port},1", "default"),
                  "127.0.0.1", port)
    link = os.path.join(cli.root, "send_targets", f"127.0.0.1,{tgt.port}",
                        f"{T_OPEN},127.0.0.1,{tgt.port},1,default")
    os.unlink(link)  # found again: kept, and linked again
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 0, r.err
    names = [line.split(" ", 1)[1] for line in cli("-m", "node").out.splitlines()]
    assert stale not in names and other in names and T_OPEN in names
    assert os.path.islink(link)


@pytest.mark.parametrize("damage", ["", "discovery.sendtargets.auth.username = x\n"])
def test_a_damaged_discovery_record_is_made_again(cli, tgt, damage):
    """An st_config a crash left empty or cut short (iscsiadm writes it in place, unsynced)
    is made again from the defaults with a warning, as iscsiadm's discovery rewrites it;
    it failed every later discovery with exit 6."""
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    st = os.path.join(cli.root, "send_targets", f"127.0.0.1,{tgt.port}", "st_config")
    with open(st, "w") as f:
        f.write(damage)
    for warned in (True, False):  # the first one made it again: no warning the second time
        r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
        assert r.rc == 0, r.err
        assert sorted(r.out.splitlines()) == sorted(f"{tgt.portal},1 {t}" for t in ALL)
        assert ("corrupt record" in r.err and "recreated from defaults" in r.err if warned
                else r.err == ""), r.err
    with open(st) as f:
        assert f"discovery.sendtargets.port = {tgt.port}\n" in f.read()
    with open(st, "w") as f:
        f.write(damage)
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal, "-o", "nonpersistent")
    assert r.rc == 0 and "corrupt record" in r.err and "using defaults" in r.err, r.err
    assert open(st).read() == damage  # nonpersistent: not written


def test_a_discovery_record_over_a_mib_fails_the_discovery_and_is_kept(cli, tgt):
    """An st_config over 1 MiB (iscsictl reads no larger record; iscsiadm reads it) fails
    the discovery (6) and is kept as it is, its settings (discovery CHAP) with it, as such
    a node record is.  Before, it was "recreated from defaults"."""
    from iscsictl.db.store import MAX_RECORD_BYTES
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    st = os.path.join(cli.root, "send_targets", f"127.0.0.1,{tgt.port}", "st_config")
    with open(st, "a") as f:
        f.write("discovery.sendtargets.auth.username = keepme\n")
        f.write("# padding\n" * (MAX_RECORD_BYTES // 10 + 1))
    before = open(st, "rb").read()
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 6 and f"larger than {MAX_RECORD_BYTES} bytes" in r.err, r
    assert open(st, "rb").read() == before


def test_nonpersistent_writes_nothing(cli, tgt):
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal, "-o", "nonpersistent")
    assert r.rc == 0, r.err
    assert len(r.out.splitlines()) == 4
    assert not os.path.exists(os.path.join(cli.root, "nodes"))
    assert not os.path.exists(os.path.join(cli.root, "send_targets"))


def test_discovery_tree_and_json(cli, tgt):
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal, "-P", "1", "-o", "nonpersistent")
    assert f"Target: {T_OPEN}\n\tPortal: {tgt.portal},1\n\t\tIface Name: default\n" in r.out
    r = cli("--json", "-m", "discovery", "-t", "st", "-p", tgt.portal)
    doc = json.loads(r.out)
    assert doc["persistent"] is True
    assert sorted(n["target"] for n in doc["nodes"]) == ALL
    assert len(doc["added"]) == 4 and doc["deleted"] == []
    doc = json.loads(cli("--json", "-m", "node").out)
    assert {n["tpgt"] for n in doc} == {1}


def test_the_discovery_tree_in_json_has_what_the_text_has_and_its_exit_code(cli, tgt):
    """``-m discovery -P 1 --json``: the tree's sections, static and firmware records
    included, and its exit code (before: only the discovery records, so a DB of static
    records was ``[]`` and 21 where the text listed them with 0); ``-m iface -P 5
    --json`` is refused as the text is (it listed, 0)."""
    assert cli("-m", "node", "-o", "new", "-T", T_OPEN, "-p", f"{tgt.portal},1").rc == 0
    text = cli("-m", "discovery", "-P", "1")
    assert text.rc == 0 and f"STATIC:\nTarget: {T_OPEN}\n" in text.out
    r = cli("--json", "-m", "discovery", "-P", "1")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert [(s["type"], s["address"], [n["target"] for n in s["nodes"]]) for s in doc] == [
        ("static", None, [T_OPEN]), ("fw", None, [])]
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    doc = json.loads(cli("--json", "-m", "discovery", "-P", "1").out)
    assert [(s["type"], s["address"], s["port"]) for s in doc] == [
        ("sendtargets", "127.0.0.1", tgt.port), ("static", None, None), ("fw", None, None)]
    assert sorted(n["target"] for n in doc[0]["nodes"]) == ALL
    for json_ in ((), ("--json",)):
        r = cli(*json_, "-m", "iface", "-P", "5")
        assert (r.rc, r.out) == (7, ""), json_


def test_discoverydb_ops(cli, tgt):
    p = tgt.portal
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "new")
    assert r.out == f"New discovery record for [127.0.0.1,{tgt.port}] added.\n"
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "update", "-n",
            "discovery.sendtargets.reopen_max", "-v", "2")
    assert r.rc == 0, r.err
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "show")
    assert "discovery.sendtargets.reopen_max = 2\n" in r.out
    assert "discovery.sendtargets.auth.password = <empty>" in r.out
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "new")  # again: said
    assert (r.rc, r.out) == (0, f"New discovery record for [127.0.0.1,{tgt.port}] added.\n")
    assert r.err == (f"iscsictl: discovery record [127.0.0.1,{tgt.port}] existed: made anew "
                     "from iscsid.conf and the defaults, its settings (CHAP included) not "
                     "kept\n")
    assert "reopen_max = 2" not in cli("-m", "discoverydb", "-t", "st", "-p", p,
                                       "-o", "show").out
    cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "update", "-n",
        "discovery.sendtargets.reopen_max", "-v", "2")
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-D")
    assert r.rc == 0 and len(r.out.splitlines()) == 4
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "delete")
    assert r.rc == 0
    assert cli("-m", "node").rc == 21
    # -D without a record: made from the defaults, then the discovery (iscsiadm's
    # exec_discover); -o show of a missing one is still "not found." (6)
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "show")
    assert r.rc == 6 and f"Discovery record [127.0.0.1,{tgt.port}] not found." in r.err
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-D")
    assert r.rc == 0 and len(r.out.splitlines()) == 4, r.err
    r = cli("-m", "discoverydb", "-t", "st", "-p", p, "-o", "show")
    assert r.rc == 0 and "discovery.sendtargets.reopen_max = 2\n" not in r.out  # a new one
    assert cli("-m", "node").rc == 0


def _disc_record(cli, portal, user, secret, user_in=None, secret_in=None):
    base = ["-m", "discoverydb", "-t", "st", "-p", portal]
    assert cli(*base, "-o", "new").rc == 0
    kv = [("discovery.sendtargets.auth.authmethod", "CHAP"),
          ("discovery.sendtargets.auth.username", user),
          ("discovery.sendtargets.auth.password", secret)]
    if user_in:
        kv += [("discovery.sendtargets.auth.username_in", user_in),
               ("discovery.sendtargets.auth.password_in", secret_in)]
    for k, v in kv:
        r = cli(*base, "-o", "update", "-n", k, "-v", v)
        assert r.rc == 0, r.err
    return base


def test_discovery_chap(cli, tgt_disc_chap):
    t = tgt_disc_chap
    r = cli("-m", "discovery", "-t", "st", "-p", t.portal, "-o", "nonpersistent")
    assert r.rc == 24, (r.rc, r.err)  # tgtd refuses an unauthenticated discovery session
    base = _disc_record(cli, t.portal, *DISC_USER)
    r = cli(*base, "-D")
    assert r.rc == 0, r.err
    assert r.out == f"{t.portal},1 {T_OPEN}\n"


def test_discovery_mutual_chap(cli, tgt_disc_chap):
    t = tgt_disc_chap
    base = _disc_record(cli, t.portal, *DISC_USER, *DISC_OUT)
    r = cli(*base, "-D")
    assert r.rc == 0, r.err
    # the target proves a secret we do not expect: mutual CHAP fails, 19 as iscsiadm's
    # discovery (LOGIN_AUTHENTICATION_FAILED is fatal there; a node's login says 24)
    cli(*base, "-o", "update", "-n", "discovery.sendtargets.auth.password_in",
        "-v", "notthesecret123")
    r = cli(*base, "-D")
    assert r.rc == 19 and "non-retryable iSCSI login failure" in r.err, r.err


def test_debug_shows_each_pdu_of_the_discovery_and_no_chap_response(cli, tgt_disc_chap):
    """``-d 1``: each Login and Text PDU, sent and received, on stderr with its keys (the
    answer's targets, the target's status on a failure); CHAP_R masked, no secret; the
    output as without it.  ``-d 0`` and the next command print no debug line."""
    t = tgt_disc_chap
    base = _disc_record(cli, t.portal, *DISC_USER, *DISC_OUT)
    r = cli(*base, "-D", "-d", "1")
    assert r.rc == 0 and r.out == f"{t.portal},1 {T_OPEN}\n", r.err
    lines = r.err.splitlines()
    heads = [" ".join(line.split(" ")[:4]) for line in lines
             if line.startswith(("iscsictl: ->", "iscsictl: <-"))]
    assert heads == ["iscsictl: -> Login Request", "iscsictl: <- Login Response"] * 4 + [
        "iscsictl: -> Text Request", "iscsictl: <- Text Response"]
    assert "iscsictl:     SendTargets=All" in lines
    assert f"iscsictl:     TargetName={T_OPEN}" in lines
    assert lines.count("iscsictl:     CHAP_R=********") == 2
    assert "CHAP_R=0x" not in r.err and "CHAP_R=0b" not in r.err
    for secret in (DISC_USER[1], DISC_OUT[1]):
        assert secret not in r.err
    for quiet in (("-d", "0"), ()):
        r = cli(*base, "-D", *quiet)
        assert r.rc == 0 and r.err == "" and r.out == f"{t.portal},1 {T_OPEN}\n"
    cli(*base, "-o", "update", "-n", "discovery.sendtargets.auth.password", "-v", "wrong12345678")
    r = cli(*base, "-D", "-d", "1")
    assert r.rc == 24
    assert any(line.startswith("iscsictl: <- Login Response status=0x0201 ")
               for line in r.err.splitlines()), r.err


def test_discovery_wrong_secret(cli, tgt_disc_chap):
    base = _disc_record(cli, tgt_disc_chap.portal, DISC_USER[0], "wrongsecret12345")
    r = cli(*base, "-D")
    assert r.rc == 24, r.err
    assert "authentication" in r.err.lower()


def test_thousand_targets(cli, tgt_many):
    r = cli("-m", "discovery", "-t", "st", "-p", tgt_many.portal)
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert len(lines) == 1000
    assert len(cli("-m", "node").out.splitlines()) == 1000
    # rediscovery keeps all, deletes none, through the real process
    r = cli.proc("-m", "discovery", "-t", "st", "-p", tgt_many.portal, "--json")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    assert len(doc["updated"]) == 1000 and doc["deleted"] == [] and doc["added"] == []


def test_target_names_are_kept_as_the_target_spells_them(cli, tmp_path):
    """A TargetName with capitals (Synology's 'iqn.2000-01.com.synology:DiskStation...',
    an eui. name in upper-case hex as RFC 7143's examples write it) is stored, listed and
    sent as the target spelled it: tgtd compares a login's TargetName byte for byte, and
    the RFC 3722 normal form (lower case) it used to be stored in was 'not found' there."""
    from peers import Tgtd

    upper, eui = "iqn.2026-11.test.tgt:DiskStation.Target-1", "eui.0123456789ABCDEF"
    with Tgtd(str(tmp_path / "tgtd")) as t:
        t.add_target(upper, luns=1)
        t.add_target(eui, luns=1)
        r = cli("-m", "discovery", "-t", "st", "-p", t.portal)
        assert r.rc == 0, r.err
        assert sorted(r.out.splitlines()) == sorted(f"{t.portal},1 {n}" for n in (upper, eui))
        assert sorted(os.listdir(os.path.join(cli.root, "nodes"))) == sorted([upper, eui])
        for name in (upper, eui):
            r = cli("-m", "node", "-T", name, "-p", t.portal, "--probe")
            assert r.rc == 0, r.err
            assert f"Target: {name}" in r.out
        r = cli("-m", "node", "-o", "new", "-T", "iqn.2026-11.test.tgt:NEW", "-p", t.portal)
        assert r.rc == 0 and "iqn.2026-11.test.tgt:NEW]" in r.out, r.err
        r = cli("-m", "node", "-T", eui, "-o", "update", "-n", "node.startup", "-v", "automatic")
        assert r.rc == 0, r.err
        r = cli("-m", "node", "-T", eui.lower())  # names are matched as iscsiadm does: exactly
        assert r.rc == 21
        r = cli("-m", "node", "-T", "IQN.2026-11.test.tgt:x", "-o", "new", "-p", t.portal)
        assert r.rc == 0, r.err  # valid (RFC 3722 folds it); kept as typed


@pytest.mark.parametrize("ops,left", [
    # what Debian's iscsiadm 2.1.8 leaves (exec_disc_op_on_recs), run side by side once:
    # -o delete drops the records no longer found and touches no other; -o new adds the
    # new ones and leaves the others; -o update adds and refreshes
    ((), "ac"),
    (("delete",), "a"),
    (("new",), "abc"),
    (("update",), "abc"),
    (("new", "delete"), "ac"),
    (("delete", "update"), "ac"),
    # -o show (iscsiadm's compat default is for no -o at all): prints, changes no record
    (("show",), "ab"),
])
def test_rediscovery_ops_act_on_their_records_only(cli, tmp_path, ops, left):
    """Targets a and b discovered, a tuned (node.startup automatic); then b goes away and c
    comes.  Before, a rediscovery's ops deleted what they chose not to rewrite: -o delete
    and -o new -o delete (the usual way to keep tuned records) deleted a, and -o update
    did not add c."""
    from peers import Tgtd

    names = {k: f"iqn.2026-11.test.ops:{k}" for k in "abc"}
    with Tgtd(str(tmp_path / "tgtd")) as t:
        tids = {k: t.add_target(names[k]) for k in "ab"}
        assert cli("-m", "discovery", "-t", "st", "-p", t.portal).rc == 0
        r = cli("-m", "node", "-T", names["a"], "-o", "update", "-n", "node.startup",
                "-v", "automatic")
        assert r.rc == 0, r.err
        t.adm("--mode", "target", "--op", "delete", "--force", "--tid", str(tids["b"]))
        t.add_target(names["c"])
        r = cli("-m", "discovery", "-t", "st", "-p", t.portal, *(a for op in ops
                                                               for a in ("-o", op)))
        assert r.rc == 0, r.err
        assert sorted(r.out.splitlines()) == [f"{t.portal},1 {names[k]}" for k in "ac"]
    r = cli("-m", "node")
    assert sorted(r.out.splitlines()) == [f"{t.portal},1 {names[k]}" for k in left]
    assert "node.startup = automatic" in cli("-m", "node", "-T", names["a"], "-o", "show").out


def test_several_operations_on_a_discovery_record_are_no_delete(cli, tgt):
    """``-o delete`` beside another ``-o`` is not a delete: iscsiadm or's them into one
    mask and acts only on an exact one (exec_disc2_op's do_db_op, exec_disc_op), a ``new``
    among them rewriting the record alone (exec_discover).  Before, the first was acted on,
    so ``-o delete -o new`` deleted the discovery record and every node it had found."""
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    db = ("-m", "discoverydb", "-t", "st", "-p", tgt.portal)
    for args, rc, said in (
            ((*db, "-o", "delete", "-o", "update", "-n", "discovery.sendtargets.reopen_max",
              "-v", "2"), 7, "Operation is not supported."),
            ((*db, "-o", "delete", "-o", "nonpersistent"), 7, "Operation is not supported."),
            ((*db, "-o", "show", "-o", "delete"), 7, "Operation is not supported."),
            (("-m", "discovery", "-p", tgt.portal, "-o", "delete", "-o", "show"), 7,
             "Invalid operation."),
            (("-m", "discovery", "-p", tgt.portal, "-o", "delete", "-o", "new"), 7,
             "Invalid operation.")):
        r = cli(*args)
        assert (r.rc, r.err) == (rc, f"iscsictl: {said}\n"), args
        assert sorted(cli("-m", "node").out.splitlines()) == sorted(
            f"{tgt.portal},1 {t}" for t in ALL), args
    r = cli(*db, "-o", "update", "-n", "discovery.sendtargets.reopen_max", "-v", "2")
    assert r.rc == 0
    r = cli(*db, "-o", "delete", "-o", "new")  # new: the record made again, nodes kept
    assert (r.rc, r.out) == (0, f"New discovery record for [127.0.0.1,{tgt.port}] added.\n")
    assert "discovery.sendtargets.reopen_max = 1\n" in cli(*db, "-o", "show").out  # conf
    assert len(cli("-m", "node").out.splitlines()) == len(ALL)
    r = cli("-m", "discoverydb", "-t", "st", "-p", "127.0.0.9", "-o", "delete", "-o", "show")
    assert (r.rc, r.err) == (6, "iscsictl: Discovery record [127.0.0.9,3260] not found.\n")


@pytest.mark.parametrize("damage", ["", "discovery.sendtargets.address = 127.0.0.1\0x\n"])
def test_a_damaged_discovery_record_can_still_be_deleted(cli, tgt, damage):
    """An st_config emptied by a crash (or holding a NUL byte): ``-o delete`` removes it and
    the records it found, as a damaged node record can be deleted (before: exit 6, "corrupt
    record", and only rm removed it; iscsiadm exits 0 but leaves the empty file).  Other
    operations still say it is damaged."""
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    st = os.path.join(cli.root, "send_targets", f"127.0.0.1,{tgt.port}", "st_config")
    with open(st, "w") as f:
        f.write(damage)
    db = ("-m", "discoverydb", "-t", "st", "-p", tgt.portal)
    r = cli(*db, "-o", "update", "-n", "discovery.sendtargets.reopen_max", "-v", "2")
    assert r.rc == 6 and "corrupt record" in r.err and "Traceback" not in r.err, r.err
    r = cli(*db, "-o", "delete")
    assert r.rc == 0 and "Traceback" not in r.err, r.err
    assert not os.path.exists(os.path.dirname(st))
    assert cli("-m", "node").rc == 21


def test_a_dangling_initiator_name_link_is_not_replaced(cli, tgt, tmp_path):
    """initiatorname.iscsi a symbolic link to a file not there (its storage not mounted
    yet): a clear error, exit 6, and the link kept (before: replaced by a new file with a
    fresh IQN, "did not exist", which the targets' ACLs refuse; the link gone)."""
    name = os.path.join(cli.root, "initiatorname.iscsi")
    os.unlink(name)
    os.symlink(str(tmp_path / "unmounted" / "initiatorname.iscsi"), name)
    r = cli("-m", "discovery", "-t", "st", "-p", tgt.portal)
    assert r.rc == 6 and "is a symbolic link to" in r.err and "not replaced" in r.err, r.err
    assert os.path.islink(name)
    assert cli("-m", "node").rc == 21


def test_an_empty_discovery_type_is_refused_and_deletes_nothing(cli, tgt):
    """``-t ""`` (a shell variable not set) is no type, refused (7) as ``-t bogus`` is
    (before: taken as SendTargets, so ``-m discoverydb -t "$TYPE" -p P -o delete`` deleted
    the discovery record and every node it had found; iscsiadm refuses it, 7)."""
    assert cli("-m", "discovery", "-t", "st", "-p", tgt.portal).rc == 0
    for mode in ("discoverydb", "discovery"):
        r = cli("-m", mode, "-t", "", "-p", tgt.portal, "-o", "delete")
        assert (r.rc, r.err) == (7, "iscsictl: discovery type '' is not supported "
                                    "(sendtargets | st | isns | fw)\n"), mode
    assert len(cli("-m", "node").out.splitlines()) == len(ALL)
    assert cli("-m", "discoverydb").out == f"127.0.0.1:{tgt.port} via sendtargets\n"


def test_a_discovery_record_update_says_what_it_wrote_in_json(cli, tgt):
    """``-o update --json`` prints a document, as every other write does (before: exit 0
    and nothing on stdout, which a script's JSON parser fails on)."""
    db = ("-m", "discoverydb", "-t", "st", "-p", tgt.portal)
    assert cli(*db, "-o", "new").rc == 0
    r = cli(*db, "-o", "update", "-n", "discovery.startup", "-v", "automatic", "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out) == {"updated": {"type": "sendtargets", "address": "127.0.0.1",
                                             "port": tgt.port, "keys": ["discovery.startup"]}}
    assert "discovery.startup = automatic\n" in cli(*db, "-o", "show").out
