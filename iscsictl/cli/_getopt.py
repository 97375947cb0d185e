"""A command line read as glibc's ``getopt_long`` reads it, rewritten for an argparse
parser: open-iscsi's iscsiadm and iscsistart parse theirs with it, and scripts written for
them count on what it takes that argparse alone refuses.

* a long option's unique prefix (``--target`` for ``--targetname``);
* a required argument is the next word, whatever it is (``-w -Secr3t``);
* grouped letters (``-SP1``, ``-msession``);
* a word that is no option's is left for the program (iscsiadm and iscsistart ignore
  them).

An unknown or ambiguous option, or one missing its value at the end, is passed on as
given, for the parser to refuse.  One place for both programs (``iscsictl``,
``iscsictl-start``).
"""

from __future__ import annotations

import argparse
from collections.abc import Collection

__all__ = ["getopt_argv"]


def _table(parser: argparse.ArgumentParser) -> tuple[dict[str, tuple[str, bool]],
                                                      dict[str, tuple[str, bool]]]:
    """``({letter: (--name, takes a value)}, {long name: the same})`` of ``parser``'s
    options; ``--name`` is each option's first long spelling (the one it is passed on as)."""
    shorts: dict[str, tuple[str, bool]] = {}
    longs: dict[str, tuple[str, bool]] = {}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public table
        names = [s for s in action.option_strings if s.startswith("--")]
        if not names:
            continue
        entry = (names[0][2:], action.nargs != 0)
        for s in action.option_strings:
            if s.startswith("--"):
                longs[s[2:]] = entry
            elif len(s) == 2:
                shorts[s[1]] = entry
    return shorts, longs


def _long(longs: dict[str, tuple[str, bool]], name: str,
          prefer: Collection[str]) -> tuple[str, bool] | None:
    """``--name`` as getopt_long finds it: the exact name, else the one option (under any
    spelling) it is a prefix of, among ``prefer`` first (the peer's own names, so that an
    option of ours does not make one of its prefixes ambiguous); None when unknown or
    ambiguous."""
    if name in longs:
        return longs[name]
    for pool in (prefer, longs):
        hits = {longs[n] for n in pool if n.startswith(name) and n in longs}
        if len(hits) == 1:
            return hits.pop()
    return None


def getopt_argv(parser: argparse.ArgumentParser, argv: list[str],
                prefer: Collection[str] = ()) -> tuple[list[str], list[str]]:
    """``argv`` read as getopt_long reads it against ``parser``'s options: ``(options,
    words)``, each option as ``--name`` or ``--name=value`` (for ``parser``), and the words
    that are no option's (after ``--`` too).  ``prefer``: the long names a prefix is
    resolved among first (iscsiadm's, iscsistart's)."""
    shorts, longs = _table(parser)
    out: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            words += argv[i:]
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            found = _long(longs, name, prefer) if name else None
            if found is None:
                out.append(arg)  # unknown or ambiguous: the parser says so
                continue
            flag, takes = found
            if takes and not eq:
                if i >= len(argv):
                    out.append(f"--{flag}")
                    continue
                value, eq = argv[i], "="
                i += 1
            out.append(f"--{flag}={value}" if eq else f"--{flag}")
            continue
        if not arg.startswith("-") or arg == "-":
            words.append(arg)
            continue
        j = 1
        while j < len(arg):  # grouped letters
            letter = arg[j]
            j += 1
            if letter not in shorts:
                out.append(f"-{letter}")  # the parser refuses it
                continue
            flag, takes = shorts[letter]
            if not takes:
                out.append(f"--{flag}")
            elif j < len(arg):
                out.append(f"--{flag}={arg[j:]}")
                break
            elif i < len(argv):
                out.append(f"--{flag}={argv[i]}")
                i += 1
            else:
                out.append(f"--{flag}")
    return out, words
