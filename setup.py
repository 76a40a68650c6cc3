"""The one compiled part: the pcapng reader's hot loop (lyncpcap/read/_scan.c).

It is optional: without a C compiler the package installs and reads captures with the pure Python
loop, which gives the same results (tests/test_fastpath.py compares them), only slower."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("lyncpcap.read._scan", ["lyncpcap/read/_scan.c"], optional=True)])
