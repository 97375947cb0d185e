"""``-m host -H N -C flashnode -o new|delete|update|login|logout`` on an offload HBA, side by
side with the real iscsiadm 2.1.8: each runs against its own fake qla4xxx kernel
(tests/fake_hba.py, through the LD_PRELOAD shim; host 5 with flash targets 0, 1, 2 and 10,
target 1 logged in) and the same sysfs tree, and must exit the same, print the same (but
for the program's name and the deliberate differences of iscsictl/cli/host_cmd.py) and send
the same requests."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fake_hba import Host
from iscsictl.kernel.sysfs import FLASHNODE_ATTRS
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiFlashnodeParam as P
from offload_tree import HbaRig, stderr_lines

H5 = ("-m", "host", "-H", "5", "-C", "flashnode")
H6 = ("-m", "host", "-H", "6", "-C", "flashnode")
ENOSYS_LINE = "Received iferror -38: Function not implemented."


def _hosts() -> dict[int, Host]:
    """The fake kernel's hosts, as the tree has them (offload_tree.FLASHNODES)."""
    return {3: Host("tcp"),
            5: Host("qla4xxx", flashnodes={0: True, 1: True, 2: True, 10: True}, logged_in={1}),
            6: Host("bnx2i", flashnodes={0: True})}


@dataclass
class Run:
    """One command's exit code, stdout, stderr lines (without the program's prefix) and
    requests (each request's fields but those iscsiadm leaves uninitialised: iferror, the
    reply union, the netlink header's pid; the payload kept whole)."""

    rc: int
    out: str
    err: list[str]
    requests: list[dict]


def _request(raw: bytes, msg: dict) -> dict:
    fields = {k: v for k, v in msg.items() if k not in ("iferror", "header")
              and not k.startswith("r_")}
    return {**fields, "nlmsg_len": msg["header"]["length"]}


def _both(tmp_path, shim, *commands: tuple[str, ...]) -> tuple[list[Run], list[Run]]:
    """The commands run in turn by iscsiadm on one fresh fake kernel, then by iscsictl on
    another: (iscsiadm's runs, iscsictl's)."""
    runs: dict[str, list[Run]] = {}
    for who, prog in (("adm", "iscsiadm"), ("ictl", "iscsictl")):
        (tmp_path / who).mkdir()
        with HbaRig(tmp_path / who, shim, _hosts()) as rig:
            runs[who] = []
            for args in commands:
                n = len(rig.kernel.requests)
                cp = getattr(rig, who)(*args)
                runs[who].append(Run(cp.returncode, cp.stdout,
                                     stderr_lines(cp.stderr, prog),
                                     [_request(*r) for r in rig.kernel.requests[n:]]))
    return runs["adm"], runs["ictl"]


def _params(run: Run) -> list[tuple[int, bytes]]:
    """The (ISCSI_FLASHNODE_* param, value) pairs of a run's one SET_FLASHNODE_PARAMS."""
    (req,) = run.requests
    return [(a["param"], bytes(a["value"]))
            for a in m.decode_nlas(m.iscsi_flashnode_param_info_nla, req["payload"])]


def test_new_flash_targets_ipv4_and_ipv6_as_iscsiadm(tmp_path, shim):
    adm, ictl = _both(tmp_path, shim, (*H5, "-o", "new", "-A", "ipv4"),
                      (*H5, "-A", "ipv6", "-o", "new", "-x", "3"))
    assert ictl == adm
    assert (adm[0].rc, adm[0].out, adm[0].err) == (
        0, "Create new flashnode for host 5.\nNew flashnode for host 5 added at index 11.\n", [])
    assert adm[1].out.endswith("added at index 12.\n")
    assert [(r["host_no"], r["len"], r["payload"]) for run in adm for r in run.requests] == [
        (5, 5, b"ipv4\0"), (5, 5, b"ipv6\0")]


def test_new_needs_ipv4_or_ipv6(tmp_path, shim):
    adm, ictl = _both(tmp_path, shim, (*H5, "-o", "new"), (*H5, "-o", "new", "-A", "ipv5"),
                      (*H5, "-o", "new", "-A", "IPV4"))
    assert ictl == adm
    assert all((r.rc, r.out, r.err, r.requests) ==
               (7, "", ["Invalid type mentioned for flashnode"], []) for r in adm)


