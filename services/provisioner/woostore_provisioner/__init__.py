from woostore_shared.nats_over_tcp import skip_websocket_transport

skip_websocket_transport()  # before any module of this service imports nats: see there
