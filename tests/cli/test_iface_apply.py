"""``-m iface -o apply`` and ``-o applyall`` side by side with the real iscsiadm 2.1.8: both
read the same iface records (made by iscsiadm in one /etc/iscsi, which iscsictl uses as its
DB) and run against the same fake kernel (tests/fake_hba.py, through the LD_PRELOAD shim)
and sysfs tree; they must say the same, exit the same and send the same SET_IFACE_PARAMS
nlattrs byte for byte, but where iscsictl differs on purpose (iscsictl/kernel/net_config.py)."""

from __future__ import annotations

import json
import struct
import pytest

from fake_hba import Host
from iscsictl.netlink import messages as m
from iscsictl.netlink.enums import IscsiNetParam as N
from iscsictl.netlink.enums import IscsiUeventE as E
from offload_tree import HbaRig, stderr_lines

QLA_MAC = "00:0e:1e:aa:bb:cc"
BNX_MAC = "00:10:18:AA:BB:01"


class ApplyRig(HbaRig):
    """HbaRig whose iscsictl uses iscsiadm's /etc/iscsi as its DB: the same records."""

    ictl_root = "etc-adm"

    def iface(self, name: str, **settings: str) -> None:
        """A new iface record made by iscsiadm, then its ``iface.<key>`` settings."""
        assert self.adm("-m", "iface", "-I", name, "-o", "new").returncode == 0
        for key, value in settings.items():
            cp = self.adm("-m", "iface", "-I", name, "-o", "update", "-n", f"iface.{key}",
                          "-v", value)
            assert cp.returncode == 0, cp.stderr

    def both(self, *args: str):
        """iscsiadm then iscsictl: (adm, ictl, adm's requests, ictl's requests), the
        requests as SET_IFACE_PARAMS messages (decoded)."""
        self.kernel.requests.clear()
        adm = self.adm(*args)
        adm_sent = [msg for _, msg in self.kernel.sent(E.SET_IFACE_PARAMS)]
        self.kernel.requests.clear()
        ictl = self.ictl(*args)
        ictl_sent = [msg for _, msg in self.kernel.sent(E.SET_IFACE_PARAMS)]
        assert not self.kernel.requests[len(ictl_sent):]
        return adm, ictl, adm_sent, ictl_sent


@pytest.fixture
def rig(tmp_path, shim):
    with ApplyRig(tmp_path, shim, {3: Host("tcp"), 5: Host("qla4xxx"),
                                   6: Host("bnx2i")}) as r:
        yield r



def _nlas(payload: bytes) -> list[bytes]:
    """The nlattrs of a payload, each as its bytes (padding included)."""
    out, off = [], 0
    while off < len(payload):
        (length,) = struct.unpack_from("=H", payload, off)
        out.append(payload[off:off + ((length + 3) & ~3)])
        off += (length + 3) & ~3
    return out


def _params(msg) -> list[tuple[int, int, int]]:
    return [(a["iface_num"], a["iface_type"], a["param"])
            for a in m.decode_nlas(m.iscsi_iface_param_info_nla, msg["payload"])]


#: an IPv4 iface with an address, VLAN, IPv4 and TCP settings, iSCSI settings: both
#: states set and a port, so that iscsiadm's estimate of the count is right
IPV4 = dict(transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="192.168.1.60",
            bootproto="static", subnet_mask="255.255.255.0", gateway="192.168.1.254",
            state="enable", vlan_state="enable", vlan_id="12", vlan_priority="3",
            mtu="9000", port="3261", dhcp_dns="disable", tos_state="enable", tos="8",
            gratuitous_arp="enable", dhcp_vendor_id_state="enable", dhcp_vendor_id="acme-hba",
            ttl="64", delayed_ack="disable", tcp_nagle="enable", tcp_wsf="7",
            def_task_mgmt_timeout="30", header_digest="enable", immediate_data="disable",
            erl="1", max_receive_data_len="262144", max_outstanding_r2t="4",
            chap_auth="enable", discovery_logout="disable")


