"""structlog, configured once per process.

Readable console output on a terminal, JSON lines otherwise. ``store_id`` and
``correlation_id`` are bound with :func:`bind_store` and appear on every line logged inside;
``trace_id`` and ``span_id`` on every line logged inside a span (tracing.py).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import structlog

from woostore_shared import tracing
from woostore_shared.settings import LogFormat, Settings

_REDACTED_KEYS = frozenset({"password", "token", "secret", "authorization", "ticket"})
# What FastStream says of the message a line of its is about.
_BROKER_CONTEXT = ("subject", "queue", "stream", "message_id")


def _redact_secrets(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Last line of defence: a key that names a secret never reaches the output."""
    for key in event_dict:
        if any(word in key.lower() for word in _REDACTED_KEYS):
            event_dict[key] = "[redacted]"
    return event_dict


def add_trace_ids(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A line logged inside a span names its trace: from the line to the trace."""
    for key, value in tracing.log_ids().items():
        event_dict.setdefault(key, value)
    return event_dict


def configure_logging(settings: Settings, service: str) -> None:
    as_json = settings.log_format == LogFormat.JSON or (
        settings.log_format == LogFormat.AUTO and not sys.stderr.isatty()
    )
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    shared_processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        _redact_secrets,
    ]
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.log_level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, faststream, alembic) log through the standard library: same output.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[
                *shared_processors,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=_BROKER_CONTEXT),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Access lines hold query strings, and the dashboard's event-stream ticket is one.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)


def broker_logger() -> logging.Logger:
    """FastStream's logger (a line for each message received, and processed): through this
    process's output with every other line. Left to FastStream, its lines were coloured text
    on stdout, with no service, in the middle of the JSON a log collector reads."""
    logger = logging.getLogger("woostore.broker")
    logger.addFilter(_not_a_task_ending)  # once: a filter already there is not added again
    return logger


class Broker(Protocol):
    """A FastStream broker, named here without importing FastStream, which the notifier
    never loads."""

    @property
    def context(self) -> Any: ...


def name_each_message(broker: Broker) -> None:
    """Lines about a message (FastStream's Received, Processed, and its errors) name the
    message's subject (``work.provision.<store id>``), where FastStream names its
    subscription's (``work.provision.*``): an operator looking for a store's id found no
    line saying when its work was taken, or ended. Read from ``broker``'s context as each
    line is logged: FastStream's app replaces the context a broker starts with."""
    logger = broker_logger()
    for named in [f for f in logger.filters if isinstance(f, _NamesItsMessage)]:
        logger.removeFilter(named)  # one broker's at a time (tests build several)
    logger.addFilter(_NamesItsMessage(broker))


class _NamesItsMessage(logging.Filter):
    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.broker.context.get_local("message")  # in a message handled's scope
        subject = getattr(getattr(message, "raw_message", None), "subject", None)
        if subject is not None and hasattr(record, "subject"):
            record.subject = subject
        return True


def _not_a_task_ending(record: logging.LogRecord) -> bool:
    """FastStream's task supervisor says "callback for Task-N is being executed..." at info
    whenever a subscriber's task ends: a line for each of them at every stop, which says
    nothing (a task that failed is logged on a line of its own, as an error)."""
    said = record.getMessage()
    return not (
        record.levelno <= logging.INFO
        and said.startswith("callback for ")
        and said.endswith(" is being executed...")
    )


@contextmanager
def bind_store(store_id: object, correlation_id: object | None = None) -> Iterator[None]:
    values = {"store_id": str(store_id)}
    if correlation_id is not None:
        values["correlation_id"] = str(correlation_id)
    with structlog.contextvars.bound_contextvars(**values):
        yield


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
