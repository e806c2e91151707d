"""Pulumi entry point (`pulumi up -s <stack>`): build the site described by the stack's config."""

from fjord.program import main

main()
