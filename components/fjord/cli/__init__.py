"""The `fjord` command line."""
