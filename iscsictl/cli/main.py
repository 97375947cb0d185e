"""``iscsictl``: parser, dispatch, and the only ``sys.exit``.

Options are iscsiadm's (letters and long names); ``-m MODE`` selects the mode module
(``discovery_cmd``, ``node_cmd``, ``iface_cmd``, ``session_cmd``, ``host_cmd``,
``fw_cmd``), imported only when used so that a ``-m node`` listing never loads the
protocol stack.  Each mode accepts iscsiadm's
letters for it (``mode_paras``); another letter gives ``MODE mode: option '-X' is not
allowed/supported`` (exit 7).  Typed errors carry their exit code; :func:`run` maps them and
prints ``iscsictl: <message>`` on stderr; nothing escapes as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import signal
import sys
from collections.abc import Iterator

from . import errors as E
from ._common import OPS, op_mask
from .output import Output, OutputError

#: mode -> (module, option letters iscsiadm allows in it)
MODES = {
    "discovery": ("discovery_cmd", "DSIPdmntplov"),
    "discoverydb": ("discovery_cmd", "DSIPdmntplov"),
    "node": ("node_cmd", "RsPIdmlSonvupTULW"),
    "session": ("session_cmd", "PiRdrmusonuSv"),
    "iface": ("iface_cmd", "HIdnvmPoCabci"),
    "host": ("host_cmd", "CHdmPotnvxAS"),  # -S: iscsictl only (-C flashnode's secrets)
    "fw": ("fw_cmd", "dmlWnvS"),  # -S: iscsictl only (secrets are masked)
}
MODE_ALIASES = {"discoverydb": "discoverydb", "sendtargets": "discovery"}
#: letters a mode takes (iscsiadm's mode_paras) and does nothing with: its help says so
IGNORED_LETTERS = {"session": "i", "host": "t"}
#: long options of some modes only (help); the others' are every mode's
LONG_ONLY_MODES = {"force": ("node", "session"), "safe": ("node", "session"),
                   "probe": ("node",)}

class _PairAction(argparse.Action):
    """``-n``/``-v``: the last of each (``args.name``, ``args.value``) and, in ``args.params``,
    the pairs as iscsiadm makes them (usr/iscsiadm.c main: a pair as soon as both a name and
    a value were given, in either order, then both forgotten)."""

    def __call__(self, parser, namespace, value, option_string=None):  # type: ignore[no-untyped-def]
        setattr(namespace, self.dest, value)
        pending = dict(getattr(namespace, "_pending", None) or {})
        pending[self.dest] = value
        if len(pending) == 2:
            namespace.params = [*(namespace.params or []), (pending["name"], pending["value"])]
            pending = {}
        namespace._pending = pending


#: option table: (letter, long name, argparse kwargs, help)
OPTIONS = (
    ("m", "mode", dict(metavar="MODE", action="append"), "discovery | discoverydb | node | session | iface | host | fw"),
    ("t", "type", dict(metavar="TYPE"), "discovery type: sendtargets (st) | isns | fw"),
    ("p", "portal", dict(metavar="IP[:PORT][,TPGT]"), "portal: ip[:port], [v6]:port, host"),
    ("T", "targetname", dict(metavar="IQN"), "target name"),
    ("I", "interface", dict(metavar="IFACE", action="append"), "iface name (repeatable)"),
    ("o", "op", dict(metavar="OP", action="append"),
     "new | delete | update | show | nonpersistent; apply | applyall (iface); login | "
     "logout (host -C flashnode) (repeatable)"),
    ("n", "name", dict(metavar="KEY", action=_PairAction), "record key for -o update"),
    ("v", "value", dict(metavar="VALUE", action=_PairAction), "value for -o update"),
    ("P", "print", dict(metavar="LEVEL", type=int),
     "print level (node, iface, discovery: 0-1; session: 0-3; host: 0-4)"),
    ("S", "show", dict(action="store_true", default=None),
     "show secrets (-o show, -m session -P 2, -m fw, -m host -C chap|flashnode)"),
    ("d", "debug", dict(metavar="LEVEL", type=int),
     "debug level: above 0, each Login and Text PDU and iscsictld's steps for this "
     "command on stderr"),
    ("D", "discover", dict(action="store_true", default=None),
     "discoverydb: run discovery with the record's settings"),
    ("l", "login", dict(action="store_true", default=None), "log in (needs iscsictld)"),
    ("u", "logout", dict(action="store_true", default=None), "log out (needs iscsictld)"),
    ("L", "loginall", dict(metavar="all|manual|automatic|onboot"), "log in all (iscsictld)"),
    ("U", "logoutall", dict(metavar="all|manual|automatic|onboot"), "log out all (iscsictld)"),
    ("r", "sid", dict(metavar="SID", action="append"),
     "session id or sysfs path (session mode; each checked, the last used)"),
    ("H", "host", dict(metavar="HOST"), "host number or its MAC (host mode; iface mode's -o "
     "applyall)"),
    ("C", "submode", dict(metavar="SUBMODE"), "sub-mode: chap | flashnode | stats (host mode: "
     "an offload HBA's CHAP table, flash targets, statistics) | ping (iface mode)"),
    ("x", "index", dict(metavar="INDEX"), "flash node (or CHAP entry) index (host mode)"),
    ("A", "portal_type", dict(metavar="ipv4|ipv6"), "a new flash node's portal type (host "
     "mode)"),
    ("a", "ip", dict(metavar="IP"), "address to ping (iface mode -C ping)"),
    ("b", "packetsize", dict(metavar="BYTES"), "ping payload size (default 32)"),
    ("c", "count", dict(metavar="N"), "number of pings (default 1)"),
    ("i", "interval", dict(metavar="SECONDS"), "seconds between pings (default 0)"),
    ("R", "rescan", dict(action="store_true", default=None),
     "rescan the sessions' LUNs (session, node modes)"),
    ("s", "stats", dict(action="store_true", default=None),
     "the sessions' statistics (session, node modes; needs iscsictld)"),
    ("W", "no_wait", dict(action="store_true", default=None), "do not wait (login)"),
    ("k", "killiscsid", dict(metavar="PRIORITY"),
     "stop iscsictld (priority 0 only, as iscsiadm's: its sessions stay in the kernel)"),
)
LONG_ONLY = (
    ("json", dict(action="store_true"), "JSON output"),
    ("db-root", dict(metavar="DIR"), "node DB root (default $ISCSICTL_DB_ROOT, else /etc/iscsi, "
     "or /var/lib/iscsi where that holds nodes/ and /etc/iscsi does not)"),
    ("config-root", dict(metavar="DIR"),
     "iscsid.conf/initiatorname.iscsi dir (default $ISCSICTL_CONFIG_ROOT or /etc/iscsi)"),
    ("force", dict(action="store_true"),
     "log out even if the disks are mounted or swap (iscsid.safe_logout)"),
    ("safe", dict(action="store_true"),
     "log out only sessions whose disks are neither mounted nor swap, whatever "
     "iscsid.safe_logout says (the shutdown's logout: iscsictl-sessions.service)"),
    ("probe", dict(action="store_true"),
     "node mode: log in from userspace and list the LUNs (no kernel, no root)"),
)

USAGE = """\
iscsictl -m discoverydb [-hV] [-d debug_level] [-P printlevel] [-t type -p ip:port -I ifaceN ... [-Dl]] | [[-p ip:port -t type] [-o operation] [-n name] [-v value] [-lD]]
iscsictl -m discovery [-hV] [-d debug_level] [-P printlevel] [-t type -p ip:port -I ifaceN ... [-l]] | [[-p ip:port] [-l | -D]]
iscsictl -m node [-hV] [-d debug_level] [-P printlevel] [-L all,manual,automatic,onboot] [-U all,manual,automatic,onboot] [-S] [[-T targetname -p ip:port -I ifaceN] [-l | -u | -R | -s]] [[-o operation ] [-n name] [-v value]] [--probe]
iscsictl -m session [-hV] [-d debug_level] [-P printlevel] [-r sessionid | sysfsdir [-R | -u | -s] [-o operation] [-n name] [-v value]]
iscsictl -m iface [-hV] [-d debug_level] [-P printlevel] [-I ifacename | -H hostno|MAC] [[-o operation ] [-n name] [-v value]] [-C ping [-a ip] [-b packetsize] [-c count] [-i interval]]
iscsictl -m host [-hV] [-d debug_level] [-P printlevel] [-H hostno|MAC] [[-C chap [-x chap_tbl_idx]] | [-C flashnode [-A portal_type] [-x flashnode_idx] [-S]] | [-C stats]] [[-o operation] [-n name] [-v value]]
iscsictl -m fw [-hV] [-d debug_level] [-S] [-l] [-W] [[-n name] [-v value]]
iscsictl -k priority
common: [--json] [--db-root DIR] [--config-root DIR]"""


def _formatter(prog: str) -> argparse.HelpFormatter:
    # argparse's default formatter imports shutil (and with it zlib, bz2, lzma) to
    # measure the terminal on every add_argument; a command pays for three C
    # extension loads it never uses.  $COLUMNS (or 80) is what help needs.
    import os

    try:
        width = int(os.environ.get("COLUMNS", "80")) - 2
    except ValueError:
        width = 78
    return argparse.HelpFormatter(prog, width=max(width, 40))


#: iscsiadm's long option names (usr/iscsiadm.c long_options) that our table spells with a
#: '-' (argparse's): both spellings are taken
_ISCSIADM_SPELLINGS = frozenset(("portal_type", "no_wait"))
#: iscsiadm's own long options: a prefix is resolved among them first, so that ours
#: (--probe, --json ...) do not make one of its prefixes ambiguous (--pr is --print;
#: :func:`iscsictl.cli._getopt.getopt_argv`)
_ISCSIADM_LONGS = frozenset((
    "mode", "portal", "targetname", "interface", "op", "type", "name", "value", "host", "sid",
    "rescan", "print", "discover", "login", "loginall", "logout", "logoutall", "stats",
    "killiscsid", "debug", "show", "version", "help", "submode", "ip", "packetsize", "count",
    "interval", "index", "portal_type", "no_wait"))


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would exit 2: iscsiadm says 7 (ISCSI_ERR_INVAL)
        raise E.CliError(message, E.INVAL)


@functools.cache
def build_parser() -> argparse.ArgumentParser:
    """The option parser (no subcommands: ``-m`` is an option, as in iscsiadm); built once
    (the command server builds it before forking its workers; parsing leaves it unchanged)."""
    p = _Parser(prog="iscsictl", add_help=False, usage=USAGE, formatter_class=_formatter,
                description="iSCSI administration utility (iscsiadm-compatible).",
                allow_abbrev=False)
    for letter, long, kw, hlp in OPTIONS:
        kw = dict(kw)
        kw.setdefault("default", None)
        flags = [f"-{letter}", f"--{long.replace('_', '-')}"]
        if long in _ISCSIADM_SPELLINGS:
            flags.append(f"--{long}")
        p.add_argument(*flags, dest=long, help=hlp, **kw)
    for long, kw, hlp in LONG_ONLY:
        p.add_argument(f"--{long}", dest=long.replace("-", "_"), help=hlp, **kw)
    p.add_argument("-h", "--help", action="store_true", help="this help")
    p.add_argument("-V", "--version", action="store_true", help="print the version")
    p.set_defaults(params=None, _pending=None)
    return p


def mode_help(mode: str) -> str:
    """Help text for one mode: its usage line and the options it accepts, each with its
    argument (those it takes only as iscsiadm does, doing nothing with them, said)."""
    import textwrap

    _, letters = MODES[mode]
    ignored = IGNORED_LETTERS.get(mode, "")
    rows = [(f"-{letter}, --{long.replace('_', '-')}" + (f" {kw['metavar']}" if "metavar" in kw
                                                       else ""),
             "taken and ignored, as by iscsiadm" if letter in ignored else hlp)
            for letter, long, kw, hlp in OPTIONS if letter in letters]
    rows += [(f"--{long}" + (f" {kw['metavar']}" if "metavar" in kw else ""), hlp)
             for long, kw, hlp in LONG_ONLY if mode in LONG_ONLY_MODES.get(long, (mode,))]
    rows += [("-h, --help", "this help"), ("-V, --version", "print the version")]
    width = 26  # a longer option's help starts on the line below it
    lines = [f"usage (mode {mode}):"]
    lines += [u for u in USAGE.splitlines() if u.startswith(f"iscsictl -m {mode} ")]
    lines.append("options:")
    for flags, hlp in rows:
        if len(flags) > width - 4:
            lines.append(f"  {flags}")
            flags = ""
        lines += textwrap.wrap(hlp, 100, initial_indent=f"  {flags:<{width - 2}}",
                               subsequent_indent=" " * width)
    return "\n".join(lines) + "\n"


def _check_letters(args, mode: str) -> None:
    _, letters = MODES[mode]
    name = "discovery" if mode == "discoverydb" else mode  # iscsiadm's mode_paras name
    for letter, long, _kw, _h in OPTIONS:
        if getattr(args, long) is not None and letter not in letters and letter != "m":
            raise E.CliError(f"{name} mode: option '-{letter}' is not allowed/supported",
                             E.INVAL)
    if args.probe and mode != "node":
        raise E.CliError(f"{mode} mode: option '--probe' is not allowed/supported", E.INVAL)


def _check_iface_names(names: list[str]) -> None:
    """iscsiadm's check of each ``-I`` as it reads them (usr/iface.c iface_alloc): 1 to 64
    bytes, else 7 in every mode."""
    from ..db.schema import MAX_IFACE_NAME

    for name in names:
        if not name or len(os.fsencode(name)) > MAX_IFACE_NAME:
            raise E.CliError(f"Invalid iface name {name}. Must be from 1 to {MAX_IFACE_NAME} "
                             "characters.", E.INVAL)


def run(argv: list[str] | None = None, out: Output | None = None) -> int:
    """Parse ``argv`` and run the command; the exit code (never raises for expected errors).

    The command runs under the caller's umask less its owner bits (restored after): the
    DB's directories and records are 0700 and 0600 as iscsiadm's, which runs under umask
    0077, never 0500 and 0400 (a DB no later command could write)."""
    umask = os.umask(0o077)
    os.umask(umask & 0o077)
    try:
        return _run(sys.argv[1:] if argv is None else list(argv), out)
    finally:
        os.umask(umask)


def _run(argv: list[str], out: Output | None) -> int:
    o = out or Output()
    try:
        from ._getopt import getopt_argv

        options, words = getopt_argv(build_parser(), argv, _ISCSIADM_LONGS)
        args = build_parser().parse_args(options)
        o.json = bool(args.json)
        for word in words:  # iscsiadm ignores them without a word; one of -L's and -U's
            from .session_cmd import STARTUP_CHOICES  # words alone is most likely theirs
            o.warn(f"'{word}' is not an option's: ignored" + (
                f" (-L {word} or -U {word}?)" if word in STARTUP_CHOICES else ""))
        for dest, given in (args._pending or {}).items():  # iscsiadm's: no pair, no word
            n, v = ("-n", "-v") if dest == "name" else ("-v", "-n")
            if "update" not in (args.op or []):  # (whose own refusal says it)
                o.warn(f"{n} {given} has no {v} to pair with: ignored")
        if args.version:
            from .. import __version__
            if o.json:  # the record format too: the version written after "# BEGIN RECORD"
                from ..db.schema import FORMAT_VERSION
                o.emit_json({"version": __version__, "record_format": FORMAT_VERSION})
            else:
                o.lines([f"iscsictl version {__version__}"])
            return E.SUCCESS
        modes = args.mode or []  # each -m is checked, as iscsiadm's option loop checks
        for mode in modes:  # each (str_to_mode, verify_mode_params); the last one runs
            if mode not in MODES:  # iscsiadm's words, then what the modes are
                raise E.CliError(f"mode {mode} is not yet supported (the modes: "
                                 f"{', '.join(MODES)})", E.INVAL)
        mode = args.mode = modes[-1] if modes else None
        if args.help:  # before -k: iscsiadm's option loop prints it and exits at once
            o.text(mode_help(mode) if mode else build_parser().format_help())
            return E.SUCCESS
        if args.killiscsid is not None:  # iscsiadm's: instead of any mode, but a -m's
            for m in modes:  # options are checked as its getopt loop reads -m
                _check_letters(args, m)  # (verify_mode_params: -k is no mode's)
            return _kill_daemon(args.killiscsid, o)
        if mode is None:  # on stderr only, as iscsiadm's usage(ISCSI_ERR_INVAL)
            raise E.CliError("no mode specified (-m discovery|discoverydb|node|session|"
                             "iface|host|fw); try `iscsictl --help'", E.INVAL)
        if args.op:  # an unknown -o: 7 before anything is done, as iscsiadm's option loop
            op_mask(args.op)  # (which checks the mode's letters after); one after a known
            args.op = [op for op in args.op if op in OPS]  # one is ignored, as there
        for m in modes:
            _check_letters(args, m)
        if args.interface:
            _check_iface_names(args.interface)
        modname = MODES[mode][0]
        module = None
        if modname is not None:
            try:
                module = importlib.import_module(f"{__package__}.{modname}")
            except ModuleNotFoundError as e:
                if e.name != f"{__package__}.{modname}":
                    raise
        if module is None:
            raise E.CliError(f"-m {mode} is not supported yet", E.OP_NOT_SUPP)
        if args.debug is not None and args.debug > 0:
            with _debug_lines(o):
                return module.run(args, o, mode)
        return module.run(args, o, mode)
    except E.CliError as e:
        for line in e.lines:
            o.error(line)
        if str(e):
            o.error(str(e))
        if e.exit_code == E.NO_OBJS_FOUND and o.json and not o.written:
            with contextlib.suppress(OutputError, BrokenPipeError):
                o.emit_json([])  # nothing found is an empty listing: stdout is always JSON
        return e.exit_code
    except KeyboardInterrupt:
        o.error("interrupted")
        return 130
    except BrokenPipeError:
        return E.ERR
    except OutputError as e:  # the command's result is lost: say so, never exit 0
        o.error(f"cannot write the output: {e.strerror}")
        if o.out is sys.stdout:
            _discard_stdout()
        return E.ERR
    except Exception as e:  # typed errors of db/, transport/, protocol/
        code = E.exit_code_of(e)
        if code == E.ERR:
            o.error(f"unexpected error: {type(e).__name__}: {e}")
        else:
            o.error(str(e))
        return code


@contextlib.contextmanager
def _debug_lines(o: Output) -> Iterator[None]:
    """``-d N``, N above 0 (every level alike): the command's debug lines on stderr, those
    of the library (each Login and Text PDU sent and received: :mod:`iscsictl.protocol.trace`)
    after ``iscsictl: ``, and iscsictld's for this command's requests (its connect, the
    login's PDUs, the kernel's steps) after ``iscsictld: ``.  iscsiadm's ``-d`` shows only its
    own side; iscsid's needs iscsid restarted with ``-d``.  Undone after the command (a
    command server's worker runs the next one as new)."""
    import logging

    from ..ipc import DAEMON_LINES

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                o.debug(record.getMessage())
            except Exception:  # noqa: BLE001 - a record that cannot be rendered
                self.handleError(record)

    logger = logging.getLogger("iscsictl")
    handler = Lines(logging.DEBUG)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    token = DAEMON_LINES.set(lambda line: o.debug(line, "iscsictld"))
    try:
        yield
    finally:
        DAEMON_LINES.reset(token)
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _kill_daemon(priority: str, o: Output) -> int:
    """``-k 0``: iscsictld stops at once, its sessions left in the kernel (the next start
    adopts them), as iscsiadm's kill_iscsid asks iscsid (MGMT_IPC_IMMEDIATE_STOP).  Another
    priority is refused, as iscsiadm refuses it, but with 7 (iscsiadm exits 0 after
    its message, and after a failed request too: here the daemon's code, 20 without one)."""
    from ..ipc import DaemonClient, DaemonError
    from ..lexical import ascii_digits

    text = priority.strip()
    if not ascii_digits(text.removeprefix("-")):
        raise E.CliError(f"Invalid killiscsid priority {priority!r}: a number", E.INVAL)
    if int(text) < 0:
        raise E.CliError(f"Invalid killiscsid priority {int(text)} Priority must be greater "
                         "than or equal to zero.", E.INVAL)
    if int(text) != 0:
        raise E.CliError(f"Invalid iscsid priority {int(text)}. Priority must be 0.", E.INVAL)
    try:
        DaemonClient().call("stop")
    except DaemonError as exc:
        raise E.CliError("Could not stop iscsictld.", exc.code, lines=(str(exc),)) from None
    return E.SUCCESS


