"""pod-stats' development tooling, never shipped in the wheel: a Kubernetes node in miniature
(`mininode`: real runc containers in kubelet's cgroup layouts with kubelet's log-directory
entries), the static workload its containers run (`workload.c`, built to build/workload), and
the demo (`demo`). The tests, the bench and `make demo`/`make run` share it.
"""
