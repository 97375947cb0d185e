"""A sysfs tree with offload HBAs (qla4xxx, bnx2i) beside a software host, as Linux 6.1 lays
it out: read by iscsictl (``ISCSICTL_SYSFS_ROOT``) and by the real iscsiadm (bind-mounted on
/sys in its mount namespace, ``peers.iscsiadm(sys_dir=)``) in the interop tests."""

from __future__ import annotations

import os

#: each transport's handle in ``class/iscsi_transport/<name>/handle`` (distinct, as the
#: kernel's are: the address of its struct iscsi_transport)
HANDLES = {"tcp": 18446744072107233344, "qla4xxx": 18446744072107241536,
           "bnx2i": 18446744072107249728, "cxgb4i": 18446744072107257920,
           "iser": 18446744072107266112, "cxgb3i": 18446744072107274304,
           "be2iscsi": 18446744072107282496, "qedi": 18446744072107290688}
#: transport -> its caps as the kernel's template has them (Linux 6.1: cxgb3i's and
#: cxgb4i's, ib_iser's, be2iscsi's, qedi's), for ``offload_sysfs(more=)``
CAPS = {"cxgb4i": "0x30b9", "iser": "0x89", "cxgb3i": "0x30b9", "be2iscsi": "0x8b9",
        "qedi": "0x8b9"}


#: A flash target's values as qla4xxx shows them (qla4xxx_sysfs_ddb_get_param): the
#: session's, then the connection's
FNODE_SESS = {
    "auto_snd_tgt_disable": "0", "discovery_session": "0", "portal_type": "ipv4",
    "entry_enable": "1", "immediate_data": "1", "initial_r2t": "0", "data_seq_in_order": "1",
    "data_pdu_in_order": "1", "chap_auth": "1", "discovery_logout": "0", "bidi_chap": "1",
    "discovery_auth_optional": "0", "erl": "0", "first_burst_len": "262144",
    "def_time2wait": "2", "def_time2retain": "0", "max_outstanding_r2t": "1",
    "isid": "00023d000001", "tsid": "0", "max_burst_len": "262144",
    "def_taskmgmt_tmo": "10", "targetalias": "array-a",
    "targetname": "iqn.2001-05.com.equallogic:0-8a0906-flash0", "tpgt": "1",
    "discovery_parent_idx": "65535", "discovery_parent_type": "Sendtarget",
    "chap_in_idx": "65535", "chap_out_idx": "3", "username": "chapuser",
    "username_in": "targetuser", "password": "chapsecret12", "password_in": "mutualsecret1",
    "is_boot_target": "1"}
FNODE_CONN = {
    "is_fw_assigned_ipv6": "0", "header_digest": "1", "data_digest": "0", "snack_req": "0",
    "tcp_timestamp_stat": "0", "tcp_nagle_disable": "1", "tcp_wsf_disable": "0",
    "tcp_timer_scale": "0", "tcp_timestamp_enable": "0", "fragment_disable": "0",
    "max_recv_dlength": "65536", "max_xmit_dlength": "65536", "keepalive_tmo": "30",
    "port": "3260", "ipaddress": "192.168.1.10", "redirect_ipaddr": "0.0.0.0",
    "max_segment_size": "0", "local_port": "0", "ipv4_tos": "0", "ipv6_traffic_class": "0",
    "ipv6_flow_label": "0", "link_local_ipv6": "(null)", "tcp_xmit_wsf": "0",
    "tcp_recv_wsf": "0", "statsn": "0", "exp_statsn": "0"}
