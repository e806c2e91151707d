"""The outside world behind small typed wrappers: Redfish BMCs, ansible-runner, S3 (boto3).

Only adapters import client libraries. Components reach them through dynamic providers
(`fjord.providers`); the CLI uses them directly for operator commands.
"""
