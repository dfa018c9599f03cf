from woostore_shared.unimported import leave_unimported

leave_unimported()  # before any module of this service imports nats or structlog: see there
