"""Suite-wide fixtures. Servers (PostgreSQL, SeaweedFS) live in tests/support/ as plugins."""

pytest_plugins = [
    "tests.support.postgres",
    "tests.support.s3",
    "tests.support.app",
]