def test_delete_login_logout_and_their_refusals_as_iscsiadm(tmp_path, shim):
    """A second login is EPERM (15, said on stdout), a logout of a target not logged in
    ESRCH (2); a target the driver does not have is ENODEV (1, 5 or 10)."""
    adm, ictl = _both(tmp_path, shim, *((*H5, "-o", op, "-x", idx) for op, idx in (
        ("login", "0"), ("login", "0"), ("logout", "0"), ("logout", "0"), ("logout", "1"),
        ("delete", "2"), ("delete", "2"), ("login", "2"), ("logout", "7"))))
    assert ictl == adm
    assert [(r.rc, r.out, r.err) for r in adm] == [
        (0, "Login to flashnode 0.\nLogin to flashnode 0 of host 5 successful.\n", []),
        (15, "Login to flashnode 0.\nFlashnode 0 of host 5 already logged in.\n",
         ["Received iferror -1: Operation not permitted."]),
        (0, "Logout flashnode 0.\nLogout of flashnode 0 of host 5 successful.\n", []),
        (2, "Logout flashnode 0.\nFlashnode 0 of host 5 not logged in.\n",
         ["Received iferror -3: No such process."]),
        (0, "Logout flashnode 1.\nLogout of flashnode 1 of host 5 successful.\n", []),
        (0, "Delete flashnode 2.\nFlashnode 2 of host 5 deleted.\n", []),
        (1, "Delete flashnode 2.\n", ["Received iferror -19: No such device.",
                                      "Deletion of flashnode 2 of host 5 failed."]),
        (5, "Login to flashnode 2.\n", ["Received iferror -19: No such device.",
                                        "Login to flashnode 2 of host 5 failed."]),
        (10, "Logout flashnode 7.\n", ["Received iferror -19: No such device.",
                                       "Logout of flashnode 7 of host 5 failed."])]
    assert [(r["type"], r["host_no"], r["flashnode_idx"]) for r in adm[0].requests] == [
        (38, 5, 0)]


def test_a_driver_without_the_operation_ENOSYS(tmp_path, shim):
    """bnx2i keeps no flash targets: each request is ENOSYS, which iscsictl says and
    iscsiadm does not (below debug level 1); exit codes and all else the same."""
    commands = [(*H6, "-o", "new", "-A", "ipv4"), (*H6, "-o", "delete", "-x", "0"),
                (*H6, "-o", "update", "-x", "0", "-n", "flashnode.session.erl", "-v", "1"),
                (*H6, "-o", "login", "-x", "0"), (*H6, "-o", "logout", "-x", "0")]
    adm, ictl = _both(tmp_path, shim, *commands)
    assert [r.rc for r in adm] == [1, 1, 1, 5, 10]
    assert adm[0].err == ["Creation of flashnode for host 6 failed."]
    for theirs, ours in zip(adm, ictl):
        assert ours.err == [ENOSYS_LINE, *theirs.err]
        assert (ours.rc, ours.out, ours.requests) == (theirs.rc, theirs.out, theirs.requests)


def test_index_and_operation_checks_as_iscsiadm(tmp_path, shim):
    adm, ictl = _both(tmp_path, shim, (*H5, "-o", "login"),
                      (*H5, "-o", "delete", "-x", "4294967296"),
                      (*H5, "-o", "update", "-x", "-1", "-n", "flashnode.session.erl", "-v", "1"),
                      (*H5, "-o", "new", "-A", "ipv4", "-x", "99999999999999999999999"),
                      (*H5, "-o", "login", "-o", "logout", "-x", "0"),
                      ("-m", "host", "-H", "9", "-C", "flashnode", "-o", "new", "-A", "ipv4"),
                      (*H5, "-o", "login", "-x", "4294967295"))
    assert ictl == adm
    assert [(r.rc, r.err[-1]) for r in adm] == [
        (7, "Invalid flashnode index"), (7, "Invalid flashnode index"),
        (7, "Invalid flashnode index"),
        (7, "Invalid index 99999999999999999999999. Numerical result out of range."),
        (7, "Invalid operation"), (12, "Could not match hostno 9 to transport."),
        (5, "Login to flashnode 4294967295 of host 5 failed.")]
    assert [r["flashnode_idx"] for r in adm[-1].requests] == [4294967295]


