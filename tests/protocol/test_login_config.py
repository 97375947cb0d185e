"""LoginConfig from open-iscsi records (reference/open-iscsi-notes.md §3.1, §3.2,
§5.1): defaults, clamping, CHAP credentials and algorithms, offers."""

from __future__ import annotations

import pytest

from iscsictl.protocol.chap import ChapAlgorithm
from iscsictl.protocol.config import LoginConfig

INAME = "iqn.2005-03.org.open-iscsi:host1"
NODE = {"node.name": "iqn.2003-01.org.example:disk1"}


def test_node_defaults_are_open_iscsis():
    c = LoginConfig.from_node(NODE, INAME)
    assert c.target_name == "iqn.2003-01.org.example:disk1" and c.session_type == "Normal"
    assert c.chap is None and c.auth_method_offer() is None
    assert c.operational_offers() == {
        "HeaderDigest": "None", "DataDigest": "None", "DefaultTime2Wait": "2",
        "DefaultTime2Retain": "0", "ErrorRecoveryLevel": "0", "InitialR2T": "No",
        "ImmediateData": "Yes", "MaxBurstLength": "16776192", "FirstBurstLength": "262144",
        "MaxOutstandingR2T": "1", "MaxConnections": "1", "DataPDUInOrder": "Yes",
        "DataSequenceInOrder": "Yes", "MaxRecvDataSegmentLength": "262144",
    }
    # a node's login is bounded by its login timeout in every stage, as iscsid's login
    # timer (node.conn[0].timeo.auth_timeout is not used: a CHAP step waited 45 s)
    assert (c.login_timeout, c.auth_timeout) == (30.0, 30.0)
    c = LoginConfig.from_node({**NODE, "node.conn[0].timeo.login_timeout": "15",
                               "node.conn[0].timeo.auth_timeout": "45"}, INAME)
    assert (c.login_timeout, c.auth_timeout) == (15.0, 15.0)
    assert c.login_keys() == [("InitiatorName", INAME), ("TargetName", NODE["node.name"]),
                              ("SessionType", "Normal")]
    # one connection a session, as the kernel runs it: MaxConnections=1 whatever the
    # record says, as open-iscsi's login.c (it offered the record's 4)
    c = LoginConfig.from_node({**NODE, "node.session.iscsi.MaxConnections": "4"}, INAME)
    assert c.operational_offers()["MaxConnections"] == "1"


@pytest.mark.parametrize("rec,mrdsl,first,maxb", [
    ({"node.conn[0].iscsi.MaxRecvDataSegmentLength": "100"}, 262144, 262144, 16776192),
    ({"node.conn[0].iscsi.MaxRecvDataSegmentLength": "8191"}, 8188, 262144, 16776192),
    ({"node.conn[0].iscsi.MaxRecvDataSegmentLength": "16777216"}, 262144, 262144, 16776192),
    ({"node.conn[0].iscsi.MaxRecvDataSegmentLength": "junk"}, 262144, 262144, 16776192),
    ({"node.session.iscsi.MaxBurstLength": "65536"}, 262144, 65536, 65536),
    ({"node.session.iscsi.FirstBurstLength": "511"}, 262144, 262144, 16776192),
    ({"node.session.iscsi.FirstBurstLength": "<empty>"}, 262144, 262144, 16776192),
    # open-iscsi's align_32_down first: 65537 is 65536, 514 is 512 (in range)
    ({"node.session.iscsi.FirstBurstLength": "65537"}, 262144, 65536, 16776192),
    ({"node.session.iscsi.MaxBurstLength": "514"}, 262144, 512, 512),
])
def test_node_clamping(rec, mrdsl, first, maxb):
    c = LoginConfig.from_node({**NODE, **rec}, INAME)
    assert (c.max_recv_data_segment_length, c.first_burst_length, c.max_burst_length) == (
        mrdsl, first, maxb)


@pytest.mark.parametrize("value,xmit", [("0", 0), ("", 0), ("8192", 8192), ("8194", 8192),
                                        ("100", 262144), ("16777216", 262144),
                                        ("junk", 0), ("3", 8192), ("-4", 262144)])
def test_max_xmit_is_clamped_as_open_iscsi(value, xmit):
    """0: the target's value; else rounded down to 4, and out of 512..2**24-1 262144
    (iscsi_copy_operational_params; before: 100 was taken, a send limit below the RFC's
    smallest MaxRecvDataSegmentLength)."""
    c = LoginConfig.from_node({**NODE, "node.conn[0].iscsi.MaxXmitDataSegmentLength": value},
                              INAME)
    assert c.max_xmit_data_segment_length == xmit


