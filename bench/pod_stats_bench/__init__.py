"""pod-stats' benchmarks (issue #7), one module per phase; bench/run.py runs them and bench/README.md
describes the method.

common: processes pinned to the tool CPU, BPF fd and program listings, stale-run cleanup;
stats: medians and their noise; target: every name imported from pod_stats; arms: the tools
compared; overhead: syscall cost in interleaved whole-run rounds, and in-program cost from the
kernel's BPF stats; windows: the same costs in short on/off windows, and each optional probe
group's; podfarm and sample: real kubelet-layout pods and the cost of one sample; agent: a real
agent's CPU, memory and first sample; attach: start to probes attached; storm: zero loss;
report: results.json's summary, the method text and the table; main: the command line.
"""
