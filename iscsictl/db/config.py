"""iscsid.conf, initiatorname.iscsi and the DB / config roots.

* ``iscsid.conf`` (``<config_root>/iscsid.conf``): ``key = value`` lines, ``#`` comments, parsed
  like record files (open-iscsi ``idbm_recinfo_config``).  Node and discovery keys in it are the
  defaults of records *at creation* only (``idbm_node_setup_from_conf``); ``iscsid.*`` keys are
  plain lookups (``cfg_get_string_param``).
* ``initiatorname.iscsi``: ``InitiatorName=`` and optional ``InitiatorAlias=``; created when
  missing, or rewritten when it holds a ``GenerateName=yes`` line (Debian's startup checks),
  with a fresh Debian-style IQN (``iqn.1993-08.org.debian:01:`` + 12 hex digits, as
  Debian's postinst runs ``iscsi-iname -p iqn.1993-08.org.debian:01``), mode 0644
  (Debian's postinst leaves its own file 0600; either works for iscsid, which runs as root).

Roots: Debian's open-iscsi keeps nodes/, send_targets/, ifaces/ ... in ``/etc/iscsi`` (the
``strings`` of Debian 12's iscsiadm show ``/etc/iscsi/nodes`` etc.), and the config in
``/etc/iscsi`` too.  Both are overridable: argument > environment (``ISCSICTL_DB_ROOT``,
``ISCSICTL_CONFIG_ROOT``) > default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import schema
from .errors import DBError
from ..lexical import C_SPACE
from .files import read_regular
from .record import Record, Warn, _nowarn, parse_lines

DEFAULT_DB_ROOT = "/etc/iscsi"
DEFAULT_CONFIG_ROOT = "/etc/iscsi"
#: where RHEL, Fedora and SUSE build open-iscsi's node DB (``-Ddbroot=/var/lib/iscsi``;
#: iscsid.conf and initiatorname.iscsi stay in /etc/iscsi there)
VAR_DB_ROOT = "/var/lib/iscsi"
ENV_DB_ROOT = "ISCSICTL_DB_ROOT"
ENV_CONFIG_ROOT = "ISCSICTL_CONFIG_ROOT"
CONFIG_FILE = "iscsid.conf"
INITIATOR_NAME_FILE = "initiatorname.iscsi"
#: Debian's prefix for generated initiator names.
DEBIAN_IQN_PREFIX = "iqn.1993-08.org.debian:01:"
#: upstream iscsi-iname's default prefix
OPEN_ISCSI_IQN_PREFIX = "iqn.2005-03.org.open-iscsi:"


@dataclass(frozen=True)
class Roots:
    """Resolved roots: ``db_root`` (nodes/, send_targets/, isns/, static/, fw/, ifaces/) and
    ``config_root`` (iscsid.conf, initiatorname.iscsi)."""

    db_root: str
    config_root: str


def default_db_root(etc: str = DEFAULT_DB_ROOT, var: str = VAR_DB_ROOT) -> str:
    """``/etc/iscsi`` (upstream's and Debian's), or ``/var/lib/iscsi`` where that holds
    the node DB and ``/etc/iscsi`` does not (RHEL, Fedora, SUSE: their packages make
    ``/var/lib/iscsi/nodes``), so that iscsictl and the distribution's iscsiadm share
    one DB."""
    if not os.path.isdir(os.path.join(etc, "nodes")) and os.path.isdir(os.path.join(var,
                                                                                   "nodes")):
        return var
    return etc


def resolve_roots(db_root: str | None = None, config_root: str | None = None,
                  environ: dict | None = None) -> Roots:
    """Resolve the roots: explicit argument (``--db-root``/``--config-root``), else the
    environment (``ISCSICTL_DB_ROOT``/``ISCSICTL_CONFIG_ROOT``), else ``/etc/iscsi``
    (the DB: :func:`default_db_root`)."""
    env = os.environ if environ is None else environ
    return Roots(
        db_root or env.get(ENV_DB_ROOT) or default_db_root(),
        config_root or env.get(ENV_CONFIG_ROOT) or DEFAULT_CONFIG_ROOT,
    )


class IscsidConfig:
    """Parsed iscsid.conf.

    ``raw``: ``{key: value text}`` of every ``key = value`` line, the first one of a key
    (as iscsid's cfg_get_string_param looks up ``iscsid.*`` keys: the first line wins), a
    line without a value skipped.  The node and discovery defaults are read from the text
    as idbm_recinfo_config reads it (:meth:`defaults_for`).  ``path``: the file, or None
    when there was none (compiled defaults)."""

    def __init__(self, raw: dict | None = None, path: str | None = None, text: str = ""):
        self.raw = dict(raw or {})
        self.path = path
        self._text = text
        self._warned: set[str] = set()  # each bad line said once, not once a record kind

    @classmethod
    def load(cls, config_root: str, warn: Warn = _nowarn,
             path: str | None = None) -> "IscsidConfig":
        """Read ``<config_root>/iscsid.conf`` (``path``: that file instead, as iscsistart's
        ``-c`` names one); a missing file gives an empty config."""
        path = path or os.path.join(config_root, CONFIG_FILE)
        try:
            data = read_regular(path)
        except FileNotFoundError:
            return cls(None, None)
        except OSError as e:
            warn(f"cannot read {path}: {e.strerror}")
            return cls(None, None)
        return cls.parse(data.decode("utf-8", "surrogateescape"), path)

    @classmethod
    def parse(cls, text: str, path: str | None = None) -> "IscsidConfig":
        """Parse iscsid.conf text (``key = value``; ``#`` comments; blank lines)."""
        raw = {}
        for line in text.split("\n"):
            line = line.strip(C_SPACE)  # as iscsiadm's strstrip: ASCII blanks only
            if not line or line[0] == "#":
                continue
            name, sep, value = line.partition("=")
            name, value = name.strip(C_SPACE), value.strip(C_SPACE)
            if not sep or not name or len(name.split()) != 1 or not value:
                continue  # no blank inside a name; "Missing value": skipped
            raw.setdefault(name, value)
        return cls(raw, path, text)

    def get(self, key: str, default: str | None = None) -> str | None:
        """Plain lookup of any key (``iscsid.startup``, ``iscsid.safe_logout`` ...)."""
        return self.raw.get(key, default)

    def get_bool(self, key: str, default: bool = False) -> bool:
        """Yes/No key (e.g. ``iscsid.safe_logout``): True iff the value is ``Yes``."""
        v = self.raw.get(key)
        return default if v is None else v == "Yes"

    @property
    def safe_logout(self) -> bool:
        """``iscsid.safe_logout`` (default No)."""
        return self.get_bool("iscsid.safe_logout", False)

    @property
    def startup(self) -> str | None:
        """``iscsid.startup``: the command iscsiadm runs to start iscsid."""
        return self.get("iscsid.startup")

    def defaults_for(self, kind: schema.RecordKind, warn: Warn = _nowarn) -> dict:
        """Typed ``{key: value}`` of the compiled defaults of ``kind`` overlaid by this file's
        keys for that kind (bad values warned and ignored)."""
        vals = {k.name: k.default for k in kind.keys}
        text = self._text or "".join(f"{k} = {v}\n" for k, v in self.raw.items())
        if text:  # as idbm_recinfo_config reads the file (its lines, warned by number)
            def once(msg: str) -> None:
                if msg not in self._warned:
                    self._warned.add(msg)
                    warn(msg)
            parsed, _ = parse_lines(kind, text, self.path or CONFIG_FILE, once)
            for name in self.raw:  # a key no record has (a typo: node.sesion.cmds_max) was
                if not name.startswith("iscsid.") and not any(  # ignored without a word
                        name in k.by_name for k in schema.KINDS.values()):
                    once(f"{self.path or CONFIG_FILE}: unknown key '{name}': ignored")
            # the lookup keys of a record (name, address, type ...) never come from the config,
            # nor a discovery record's startup: idbm_sendtargets_defaults/idbm_isns_defaults
            # copy only the u.sendtargets/u.isns part of the config's record
            for name, v in parsed.items():
                if not kind.by_name[name].read_only and name != "discovery.startup":
                    vals[name] = v
        for k in kind.keys:
            if k.length_of:  # bytes, as Record.set counts them
                vals[k.name] = len(vals[k.length_of].encode("utf-8", "surrogateescape"))
        return vals

    def new_record(self, kind: schema.RecordKind, warn: Warn = _nowarn) -> Record:
        """A fresh record of ``kind`` with iscsid.conf defaults applied."""
        return Record(kind, self.defaults_for(kind, warn))


# --------------------------------------------------------------------------------------------
# initiatorname.iscsi
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitiatorName:
    """Contents of initiatorname.iscsi: ``name`` (InitiatorName=), ``alias`` (InitiatorAlias=,
    or None)."""

    name: str
    alias: str | None = None

    @property
    def login_alias(self) -> str:
        """The InitiatorAlias logins declare (iscsid.c's daemon_config.initiator_alias):
        ``alias``, else the host's name (uname's nodename)."""
        return self.alias or os.uname().nodename


def generate_iqn(prefix: str = DEBIAN_IQN_PREFIX) -> str:
    """A fresh initiator name like ``iscsi-iname -p prefix``: prefix + 12 random hex digits."""
    import secrets  # lazily: it loads OpenSSL, which costs every CLI command otherwise

    return prefix + secrets.token_hex(6)


def read_initiator_name(config_root: str) -> InitiatorName | None:
    """Parse ``<config_root>/initiatorname.iscsi``; None if the file or InitiatorName= is
    missing.  ``#`` lines are comments.  Raises DBError when the file exists but cannot be
    read (a directory, no permission, an I/O error): it is never replaced then."""
    text = _initiator_file(config_root)
    return None if text is None else _parse_initiator_name(text)


def initiator_alias(config_root: str) -> str:
    """The InitiatorAlias logins declare, as iscsid's: ``<config_root>/initiatorname.iscsi``'s
    InitiatorAlias=, else the host's name (uname's nodename), also when the file is missing
    or cannot be read."""
    try:
        name = read_initiator_name(config_root)
    except DBError:
        name = None
    return name.login_alias if name else os.uname().nodename


def _initiator_file(config_root: str) -> str | None:
    """The text of ``<config_root>/initiatorname.iscsi``; None when there is no such file.
    Raises DBError when it exists but cannot be read."""
    path = os.path.join(config_root, INITIATOR_NAME_FILE)
    try:
        return read_regular(path).decode("utf-8", "surrogateescape")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise DBError(f"cannot read {path}: {e.strerror or e}") from None


def _parse_initiator_name(text: str) -> InitiatorName | None:
    """InitiatorName= and InitiatorAlias= of an initiatorname.iscsi's text (the first of
    each with a value, as iscsid's cfg_get_string_param takes it: a name appended below
    the old one is not the one the targets know yet; blanks around key and value
    stripped); None without a name."""
    name = alias = None
    for line in text.split("\n"):
        line = line.strip(C_SPACE)
        if not line or line[0] == "#":
            continue
        k, sep, v = line.partition("=")
        if not sep:
            continue
        k, v = k.strip(C_SPACE), v.strip(C_SPACE)
        if k == "InitiatorName" and v and name is None:
            name = v
        elif k == "InitiatorAlias" and v and alias is None:
            alias = v
    if not name:
        return None
    return InitiatorName(name, alias)


_INAME_HEADER = """\
## DO NOT EDIT OR REMOVE THIS FILE!
## If you remove this file, the iSCSI daemon will not start.
## If you change the InitiatorName, existing access control lists
## may reject this initiator.  The InitiatorName must be unique
## for each iSCSI initiator.  Do NOT duplicate iSCSI InitiatorNames.
"""


def ensure_initiator_name(config_root: str, prefix: str = DEBIAN_IQN_PREFIX,
                          warn: Warn = _nowarn) -> InitiatorName:
    """Return the initiator name.  ``initiatorname.iscsi`` is written (atomically, 0644,
    Debian's header and ``InitiatorName=<fresh IQN>``) when it is missing, or when it asks
    for a name with a line ``GenerateName=yes`` (Debian's startup-checks.sh); ``warn`` is
    told the new name (iscsid warns of a missing file: missing_iname_warn).

    Raises:
        DBError: the file cannot be read, or it has neither a name nor that line (a
            mistyped name, a BOM), or it is a symbolic link to nothing: it may hold the
            name the targets' ACLs know, so it is never replaced by a new one.
    """
    path = os.path.join(config_root, INITIATOR_NAME_FILE)
    text = _initiator_file(config_root)
    if text is not None and not any(line.startswith("GenerateName=yes")
                                    for line in text.split("\n")):
        cur = _parse_initiator_name(text)
        if cur is None:
            raise DBError(f"{path} does not contain a valid InitiatorName (a line "
                          "InitiatorName=iqn...); or put GenerateName=yes in it for a new one")
        return cur
    if text is None and os.path.islink(path):  # its file not there (yet): a storage not
        # mounted; a new name would replace the link and the name the targets know
        raise DBError(f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                      "exist: not replaced by a new name (mount what it points to)")
    from .store import atomic_write  # local import: store imports this module

    os.makedirs(config_root, 0o755, exist_ok=True)  # not 0777 under umask 000
    name = generate_iqn(prefix)
    atomic_write(path, (_INAME_HEADER + f"InitiatorName={name}\n").encode(), mode=0o644)
    warn(f"{path} {'asked for a new name' if text is not None else 'did not exist'}: "
         f"wrote InitiatorName={name} (the targets' ACLs must allow it)")
    return InitiatorName(name)