def test_update_of_several_keys_sent_as_iscsiadm_sends_it(tmp_path, shim):
    """Strings (the whole buffer), u8, u16, u32, a u16 sent as u32 (chap_out_idx), the port
    (0 is 3260), the ISID, IPv4 and IPv6 addresses by the target's portal type, a link-local
    IPv6 address; in the order given, a key given twice sent twice with its last value, an
    address sent as the portal type set after it makes it."""
    name = "iqn.2001-05.com.equallogic:0-8a0906-flash0-renamed-longer"
    v4 = (*H5, "-o", "update", "-x", "0", "-n", "flashnode.session.targetname", "-v", name,
          "-n", "flashnode.session.erl", "-v", "1", "-n", "flashnode.conn[0].ipaddress",
          "-v", "10.1.2.3", "-n", "flashnode.conn[0].port", "-v", "0",
          "-n", "flashnode.session.max_burst_len", "-v", "4294967295",
          "-n", "flashnode.session.def_time2wait", "-v", "65535",
          "-n", "flashnode.session.isid", "-v", "1234567890aB",
          "-n", "flashnode.session.chap_out_idx", "-v", "7",
          "-n", "flashnode.session.targetalias", "-v", "array-b-longer-alias",
          "-n", "flashnode.session.erl", "-v", "2")
    v6 = (*H5, "-o", "update", "-x", "1", "-n", "flashnode.conn[0].ipaddress", "-v", "fd00::99",
          "-n", "flashnode.conn[0].link_local_ipv6", "-v", "fe80::1",
          "-n", "flashnode.conn[0].redirect_ipaddr", "-v", "fd00::1:2",
          "-n", "flashnode.conn[0].ipv6_flow_label", "-v", "201")
    to_v6 = (*H5, "-o", "update", "-x", "0", "-n", "flashnode.conn[0].ipaddress", "-v",
             "fd00::7", "-n", "flashnode.session.portal_type", "-v", "ipv6")
    adm, ictl = _both(tmp_path, shim, v4, v6, to_v6)
    assert ictl == adm
    assert [(r.rc, r.out) for r in adm] == [
        (0, f"Update flashnode {i}.\nUpdate for flashnode {i} of host 5 successful.\n")
        for i in (0, 1, 0)]
    assert [(r["flashnode_idx"], r["count"]) for run in adm for r in run.requests] == [
        (0, 10), (1, 4), (0, 2)]
    assert _params(adm[0]) == [
        (P.NAME, name.encode().ljust(255, b"\0")), (P.ERL, b"\2"),
        (P.IPADDR, bytes([10, 1, 2, 3])), (P.PORT, (3260).to_bytes(2, "little")),
        (P.MAX_BURST, b"\xff" * 4), (P.DEF_TIME2WAIT, b"\xff" * 2),
        (P.ISID, bytes.fromhex("1234567890ab")), (P.CHAP_OUT_IDX, b"\7\0\0\0"),
        (P.ALIAS, b"array-b-longer-alias".ljust(255, b"\0")), (P.ERL, b"\2")]
    assert _params(adm[1])[:2] == [(P.IPADDR, bytes.fromhex("fd00" + "0" * 26 + "99")),
                                   (P.LINK_LOCAL_IPV6, bytes.fromhex("fe80" + "0" * 27 + "1"))]
    assert _params(adm[2]) == [(P.IPADDR, bytes.fromhex("fd00" + "0" * 27 + "7")),
                               (P.PORTAL_TYPE, b"ipv6\0")]


def test_update_sends_a_shorter_string_nul_padded(tmp_path, shim):
    """Deliberate: iscsiadm sends the old name's tail after the new one's NUL."""
    adm, ictl = _both(tmp_path, shim, (*H5, "-o", "update", "-x", "0", "-n",
                                       "flashnode.session.targetname", "-v", "iqn.x"))
    (theirs,), (ours,) = _params(adm[0]), _params(ictl[0])
    assert theirs[1].startswith(b"iqn.x\0" + b"01-05.com.equallogic")
    assert ours == (P.NAME, b"iqn.x".ljust(255, b"\0"))
    assert (ictl[0].rc, ictl[0].out, ictl[0].err) == (adm[0].rc, adm[0].out, adm[0].err) == (
        0, "Update flashnode 0.\nUpdate for flashnode 0 of host 5 successful.\n", [])