def test_ipv4_iface_sent_byte_for_byte_as_iscsiadm(rig):
    rig.iface("q0", **IPV4)
    adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-I", "q0", "-o", "apply")
    assert adm.returncode == ictl.returncode == 0
    assert adm.stdout == ictl.stdout == "q0 applied.\n"
    assert adm.stderr == ictl.stderr == ""
    assert a["host_no"] == i["host_no"] == 5
    assert a["transport_handle"] == i["transport_handle"]
    assert i["payload"] == a["payload"] and a["count"] == i["count"] == 27
    sent = m.decode_nlas(m.iscsi_iface_param_info_nla, i["payload"])
    assert [s["param"] for s in sent[:4]] == [N.IPV4_BOOTPROTO, N.IPV4_ADDR, N.IPV4_SUBNET,
                                             N.IPV4_GW]
    assert sent[1]["value"] == bytes([192, 168, 1, 60])
    tag = next(s for s in sent if s["param"] == N.VLAN_TAG)
    assert tag["value"] == struct.pack("<H", 3 << 13 | 12)
    assert next(s for s in sent if s["param"] == N.IPV4_DHCP_VENDOR_ID)["value"] == b"acme-hba"


def test_ipv6_iface_sent_byte_for_byte_as_iscsiadm(rig):
    rig.iface("q6.ipv6", transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="fd00::60",
              linklocal_autocfg="auto", ipv6_router="fe80::1", state="enable",
              vlan_state="disable", port="3260", mtu="1500", mld="enable", hop_limit="64",
              flow_label="5", traffic_class="2", nd_reachable_tmo="30000",
              router_adv_link_mtu="1500", data_digest="enable")
    adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-I", "q6.ipv6", "-o", "apply")
    assert adm.returncode == ictl.returncode == 0
    assert adm.stdout == ictl.stdout == "q6.ipv6 applied.\n"
    assert a["host_no"] == i["host_no"] == 5
    assert i["payload"] == a["payload"] and a["count"] == i["count"]
    assert [p for _, _, p in _params(i)[:6]] == [
        N.IPV6_ADDR_AUTOCFG, N.IPV6_ADDR, N.IPV6_LINKLOCAL_AUTOCFG, N.IPV6_ROUTER_AUTOCFG,
        N.IPV6_ROUTER, N.IPV6_MLD_EN]
    assert {(n, t) for n, t, _ in _params(i)} == {(0, 2)}


@pytest.mark.parametrize("autocfg", [
    dict(ipv6_autocfg="static", linklocal_autocfg="static", router_autocfg="Advertised"),
    dict(ipv6_autocfg="static", linklocal_autocfg="static", router_autocfg="Unknown"),
    dict(ipv6_autocfg="nd", linklocal_autocfg="auto", router_autocfg="Manual")])
def test_the_words_qla4xxx_shows_are_applied_as_iscsiadm(rig, autocfg):
    """A default qla4xxx IPv6 record copies the driver's words (ipaddr_autocfg static,
    link_local_autocfg static, router_state's names): "not automatic", as usr/iface.c's
    strstr reads them; before, iscsictl refused such a record unchanged (7)."""
    rig.iface("q6w.ipv6", transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="fd00::5",
              ipv6_linklocal="fe80::20e:1eff:feaa:bbcc", ipv6_router="fe80::1",
              state="enable", vlan_state="disable", port="3260",  # iscsiadm counts right
              **autocfg)
    adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-I", "q6w.ipv6", "-o", "apply")
    assert adm.returncode == ictl.returncode == 0, ictl.stderr
    assert i["payload"] == a["payload"] and a["count"] == i["count"]


def test_the_default_address_placeholder_is_no_address_as_in_iscsiadm(rig):
    """``iface.ipaddress = default`` (the default iface records' placeholder): nothing to
    send, as usr/iface.c sends an address only with a '.' or ':' (before: 'not an IPv4
    address', 7)."""
    rig.iface("q4d", transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="default",
              mtu="1500")
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", "q4d", "-o", "apply")
    assert (ictl.returncode, ictl.stdout) == (adm.returncode, adm.stdout), ictl.stderr
    assert [m["payload"] for m in ictl_sent] == [m["payload"] for m in adm_sent]


