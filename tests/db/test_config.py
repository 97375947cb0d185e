"""iscsid.conf's parser (db/config.py IscsidConfig.parse): ``key = value`` lines, ``#``
comments and blank lines skipped, and a line without '=' or whose name is empty or holds a
blank is no setting (skipped)."""

import os

import pytest

from iscsictl.db import schema
from iscsictl.db.config import IscsidConfig


def test_keys_values_comments_and_blanks():
    text = ("# a comment = 1\n\n  node.startup = automatic  \n"
            "node.session.auth.password=se cret\n"
            "bad name = 1\nbad\tname = 2\nno_equals_sign\n= no name\n"
            "node.session.scan=\n  # indented comment\n")
    assert IscsidConfig.parse(text).raw == {  # a line without a value: none
        "node.startup": "automatic", "node.session.auth.password": "se cret"}


@pytest.mark.skipif(not os.path.exists("/etc/iscsi/iscsid.conf"),
                    reason="open-iscsi's iscsid.conf is not installed (make deps installs it)")
def test_debians_iscsid_conf_gives_its_uncommented_lines():
    text = open("/etc/iscsi/iscsid.conf", encoding="utf-8").read()
    active = [line.strip() for line in text.splitlines()
              if line.strip() and not line.strip().startswith("#")]
    raw = IscsidConfig.parse(text).raw
    assert len(raw) == len(active) > 10
    assert all(raw[line.split("=")[0].strip()] == line.split("=", 1)[1].strip()
               for line in active)
    said = []  # every key of it known (iscsid's own left alone)
    IscsidConfig.parse(text, "/etc/iscsi/iscsid.conf").new_record(schema.NODE, said.append)
    assert said == []


def test_a_note_after_a_number_is_not_part_of_it():
    """'replacement_timeout = 5   # was 120': the number, as iscsiadm's strtoul reads it
    (before: warned as a bad value, and the default 120 applied: not what the admin set).
    Text values keep their '#' (a CHAP secret may hold one); a number with letters after it
    is strtoul's number too, said (before: refused, the default kept)."""
    from iscsictl.db import schema

    warnings = []
    conf = IscsidConfig.parse("node.session.timeo.replacement_timeout = 5   # was 120\n"
                              "node.session.initial_login_retry_max = 7# no blank\n"
                              "node.session.queue_depth = 64\t# the array's limit\n"
                              "node.session.cmds_max = 12abc\n"
                              "node.session.auth.password = pass # word\n")
    vals = conf.defaults_for(schema.NODE, warnings.append)
    assert vals["node.session.timeo.replacement_timeout"] == 5
    assert vals["node.session.initial_login_retry_max"] == 7
    assert vals["node.session.queue_depth"] == 64
    assert vals["node.session.cmds_max"] == 12 and len(warnings) == 1
    assert "'12abc' for parameter name 'node.session.cmds_max' read as 12" in warnings[0]
    assert vals["node.session.auth.password"] == "pass # word"


@pytest.mark.parametrize("blank", ["\u3000", "\u00a0", "\x1c", "\u0085"])
def test_a_value_keeps_a_blank_c_does_not_strip(blank):
    """iscsiadm strips the C locale's isspace() blanks only: a CHAP secret ending in U+3000
    (or \\x1c ...) is that secret (before: stripped, so a login sent another one)."""
    from iscsictl.db import schema
    from iscsictl.db.record import parse_record

    conf = IscsidConfig.parse(f"node.session.auth.password = pw{blank}\t\n")
    assert conf.defaults_for(schema.NODE)["node.session.auth.password"] == f"pw{blank}"
    rec = parse_record(schema.NODE, f"node.name = iqn.2001-04.com.example:t\n"
                       f"node.conn[0].address = 10.0.0.1\n"
                       f"node.session.auth.password = {blank}pw{blank} \n")
    assert rec["node.session.auth.password"] == f"{blank}pw{blank}"


