"""One module per `hipsync` subcommand: add_arguments(parser) and run(args) -> exit code."""
