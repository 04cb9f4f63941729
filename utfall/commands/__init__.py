"""Subcommands of `utfall`, one module each with `register(subparsers)`."""
