"""generate -> split -> train -> evaluate as one resumable job (run), its plan and cost (plan), report.md (report)."""

MARK = "stage.json"  # in each stage directory: the fingerprint of its settings and of every upstream stage
