"""`python -m fjord` runs the `fjord` command line."""

from fjord.cli.main import main

main()
