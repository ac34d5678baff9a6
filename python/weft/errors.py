"""weft's errors as Python exceptions: one class per exit-code class of the CLI, carrying weft's own message."""


class WeftError(RuntimeError):
    """Any weft failure; `exit_code` is what the `weft` CLI would exit with (1: internal)."""

    exit_code = 1


class ConfigError(WeftError, ValueError):
    """Bad usage or config (exit code 2): a bad key, value, name, size or argument; nothing was changed."""

    exit_code = 2


class PeerFailure(WeftError):
    """A peer rank died, a collective timed out or the job was aborted (exit code 3): end the job."""

    exit_code = 3


def error_for(status, message):
    return {2: ConfigError, 3: PeerFailure}.get(status, WeftError)(message)
