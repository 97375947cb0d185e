"""``-m fw`` and ``-m discovery -t fw`` on fixture trees of the kernel's ``firmware/ibft``
(tests/ibft_tree.py) holding the VM's table (vm-tests/guest/ibft.py).  The VM test
test_boot_firmware_targets_as_iscsiadm (vm-tests/guest_tests/test_iscsiadm_flows.py) runs
the same commands on the real iscsi_ibft module's tree against iscsiadm; the expected text
here is what iscsiadm 2.1.8 printed there."""

from __future__ import annotations

import builtins
import errno
import io
import os
import sys
from pathlib import Path

import pytest

from iscsictl.cli.main import run
from iscsictl.cli.output import Output
from ibft_tree import write_tree
from test_session_cmd import FakeDaemon

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vm-tests" / "guest"))
import ibft  # noqa: E402

BOOT, DATA = ibft.BOOT_TARGET["name"], ibft.DATA_TARGET["name"]
PCI = "devices/pci0000:00/0000:00:00.0"

_NIC_LINES = """\
iface.initiatorname = iqn.2026-11.org.example.vm:ibft-host
iface.transport_name = tcp
iface.hwaddress = 52:54:00:98:00:02
iface.bootproto = STATIC
iface.ipaddress = 10.98.0.2
iface.prefix_len = 24
iface.subnet_mask = 255.255.255.0
iface.gateway = 10.98.0.1
iface.primary_dns = 10.98.0.53
iface.vlan_id = 0
iface.net_ifacename = ibft0
"""
FW_TEXT = f"""\
# BEGIN RECORD 2.1.8
{_NIC_LINES}node.name = iqn.2003-01.org.example.vm:ibft-boot
node.conn[0].address = 127.0.0.1
node.conn[0].port = 3260
node.session.auth.username = ibftuser
node.session.auth.password = ibft-secret-12
node.boot_lun = 00000000
# END RECORD
# BEGIN RECORD 2.1.8
{_NIC_LINES}node.name = iqn.2003-01.org.example.vm:ibft-data
node.conn[0].address = 127.0.0.1
node.conn[0].port = 3261
node.session.auth.username = ibftuser2
node.session.auth.password = ibft-secret-34
node.session.auth.username_in = ibfttarget
node.session.auth.password_in = ibft-target-56
node.boot_lun = 01000000
# END RECORD
"""


def cli(*args):
    out, err = io.StringIO(), io.StringIO()
    rc = run(list(args), Output(out, err))
    return rc, out.getvalue(), err.getvalue()