def test_applyall_sends_every_iface_of_the_host(rig):
    """The host by number or MAC: its ifaces (the two iscsiadm made from sysfs, two more
    made here, not one of another HBA) in one request; the same nlattrs as iscsiadm's,
    iface after iface, higher iface numbers first and IPv6 before IPv4, so that iface 0's
    port-wide settings come last and win (iscsiadm's: directory order; in name order the
    ipv4.1 record's sysfs MTU overrode the 9000 of q0)."""
    rig.iface("q0", **IPV4)
    rig.iface("q6.ipv6", transport_name="qla4xxx", hwaddress=QLA_MAC.upper(),
              ipaddress="fd00::61", iface_num="1", state="enable", vlan_state="enable",
              port="3260")
    rig.iface("b0", transport_name="bnx2i", hwaddress=BNX_MAC, ipaddress="10.6.0.9")
    for host in ("5", QLA_MAC):
        adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-H", host, "-o", "applyall")
        assert adm.returncode == ictl.returncode == 0
        assert adm.stdout == ictl.stdout == "Applied settings to ifaces attached to host5.\n"
        assert a["host_no"] == i["host_no"] == 5
        # iscsiadm leaves out the lower-case-MAC iface; the rest is the same bytes
        ours = _nlas(i["payload"])
        mixed = [n for n, p in zip(ours, _params(i)) if p[1] == 2]  # q6.ipv6's
        assert len(mixed) == 5
        assert sorted(_nlas(a["payload"])) == sorted(n for n in ours if n not in mixed)
        assert i["count"] == len(ours) == 27 + 5 + 6 + 6
        runs = [p[:2] for k, p in enumerate(_params(i)) if k in (0, 5, 11, 38)]
        # q6.ipv6's first, its address autoconfiguration: iface_num 0, as iscsiadm's
        assert runs == [(0, 2), (1, 1), (0, 1), (0, 1)]
        mtus = [p[0] for p in _params(i) if p[2] == N.MTU]
        assert mtus[-1] == 0 and 1 in mtus
        names = json.loads(rig.ictl("-m", "iface", "-H", host, "-o", "applyall",
                                    "--json").stdout)["ifaces"]
        assert names == ["q6.ipv6", f"qla4xxx.{QLA_MAC}.ipv4.1", "q0",
                         f"qla4xxx.{QLA_MAC}.ipv4.0"]


@pytest.mark.parametrize("name, settings", [
    ("default", None),  # the built-in tcp iface
    ("q-bare", dict(transport_name="qla4xxx", hwaddress=QLA_MAC, mtu="9000")),  # no address
])
def test_nothing_to_configure(rig, name, settings):
    if settings is not None:
        rig.iface(name, **settings)
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", name, "-o", "apply")
    assert adm.returncode == ictl.returncode == 0
    assert adm.stdout == ictl.stdout == f"{name} applied.\n"
    assert stderr_lines(adm.stderr, "iscsiadm") == stderr_lines(ictl.stderr, "iscsictl") == [
        "Nothing to configure."]
    assert adm_sent == ictl_sent == []


def test_tcp_iface_with_an_address_fails_as_iscsiadm_and_says_why(rig):
    """iscsiadm sends it to host 0xffffffff (its "not found" is -1, it tests for 0) and
    fails with 1; iscsictl finds no host, sends nothing, fails with 1 and says so."""
    rig.iface("sw", ipaddress="10.0.0.5")
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", "sw", "-o", "apply")
    assert adm.returncode == ictl.returncode == 1
    assert adm.stdout == ictl.stdout == ""
    assert adm_sent[0]["host_no"] == 0xFFFFFFFF and ictl_sent == []
    assert stderr_lines(ictl.stderr, "iscsictl") == [
        "Could not apply net configuration: no iSCSI host has the ipaddress 10.0.0.5 of iface "
        "sw (a tcp iface is software iSCSI: the system's network settings are its own)."]


def test_an_iface_whose_address_is_another_drivers_hosts_is_not_applied(rig):
    """A qla4xxx iface with the bnx2i port's MAC (a copied template, one wrong digit):
    iscsiadm sends qla4xxx's SET_IFACE_PARAMS to the bnx2i host, which the kernel passes
    to qla4xxx's driver unchecked (scsi_transport_iscsi.c iscsi_set_iface_params); iscsictl
    sends nothing and says so (before: "applied.", as iscsiadm)."""
    rig.iface("mix", transport_name="qla4xxx", hwaddress=BNX_MAC, ipaddress="10.6.0.9")
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", "mix", "-o", "apply")
    assert adm.returncode == 0 and [msg["host_no"] for msg in adm_sent] == [6]
    assert ictl.returncode == 1 and ictl_sent == []
    assert ictl.stderr == ("iscsictl: Could not apply net configuration: no qla4xxx host has "
                           f"the hwaddress {BNX_MAC} of iface mix.\n")


