"""The attack suite: every finding of the issue-11 attack run, each as a test that tries to break the property.

Run and count with `pytest tests/security -q` (see tests/security/README.md for the table of findings).
"""
