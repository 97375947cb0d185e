"""Names and credentials of the tgtd targets the CLI tests configure (shared by conftest and tests)."""

INIT = "iqn.2026-11.test.iscsictl:init"
T_OPEN = "iqn.2026-11.test.tgt:open"
T_CHAP = "iqn.2026-11.test.tgt:chap"
T_MUTUAL = "iqn.2026-11.test.tgt:mutual"
T_MULTI = "iqn.2026-11.test.tgt:multi"
CHAP_USER = ("chapuser", "chapsecret1234")
MUTUAL_USER = ("muser", "mutualsecret12")
MUTUAL_OUT = ("tgtuser", "targetsecret12")
DISC_USER = ("discuser", "discsecret1234")
DISC_OUT = ("disctgt", "disctgtsecret1")