def test_update_errors_as_iscsiadm(tmp_path, shim):
    """A key not in the record (7) and a target not in sysfs (2) as iscsiadm; nothing to
    send (no pair, a -n without its -v, a key no parameter carries, an address the portal
    type refuses) is iscsiadm's "Build flashnode config failed." (1), with its reason first.
    Nothing is sent."""
    update = (*H5, "-o", "update", "-x")
    adm, ictl = _both(tmp_path, shim,
                      (*update, "0", "-n", "flashnode.session.bogus", "-v", "1",
                       "-n", "flashnode.session.erl", "-v", "1"),
                      (*update, "7", "-n", "flashnode.session.erl", "-v", "1"),
                      (*update, "0"), (*update, "0", "-n", "flashnode.session.erl"),
                      (*update, "0", "-n", "flashnode.session.username", "-v", "bob"),
                      (*update, "0", "-n", "flashnode.conn[0].ipaddress", "-v", "fd00::1"))
    failed = "Update for flashnode 0 of host 5 failed."
    assert [(r.rc, r.out, r.err, r.requests) for r in adm] == [
        (7, "", ["Cannot modify flashnode.session.bogus. Invalid param name.", failed], []),
        (2, "", ["Could not read info for flashnode 7, No such file or directory",
                 "Update for flashnode 7 of host 5 failed."], []),
        *[(1, "", ["Build flashnode config failed.", failed], [])] * 4]
    assert ictl[:2] == adm[:2]
    reasons = [
        "Nothing to update: give -n KEY -v VALUE.", "Nothing to update: give -n KEY -v VALUE.",
        "Cannot send flashnode.session.username: no flashnode parameter carries it "
        "(iscsiadm 2.1.8 sends none).",
        "Cannot send flashnode.conn[0].ipaddress: 'fd00::1' is not an IPv4 address (the "
        "flash target's portal type is ipv4)."]
    for theirs, ours, reason in zip(adm[2:], ictl[2:], reasons):
        assert (ours.rc, ours.out, ours.err, ours.requests) == (
            theirs.rc, theirs.out, [reason, *theirs.err], [])


def test_update_refuses_what_iscsiadm_would_send_wrongly(tmp_path, shim):
    """Deliberate: iscsiadm reads a number with strtoul and cuts it to its field ("abc" is
    0, 256 a u8's 0), cuts a string to its buffer, and leaves out silently a pair it cannot
    send while it sends the others (exit 0); iscsictl refuses the update, sends nothing."""
    update = (*H5, "-o", "update", "-x", "0")
    adm, ictl = _both(tmp_path, shim,
                      (*update, "-n", "flashnode.session.erl", "-v", "abc"),
                      (*update, "-n", "flashnode.session.erl", "-v", "256"),
                      (*update, "-n", "flashnode.session.portal_type", "-v", "ipv4x"),
                      (*update, "-n", "flashnode.session.username", "-v", "bob",
                       "-n", "flashnode.session.erl", "-v", "1"),
                      (*update, "-n", "flashnode.session.isid", "-v", "12345",
                       "-n", "flashnode.session.erl", "-v", "1"))
    assert [r.rc for r in adm] == [0] * 5
    assert _params(adm[0]) == _params(adm[1]) == [(P.ERL, b"\0")]
    assert _params(adm[2]) == [(P.PORTAL_TYPE, b"ipv4\0")]
    assert _params(adm[3]) == [(P.ERL, b"\1")] and adm[3].requests[0]["count"] == 2
    failed = "Update for flashnode 0 of host 5 failed."
    fmt = "unknown value format '{}' for parameter name 'flashnode.session.{}' ({})"
    assert [(r.rc, r.out, r.err, r.requests) for r in ictl] == [
        (7, "", [fmt.format("abc", "erl", "expected a base-10 integer"), failed], []),
        (7, "", [fmt.format("256", "erl", "out of range [0, 255]"), failed], []),
        (7, "", [fmt.format("ipv4x", "portal_type", "longer than 4 bytes"), failed], []),
        (1, "", ["Cannot send flashnode.session.username: no flashnode parameter carries "
                 "it (iscsiadm 2.1.8 sends none).", "Build flashnode config failed.",
                 failed], []),
        (1, "", ["Cannot send flashnode.session.isid: '12345' is not an ISID of 12 hex "
                 "digits.", "Build flashnode config failed.", failed], [])]


