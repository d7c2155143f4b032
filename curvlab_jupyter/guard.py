"""One bad client cannot stop a class: a kernel websocket connection that closes on a frame that
does not parse.

Jupyter's kernel websocket speaks one of two framings, chosen when the socket opens:

- v1 (``v1.kernel.websocket.jupyter.org``, what browsers, JupyterLab and Voila's pages speak): an
  8-byte little-endian count n, n 8-byte little-endian offsets, then the channel name and the
  message's parts between consecutive offsets;
- legacy (no subprotocol): JSON text, or for a message with binary buffers a 4-byte big-endian
  count, that many 4-byte big-endian offsets, then the JSON message and its buffers.

jupyter_server 2's v1 reader and Voila 0.5's websocket handler (which reads every binary frame it
*writes* as v1, also on a legacy connection) take the first 8 bytes for the count and build a list
of that many offsets. A legacy frame's first bytes make that count ~10^17: one frame pins the
server's CPU and grows its memory without bound, and every student's page stops with it.

`GuardedConnection` checks each incoming frame's structure against the framing negotiated for the
socket before jupyter_server reads it — cost O(n) for n offsets, bounded by the frame's length —
and closes the socket (code 1007, invalid payload) on a frame that does not parse. It writes a
legacy connection's binary frames without Voila's v1 header read. It is enabled on every route
that serves the apps:

- ``./run apps`` (standalone Voila, `curvlab_jupyter.voila`): the default of Voila's
  ``kernel_websocket_connection_class``;
- Voila as a Jupyter server extension (JupyterLab, JupyterHub's single-user servers, Binder): the
  ``curvlab_jupyter`` server extension (enabled by the package's ``jupyter_server_config.d``
  file) sets the server's ``kernel_websocket_connection_class`` (`install`).
"""

import json
import struct

import tornado.websocket
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

V1 = "v1.kernel.websocket.jupyter.org"
CHANNELS = {"shell", "control", "stdin", "iopub"}
INVALID_PAYLOAD = 1007      # RFC 6455: a frame's data is not consistent with the message type


def _offsets(frame, width, byteorder):
    """The count and offsets of a binary frame whose header is a `width`-byte count and that many
    `width`-byte offsets; ValueError unless they lie, non-decreasing, inside the frame (checked
    before anything is built, so a bogus count costs nothing)."""
    if len(frame) < width:
        raise ValueError(f"a binary frame of {len(frame)} bytes has no {width}-byte count")
    n = int.from_bytes(frame[:width], byteorder)
    if n < 1 or width * (n + 1) > len(frame):
        raise ValueError(f"the frame's count {n} does not fit its {len(frame)} bytes")
    offsets = [int.from_bytes(frame[width * (i + 1):width * (i + 2)], byteorder) for i in range(n)]
    if offsets[0] < width * (n + 1) or any(b < a for a, b in zip(offsets, offsets[1:])) \
            or offsets[-1] > len(frame):
        raise ValueError(f"the frame's offsets {offsets[:8]}... do not lie in order inside it")
    return offsets


def check_v1(frame):
    """Raise ValueError unless `frame` (bytes) is a v1 frame: count n >= 6 (channel, header,
    parent header, metadata, content, end), offsets in order inside the frame, a known channel
    and a JSON header."""
    if not isinstance(frame, bytes):
        raise ValueError("a text frame on a v1 connection (v1 frames are binary)")
    offsets = _offsets(frame, 8, "little")
    if len(offsets) < 6:
        raise ValueError(f"a v1 frame needs at least 6 offsets, this one has {len(offsets)}")
    channel = frame[offsets[0]:offsets[1]].decode("utf-8", "replace")
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel[:20]!r}")
    header = json.loads(frame[offsets[1]:offsets[2]])
    if not isinstance(header, dict):
        raise ValueError("the v1 frame's header is not a JSON object")


def check_legacy(frame):
    """Raise ValueError unless `frame` is a legacy message: JSON text, or a binary frame with a
    4-byte big-endian count, offsets in order inside it and a JSON message first."""
    if isinstance(frame, bytes):
        offsets = _offsets(frame, 4, "big")
        end = offsets[1] if len(offsets) > 1 else len(frame)
        msg = json.loads(frame[offsets[0]:end])
    else:
        msg = json.loads(frame)
    if not isinstance(msg, dict) or not isinstance(msg.get("header"), dict):
        raise ValueError("the legacy message is not a JSON object with a header")


class GuardedConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, closing the socket on a frame that does not
    parse in the socket's framing (see the module's docstring)."""

    def handle_incoming_message(self, incoming_msg):
        try:
            (check_v1 if self.subprotocol == V1 else check_legacy)(incoming_msg)
        except (ValueError, struct.error) as e:  # JSON and UTF-8 errors are ValueErrors
            self.log.warning("curvlab guard: closing the websocket of kernel %s: a frame that does "
                             "not parse as %s (%s)", self.kernel_id,
                             "v1" if self.subprotocol == V1 else "legacy", e)
            self.websocket_handler.close(INVALID_PAYLOAD, "a frame that does not parse")
            return
        super().handle_incoming_message(incoming_msg)

    @property
    def write_message(self):
        handler = self.websocket_handler
        if self.subprotocol == V1:
            return handler.write_message

        def write(message, binary=False):
            # a legacy binary frame (a message with buffers) goes around Voila's write_message,
            # which would read it as v1; Voila's filter there drops only execute_input, which
            # carries no buffers
            if isinstance(message, bytes):
                return tornado.websocket.WebSocketHandler.write_message(handler, message, binary)
            return handler.write_message(message, binary)
        return write


def install(serverapp):
    """Make every kernel websocket of a running Jupyter server (Voila's pages, Lab's notebooks)
    a `GuardedConnection`: the handlers read the class from the web app's settings per socket."""
    serverapp.kernel_websocket_connection_class = GuardedConnection
    serverapp.web_app.settings["kernel_websocket_connection_class"] = GuardedConnection
