"""``-m host -C chap`` and ``-C stats`` on an offload HBA, side by side with the real
iscsiadm 2.1.8: both run against the same fake qla4xxx kernel (tests/fake_hba.py, through
the LD_PRELOAD shim) and the same sysfs tree, and must print the same, exit the same (but
for iscsiadm's byte-count exit codes on success, README) and send the same requests."""

from __future__ import annotations

import json
import os
import re

import pytest

from fake_hba import ChapEntry, Host
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiUeventE as E
from offload_tree import HbaRig, stderr_lines


def _table(n: int) -> dict[int, ChapEntry]:
    """``n`` entries at indexes 0, 2, 4...: odd ones a target's (in), even ones ours (out)."""
    return {2 * i: ChapEntry(i % 2, f"user{i}".encode(), f"secret-{i:03d}".encode())
            for i in range(n)}


@pytest.fixture
def rig(tmp_path, shim):
    hosts = {3: Host("tcp"), 5: Host("qla4xxx", chap=_table(10), chap_in_use={4}),
             6: Host("bnx2i")}
    with HbaRig(tmp_path, shim, hosts) as r:
        yield r



def test_table_listed_as_iscsiadm_lists_it_reading_7_entries_a_request(rig):
    """10 entries: iscsictl asks for them as iscsiadm does (7 from index 0, then from the
    last one's index + 1), prints the same records with -S, masks the secrets without."""
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    adm_reads = [(r["chap_tbl_idx"], r["num_entries"]) for _, r in rig.kernel.sent(E.GET_CHAP)]
    rig.kernel.requests.clear()
    shown = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "-S")
    assert adm_reads == [(0, 7), (13, 7)]
    assert [(r["chap_tbl_idx"], r["num_entries"])
            for _, r in rig.kernel.sent(E.GET_CHAP)] == adm_reads
    assert adm.stdout.count("# BEGIN RECORD 2.1.8") == 10
    assert (shown.returncode, shown.stdout, shown.stderr) == (0, adm.stdout, "")
    masked = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    assert masked.returncode == 0 and "secret-" not in masked.stdout
    assert masked.stdout == re.sub(r"(password(_in)? = ).*", r"\1********", adm.stdout)
    assert "host.auth.username_in = user1\nhost.auth.password_in = ********\n" in masked.stdout


def test_one_entry_and_json(rig):
    one = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "-x", "6")
    assert one.returncode == 0
    assert one.stdout == ("# BEGIN RECORD 2.1.8\nhost.auth.tbl_idx = 6\n"
                          "host.auth.username_in = user3\nhost.auth.password_in = ********\n"
                          "# END RECORD\n")
    missing = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "-x", "7")
    assert (missing.returncode, missing.stderr) == (21, "iscsictl: No CHAP entry 7 on host 5.\n")
    doc = json.loads(rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "--json").stdout)
    assert len(doc) == 10
    assert doc[1] == {"host_no": 5, "index": 2, "type": "in", "username": "user1",
                      "password": "********"}


@pytest.mark.parametrize("kind", ["out", "in"])
def test_new_entry_sent_as_iscsiadm_sends_it(rig, kind):
    """The same SET_CHAP nlattrs byte for byte (index u16, type u32, name, secret, length),
    and the driver's table then holds the entry."""
    sfx = "" if kind == "out" else "_in"
    args = ("-m", "host", "-H", "5", "-C", "chap", "-o", "new", "-x", "21",
            "-n", f"host.auth.username{sfx}", "-v", "alice",
            "-n", f"host.auth.password{sfx}", "-v", "s3cret-s3cret")
    adm = rig.adm(*args)
    table = rig.kernel.hosts[5].chap
    assert table.pop(21) == ChapEntry(0 if kind == "out" else 1, b"alice", b"s3cret-s3cret")
    ictl = rig.ictl(*args)
    (adm_req, ictl_req) = rig.kernel.sent(E.SET_CHAP)
    assert adm_req[1]["host_no"] == ictl_req[1]["host_no"] == 5
    assert ictl_req[1]["payload"] == adm_req[1]["payload"]
    assert m.decode_nlas(m.iscsi_param_info_nla, ictl_req[1]["payload"])[2]["value"] == b"alice"
    assert table[21] == ChapEntry(0 if kind == "out" else 1, b"alice", b"s3cret-s3cret")
    assert (adm.stdout, adm.stderr) == (ictl.stdout, ictl.stderr) == ("", "")
    assert adm.returncode == ictl.returncode == 0
    again = rig.ictl(*args[:-1], "other-secret", "--json")
    assert json.loads(again.stdout) == {"host_no": 5, "index": 21, "op": "new", "rc": 0}
    assert table[21].password == b"other-secret"


