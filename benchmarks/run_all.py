"""Run every ``benchmarks/bench_*.py`` in turn with this interpreter (``make bench``).

Each script prints its own report; exits 1 if any of them fails.
"""

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    failed = []
    for script in sorted(Path(__file__).resolve().parent.glob("bench_*.py")):
        print(f"=== {script.name}", flush=True)
        if subprocess.run([sys.executable, str(script)]).returncode:
            failed.append(script.name)
        print(flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")
