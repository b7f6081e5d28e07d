"""Run every benchmark script in this folder; each writes its own section of RESULTS.md.

Usage: ``make bench`` or ``python benchmarks/run_all.py [NAME ...]`` (e.g. ``meta cox``).
The benchmarks are long (minutes each on 2 cores) and are not part of ``make test``.
"""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
wanted = set(sys.argv[1:])
failed = []
for script in sorted(here.glob("bench_*.py")):
    name = script.stem.removeprefix("bench_")
    if wanted and name not in wanted:
        continue
    print(f"== {script.name}", flush=True)
    if subprocess.call([sys.executable, str(script)]) != 0:
        failed.append(script.name)
print(f"results: {here / 'RESULTS.md'}")
sys.exit(1 if failed else 0)
