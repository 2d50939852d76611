"""``python -m streamtune.cli``."""

from streamtune.cli.main import main

main()
