"""What a change of the spec does to a running site, from the spec alone (pure: no Pulumi, no I/O)."""