def test_node_defaults_are_read_as_iscsid_reads_its_conf():
    """idbm_recinfo_config reads iscsid.conf's node and discovery keys as it reads records:
    'name=value' (no blank before the '=') and a last line without its newline are no
    setting (a migrated iscsid.conf with 'node.startup=automatic', which iscsid always
    ignored, would have logged in every target at boot), each said once with its own line
    number; iscsid.* keys are looked up first line first (cfg_get_string_param)."""
    from iscsictl.db import schema

    text = ("# comment\n"
            "node.startup=automatic\n"
            "iscsid.safe_logout = Yes\n"
            "iscsid.safe_logout = No\n"
            "node.session.cmds_max = 64 max\n"
            "node.session.queue_depth = 16")  # no newline: fgets drops it
    conf = IscsidConfig.parse(text, "iscsid.conf")
    warnings = []
    node = conf.defaults_for(schema.NODE, warnings.append)
    conf.defaults_for(schema.DISCOVERY_ST, warnings.append)
    assert (node["node.startup"], node["node.session.queue_depth"]) == ("manual", 32)
    assert conf.safe_logout is True
    assert sorted(w.split(": ", 1)[1][:7] for w in warnings) == ["config ", "line 2 ",
                                                                  "line 6 "]
    # '64 max': strtoul's 64, as idbm takes it (before: the default kept), and said
    assert node["node.session.cmds_max"] == 64
    assert any("line 5: '64 max' for parameter name 'node.session.cmds_max' read as 64" in w
               for w in warnings)


def test_a_discovery_records_startup_is_not_taken_from_the_conf():
    """idbm_sendtargets_defaults/idbm_isns_defaults copy only the u.sendtargets/u.isns part
    of the record idbm_sync_config read from iscsid.conf: a new discovery record's
    discovery.startup stays manual (before: 'automatic' from the conf reached it), while the
    type's own keys and a node's startup come from the conf."""
    from iscsictl.db import schema

    conf = IscsidConfig.parse("discovery.startup = automatic\nnode.startup = automatic\n"
                              "discovery.sendtargets.reopen_max = 2\n"
                              "discovery.isns.use_discoveryd = Yes\n", "iscsid.conf")
    st = conf.new_record(schema.DISCOVERY_ST)
    isns = conf.new_record(schema.DISCOVERY_ISNS)
    assert (st["discovery.startup"], st["discovery.sendtargets.reopen_max"]) == ("manual", 2)
    assert (isns["discovery.startup"], isns["discovery.isns.use_discoveryd"]) == ("manual", "Yes")
    assert conf.new_record(schema.NODE)["node.startup"] == "automatic"


def test_a_key_no_record_has_is_said_once():
    """``node.sesion.cmds_max`` (a typo) was ignored without a word, as iscsid ignores it;
    it is said once whatever the records made, and iscsid's own keys are not."""
    conf = IscsidConfig.parse("node.sesion.cmds_max = 64\nnode.session.cmds_max = 64\n"
                              "iscsid.startup = /bin/true\niscsid.ipc_auth_uid = No\n",
                              "/etc/iscsi/iscsid.conf")
    said = []
    for kind in (schema.NODE, schema.DISCOVERY_ST, schema.NODE):
        conf.new_record(kind, said.append)
    assert said == ["/etc/iscsi/iscsid.conf: unknown key 'node.sesion.cmds_max': ignored"]
    assert conf.new_record(schema.NODE)["node.session.cmds_max"] == 64


def test_a_records_lookup_keys_never_come_from_the_conf_and_secret_lengths_are_bytes():
    """iscsid.conf's node.discovery_type or node.name (read-only, a record's identity) are
    not a new record's (idbm copies only the settings): "fw" would have marked every record
    made by -o new a firmware's.  A secret's hidden length is counted in bytes, as setting
    it counts (it was characters)."""
    from iscsictl.db import schema

    conf = IscsidConfig.parse("node.discovery_type = fw\n"
                              "node.name = iqn.2003-01.org.example:conf\n"
                              "node.session.auth.password = s\u00e9cret-pass-1\n")
    node = conf.defaults_for(schema.NODE)
    assert node["node.discovery_type"] == schema.NODE.by_name["node.discovery_type"].default
    assert node["node.name"] == schema.NODE.by_name["node.name"].default
    assert node["node.session.auth.password_length"] == len("s\u00e9cret-pass-1".encode())
