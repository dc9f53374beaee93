"""The review domain on the store: when a reviewer's answer is final, and where a case goes when not.

Tier 1 (the sync and async queues) decides ordinary cases. A high-impact decision needs a second
sign-off by a *different* reviewer in its own queue; until both agree the final decision stays
pending, and disagreement goes to Tier 2. An `escalate` answer or a missed SLA also moves a case
to Tier 2 (senior analysts). Tier 3 (incident response, compliance) is paged, never queued.
An `annotate` answer decides nothing: its note is audited and shown to the next reviewer.
Only registered reviewers (`fraudloop reviewers add`) count, whatever Label Studio accepted.

Label Studio is not touched here: a case that leaves its queue or goes back to it gets an
`ls_patch` that `labeling.escalation.push_patches` mirrors to the server, so the store stays the
one place that decides, whichever path (webhook or reconciliation) brought the answer in.

- `cases`: a case's state, its SLA, the queue it moves to, the notes and notices it carries;
- `answers`: one annotation in, applied once (decide, hold for sign-off, escalate, return);
- `sla`: the sweep that escalates overdue cases and ages priorities;
- `paging`: Tier 3 incidents, sent through an alert sink and then audited;
- `similar`: the decided cases a reviewer sees beside a new one.
"""
