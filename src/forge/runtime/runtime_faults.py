"""The errors every runtime engine raises (re-exported by `forge.runtime.base`, whose
`Runtime` contract names them): a caller tells the lab's fault from the engine's and from a
stop of the service by class, never by message."""

from __future__ import annotations


class RuntimeFault(Exception):
    """Base class of every runtime error."""


class SpecError(RuntimeFault, ValueError):
    """A LabSpec (or an exec/tty argument) is invalid; ``field`` names the offending field."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


class LabNotFound(RuntimeFault, LookupError):
    """The lab (or a host inside it) does not exist."""


class LabExists(RuntimeFault):
    """A lab with this id already exists."""


class LabSealed(RuntimeFault):
    """The lab is sealed for grading: no new terminal or command may start in it."""


class RuntimeUnavailable(RuntimeFault):
    """The engine cannot work on this machine (missing privileges or tools)."""


class BuildsStopped(RuntimeFault):
    """The engine is shutting down (``Runtime.stop_builds``): this create built nothing. Not
    the lab's fault: a launch keeps its scenario for the next process to resume."""


class StoppedMidway(RuntimeFault):
    """A stop of the service cut this operation short before it gave any result (the
    engine started it again, and the stop cut each start short). Neither the lab's fault
    nor the learner's: the caller leaves its scenario as it was, for the next start or the
    reaper to do it again, and never records it as the operation's outcome."""


class ServicesNotReady(RuntimeFault):
    """A lab's service did not listen on a port its template declares ready before the
    deadline: the lab is torn down. The message names the host and port (the template's
    own values, written for its author and the learner); ``output`` says what the service
    left (its exit status, the end of its output), for the author and the operator only:
    a service's output may carry the scenario's values or paths of the lab node."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class TerminalClosed(RuntimeFault, OSError):
    """The terminal session has ended: no more input is accepted."""


class NotSupported(RuntimeFault):
    """The configured engine does not offer this optional operation."""