@pytest.mark.parametrize("args, rc, message", [
    # an entry a flash target uses: EBUSY
    (("-o", "delete", "-x", "4"), 28, "CHAP index 4 is in use."),
    (("-o", "update", "-x", "4", "-n", "host.auth.username", "-v", "a",
      "-n", "host.auth.password", "-v", "b"), 28, "CHAP index 4 is in use."),
    # a name and a secret of different directions, a name alone, three values
    (("-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "a",
      "-n", "host.auth.password_in", "-v", "b"), 7,
     "Invalid username/password pair passed. Unable to determine the type of chap entry"),
    (("-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "a"), 7,
     "Invalid username/password pair passed. Unable to determine the type of chap entry"),
    (("-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "a",
      "-n", "host.auth.password", "-v", "b", "-n", "host.auth.tbl_idx", "-v", "3"), 1,
     "Only one pair of username/password can be passed."),
    # no -o, -o not one of these
    ((), 7, "CHAP mode requires host no and valid operation"),
    (("-o", "login"), 7, "Invalid operation."),
])
def test_refusals_as_iscsiadm(rig, args, rc, message):
    before = dict(rig.kernel.hosts[5].chap)
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", *args)
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "chap", *args)
    assert adm.returncode == ictl.returncode == rc
    assert stderr_lines(adm.stderr, "iscsiadm")[-1] == stderr_lines(ictl.stderr, "iscsictl")[-1] == message
    assert rig.kernel.hosts[5].chap == before


def test_a_driver_without_a_table(rig):
    """A software host's driver (tcp) keeps no CHAP table: GET_CHAP is EINVAL, SET_CHAP
    ENOSYS; bnx2i has no statistics (ENOSYS).  Exit 1 as iscsiadm, the errno said."""
    for args, what in ((("-H", "3", "-C", "chap", "-o", "show"), "get_chap_info failed"),
                       (("-H", "3", "-C", "chap", "-o", "new", "-x", "1", "-n",
                         "host.auth.username", "-v", "a", "-n", "host.auth.password", "-v", "b"),
                        "CHAP setting failed"),
                       (("-H", "6", "-C", "stats"), "get_host_stats failed")):
        adm = rig.adm("-m", "host", *args)
        ictl = rig.ictl("-m", "host", *args)
        assert adm.returncode == ictl.returncode == 1
        assert what in adm.stderr
        errname = "EINVAL, Invalid argument" if "get_chap" in what else \
            "ENOSYS, Function not implemented"
        assert ictl.stderr == f"iscsictl: {what}: {errname}\n"


def test_unknown_host_and_missing_host(rig):
    for sub in ("chap", "stats"):
        ops = ("-o", "show") if sub == "chap" else ()
        adm = rig.adm("-m", "host", "-H", "9", "-C", sub, *ops)
        ictl = rig.ictl("-m", "host", "-H", "9", "-C", sub, *ops)
        assert adm.returncode == ictl.returncode == 12
        assert ictl.stderr.endswith("iscsictl: Could not match hostno 9 to transport.\n")
    ictl = rig.ictl("-m", "host", "-C", "stats")
    assert (ictl.returncode, ictl.stderr) == (7, "iscsictl: STATS mode requires host no\n")
    assert not rig.kernel.requests


def test_what_iscsictl_refuses_that_iscsiadm_would_get_wrong(rig):
    """A delete without -x (iscsiadm: a delete that says it failed and exits 0), an index
    past 16 bits (iscsiadm: 65541 changes entry 5), an empty secret: nothing is sent."""
    pair = ("-n", "host.auth.username", "-v", "a", "-n", "host.auth.password", "-v", "b")
    cases = [(("-o", "delete"), "-o delete needs the CHAP entry's index (-x IDX)"),
             (("-o", "update", "-x", "65541", *pair), "Invalid chap table index."),
             (("-o", "delete", "-x", "2049"), "Invalid chap table index."),
             (("-o", "new", "-x", "1"), "Chap username/password not provided."),
             (("-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "a",
               "-n", "host.auth.password", "-v", ""),
              "The CHAP password must be 1 to 255 bytes long (it is 0)."),
             (("-o", "new", "-x", "1", "-n", "host.auth.username", "-v", "u" * 256,
               "-n", "host.auth.password", "-v", "b"),
              "The CHAP username must be 1 to 255 bytes long (it is 256).")]
    for args, message in cases:
        r = rig.ictl("-m", "host", "-H", "5", "-C", "chap", *args)
        assert (r.returncode, r.stderr) == (7, f"iscsictl: {message}\n"), args
    assert not rig.kernel.requests
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "update", "-x", "65541", *pair)
    (req,) = rig.kernel.sent(E.SET_CHAP)
    assert m.decode_nlas(m.iscsi_param_info_nla, req[1]["payload"])[0]["value"] == b"\x05\x00"
    assert adm.returncode == 0


