"""The `nimbus` command line; the entry point is `nimbus.cli.main:main`."""
