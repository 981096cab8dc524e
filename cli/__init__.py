"""resflex.cli — the `resflex` command: the top layer; each subcommand builds a config and calls a library function."""