@pytest.mark.parametrize("value, r2t, wait, retain", [
    ("70000", 65535, 3600, 3600), ("-5", 1, 0, 0), ("0", 1, 0, 0), ("7", 7, 7, 7),
    ("junk", 1, 2, 0)])
def test_r2t_and_the_times_are_brought_into_their_rfc_ranges(value, r2t, wait, retain):
    """MaxOutstandingR2T 1..65535, DefaultTime2Wait and DefaultTime2Retain 0..3600 (RFC
    7143 §13.15-17): out of range the offer was illegal, and the login failed (19) with a
    message that blamed the target; iscsiadm offers them unchecked."""
    c = LoginConfig.from_node({**NODE, "node.session.iscsi.MaxOutstandingR2T": value,
                               "node.session.iscsi.DefaultTime2Wait": value,
                               "node.session.iscsi.DefaultTime2Retain": value}, INAME)
    assert (c.max_outstanding_r2t, c.default_time2wait, c.default_time2retain) == (
        r2t, wait, retain)
    assert c.operational_offers()["DefaultTime2Wait"] == str(wait)


def test_node_chap_one_way_and_mutual():
    rec = {**NODE, "node.session.auth.authmethod": "CHAP", "node.session.auth.username": "u",
           "node.session.auth.password": "secretsecret",
           "node.session.auth.chap_algs": "SHA3-256,SHA256,sha1,MD5,BOGUS,MD5"}
    c = LoginConfig.from_node(rec, INAME)
    assert c.chap.username == "u" and c.chap.password == b"secretsecret" and not c.chap.mutual
    assert c.chap_algorithms == (ChapAlgorithm.SHA3_256, ChapAlgorithm.SHA256,
                                 ChapAlgorithm.SHA1, ChapAlgorithm.MD5)
    # one-way: the target may waive CHAP, as open-iscsi offers (acl_set_auth_method_valid);
    # before, iscsictl offered CHAP alone and a target without an account refused it (24)
    assert c.auth_method_offer() == "CHAP,None"
    m = LoginConfig.from_node({**rec, "node.session.auth.username_in": "t",
                               "node.session.auth.password_in": "othersecret!"}, INAME)
    assert m.chap.mutual and m.chap.password_in == b"othersecret!"
    assert m.auth_method_offer() == "CHAP"  # the target must prove itself: no None
    d = LoginConfig.from_discovery({"discovery.sendtargets.auth.authmethod": "CHAP",
                                    "discovery.sendtargets.auth.username": "u",
                                    "discovery.sendtargets.auth.password": "secretsecret"},
                                   INAME)
    assert d.auth_method_offer() == "CHAP,None"


@pytest.mark.parametrize("incoming", [{"node.session.auth.username_in": "t",
                                        "node.session.auth.password_in": "othersecret!"},
                                       {"node.session.auth.username_in": "t"},
                                       {"node.session.auth.password_in": "othersecret!"}])
def test_incoming_credentials_without_outgoing_ones_are_refused(incoming):
    """open-iscsi's iscsi_setup_authentication: with incoming credentials the target is
    authenticated or there is no login (before: no CHAP at all, the target unverified)."""
    with pytest.raises(ValueError, match="incoming authentication credentials but has no "
                                         "outgoing credentials"):
        LoginConfig.from_node({**NODE, "node.session.auth.authmethod": "CHAP", **incoming},
                              INAME)


@pytest.mark.parametrize("left_out", ["username_in", "password_in", "username"])
def test_incoming_credentials_not_all_there_are_refused(left_out):
    """Mutual CHAP asked (a target name or secret given) but one of the target's name, its
    secret or our own name left out: no login, as open-iscsi's (its acl_chap_auth_request
    fails).  Before: the login became one-way CHAP offered as ``CHAP,None``, or no CHAP at
    all without our name, so that any target answering ``AuthMethod=None`` was taken
    unverified."""
    auth = {"authmethod": "CHAP", "username": "u", "password": "secretsecret",
            "username_in": "t", "password_in": "othersecret1"}
    del auth[left_out]
    with pytest.raises(ValueError, match=f"but no node.session.auth.{left_out}: the target "
                                         "could not be authenticated"):
        LoginConfig.from_node({**NODE, **{f"node.session.auth.{k}": v
                                          for k, v in auth.items()}}, INAME)


def test_password_alone_enables_chap_and_empty_means_none():
    rec = {**NODE, "node.session.auth.username": "u", "node.session.auth.password": "secretsecret"}
    assert LoginConfig.from_node(rec, INAME).chap is not None
    rec["node.session.auth.password"] = "<empty>"
    assert LoginConfig.from_node(rec, INAME).chap is None
    assert LoginConfig.from_node(NODE, INAME).chap_algorithms == (ChapAlgorithm.MD5,)