#: (host, index, session values, connection values or None for no conn entry)
FLASHNODES = (
    (5, "0", FNODE_SESS, FNODE_CONN),
    (5, "1", {**FNODE_SESS, "portal_type": "ipv6", "tpgt": "2", "chap_auth": "0",
              "targetname": "iqn.2001-05.com.equallogic:0-8a0906-flash1", "username": "",
              "password": "", "username_in": "(null)", "password_in": "", "bidi_chap": "0"},
     {**FNODE_CONN, "ipaddress": "fd00::10", "port": "3261", "is_fw_assigned_ipv6": "1",
      "link_local_ipv6": "fe80::20e:1eff:feaa:bbcc", "ipv6_flow_label": "12345"}),
    # missing values (read as all ones), numbers that wrap or that C reads in part (hex and
    # octal for strtoul, -1), strings cut to their C buffer, no address and no name
    (5, "2", {"targetname": "", "tpgt": "65537", "first_burst_len": "0x2000",
              "max_burst_len": "4294967297", "erl": "-1", "def_time2wait": " 7x",
              "isid": "00023d00000100023d0001", "portal_type": "ipv4x",
              "targetalias": "(null)", "username": "(null)alice", "password": "p" * 300,
              "discovery_parent_type": "<NULL>", "tsid": ""},
     {"port": "0", "keepalive_tmo": "70000", "max_recv_dlength": "010",
      "statsn": "-1", "exp_statsn": "99999999999999999999999", "tcp_xmit_wsf": "",
      "ipv4_tos": "300", "ipaddress": "\n"}),
    # sorted before 5:2 (alphasort), its port missing: iscsiadm reads 65535
    (5, "10", {"targetname": "iqn.2001-05.com.equallogic:0-8a0906-flash10", "tpgt": "1"},
     {"ipaddress": "192.168.1.11"}),
    (6, "0", {**FNODE_SESS, "targetname": "iqn.2001-05.com.example:bnx2i-flash"},
     {**FNODE_CONN, "ipaddress": "10.6.0.1"}),
    (6, "1", FNODE_SESS, None),  # no conn entry: iscsiadm cannot read it (ENOENT)
)


def offload_sysfs(root, more: tuple = ()) -> str:
    """A sysfs tree as Linux 6.1 lays out a software host and two offload HBAs' (qla4xxx
    with two IPv4 interfaces, bnx2i with an IPv6 one): ``class/iscsi_host`` and
    ``class/scsi_host`` entries link into the hosts' device directories, and each
    interface is a device under its host (``iscsi_iface/<name>``) with its class link.
    The HBAs' flash targets (:data:`FLASHNODES`) are devices too: ``flashnode_sess-H:I``
    under its host, ``flashnode_conn-H:I:0`` under that, each linked from
    ``bus/iscsi_flashnode/devices``; and one entry there whose name iscsiadm cannot read
    (``flashnode_sess-7``, sorted after the others).  ``more``: further transports
    registered, and their hosts: ``(transport, host number or None, host attributes)``
    (:data:`CAPS`; iSER has no host until a session makes one)."""
    from pathlib import Path

    root = Path(root)

    def w(rel, value):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(value + "\n")

    def link(rel, target):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(os.path.relpath(root / target, (root / rel).parent))

    def host(n, parent, proc, attrs, ifaces=()):
        d = f"devices/{parent}/host{n}"
        w(f"{d}/scsi_host/host{n}/proc_name", proc)
        w(f"{d}/scsi_host/host{n}/state", "running")
        for k, v in attrs.items():
            w(f"{d}/iscsi_host/host{n}/{k}", v)
        link(f"class/iscsi_host/host{n}", f"{d}/iscsi_host/host{n}")
        link(f"class/scsi_host/host{n}", f"{d}/scsi_host/host{n}")
        link(f"bus/scsi/devices/host{n}", d)
        for name, values in ifaces:
            for k, v in values.items():
                w(f"{d}/iscsi_iface/{name}/{k}", v)
            link(f"class/iscsi_iface/{name}", f"{d}/iscsi_iface/{name}")

    w("module/scsi_transport_iscsi/version", "2.0-870")
    for name, caps in (("tcp", "0x39"), ("qla4xxx", "0x48b8"), ("bnx2i", "0x8b9")):
        w(f"class/iscsi_transport/{name}/handle", str(HANDLES[name]))
        w(f"class/iscsi_transport/{name}/caps", caps)
    for name in ("iscsi_session", "iscsi_connection"):
        (root / "class" / name).mkdir(parents=True)
    host(3, "platform", "iscsi_tcp", {"ipaddress": "10.0.0.9", "hwaddress": "(null)",
                                      "netdev": "(null)", "initiatorname": "(null)"})
    host(5, "pci0000:00/0000:00:05.0", "qla4xxx",
         {"ipaddress": "192.168.1.50", "hwaddress": "00:0e:1e:aa:bb:cc",
          "initiatorname": "iqn.2000-04.com.qlogic:isp4032.ab12", "port_state": "LINK UP",
          "port_speed": "1 Gbps"},
         [("ipv4-iface-5-0", {"ipaddress": "192.168.1.50", "gateway": "192.168.1.1",
                              "subnet": "255.255.255.0", "bootproto": "static", "port": "3260",
                              "mtu": "1500", "vlan_id": "0", "vlan_priority": "0"}),
          # no gateway, bootproto or VLAN; a port C's atoi reads in part, a u16 MTU wrapped
          ("ipv4-iface-5-1", {"ipaddress": "192.168.2.50", "subnet": "255.255.0.0",
                              "port": " 3261x", "mtu": "70000"})])
    host(6, "pci0000:00/0000:00:06.0", "bnx2i",
         {"ipaddress": "fd00::50", "hwaddress": "00:10:18:AA:BB:01", "netdev": "eth7",
          "initiatorname": "(null)"},
         [("ipv6-iface-6-0", {"ipaddress": "fd00::50", "ipaddr_autocfg": "nd",
                              "link_local_addr": "fe80::210:18ff:feaa:bb01",
                              "link_local_autocfg": "auto", "router_addr": "fe80::1",
                              "port": "3260", "mtu": "9000", "vlan_id": "12",
                              "vlan_priority": "300"})])
    parents = {5: "pci0000:00/0000:00:05.0/host5", 6: "pci0000:00/0000:00:06.0/host6"}
    for h, i, sess, conn in FLASHNODES:
        d = f"devices/{parents[h]}/flashnode_sess-{h}:{i}"
        for k, v in sess.items():
            w(f"{d}/{k}", v)
        link(f"bus/iscsi_flashnode/devices/flashnode_sess-{h}:{i}", d)
        if conn is not None:
            for k, v in conn.items():
                w(f"{d}/flashnode_conn-{h}:{i}:0/{k}", v)
            link(f"bus/iscsi_flashnode/devices/flashnode_conn-{h}:{i}:0",
                 f"{d}/flashnode_conn-{h}:{i}:0")
    (root / "bus/iscsi_flashnode/devices/flashnode_sess-7").mkdir()
    for name, n, attrs in more:
        w(f"class/iscsi_transport/{name}/handle", str(HANDLES[name]))
        w(f"class/iscsi_transport/{name}/caps", CAPS[name])
        if n is not None:
            host(n, f"pci0000:00/0000:00:{n:02x}.0", name, attrs)
    return str(root)