def test_a_new_entry_without_an_index_takes_the_first_free_one_as_iscsiadm(rig):
    """-o new without -x: index 2049 (MAX_CHAP_ENTRIES + 1), the same bytes as iscsiadm's,
    and qla4xxx puts the entry in its table's first free place (before: refused, 7)."""
    pair = ("-n", "host.auth.username", "-v", "free", "-n", "host.auth.password",
            "-v", "free-secret-1")
    table = rig.kernel.hosts[5].chap
    free = [i for i in range(128) if i not in table][:2]
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "new", *pair)
    (a,) = rig.kernel.sent(E.SET_CHAP)
    rig.kernel.requests.clear()
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "new", *pair)
    (i,) = rig.kernel.sent(E.SET_CHAP)
    assert ictl.returncode == 0 and adm.returncode >= 0, ictl.stderr
    assert i[1]["payload"] == a[1]["payload"]
    assert m.decode_nlas(m.iscsi_param_info_nla, i[1]["payload"])[0]["value"] == \
        (2049).to_bytes(2, "little")
    assert sorted(k for k, e in table.items() if e.username == b"free") == free


def test_delete(rig):
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "delete", "-x", "0")
    assert 0 not in rig.kernel.hosts[5].chap
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "delete", "-x", "2")
    assert 2 not in rig.kernel.hosts[5].chap
    assert adm.stdout == "Deleting CHAP index: 0\n" and ictl.stdout == "Deleting CHAP index: 2\n"
    assert ictl.returncode == 0 and ictl.stderr == ""
    assert adm.returncode == 72  # iscsiadm: the answer's byte count
    (a, i) = rig.kernel.sent(E.DELETE_CHAP)
    assert (a[1]["host_no"], a[1]["chap_tbl_idx"], i[1]["host_no"], i[1]["chap_tbl_idx"]) == \
        (5, 0, 5, 2)


def test_host_statistics_as_iscsiadm_prints_them(rig):
    rig.kernel.hosts[5].stats.update(mactx_frames=1234, tcprx_byte=10 ** 12,
                                     iscsi_sequence_error=7)
    adm = rig.adm("-m", "host", "-H", "5", "-C", "stats")
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "stats")
    assert adm.stdout.startswith("Host Statistics:\n\tmactx_frames: 1234\n")
    assert "\ttcprx_byte: 1000000000000\n" in adm.stdout
    assert (ictl.returncode, ictl.stdout, ictl.stderr) == (0, adm.stdout, "")
    assert adm.returncode == 224  # (72 + 664) % 256
    doc = json.loads(rig.ictl("-m", "host", "-H", "5", "-C", "stats", "--json").stdout)
    assert (doc["host_no"], doc["iscsi_sequence_error"], doc["custom"]) == (5, 7, [])
    assert len(doc) == 82 + 3  # the counters flat, as -m session -s --json has a session's


def test_host_statistics_of_the_driver_s_own(rig):
    """Counters after struct iscsi_offload_host_stats (custom_length; no driver in 6.1 sends
    any): iscsictl prints them after the others, and --json has them as -m session -s's
    custom ones, [desc, value] pairs in the kernel's order.  (iscsiadm 2.1.8's buffer has no
    room for them: it aborts, "munmap_chunk(): invalid pointer"; its text is compared
    without them.)"""
    adm = rig.adm("-m", "host", "-H", "5", "-C", "stats")
    rig.kernel.hosts[5].stats_custom[:] = [(b"fw_resets", 3), (b"link_down", 2 ** 40)]
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "stats")
    assert adm.returncode != 0 and adm.stdout.startswith("Host Statistics:\n")
    assert (ictl.returncode, ictl.stdout, ictl.stderr) == \
        (0, adm.stdout + "\tfw_resets: 3\n\tlink_down: 1099511627776\n", "")
    doc = json.loads(rig.ictl("-m", "host", "-H", "5", "-C", "stats", "--json").stdout)
    assert doc["custom"] == [["fw_resets", 3], ["link_down", 2 ** 40]]


