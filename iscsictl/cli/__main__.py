"""``python -m iscsictl.cli``."""

from .main import main

main()
