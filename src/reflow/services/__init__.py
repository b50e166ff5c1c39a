"""Business logic per resource. Services take keyword-only arguments, flush but
never commit: the edge (a request or a job) owns the transaction."""