def test_no_netlink(rig, monkeypatch):
    """The socket cannot be opened (here: the fake kernel's path does not exist): iscsiadm's
    "Netlink open failed." and 9 (ISCSI_ERR_INTERNAL)."""
    rig.kernel.env = lambda shim: {"LD_PRELOAD": shim,
                                   "ISCSI_FAKE_NETLINK": os.path.join(rig.dir, "nowhere")}
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    assert adm.returncode == ictl.returncode == 9
    assert "Netlink open failed." in adm.stderr
    assert ictl.stderr.startswith("iscsictl: Netlink open failed: ")


def test_a_driver_that_does_not_move_on_is_an_error_not_a_loop(rig):
    """A driver answering 7 entries from index 0 whatever it is asked (the kernel's header
    echoes the index asked, iscsi_get_chap): iscsiadm would ask forever; iscsictl stops at
    the second answer and says why (1)."""
    answer = rig.kernel._get_chap

    def from_0(raw, msg, host):
        (reply,) = m.decode_messages(answer(raw, {**msg, "chap_tbl_idx": 0}, host)[0])
        return [m.encode_message(E.GET_CHAP, transport_handle=msg["transport_handle"],
                                 nlmsg_type=0, host_no=msg["host_no"],
                                 chap_tbl_idx=msg["chap_tbl_idx"],
                                 num_entries=reply["num_entries"], payload=reply["payload"])]
    rig.kernel._get_chap = from_0
    r = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == ("iscsictl: get_chap_info failed: the driver answered entries from 0 "
                        "when asked from 13\n")
    assert len(rig.kernel.sent(E.GET_CHAP)) == 2


def test_an_entry_of_another_type_is_an_incoming_one(rig):
    """idbm_recinfo_host_chap: CHAP_TYPE_OUT is outgoing, any other type incoming."""
    rig.kernel.hosts[5].chap = {1: ChapEntry(2, b"odd", b"odd-secret")}
    adm = rig.adm("-m", "host", "-H", "5", "-C", "chap", "-o", "show")
    ictl = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "-S")
    assert "host.auth.username_in = odd\n" in adm.stdout
    assert ictl.stdout == adm.stdout
    doc = json.loads(rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "--json").stdout)
    assert doc[0]["type"] == "in"


@pytest.mark.parametrize("index", ["abc", "", " x1", "0x1", "0,10"])
def test_an_index_that_is_no_number_deletes_nothing(rig, index):
    """-x that is not a number alone: refused, 7, nothing sent (iscsiadm's strtoull reads
    the number it starts with, or 0, and deletes that entry: a typo cost the table's entry
    0)."""
    before = dict(rig.kernel.hosts[5].chap)
    rig.kernel.requests.clear()
    for sub in (("-C", "chap", "-o", "delete"), ("-C", "flashnode", "-o", "delete")):
        r = rig.ictl("-m", "host", "-H", "5", *sub, "-x", index)
        assert r.returncode == 7 and f"Invalid index {index}." in r.stderr
    assert rig.kernel.requests == [] and rig.kernel.hosts[5].chap == before
    assert rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "show", "-x", "6").returncode == 0


def test_a_new_entry_in_the_first_free_slot_names_no_index(rig):
    """Without -x the driver takes its first free entry, which it does not say: --json
    gives no index (it gave 2049, iscsiadm's marker, which names no entry)."""
    r = rig.ictl("-m", "host", "-H", "5", "-C", "chap", "-o", "new", "-n", "host.auth.username",
                 "-v", "free", "-n", "host.auth.password", "-v", "free-secret-12", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"host_no": 5, "index": None, "op": "new", "rc": 0}


def test_host_mode_refuses_an_unknown_operation_or_sub_mode(rig):
    for args, message in ((("-o", "bogus"), "can not recognize operation: 'bogus'"),
                          (("-C", "ping"), "Invalid Sub Mode")):
        adm = rig.adm("-m", "host", *args)
        ictl = rig.ictl("-m", "host", *args)
        assert ictl.returncode == 7 and not ictl.stdout
        assert stderr_lines(adm.stderr, "iscsiadm")[-1] == \
            stderr_lines(ictl.stderr, "iscsictl")[-1] == message
        assert adm.returncode == (7 if args[0] == "-o" else 0)  # iscsiadm: 0 for -C ping