def test_update_refuses_what_qla4xxx_would_take_wrongly(tmp_path, shim):
    """Deliberate: qla4xxx (qla4xxx_sysfs_ddb_set_param) has no case for the discovery
    parent's type: it refuses it with ENOSYS after applying in memory the pairs sent before
    it, and saves none of them to flash; and it keeps one byte of the IPv6 flow label and
    of the TCP window scale factors.  iscsiadm sends both; iscsictl refuses, sends
    nothing."""
    update = (*H5, "-o", "update", "-x", "0")
    adm, ictl = _both(tmp_path, shim,
                      (*update, "-n", "flashnode.session.targetname", "-v", "iqn.2001-05.x:y",
                       "-n", "flashnode.session.discovery_parent_type", "-v", "iSNS"),
                      (*update, "-n", "flashnode.conn[0].ipv6_flow_label", "-v", "54321"),
                      (*update, "-n", "flashnode.conn[0].tcp_xmit_wsf", "-v", "300"),
                      (*update, "-n", "flashnode.conn[0].tcp_recv_wsf", "-v", "255"))
    assert [len(r.requests) for r in adm] == [1, 1, 1, 1]
    assert [r.rc for r in ictl] == [1, 1, 1, 0] and [len(r.requests) for r in ictl] == [0, 0, 0, 1]
    assert ictl[0].err[0].startswith("Cannot send flashnode.session.discovery_parent_type: "
                                     "qla4xxx does not set it")
    assert ictl[1].err[0] == ("Cannot send flashnode.conn[0].ipv6_flow_label: 54321 is more "
                              "than 255, and qla4xxx keeps only its low byte "
                              "(qla4xxx_sysfs_ddb_set_param).")
    assert _params(ictl[3]) == _params(adm[3]) == [(P.TCP_RECV_WSF, b"\xff\0\0\0")]


def test_an_index_that_is_not_a_number_alone_is_refused(tmp_path, shim):
    """Deliberate: iscsiadm reads ``-x`` with strtoull, so ``0x1``, ``0o2`` and ``0,10``
    name flash target 0, and a typo deletes it; iscsiadm reads "5x" as 5.  iscsictl
    refuses each (7), sends nothing."""
    adm, ictl = _both(tmp_path, shim, *[(*H5, "-o", "delete", "-x", x)
                                        for x in ("0x1", "0,10", "1x")])
    assert [[q["flashnode_idx"] for q in r.requests] for r in adm] == [[0], [0], [1]]
    assert [(r.rc, r.err, r.requests) for r in ictl] == [
        (7, [f"Invalid index {x}."], []) for x in ("0x1", "0,10", "1x")]


def test_writes_as_json(tmp_path, shim):
    """``{"host_no", "index", "op", "rc"}`` alone on stdout, ``"message"`` added for the
    refusals that are answers (already logged in, not logged in)."""
    with HbaRig(tmp_path, shim, _hosts()) as rig:
        def run(*args):
            cp = rig.ictl(*H5, *args, "--json")
            return cp.returncode, json.loads(cp.stdout), cp.stderr
        assert run("-o", "new", "-A", "ipv6") == (
            0, {"host_no": 5, "index": 11, "op": "new", "rc": 0}, "")
        assert run("-o", "update", "-x", "0", "-n", "flashnode.session.tpgt", "-v", "3") == (
            0, {"host_no": 5, "index": 0, "op": "update", "rc": 0}, "")
        assert run("-o", "login", "-x", "1") == (
            15, {"host_no": 5, "index": 1, "op": "login", "rc": 15,
                 "message": "Flashnode 1 of host 5 already logged in."},
            "iscsictl: Received iferror -1: Operation not permitted.\n")
        assert run("-o", "logout", "-x", "1")[:2] == (
            0, {"host_no": 5, "index": 1, "op": "logout", "rc": 0})
        assert run("-o", "logout", "-x", "1")[1]["message"] == \
            "Flashnode 1 of host 5 not logged in."


def test_each_key_has_iscsiadms_parameter():
    """flashnode_build_config's table: 53 of the record's 59 keys have a parameter (named
    as the kernel names it); the CHAP names, passwords and in-index and is_boot_target
    have none."""
    sent = {a.key: P[a.param] for a in FLASHNODE_ATTRS if a.param is not None}
    assert len(sent) == 53 and len(set(sent.values())) == 53
    assert sorted(a.key.rsplit(".", 1)[1] for a in FLASHNODE_ATTRS if a.param is None) == [
        "chap_in_idx", "is_boot_target", "password", "password_in", "username", "username_in"]
    assert sent["flashnode.session.targetname"] == P.NAME
    assert sent["flashnode.conn[0].fragment_disable"] == P.IP_FRAG_DISABLE
