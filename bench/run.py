"""pod-stats benchmarks (issue #7): `make bench` runs this as root → bench/results.json and a table.

The phases live in the pod_stats_bench package beside this file; `--help` lists the flags and
README.md here describes the method.
"""

from pod_stats_bench.main import run  # bench/ is sys.path[0] when run as a script

if __name__ == "__main__":
    run()