@pytest.mark.parametrize("algs", ["nope", "SHA-256", ""])
def test_chap_algs_that_name_no_known_algorithm_refuse_a_chap_login_not_fall_back_to_md5(algs):
    """Present but naming nothing known (a typo, or the record reader having dropped the
    unknown names): no CHAP login, as iscsid's acl_set_chap_alg_list refuses it (it was
    MD5, what a list of stronger digests is set to keep off); without CHAP it is
    irrelevant."""
    rec = {**NODE, "node.session.auth.chap_algs": algs}
    assert LoginConfig.from_node(rec, INAME).chap_algorithms == ()
    rec.update({"node.session.auth.authmethod": "CHAP", "node.session.auth.username": "u",
                "node.session.auth.password": "secretsecret"})
    with pytest.raises(ValueError, match="chap_algs names no CHAP algorithm iscsictl knows "
                                         r"\(MD5, SHA1, SHA256, SHA3-256\)"):
        LoginConfig.from_node(rec, INAME)


def test_discovery_record():
    rec = {"discovery.sendtargets.auth.username": "d", "discovery.sendtargets.auth.password":
           "secretsecret", "discovery.sendtargets.timeo.login_timeout": "7"}
    c = LoginConfig.from_discovery(rec, INAME)
    assert c.discovery and c.target_name is None and c.login_timeout == 7.0
    assert c.chap.username == "d"
    offers = c.operational_offers()
    assert offers["MaxRecvDataSegmentLength"] == "32768"
    assert set(offers) == {"HeaderDigest", "DataDigest", "DefaultTime2Wait", "DefaultTime2Retain",
                           "ErrorRecoveryLevel", "MaxRecvDataSegmentLength"}
    assert ("TargetName", None) not in c.login_keys()
    assert c.login_keys()[-1] == ("SessionType", "Discovery")
    # out of [512, 2^24 - 1]: 262144, as iscsi_copy_operational_params (discovery.c uses it)
    for bad in ("100", "16777216"):
        c = LoginConfig.from_discovery(
            {**rec, "discovery.sendtargets.iscsi.MaxRecvDataSegmentLength": bad}, INAME)
        assert c.operational_offers()["MaxRecvDataSegmentLength"] == "262144"


def test_auth_optional_and_iser():
    from iscsictl.protocol.chap import ChapCredentials

    c = LoginConfig(initiator_name=INAME, target_name="iqn.2003-01.org.example:d",
                    chap=ChapCredentials("u", b"secretsecret"), auth_optional=True, iser=True,
                    header_digest="CRC32C")
    assert c.auth_method_offer() == "CHAP,None"
    offers = c.operational_offers()
    assert offers["RDMAExtensions"] == "Yes" and offers["HeaderDigest"] == "None"
    assert "MaxRecvDataSegmentLength" not in offers
    assert offers["InitiatorRecvDataSegmentLength"] == str(c.max_recv_data_segment_length)


@pytest.mark.parametrize("kw", [dict(session_type="Bogus"), dict(target_name=None),
                                dict(header_digest="MD5")])
def test_invalid_configs(kw):
    base = dict(initiator_name=INAME, target_name="iqn.2003-01.org.example:d")
    with pytest.raises(ValueError):
        LoginConfig(**{**base, **kw})


@pytest.mark.parametrize("key,value,said", [
    ("node.session.auth.username", "u" * 256, "CHAP_N is 256 bytes; at most 255"),
    ("node.name", "iqn.2001-04.com.example:" + "t" * 200, "TargetName is 224 bytes; at most 223"),
    ("node.session.auth.username", "u\udcffser", "CHAP_N is not UTF-8 text")])
def test_a_value_the_login_cannot_send_is_a_config_error_not_one_mid_login(key, value, said):
    """A CHAP name over 255 bytes (nothing in the DB limits it) was a ValueError raised by
    the text encoder at the CHAP step, outside the login's errors (a traceback in the
    daemon); now LoginConfig's ValueError, which every caller says as a bad record (7)."""
    rec = {"node.name": "iqn.2001-04.com.example:t", "node.session.auth.authmethod": "CHAP",
           "node.session.auth.username": "user", "node.session.auth.password": "secretsecret12",
           key: value}
    with pytest.raises(ValueError, match=said):
        LoginConfig.from_node(rec, "iqn.2005-03.org.open-iscsi:host1")
