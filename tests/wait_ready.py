"""Waits up to 30 s for the node at sys.argv[1] to answer /readyz."""
import sys
import time
import urllib.request

for _ in range(300):
    try:
        urllib.request.urlopen(f"{sys.argv[1]}/readyz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the node did not become ready")