def stderr_lines(text: str, prog: str) -> list[str]:
    """A tool's stderr as lines without its ``prog: `` prefix (to compare iscsiadm's with
    iscsictl's)."""
    return [line.removeprefix(f"{prog}: ") for line in text.splitlines()]


class HbaRig:
    """The fake offload HBA kernel (tests/fake_hba.py) serving this module's sysfs tree, and
    the two tools run against both: :meth:`adm` the real iscsiadm, :meth:`ictl` iscsictl
    (a process each).  ``hosts``: host number -> fake_hba.Host; every transport of the tree
    is registered, qla4xxx's driver with every HBA operation, the others with none.  A
    context manager (the kernel's thread stops on exit)."""

    def __init__(self, tmp_path, shim: str, hosts: dict) -> None:
        from fake_hba import QLA4XXX_OPS, FakeHbaKernel

        self.dir = str(tmp_path)
        self.sys_dir = offload_sysfs(os.path.join(self.dir, "sys"))
        self.shim = shim
        transports = {handle: (name, QLA4XXX_OPS if name == "qla4xxx" else frozenset())
                      for name, handle in HANDLES.items()}
        self.kernel = FakeHbaKernel(os.path.join(self.dir, "nl"), transports, hosts)

    def __enter__(self) -> "HbaRig":
        self.kernel.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.kernel.__exit__(*exc)

    def adm(self, *args: str):
        """iscsiadm ``args`` (its /etc/iscsi and /sys private); a CompletedProcess."""
        from peers import iscsiadm

        return iscsiadm(os.path.join(self.dir, "etc-adm"), *args, sys_dir=self.sys_dir,
                        env=self.kernel.env(self.shim))

    #: iscsictl's DB and config root, under the test's directory (``etc-adm``: iscsiadm's)
    ictl_root = "etc-ictl"

    def ictl(self, *args: str):
        """iscsictl ``args`` (its own DB and config root, :attr:`ictl_root`); a
        CompletedProcess."""
        import subprocess
        import sys

        root = os.path.join(self.dir, self.ictl_root)
        env = {**os.environ, **self.kernel.env(self.shim), "ISCSICTL_SYSFS_ROOT": self.sys_dir}
        return subprocess.run([sys.executable, "-m", "iscsictl.cli", "--db-root", root,
                               "--config-root", root, *args], env=env, capture_output=True,
                              text=True, timeout=60)
