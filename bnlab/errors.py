"""The one error type for bad user input; the CLI turns it into a message and exit code 2."""


class ConfigError(ValueError):
    """A config, override or dataset argument is invalid. The message names the key and what is allowed."""
