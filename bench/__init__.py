"""Benchmark tooling: a generator of large plaintext captures and a runner that times lyncpcap,
tshark and pyshark on them (see bench/README.md)."""
