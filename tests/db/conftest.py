import os
import sys

# make tests/peers.py importable as `peers`
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
