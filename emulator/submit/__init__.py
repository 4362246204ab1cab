"""``emulator submit``: a request `run` would run, sent to SageMaker (CreateTrainingJob), its
local data uploaded under a staging prefix first, then followed as `run` follows a job.

preflight.py  what runs only on this machine: refused, each with what to change
rewrite.py    which members name local paths; the request with them rewritten (pure)
upload.py     local data hashed, keyed by content, uploaded through emulator.storage
remote.py     the SageMaker and CloudWatch Logs APIs (boto3), errors translated
follow.py     status transitions and every host's log lines, to the end; Ctrl-C
job.py        the order of it all (``submit_job``, ``prepare``)
"""

# Nothing is imported here: the CLI's options module must not pull boto3 into `emulator --help`.