def _netdev(sys_root: Path, name: str, mac: str, ifindex: int = 2) -> None:
    d = sys_root / "class/net" / name
    d.mkdir(parents=True)
    for k, v in (("type", 1), ("address", mac), ("ifindex", ifindex)):
        (d / k).write_text(f"{v}\n")


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A sysfs root with the VM's iBFT (its NIC on the PCI host bridge, no network function
    there, so the device is found by MAC: ibft0), an empty DB, no daemon."""
    sys_root = tmp_path / "sys"
    (sys_root / PCI).mkdir(parents=True)
    nic = dict(ibft.NIC, device=f"../../../{PCI}")
    write_tree(sys_root, ibft.INITIATOR, [nic], [ibft.BOOT_TARGET, ibft.DATA_TARGET])
    _netdev(sys_root, "ibft0", ibft.NIC["mac"])
    db = tmp_path / "db"
    db.mkdir()
    (db / "initiatorname.iscsi").write_text("InitiatorName=iqn.2026-11.x:host\n")
    for k, v in (("ISCSICTL_SYSFS_ROOT", sys_root), ("ISCSICTL_DB_ROOT", db),
                 ("ISCSICTL_CONFIG_ROOT", db), ("ISCSICTL_SOCKET", tmp_path / "none.sock")):
        monkeypatch.setenv(k, str(v))
    return sys_root, db


def _masked(text: str) -> str:
    return "\n".join(line.split(" = ")[0] + " = ********" if "password" in line else line
                     for line in text.splitlines()) + "\n"


def test_fw_prints_iscsiadms_records_with_secrets_masked(env):
    assert cli("-m", "fw", "-S") == (0, FW_TEXT, "")
    assert cli("-m", "fw") == (0, _masked(FW_TEXT), "")


def test_fw_json(env):
    import json
    rc, out, _ = cli("-m", "fw", "--json")
    doc = json.loads(out)
    assert rc == 0 and [d["boot_target"] for d in doc] == ["target0", "target1"]
    assert [d["boot_selected"] for d in doc] == [True, False]
    assert doc[0]["values"]["node.session.auth.password"] == "********"
    assert doc[1]["values"]["node.boot_lun"] == "01000000"


def test_nic_device_without_a_netdev_of_its_mac_leaves_the_targets_out(env):
    sys_root, _ = env
    (sys_root / "class/net/ibft0/address").write_text("52:54:00:00:00:99\n")
    assert cli("-m", "fw") == (21, "", "iscsictl: Could not get list of targets from "
                                       "firmware. (err 21)\n")


def test_a_nic_without_a_prefix_length_prints_iscsiadms_minus_one(env):
    """No ``prefix-len`` (an offload driver's iscsi_boot table has none): iscsiadm's
    fw_print_entry prints the -1 its sysfs_get_int left (before: no line)."""
    sys_root, _ = env
    (sys_root / "firmware/ibft/ethernet0/prefix-len").unlink()
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and out.count("iface.prefix_len = -1\niface.subnet_mask = ") == 2, out


def test_nic_without_a_pci_device_has_no_netdev(env):
    sys_root, _ = env
    (sys_root / "firmware/ibft/ethernet0/device").unlink()
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and "iface.net_ifacename" not in out and out.count("# END RECORD") == 2


def test_pci_function_with_a_network_device_names_it(env):
    sys_root, _ = env
    (sys_root / PCI / "net" / "enp0s3").mkdir(parents=True)
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and out.count("iface.net_ifacename = enp0s3\n") == 2


def test_a_pci_function_with_two_ports_devices_names_the_one_with_the_nics_mac(env):
    """mlx4's layout: one PCI function, a network device per port.  The one whose address
    is the firmware NIC's MAC, not the first by name (open-iscsi's get_iface_from_device
    takes the first it reads, and `-N` would set the boot address up on the other port)."""
    sys_root, _ = env
    for name, mac in (("p1", "52:54:00:00:00:01"), ("p2", ibft.NIC["mac"].upper())):
        (sys_root / PCI / "net" / name).mkdir(parents=True)
        (sys_root / PCI / "net" / name / "address").write_text(mac.lower() + "\n")
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and out.count("iface.net_ifacename = p2\n") == 2, out


def test_invalid_and_unselected_entries_are_left_out(env):
    sys_root, _ = env
    (sys_root / "firmware/ibft/target1/nic-assoc").write_text("5\n")
    (sys_root / "firmware/ibft/target0/flags").write_text("0\n")
    rc, out, err = cli("-m", "fw")
    assert (rc, out) == (21, "")
    assert "ibft/target1: invalid nic-assoc of 5 (1 NIC described)" in err


def test_reading_the_table_needs_cap_sys_admin(env, monkeypatch):
    from iscsictl.kernel import firmware
    real_open = builtins.open

    def no_access(path, *a, **kw):
        if "/firmware/ibft/" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(firmware, "open", no_access, raising=False)
    rc, out, err = cli("-m", "fw")
    assert (rc, out) == (1, "") and "needs CAP_SYS_ADMIN: run as root" in err


def test_no_firmware_is_21(env):
    import shutil
    shutil.rmtree(env[0] / "firmware")
    assert cli("-m", "fw")[0] == 21
    assert cli("-m", "discovery", "-t", "fw")[0] == 21


# ---- -m fw -l --------------------------------------------------------------------------------
@pytest.fixture
def daemon(env, monkeypatch, tmp_path):
    d = FakeDaemon(str(tmp_path / "d.sock"))
    monkeypatch.setenv("ISCSICTL_SOCKET", d.path)
    yield d
    d.close()


def _desc(target, port):
    return f"[iface: default, target: {target}, portal: 127.0.0.1,{port}]"


def test_fw_login_sends_the_firmwares_records_and_writes_nothing(daemon, env):
    daemon.answers = {"login": [{"ok": True, "node": _desc(BOOT, 3260), "sids": [1]},
                                {"ok": True, "node": _desc(DATA, 3261), "sids": [2]}]}
    rc, out, err = cli("-m", "fw", "-l")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [f"Logging in to {_desc(BOOT, 3260)}",
                                f"Logging in to {_desc(DATA, 3261)}",
                                f"Login to {_desc(BOOT, 3260)} successful.",
                                f"Login to {_desc(DATA, 3261)} successful."]
    (op, args), = daemon.calls
    boot, data = args["records"]
    assert (boot["node.name"], boot["node.tpgt"]) == (BOOT, "1")  # port 3260: a default
    assert (data["node.name"], data["node.conn[0].port"]) == (DATA, "3261")
    assert boot["iface.initiatorname"] == ibft.INITIATOR
    assert (boot["node.session.auth.username"], boot["node.session.auth.password"]) == \
        ("ibftuser", "ibft-secret-12")
    assert (data["node.session.auth.username_in"], data["node.session.auth.password_in"]) == \
        ("ibfttarget", "ibft-target-56")
    assert boot["node.session.initial_login_retry_max"] == "30"
    assert boot["node.conn[0].timeo.noop_out_interval"] == "0"
    assert boot["node.conn[0].timeo.noop_out_timeout"] == "0"
    # the firmware's names, which iscsid gives the kernel's session (no record holds them)
    assert [(r["node.session.boot_root"], r["node.session.boot_nic"],
             r["node.session.boot_target"]) for r in (boot, data)] == [
        ("ibft", "ethernet0", "target0"), ("ibft", "ethernet0", "target1")]
    assert not (env[1] / "nodes").exists()


@pytest.mark.parametrize("name_file", ["no name", "missing"])
def test_a_firmware_login_needs_no_initiatorname_file(daemon, env, name_file):
    """Each firmware record carries the firmware's initiator name: `-m fw -l` and `-m
    discovery -t fw -l` log in without reading initiatorname.iscsi, as iscsid takes the
    iface's name first (__session_create).  Before, a file without a name refused both
    (6), and a missing one was made with a new name and a warning that ACLs must allow it,
    a name the login did not use."""
    name = env[1] / "initiatorname.iscsi"
    if name_file == "missing":
        name.unlink()
    else:
        name.write_text("## no name here\n")
    daemon.answers = {"login": [{"ok": True, "node": _desc(BOOT, 3260), "sids": [1]},
                                {"ok": True, "node": _desc(DATA, 3261), "sids": [2]}]}
    for command in (("-m", "fw", "-l"), ("-m", "discovery", "-t", "fw", "-l")):
        rc, _, err = cli(*command)
        assert (rc, err) == (0, ""), command
        assert daemon.calls[-1][1]["initiator_name"] == ""
    assert name.exists() == (name_file != "missing")


def test_a_firmware_login_has_the_firmwares_chap_and_not_iscsid_confs(daemon, env):
    """The credentials are the firmware's, empty ones too (idbm_create_rec_from_boot_context
    copies all four): a boot target the firmware logs in to without CHAP is not sent
    iscsid.conf's, and one-way CHAP does not become mutual with iscsid.conf's incoming
    pair (before: every empty value kept iscsid.conf's, and the boot login failed)."""
    from iscsictl.protocol.config import LoginConfig

    sys_root, db = env
    (db / "iscsid.conf").write_text(
        "node.session.auth.authmethod = CHAP\n"
        "node.session.auth.username = confuser\nnode.session.auth.password = conf-secret-123\n"
        "node.session.auth.username_in = conftarget\n"
        "node.session.auth.password_in = conf-target-456\n")
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft")
    boot_target = {k: v for k, v in ibft.BOOT_TARGET.items() if not k.startswith("chap")}
    data_target = {k: v for k, v in ibft.DATA_TARGET.items() if not k.startswith("rev_chap")}
    write_tree(sys_root, ibft.INITIATOR, [dict(ibft.NIC, device=f"../../../{PCI}")],
               [boot_target, data_target])
    daemon.answers = {"login": [{"ok": True, "node": _desc(BOOT, 3260), "sids": [1]},
                                {"ok": True, "node": _desc(DATA, 3261), "sids": [2]}]}
    assert cli("-m", "fw", "-l")[0] == 0
    (op, args), = daemon.calls
    boot, data = args["records"]
    auth = ("username", "password", "username_in", "password_in")
    assert [boot.get(f"node.session.auth.{k}", "") for k in auth] == ["", "", "", ""]
    assert [data.get(f"node.session.auth.{k}", "") for k in auth] == [
        "ibftuser2", "ibft-secret-34", "", ""]
    assert LoginConfig.from_node(boot, ibft.INITIATOR).chap is None
    assert LoginConfig.from_node(data, ibft.INITIATOR).chap.username_in is None
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    written = _show(BOOT)
    assert [written[f"node.session.auth.{k}"] for k in auth] == ["<empty>"] * 4


def test_a_firmware_secret_that_is_not_utf8_is_used_as_its_bytes(daemon, env):
    """The firmware's CHAP secret is bytes: one that is not UTF-8 reaches the login as
    those bytes (before: decoded with U+FFFD, so the CHAP response was over other bytes
    and the target refused the boot disk)."""
    from iscsictl.protocol.config import LoginConfig

    (env[0] / "firmware/ibft/target0/chap-secret").write_bytes(b"sec\xe9ret-123456\n")
    daemon.answers = {"login": [{"ok": True, "node": _desc(BOOT, 3260), "sids": [1]},
                                {"ok": True, "node": _desc(DATA, 3261), "sids": [2]}]}
    assert cli("-m", "fw", "-l")[0] == 0
    (op, args), = daemon.calls
    boot = args["records"][0]
    assert LoginConfig.from_node(boot, ibft.INITIATOR).chap.password == b"sec\xe9ret-123456"


def test_a_firmware_secret_the_db_cannot_hold_is_not_printed(env):
    """A secret with a newline cannot be a record's value: the target is left out with a
    warning, which masks the secret (before: printed whole, without -S)."""
    (env[0] / "firmware/ibft/target0/chap-secret").write_bytes(b"TOPSECRET-a\nb-123456\n")
    rc, out, err = cli("-m", "discovery", "-t", "fw")
    assert "TOPSECRET" not in out + err and "'********'" in err, err
    assert out == f"127.0.0.1:3261,1 {DATA}\n"


def test_a_firmware_secret_with_blanks_at_an_end_is_not_written(daemon, env):
    """A secret with a blank at an end cannot be a record's value either: the file's reader
    strips it (before: written, read back without the blank, and every login from the
    record, -m discovery -t fw -l's among them, offered another secret).  The target is
    left out of the records, said with the secret masked, and the record it had is kept
    as it is, not deleted as stale (a review of the first fix: the user's settings went
    with it); -m fw -l logs in with the secret whole."""
    (env[0] / "firmware/ibft/target0/chap-secret").write_bytes(b"TOPSECRET-12 \n")
    rc, out, err = cli("-m", "discovery", "-t", "fw")
    assert "TOPSECRET" not in out + err and "'********'" in err and "blanks at an end" in err
    assert (rc, out) == (0, f"127.0.0.1:3261,1 {DATA}\n"), (rc, out, err)
    assert cli("-m", "node")[1] == f"127.0.0.1:3261,1 {DATA}\n"
    (env[0] / "firmware/ibft/target0/chap-secret").write_bytes(b"TOPSECRET-12\n")
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    assert cli("-m", "node", "-T", BOOT, "-o", "update", "-n",
               "node.session.timeo.replacement_timeout", "-v", "300")[0] == 0
    (env[0] / "firmware/ibft/target0/chap-secret").write_bytes(b"TOPSECRET-12 \n")
    rc, out, err = cli("-m", "discovery", "-t", "fw")
    assert rc == 0 and "left out" in err, (rc, out, err)
    rc, out, _ = cli("-m", "node", "-T", BOOT, "-o", "show", "-S")
    assert rc == 0 and "node.session.timeo.replacement_timeout = 300\n" in out
    assert "node.session.auth.password = TOPSECRET-12\n" in out  # (the record's, as it was)
    daemon.answers = {"login": [{"ok": True, "sids": [1]}, {"ok": True, "sids": [2]}]}
    assert cli("-m", "fw", "-l")[0] == 0
    boot = daemon.calls[-1][1]["records"][0]
    assert boot["node.session.auth.password"] == "TOPSECRET-12 "


def test_fw_login_takes_user_settings_but_not_the_interface(daemon, env):
    daemon.answers = {"login": [{"ok": True, "node": "x", "sids": [1]}] * 2}
    assert cli("-m", "fw", "-l", "-n", "node.session.initial_login_retry_max", "-v", "2")[0] == 0
    assert daemon.calls[0][1]["records"][0]["node.session.initial_login_retry_max"] == "2"
    rc, out, err = cli("-m", "fw", "-l", "-n", "iface.net_ifacename", "-v", "lo")
    assert (rc, out) == (7, "")
    assert err == ("iscsictl: Cannot override interface parameters for firmware logins\n"
                   "iscsictl: Could not merge user params\n")


def test_fw_login_takes_the_other_iface_keys_as_iscsiadm(daemon, env):
    """fill_in_default_fw_values refuses only the NIC, MAC and transport; the rest apply
    as idbm_node_set_rec_from_param(verify=0) applies them (before: every iface key was
    refused by -o update's rules, 7)."""
    daemon.answers = {"login": [{"ok": True, "node": "x", "sids": [1]}] * 2}
    rc, out, err = cli("-m", "fw", "-l", "-n", "iface.initiatorname", "-v",
                       "iqn.2026-11.x:other")
    assert rc == 0, err
    assert {r["iface.initiatorname"] for r in daemon.calls[0][1]["records"]} == \
        {"iqn.2026-11.x:other"}
    rc, _, err = cli("-m", "fw", "-l", "-n", "node.bogus", "-v", "1")
    assert rc == 7 and "Could not merge user params" in err


def test_fw_login_failure_is_its_exit_code(daemon, env):
    daemon.answers = {"login": [{"ok": True, "node": _desc(BOOT, 3260), "sids": [1]},
                                {"ok": False, "code": 24, "node": _desc(DATA, 3261)}]}
    rc, _, err = cli("-m", "fw", "-l")
    assert rc == 24 and err.endswith("Could not log into all portals\n")


def test_fw_login_again_is_no_failure(daemon, env):
    """A target whose session is there already is said, but is no failure: dracut's
    iscsiroot runs ``-m fw -l`` again once the boot session is up (iscsiadm exits 0);
    it was 15 and "Could not log into all portals".  Another target's failure still is."""
    from test_session_cmd import add_session
    add_session(env[0], 1, 0, BOOT, "127.0.0.1", {0: "sda"})  # the boot session, in sysfs
    daemon.answers = {"login": [{"ok": False, "code": 15, "node": _desc(DATA, 3261),
                                 "message": "default: 1 session requested, but 1 already "
                                            "present."}]}  # the other: a race, said by it
    rc, out, err = cli("-m", "fw", "-l")
    assert rc == 0 and "Could not log" not in err, err
    assert err.count("1 session requested, but 1 already present.") == 2
    (op, args), = daemon.calls
    assert [r["node.name"] for r in args["records"]] == [DATA]  # the present one: not sent
    daemon.answers = {"login": [{"ok": False, "code": 24, "node": _desc(DATA, 3261)}]}
    rc, _, err = cli("-m", "fw", "-l")
    assert rc == 24 and err.endswith("Could not log into all portals\n")


# ---- -m discovery -t fw ------------------------------------------------------------------------
def _show(target):
    rc, out, _ = cli("-m", "node", "-T", target, "-o", "show")
    assert rc == 0
    return dict(line.split(" = ", 1) for line in out.splitlines() if " = " in line)


def test_fw_discovery_makes_linked_records(env):
    _, db = env
    rc, out, _ = cli("-m", "discovery", "-t", "fw")
    assert (rc, out) == (0, f"127.0.0.1:3260,1 {BOOT}\n127.0.0.1:3261,1 {DATA}\n")
    assert sorted(os.listdir(db / "fw")) == [f"{BOOT},127.0.0.1,3260,1,default",
                                              f"{DATA},127.0.0.1,3261,1,default"]
    rec = _show(BOOT)
    assert (rec["node.discovery_type"], rec["node.discovery_address"],
            rec["node.discovery_port"]) == ("fw", "<empty>", "0")
    assert (rec["node.startup"], rec["iface.initiatorname"],
            rec["node.session.auth.username"]) == ("manual", ibft.INITIATOR, "ibftuser")
    assert cli("-m", "discovery", "-P", "1")[1].endswith(
        f"FIRMWARE:\nTarget: {BOOT}\n\tPortal: 127.0.0.1:3260,1\n\t\tIface Name: default\n"
        f"Target: {DATA}\n\tPortal: 127.0.0.1:3261,1\n\t\tIface Name: default\n")


def test_fw_rediscovery_marks_boot_records_onboot_and_keeps_user_settings(env):
    sys_root, _ = env
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    assert cli("-m", "node", "-T", BOOT, "-o", "update", "-n",
               "node.session.timeo.replacement_timeout", "-v", "7")[0] == 0
    (sys_root / "firmware/ibft/target0/chap-secret").write_text("rotated-secret\n")
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    rec = _show(BOOT)
    assert (rec["node.startup"], rec["node.conn[0].startup"]) == ("onboot", "onboot")
    assert rec["node.session.timeo.replacement_timeout"] == "7"
    rc, out, _ = cli("-m", "node", "-T", BOOT, "-o", "show", "-S")
    assert "node.session.auth.password = rotated-secret\n" in out
    # mutual CHAP dropped from the firmware: its credentials go from the record too (before:
    # kept, and the boot login then asked the target to authenticate itself)
    assert cli("-m", "node", "-T", DATA, "-o", "update", "-n",
               "node.session.timeo.replacement_timeout", "-v", "7")[0] == 0
    assert _show(DATA)["node.session.auth.username_in"] == "ibfttarget"
    for name in ("rev-chap-name", "rev-chap-name-secret"):
        (sys_root / "firmware/ibft/target1" / name).unlink()
    (sys_root / "firmware/ibft/target1/chap-type").write_text("1\n")
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    rec = _show(DATA)
    assert (rec["node.session.auth.username_in"], rec["node.session.auth.password_in"],
            rec["node.session.auth.username"], rec["node.session.timeo.replacement_timeout"]
            ) == ("<empty>", "<empty>", "ibftuser2", "7")


def test_fw_rediscovery_deletes_what_the_firmware_dropped(env):
    sys_root, db = env
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft/target1")
    assert cli("-m", "discovery", "-t", "fw") == (0, f"127.0.0.1:3260,1 {BOOT}\n", "")
    assert cli("-m", "node")[1] == f"127.0.0.1:3260,1 {BOOT}\n"
    assert os.listdir(db / "fw") == [f"{BOOT},127.0.0.1,3260,1,default"]


def test_fw_discovery_with_o_show_changes_no_record(env):
    sys_root, _ = env
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft/target1")
    assert cli("-m", "discovery", "-t", "fw", "-o", "show") == (
        0, f"127.0.0.1:3260,1 {BOOT}\n", "")
    assert cli("-m", "node")[1] == f"127.0.0.1:3260,1 {BOOT}\n127.0.0.1:3261,1 {DATA}\n"


def test_fw_discovery_ops_and_modes(env):
    _, db = env
    assert cli("-m", "discovery", "-t", "fw", "-o", "nonpersistent")[0] == 0
    assert not (db / "nodes").exists()
    assert cli("-m", "discoverydb", "-t", "fw") == (
        7, "", "iscsictl: Invalid command. Possibly missing --discover argument.\n")
    assert cli("-m", "discoverydb", "-t", "fw", "-D")[0] == 0
    assert len(cli("-m", "node")[1].splitlines()) == 2


def test_fw_discovery_through_named_ifaces(env):
    assert cli("-m", "iface", "-I", "boot0", "-o", "new")[0] == 0
    rc, out, err = cli("-m", "discovery", "-t", "fw", "-I", "boot0", "-I", "nosuch")
    assert rc == 0 and "Could not read iface info for nosuch" in err
    assert cli("-m", "node", "-P", "1")[1].count("Iface Name: boot0") == 2
    # an unknown -I alone: iscsiadm goes on as without -I: the DB's software ifaces (boot0)
    rc, _, err = cli("-m", "discovery", "-t", "fw", "-I", "nosuch")
    assert rc == 0 and "Could not read iface info for nosuch" in err
    assert cli("-m", "node", "-P", "1")[1].count("Iface Name: boot0") == 2
    assert cli("-m", "iface", "-I", "boot0", "-o", "delete")[0] == 0
    assert cli("-m", "discovery", "-t", "fw")[0] == 0  # boot0's records go, default's come
    assert cli("-m", "node", "-P", "1")[1].count("Iface Name: default") == 2
    assert "boot0" not in cli("-m", "node", "-P", "1")[1]


def test_offload_boot_description_makes_its_iface(env):
    """An offload driver's iscsi_boot<N> root (be2iscsi's host 7): the transport is the
    host's, the iface is named <transport>.<MAC>.ipv4.0 and written by the discovery."""
    sys_root, db = env
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft")
    nic = dict(ibft.NIC, mac="00:90:fa:11:22:33")
    write_tree(sys_root, ibft.INITIATOR, [nic], [ibft.BOOT_TARGET], root="iscsi_boot7",
               isid="00023d000001")
    host = sys_root / "class/scsi_host/host7"
    host.mkdir(parents=True)
    (host / "proc_name").write_text("be2iscsi\n")
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and "iface.isid = 00023d000001\niface.transport_name = be2iscsi\n" in out
    assert "iface.net_ifacename" not in out
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    name = "be2iscsi.00:90:fa:11:22:33.ipv4.0"
    rc, out, _ = cli("-m", "iface", "-I", name)
    assert rc == 0 and "iface.transport_name = be2iscsi\n" in out
    assert "iface.ipaddress = 10.98.0.2\n" in out
    rec = _show(BOOT)
    assert (rec["iface.iscsi_ifacename"], rec["iface.transport_name"]) == (name, "be2iscsi")
    # a firmware value with a blank at an end: the iface written with it stripped, as the
    # file gives it back (refused whole, it would fail the whole discovery)
    (sys_root / "firmware/iscsi_boot7/initiator/initiator-name").write_text(
        ibft.INITIATOR + " \n")
    rc, _, err = cli("-m", "discovery", "-t", "fw")
    assert rc == 0 and "Could not setup" not in err, err
    assert f"iface.initiatorname = {ibft.INITIATOR}\n" in cli("-m", "iface", "-I", name)[1]


def test_a_qedi_dhcp_tables_nul_padded_addresses_are_read_as_open_iscsi_reads_them(env):
    """qedi's DHCP boot table (qedi_show_boot_eth_info): ``snprintf(buf, 8, "%s\\n",
    "0.0.0.0")`` returns 8, so each address file is "0.0.0.0" and snprintf's NUL.  Read up
    to the NUL, as open-iscsi reads a C string: the boot's iface is made with 0.0.0.0.
    Before, the NUL was kept, the value refused: `-m fw` printed it, and the discovery,
    `-m fw -l` and `iscsictl-start -b` failed (7, 21)."""
    sys_root, db = env
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft")
    nic = dict(ibft.NIC, mac="00:0e:1e:aa:bb:cc")
    write_tree(sys_root, ibft.INITIATOR, [nic], [ibft.BOOT_TARGET], root="iscsi_boot9")
    for attr in ("ip-addr", "subnet-mask", "gateway"):
        (sys_root / f"firmware/iscsi_boot9/ethernet0/{attr}").write_bytes(b"0.0.0.0\0")
    (sys_root / "class/scsi_host/host9").mkdir(parents=True)
    (sys_root / "class/scsi_host/host9/proc_name").write_text("qedi\n")
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and "iface.ipaddress = 0.0.0.0\n" in out and "\0" not in out
    rc, _, err = cli("-m", "discovery", "-t", "fw")
    assert rc == 0 and err == "", err
    out = cli("-m", "iface", "-I", "qedi.00:0e:1e:aa:bb:cc.ipv4.0")[1]
    assert "iface.ipaddress = 0.0.0.0\n" in out


def test_an_offload_boot_found_again_takes_the_firmwares_new_address_and_vlan(env):
    """The HBA's address and VLAN changed in the firmware (DHCP renumbered it, its VLAN
    removed): a discovery again writes both into the iface and the node record's copy of
    it, as iscsiadm writes them again from the boot context (before: both kept the old
    ones, so a relogin set the HBA up with an address and VLAN the firmware no longer
    uses)."""
    sys_root, db = env
    import shutil
    shutil.rmtree(sys_root / "firmware/ibft")
    nic = dict(ibft.NIC, mac="00:90:fa:11:22:33", vlan=5)
    write_tree(sys_root, ibft.INITIATOR, [nic], [ibft.BOOT_TARGET], root="iscsi_boot7",
               isid="00023d000001")
    (sys_root / "class/scsi_host/host7").mkdir(parents=True)
    (sys_root / "class/scsi_host/host7/proc_name").write_text("be2iscsi\n")
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    name = "be2iscsi.00:90:fa:11:22:33.ipv4.0"
    assert "iface.vlan_id = 5\n" in cli("-m", "iface", "-I", name)[1]
    (sys_root / "firmware/iscsi_boot7/ethernet0/ip-addr").write_text("10.98.0.77\n")
    (sys_root / "firmware/iscsi_boot7/ethernet0/vlan").write_text("0\n")
    r = cli("-m", "discovery", "-t", "fw")
    assert r[0] == 0, r
    out = cli("-m", "iface", "-I", name)[1]
    assert "iface.ipaddress = 10.98.0.77\n" in out and "iface.vlan_id = 0\n" in out
    rec = _show(BOOT)
    assert (rec["iface.ipaddress"], rec["iface.vlan_id"]) == ("10.98.0.77", "0")


def test_a_credential_the_driver_shows_unset_is_none(env):
    """qedi shows a disabled CHAP name or secret as "(null)" (its sprintf of a NULL
    pointer): no credential, as open-iscsi's sysfs_get_value reads it (before: the record
    held "(null)" as name and secrets both ways, and the boot login offered mutual CHAP
    to a target without CHAP, refused)."""
    sys_root, _ = env
    t = sys_root / "firmware/ibft/target0"
    for attr in ("chap-name", "chap-secret", "rev-chap-name", "rev-chap-name-secret"):
        (t / attr).write_text("(null)\n")
    rc, out, _ = cli("-m", "fw", "-S")
    assert rc == 0 and "(null)" not in out
    assert out.split("# END RECORD")[0].count("node.session.auth.") == 0
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    rec = _show(BOOT)
    assert [rec[f"node.session.auth.{k}"] for k in ("username", "password", "username_in",
                                                     "password_in")] == ["<empty>"] * 4


# ---- bad firmware tables ------------------------------------------------------------------------
_ATTRS = ("target0/flags", "target0/target-name", "target0/ip-addr", "target0/port",
          "target0/lun", "target0/nic-assoc", "target0/chap-name", "target0/chap-secret",
          "ethernet0/flags", "ethernet0/index", "ethernet0/mac", "ethernet0/ip-addr",
          "ethernet0/prefix-len", "ethernet0/vlan", "initiator/initiator-name")


def test_garbage_in_the_table_is_never_a_traceback(tmp_path_factory, monkeypatch):
    """Any attribute holding anything (or missing): -m fw, -m discovery -t fw and
    iscsictl-start -f end with 0 or 21 and iscsictl's own messages, never an unexpected
    error; a target no record can hold is named and left out."""
    import shutil

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from iscsictl.daemon.start import main as start_main

    base = tmp_path_factory.mktemp("fuzz")
    value = st.one_of(st.none(), st.binary(max_size=40),
                      st.sampled_from([b"0\n", b"1\n", b"3\n", b"-1\n", b"99999\n", b"a/b\n",
                                       b"..\n", b"\xff\xfe\n", b"iqn.2003-01.x:t\n"]))

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(st.sampled_from(_ATTRS), value, max_size=5))
    def check(changes):
        shutil.rmtree(base, ignore_errors=True)
        sys_root, db = base / "sys", base / "db"
        write_tree(sys_root, ibft.INITIATOR, [ibft.NIC], [ibft.BOOT_TARGET])
        db.mkdir(parents=True)
        for attr, raw in changes.items():
            path = sys_root / "firmware/ibft" / attr
            if raw is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(raw)
        monkeypatch.setenv("ISCSICTL_SYSFS_ROOT", str(sys_root))
        monkeypatch.setenv("ISCSICTL_DB_ROOT", str(db))
        monkeypatch.setenv("ISCSICTL_CONFIG_ROOT", str(db))
        for args in (["-m", "fw"], ["-m", "fw", "--json"], ["-m", "discovery", "-t", "fw"]):
            rc, _, err = cli(*args)
            assert rc in (0, 21), (args, changes, err)
            assert "unexpected error" not in err and "Traceback" not in err
        assert start_main(["-f", "-c", str(db)]) in (0, 21)

    check()


def test_an_ibft_nic_that_is_an_iscsi_hosts_port_is_an_offload_boot(env):
    """bnx2i and the like: the iBFT's NIC MAC is also an iSCSI host's hardware address
    (open-iscsi's iscsi_sysfs_get_host_no_from_hwaddress), so the boot goes through that
    host's transport, through the NIC's network device (iface.net_ifacename, as
    iface_setup_from_boot_context's iface->netdev: iscsictld brings it up)."""
    sys_root, _ = env
    for rel, value in (("class/iscsi_host/host5/hwaddress", ibft.NIC["mac"].upper()),
                       ("class/scsi_host/host5/proc_name", "bnx2i")):
        (sys_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (sys_root / rel).write_text(value + "\n")
    rc, out, _ = cli("-m", "fw")
    assert rc == 0 and out.count("iface.transport_name = bnx2i\n") == 2
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    rec = _show(BOOT)
    assert (rec["iface.iscsi_ifacename"], rec["iface.net_ifacename"]) == (
        f"bnx2i.{ibft.NIC['mac']}.ipv4.0", "ibft0")
    rc, _, err = cli("-m", "discovery", "-t", "fw")  # found again: the same iface
    assert (rc, err) == (0, ""), err
    # one made before ifaces named the device (hwaddress only), or the device renamed (the
    # initramfs's name): found again, its net_ifacename kept, no binding change refused
    path = env[1] / "ifaces" / f"bnx2i.{ibft.NIC['mac']}.ipv4.0"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if not line.startswith("iface.net_ifacename")))
    (sys_root / "class/net/ibft0").rename(sys_root / "class/net/eth9")
    rc, _, err = cli("-m", "discovery", "-t", "fw")
    assert (rc, err) == (0, ""), err
    assert "iface.net_ifacename" not in path.read_text()


def test_a_software_sessions_host_with_the_nics_mac_is_not_an_offload_boot(env):
    """iscsictld sets a software session's host hwaddress to the MAC its iface is bound
    to: such a host (iscsi_tcp, iser) is no offload port of the NIC (before: the boot was
    taken for a 'tcp' offload one, its iface tcp.<MAC>.ipv4.0 and -N skipped the NIC)."""
    sys_root, _ = env
    for transport in ("iscsi_tcp", "iscsi_iser"):  # their scsi_host_template proc_name
        for rel, value in (("class/iscsi_host/host5/hwaddress", ibft.NIC["mac"]),
                           ("class/scsi_host/host5/proc_name", transport)):
            (sys_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (sys_root / rel).write_text(value + "\n")
        rc, out, _ = cli("-m", "fw")
        assert rc == 0 and out.count("iface.transport_name = tcp\n") == 2
        assert cli("-m", "discovery", "-t", "fw")[0] == 0
        assert _show(BOOT)["iface.iscsi_ifacename"] == "default"


def test_the_boot_table_is_the_first_whose_flagged_entries_describe_a_boot(tmp_path):
    """iscsistart's get_boot_info: the first boot-flagged NIC and target of a table must
    describe them (fill_nic_context: a MAC; fill_tgt_context: a name and an address), else
    the next table is looked at (before: an iBFT whose flagged target had no address was
    the boot table, and the boot found no boot entry's initiator there)."""
    from iscsictl.kernel.firmware import boot_entry

    sys_root = tmp_path / "sys"
    write_tree(sys_root, ibft.INITIATOR, [ibft.NIC], [ibft.BOOT_TARGET])
    (sys_root / "firmware/ibft/target0/ip-addr").unlink()  # as a driver leaves it out
    write_tree(sys_root, "iqn.2026-11.x:hba-initiator", [ibft.NIC], [ibft.BOOT_TARGET],
               root="iscsi_boot7")
    assert boot_entry(str(sys_root)) == ("iscsi_boot7", "iqn.2026-11.x:hba-initiator")
    write_tree(sys_root, ibft.INITIATOR, [ibft.NIC], [ibft.BOOT_TARGET])
    assert boot_entry(str(sys_root)) == ("ibft", ibft.INITIATOR)


def test_fw_discovery_of_a_record_another_source_found_takes_it_over(env):
    """The boot target's record first found by SendTargets, then by the firmware: it
    becomes the firmware's (type fw, onboot), and the SendTargets source's link goes, as
    iscsiadm rewrites the record (idbm_add_node: idbm_delete_node first); deleting that
    SendTargets source leaves it (before: the link stayed, and the deletion took the boot
    disk's record with the source's own)."""
    from iscsictl.db.store import DiscoveryID, NodeDB, NodeID

    _, db_root = env
    db = NodeDB(str(db_root), str(db_root))
    st = DiscoveryID("sendtargets", "127.0.0.1", 3260)
    db.create_discovery(st)
    db.reconcile_discovery(st, [NodeID(BOOT, "127.0.0.1", 3260, 1)])
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    assert _show(BOOT)["node.discovery_type"] == "fw"
    assert os.listdir(db_root / "send_targets/127.0.0.1,3260") == ["st_config"]
    assert cli("-m", "discoverydb", "-t", "st", "-p", "127.0.0.1", "-o", "delete")[0] == 0
    assert (_show(BOOT)["node.discovery_type"], _show(BOOT)["node.startup"]) == ("fw", "onboot")


def test_fw_discovery_logs_in_with_the_record_the_db_holds(daemon, env):
    """-m discovery -t fw -l after the user changed a found record: the rediscovery keeps
    the setting, and the login is sent the record as the DB holds it, as a SendTargets
    discovery's -l (before: the record made afresh from iscsid.conf, replacement_timeout
    120 where the DB said 5, dm-multipath's)."""
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    assert cli("-m", "node", "-T", BOOT, "-o", "update", "-n",
               "node.session.timeo.replacement_timeout", "-v", "5")[0] == 0
    daemon.answers = {"login": [{"ok": True, "sids": [1]}, {"ok": True, "sids": [2]}]}
    assert cli("-m", "discovery", "-t", "fw", "-l")[0] == 0
    sent = {r["node.name"]: r for r in daemon.calls[-1][1]["records"]}
    assert sent[BOOT]["node.session.timeo.replacement_timeout"] == "5"
    assert sent[BOOT]["node.startup"] == "onboot"


def test_fw_discovery_keeps_a_stale_record_in_use_and_exits_0(env):
    """The firmware dropped a target whose session still runs: its record is kept, said,
    and the discovery exits 0, as iscsiadm's exec_disc_op_on_recs (which ignores
    delete_stale_rec's result; before: 15, and a unit running it failed)."""
    import shutil

    from test_session_cmd import add_session

    sys_root, _ = env
    assert cli("-m", "discovery", "-t", "fw")[0] == 0
    shutil.rmtree(sys_root / "firmware/ibft/target1")
    (sys_root / "module/scsi_transport_iscsi").mkdir(parents=True, exist_ok=True)
    (sys_root / "module/scsi_transport_iscsi/version").write_text("2.0-870\n")
    add_session(sys_root, 1, 3, DATA, "127.0.0.1", {})
    conn = sys_root / "devices/platform/host3/session1/connection1:0/iscsi_connection"
    for name in ("persistent_port", "port"):
        (conn / "connection1:0" / name).write_text("3261\n")
    rc, out, err = cli("-m", "discovery", "-t", "fw")
    assert rc == 0 and "session" in err, err
    assert DATA in cli("-m", "node")[1]


def test_fw_discovery_with_o_update_writes_the_records_missing(env):
    """-o update makes the records not there yet, as iscsiadm's idbm_add_node does for
    OP_NEW or OP_UPDATE (and iscsictl's SendTargets discovery; before: none written)."""
    assert cli("-m", "discovery", "-t", "fw", "-o", "update")[0] == 0
    assert cli("-m", "node")[1] == f"127.0.0.1:3260,1 {BOOT}\n127.0.0.1:3261,1 {DATA}\n"
