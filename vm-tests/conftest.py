"""Host-side pytest configuration for vm-tests/.

``vm-tests`` has a hyphen, so vmharness is made importable by putting this directory
on sys.path.  The guest-side code (guest/, guest_tests/) is never collected on the
host: guest_tests run inside the VM, driven by test_vm_scenarios.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

collect_ignore = ["guest", "guest_tests"]