class Terminated(BaseException):
    """SIGTERM or SIGHUP (``signum``) came while a command ran (:func:`terminating`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: the signals that end a command as SIGINT does, by unwinding it (systemctl stop's and
#: timeout's SIGTERM, a closed terminal's SIGHUP)
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def terminating() -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP raise :class:`Terminated`, so that a command
    unwinds as on SIGINT (before, they killed it at once, and a bulk ``-o update`` left its
    staged temp files, full record copies, in ``<db>/.tmp`` for an hour); once the block has
    unwound, the process ends by that signal, as it did.  A signal not at its default
    disposition when the block starts (nohup's ignored SIGHUP) is left as it is."""
    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated(signum)

    taken = [sig for sig in ENDING_SIGNALS if signal.getsignal(sig) == signal.SIG_DFL]
    for sig in taken:
        signal.signal(sig, raise_terminated)
    try:
        yield
    except Terminated as t:
        for sig in taken:
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), t.signum)  # ends this process, by that signal
        raise  # (only should it be blocked)
    finally:
        for sig in taken:
            signal.signal(sig, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run and exit with the code."""
    if argv is None:
        _in_utf8_mode()
    with terminating():
        code = run(argv)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        pass
    except (OSError, ValueError) as e:  # buffered output that cannot be written
        Output().error(f"cannot write the output: {getattr(e, 'strerror', None) or e}")
        _discard_stdout()
        code = code or E.ERR
    sys.exit(code)


def _in_utf8_mode() -> None:
    """Run again in Python's UTF-8 mode (``-X utf8``) under a locale whose encoding is not
    UTF-8 (ISO-8859-1, ...): the arguments' bytes are then kept as they are, as iscsiadm
    keeps them and as iscsictld's command server (UTF-8 mode) reads them; decoded in the
    locale's encoding, then written as UTF-8, a ``-v`` of Latin-1 bytes went into a record
    (a CHAP name on the wire) as other bytes than the served command wrote.  The C and
    POSIX locales are UTF-8 mode already (PEP 540)."""
    if sys.flags.utf8_mode or sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        return
    if not sys.executable or not getattr(sys, "orig_argv", None):
        return
    try:
        os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])
    except OSError:
        pass  # run as it is


def _discard_stdout() -> None:
    """Point descriptor 1 at /dev/null: what stdout still buffers, which could not be
    written, goes nowhere, and the interpreter's last flush does not fail again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass


if __name__ == "__main__":
    main()
