"""`python -m lyncpcap` runs the command line."""

from lyncpcap.cli import main

main()
