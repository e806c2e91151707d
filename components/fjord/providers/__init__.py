"""Pulumi dynamic providers: create/diff/update/delete that call the adapters.

A provider object is pickled into its resource's inputs, so it holds no open clients or sockets;
each operation opens what it needs and closes it again.
"""
