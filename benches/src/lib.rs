//! Loop-workload bench client (see design.md); filled in by the bench issue.
