"""`fjord bootstrap`: a new site from powered-off BMCs to accepted nodes in service, in resumable phases.

`plan` (the phase DAG, the node lifecycle, resume) and `gate` (the acceptance verdict) are pure; `runner`
does each phase's work through the adapters and persists the state in the site's artifacts bucket.
"""