def test_driver_without_the_operation_is_enosys_by_name(rig):
    rig.iface("b6.ipv6", transport_name="bnx2i", hwaddress=BNX_MAC.lower(),
              ipaddress="fd00::70", state="enable", vlan_state="disable", port="3260")
    adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-I", "b6.ipv6", "-o", "apply")
    assert adm.returncode == ictl.returncode == 1
    assert adm.stdout == ictl.stdout == ""
    assert "Set net_config failed. errno=" in adm.stderr
    assert stderr_lines(ictl.stderr, "iscsictl") == [
        "Could not apply net configuration: set net_config of host6 failed (ENOSYS, Function "
        "not implemented: the bnx2i driver cannot set network settings)."]
    assert a["host_no"] == i["host_no"] == 6 and i["payload"] == a["payload"]


def test_unknown_iface_and_no_iface(rig):
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", "nosuch", "-o", "apply")
    assert adm.returncode == ictl.returncode == 6
    assert stderr_lines(adm.stderr, "iscsiadm") == ["Could not read iface nosuch (6)."]
    assert stderr_lines(ictl.stderr, "iscsictl") == ["Could not read iface nosuch: not found"]
    adm, ictl, _, _ = rig.both("-m", "iface", "-o", "apply")
    assert adm.returncode == ictl.returncode == 7
    assert stderr_lines(adm.stderr, "iscsiadm") == stderr_lines(ictl.stderr, "iscsictl") == [
        "Apply requires iface."]
    assert adm_sent == ictl_sent == []


def test_applyall_needs_an_existing_host(rig):
    """Without -H iscsiadm 2.1.8 applies to host 0 (its "no -H" wraps): iscsictl refuses
    with the message iscsiadm means; a host that is not there: "Could not match"."""
    ictl = rig.ictl("-m", "iface", "-o", "applyall")
    assert (ictl.returncode, stderr_lines(ictl.stderr, "iscsictl")) == (7, [
        "Applyall requires a valid host number or MAC passed in with the --host argument."])
    ictl = rig.ictl("-m", "iface", "-H", "99", "-o", "applyall")
    assert (ictl.returncode, stderr_lines(ictl.stderr, "iscsictl")) == (
        7, ["Could not match host99 to ifaces."])
    ictl = rig.ictl("-m", "iface", "-H", "11:22:33:44:55:66", "-o", "applyall")
    assert (ictl.returncode, stderr_lines(ictl.stderr, "iscsictl")) == (
        7, ["Could not match MAC to host."])
    assert rig.kernel.requests == []


@pytest.mark.parametrize("key, value, said", [
    ("ipaddress", "192.168.1", "iface.ipaddress = 192.168.1 in iface bad: not an IPv4 address"),
    ("gateway", "192.168.1.300", "iface.gateway = 192.168.1.300 in iface bad: not an IPv4 "
     "address"),
    ("state", "enabled", "iface.state = enabled in iface bad: not enable or disable"),
    ("header_digest", "yes", "iface.header_digest = yes in iface bad: not enable or disable"),
    ("bootproto", "bootp", "iface.bootproto = bootp in iface bad: not static or dhcp"),
    ("vlan_id", "5000", "iface.vlan_id = 5000 in iface bad: a VLAN id is at most 4095"),
    ("vlan_priority", "8", "iface.vlan_priority = 8 in iface bad: a VLAN priority is at "
     "most 7"),
])
def test_bad_values_refused_before_anything_is_sent(rig, key, value, said):
    """iscsiadm drops what it cannot encode and sends the rest (exit 0); iscsiadm refuses
    with 7, nothing sent."""
    rig.iface("bad", **{**dict(transport_name="qla4xxx", hwaddress=QLA_MAC,
                               ipaddress="192.168.1.61", vlan_id="12"), key: value})
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-I", "bad", "-o", "apply")
    assert adm.returncode == 0 and len(adm_sent) == 1
    assert (ictl.returncode, ictl.stdout, ictl_sent) == (7, "", [])
    assert stderr_lines(ictl.stderr, "iscsictl") == [f"Could not apply net configuration: {said}"]


