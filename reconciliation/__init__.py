"""Reconciliation: the completeness check, expectation suites (Great Expectations), breaks, the close."""
