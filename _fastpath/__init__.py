"""Cython twins of hot pure-Python modules (installed as iscsictl._fastpath).

Each extension here has the same API as its pure module in iscsictl.protocol;
nothing imports this package directly except the selector modules, which fall
back to pure Python when the extension is absent or ISCSICTL_NO_EXTENSIONS=1.
"""