@pytest.mark.parametrize("line", ["iface.iface_num = -1", "iface.mtu = 70000"])
def test_a_value_in_the_file_that_is_not_one_is_refused_not_replaced(rig, line):
    """A hand-edited record's number that does not read: the reader says so and takes the
    key's default, and apply and ping went on with it, saying they succeeded (iface_num 0:
    another interface of the port; the MTU not sent).  Refused, nothing sent; iscsiadm
    sends what its reader made of it (0xffffffff, 4464)."""
    from pathlib import Path

    rig.adm("-m", "iface")
    Path(rig.dir, "etc-adm", "ifaces", "bad").write_text(
        "# BEGIN RECORD 2.1.8\niface.iscsi_ifacename = bad\niface.transport_name = qla4xxx\n"
        f"iface.hwaddress = {QLA_MAC}\niface.ipaddress = 192.168.2.80\n{line}\n"
        "# END RECORD\n")
    for args, what in ((("-o", "apply"), "Could not apply net configuration"),
                       (("-C", "ping", "-a", "192.168.2.1"), "Could not ping")):
        rig.kernel.requests.clear()
        adm = rig.adm("-m", "iface", "-I", "bad", *args)
        assert adm.returncode == 0 and rig.kernel.requests
        rig.kernel.requests.clear()
        ictl = rig.ictl("-m", "iface", "-I", "bad", *args)
        assert (ictl.returncode, ictl.stdout, rig.kernel.requests) == (7, "", [])
        said = stderr_lines(ictl.stderr, "iscsictl")
        assert f"unknown value format '{line.split(' = ')[1]}'" in said[0]
        key = line.split(" = ")[0]
        assert said[-1] == f"{what}: iface bad: the value of {key} is not one (said above); " \
                           "nothing sent"


def test_applyall_refuses_only_for_its_hosts_ifaces(rig):
    """A value that is not one in an iface of another host (a tcp iface bound to eth9) is
    none of ``applyall -H 5``'s concern, and a number iscsiadm's strtoul reads (``9000
    bytes``) is one: both sent as iscsiadm sends them (the first version refused both)."""
    from pathlib import Path

    rig.iface("q0", transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="192.168.1.64")
    ifaces = Path(rig.dir, "etc-adm", "ifaces")
    (ifaces / "other").write_text("# BEGIN RECORD 2.1.8\niface.iscsi_ifacename = other\n"
                                  "iface.transport_name = tcp\niface.net_ifacename = eth9\n"
                                  "iface.mtu = abc\n# END RECORD\n")
    text = (ifaces / "q0").read_text().replace("# END RECORD", "iface.mtu = 9000 bytes\n"
                                                                "# END RECORD")
    (ifaces / "q0").write_text(text)
    adm, ictl, adm_sent, ictl_sent = rig.both("-m", "iface", "-H", "5", "-o", "applyall")
    assert adm.returncode == ictl.returncode == 0, ictl.stderr
    assert len(ictl_sent) == len(adm_sent) == 1


def test_every_setting_sent_where_iscsiadm_drops_the_last(rig):
    """Both states set, the port 0: iscsiadm's estimate is one short and the port (the last
    nlattr) is not sent; iscsictl sends it (3260) and counts what it sends."""
    rig.iface("q1", transport_name="qla4xxx", hwaddress=QLA_MAC, ipaddress="192.168.1.62",
              state="enable", vlan_state="disable")
    adm, ictl, (a,), (i,) = rig.both("-m", "iface", "-I", "q1", "-o", "apply")
    assert adm.returncode == ictl.returncode == 0
    assert _nlas(i["payload"])[:-1] == _nlas(a["payload"])
    assert _params(i)[-1] == (0, 1, N.PORT)
    assert m.decode_nlas(m.iscsi_iface_param_info_nla, i["payload"])[-1]["value"] == (
        struct.pack("<H", 3260))
    assert (a["count"], i["count"]) == (4, 5)


def test_an_iface_of_a_driver_not_loaded_is_updated_where_iscsiadm_refuses(rig):
    """README's deliberate difference: an iface is set up before its HBA's driver is
    loaded (cxgb4i is not registered here); iscsiadm refuses the update (7)."""
    assert rig.ictl("-m", "iface", "-I", "cx", "-o", "new").returncode == 0
    assert rig.ictl("-m", "iface", "-I", "cx", "-o", "update", "-n", "iface.transport_name",
                    "-v", "cxgb4i").returncode == 0
    args = ("-m", "iface", "-I", "cx", "-o", "update", "-n", "iface.mtu", "-v", "9000")
    adm = rig.adm(*args)
    assert adm.returncode == 7 and "Cound not locate transport for iface cx" in adm.stderr
    ictl = rig.ictl(*args)
    assert (ictl.returncode, ictl.stdout) == (0, "cx updated.\n")
    assert "iface.mtu = 9000" in open(f"{rig.dir}/etc-adm/ifaces/cx").read()
