"""A lean WebSocket (RFC 6455) for the gateway's two hops.

The gateway spends its time moving small frames: 50 ms of audio up, a JSON message
down. General-purpose stacks (uvicorn's ASGI WebSocket, the ``websockets`` client)
cost several times what the relay itself does per frame (see docs/performance.md),
so both hops use this package instead:

* ``frames``: pure frame codec (parse, mask, build, close payloads);
* ``handshake``: pure HTTP upgrade, both roles;
* ``connection``: one connection as an asyncio protocol, either role, with
  bounded queues, backpressure, keepalive pings and the closing handshake;
* ``client``: ``connect()`` to an upstream;
* ``server``: the protocol uvicorn hands ``/v3/ws`` upgrades to.

No extensions are negotiated (no permessage-deflate): audio does not compress and
JSON messages are small.
"""
