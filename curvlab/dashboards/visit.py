"""The visitor's request, as Voila hands it to a kernel, without importing Voila in the kernel.

Voila's own helper (`voila.utils.get_query_string`) lives in a module that imports Voila's
server side (jupyter_server, jupyterlab_server with jsonschema and its grammar compiler,
nbconvert's templates, …): measured in an app kernel, +40 MB resident and ~2 s (11 s on a
loaded machine) in every preheated kernel, for one websocket read. This module speaks the
same protocol (Voila 0.5, voila/utils.py `wait_for_request` and voila/request_info_handler.py):

- the kernel's environment says whether it was preheated (VOILA_PREHEAT="True", set by
  Voila's kernel manager) and where Voila listens (VOILA_WS_PROTOCOL, VOILA_APP_IP,
  VOILA_APP_PORT, VOILA_WS_BASE_URL or else VOILA_SERVER_URL) and the kernel's id
  (VOILA_KERNEL_ID);
- a preheated kernel opens the websocket {base}voila/query/{kernel id} and waits for one text
  message: the request's information as a JSON object of strings (QUERY_STRING, SCRIPT_NAME,
  …), which goes into the kernel's environment;
- a kernel Voila started for a request (not preheated) has that information in its
  environment already.

tests/dashboards/test_kernel_imports.py checks the names against the installed Voila's and reads a
request from a websocket server that behaves as Voila's handler.
"""

import json
import os
import warnings

# Voila's names (voila.utils.ENV_VARIABLE), and the defaults its helper uses
PREHEAT, KERNEL_ID = "VOILA_PREHEAT", "VOILA_KERNEL_ID"
WS_PROTOCOL, APP_IP, APP_PORT = "VOILA_WS_PROTOCOL", "VOILA_APP_IP", "VOILA_APP_PORT"
WS_BASE_URL, SERVER_URL = "VOILA_WS_BASE_URL", "VOILA_SERVER_URL"
QUERY_STRING = "QUERY_STRING"
OPEN_TIMEOUT = 5.0      # s to connect to Voila, as Voila's helper waits


def request_url(env=os.environ):
    """The websocket URL where a preheated kernel waits for its visitor's request."""
    protocol = env.get(WS_PROTOCOL, "ws")
    ip, port = env.get(APP_IP, "127.0.0.1"), env.get(APP_PORT, "8866")
    base = env.get(WS_BASE_URL, env.get(SERVER_URL, "/"))
    return f"{protocol}://{ip}:{port}{base}voila/query/{env.get(KERNEL_ID)}"


def wait_for_request(env=os.environ):
    """In a preheated kernel, block until Voila sends the visitor's request, and put its
    information into `env` (the kernel's environment); otherwise return at once. As Voila's
    helper: a server that cannot be reached within OPEN_TIMEOUT s gives a warning naming the
    URL, and the environment is left as it is."""
    if env.get(PREHEAT, "False") == "False":
        return
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect  # websockets >= 11 (the apps extra); ~1 MB

    url = request_url(env)
    try:
        with connect(url, open_timeout=OPEN_TIMEOUT) as ws:
            info = json.loads(ws.recv())
        if not isinstance(info, dict):
            raise ValueError(f"expected a JSON object, got {type(info).__name__}")
    except (OSError, WebSocketException, ValueError) as e:
        # as Voila's helper (which runs in a thread): the app runs without the request's
        # query string (its defaults), and says why
        warnings.warn(f"Failed to read the visitor's request from {url} ({e}); the app "
                      "opens with its defaults", stacklevel=2)
        return
    for k, v in info.items():
        env[k] = v


def get_query_string(env=os.environ):
    """The visitor's query string (None outside Voila), once the request has arrived
    (`wait_for_request`)."""
    wait_for_request(env)
    return env.get(QUERY_STRING)
