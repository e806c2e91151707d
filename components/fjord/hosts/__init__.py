"""Hosts as Ansible sees them: the inventory generated from the site model (pure: no Ansible imports)."""

from fjord.hosts.inventory import Inventory, build_inventory, group_name, unit_inventory

__all__ = ["Inventory", "build_inventory", "group_name", "unit_inventory"]
