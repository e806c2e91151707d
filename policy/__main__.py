"""fjord's policy pack: Pulumi runs this to serve the policies of fjord_pack.py (docs/policy.md)."""

from fjord_pack import policies  # the pack's folder is the working directory Pulumi runs it in
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name="fjord", enforcement_level=EnforcementLevel.ADVISORY, policies=policies())
