"""Uploads that cannot hurt the server: a file picker that refuses an oversized file in the page,
by its size, before a byte is sent; and a reader that checks a .npy / .npz file's array headers
(shape × dtype) before anything is decompressed or allocated.

ipywidgets' FileUpload has no size limit: it reads the whole file in the page and sends it in one
widget message, which Voila's websocket (tornado, 10 MiB) drops with the connection — the page
then looks dead. An .npz is a zip: a few kilobytes can inflate to gigabytes (a "zip bomb"), and
np.load allocates what an .npy header claims.
"""

import io
import zipfile

import anywidget
import numpy as np
import traitlets

from .widgets import read_array

MAX_UPLOAD_BYTES = 9 * 2 ** 20      # one widget message must stay under tornado's 10 MiB
MAX_MEMBERS = 16                    # arrays in one .npz

_ESM = """
function render({ model, el }) {
  const mb = (n) => (n / 2 ** 20).toFixed(1) + ' MB';
  const input = document.createElement('input');
  input.type = 'file'; input.accept = model.get('accept'); input.style.display = 'none';
  const button = document.createElement('button');
  button.className = 'jupyter-widgets jupyter-button widget-button curvlab-upload';
  button.style.width = 'auto';
  button.textContent = model.get('description');
  button.title = `a .npy or .npz file, up to ${mb(model.get('max_bytes'))}`;
  const note = document.createElement('div');
  note.className = 'curvlab-upload-note';
  note.style.cssText = 'font-size:12px;max-width:260px;white-space:normal';
  button.onclick = () => input.click();
  input.onchange = async () => {
    const f = input.files[0];
    input.value = '';
    if (!f) return;
    const max = model.get('max_bytes');
    if (f.size > max) {     // refused here: the file never leaves the page
      const text = `${f.name}: ${mb(f.size)} is larger than the ${mb(max)} the app takes; ` +
                   'for a larger matrix use cl.compare(..., extra={"name": M}) in a notebook';
      note.textContent = text;
      model.set('refused', text); model.save_changes();
      return;
    }
    note.textContent = `sending ${f.name} (${mb(f.size)})`;
    const data = await f.arrayBuffer();
    model.send({ event: 'file', name: f.name, size: f.size }, undefined, [data]);
    note.textContent = '';
  };
  el.append(input, button, note);
}
export default { render };
"""


class MatrixUpload(anywidget.AnyWidget):
    """A file picker for one .npy / .npz file of at most `max_bytes`: the page refuses a larger
    file by its size (the message in the page and in `refused`) and sends a smaller one in one
    message. `value` is set as ipywidgets' FileUpload sets it: ({name, type, size, content,
    last_modified},), so code written for FileUpload observes it unchanged."""

    _esm = _ESM
    description = traitlets.Unicode("upload").tag(sync=True)
    accept = traitlets.Unicode(".npy,.npz").tag(sync=True)
    max_bytes = traitlets.Int(MAX_UPLOAD_BYTES).tag(sync=True)
    refused = traitlets.Unicode("").tag(sync=True)
    value = traitlets.Tuple()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget, content, buffers):
        if content.get("event") != "file" or not buffers:
            return
        data = bytes(buffers[0])
        self.value = ({"name": str(content.get("name", "file")), "type": "", "size": len(data),
                       "content": memoryview(data), "last_modified": None},)


def array_headers(name, content):
    """[(member, shape, dtype)] of the arrays in a .npy / .npz file's bytes, read from each .npy
    header alone (numpy.lib.format.read_magic and read_array_header_*): for an .npz only the
    first bytes of each member are inflated. ValueError naming the file when it is neither, when
    an .npz member is not a .npy array, or when it holds more than MAX_MEMBERS arrays."""
    if content[:6] == b"\x93NUMPY":
        return [(name, *_header(name, io.BytesIO(content)))]
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise ValueError(f"{name}: not a .npy or .npz file (an .npy starts with \\x93NUMPY, an "
                         ".npz is a zip of .npy files)") from None
    members = zf.infolist()
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"{name}: holds {len(members)} files; the app takes an .npz of at most "
                         f"{MAX_MEMBERS} arrays")
    out = []
    for info in members:
        if not info.filename.endswith(".npy"):
            raise ValueError(f"{name}: {info.filename!r} inside is not a .npy array")
        with zf.open(info) as fp:               # inflates as it is read: the header only
            out.append((f"{name}:{info.filename}", *_header(f"{name}:{info.filename}", fp)))
    return out


def _header(where, fp):
    """(shape, dtype) from a .npy stream's header."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fp)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fp)
    except ValueError as e:
        raise ValueError(f"{where}: not a readable .npy header ({e})") from None
    return shape, dtype


def read_matrix(name, content, max_bytes=MAX_UPLOAD_BYTES):
    """The array in a .npy / .npz file's bytes (an .npz's "M", else its first array), after
    checking every array's header: numbers only (no object arrays), at most 2-D, and shape ×
    dtype at most `max_bytes` — so a file whose arrays claim more (an .npz inflating to
    gigabytes) is refused before it is decompressed. Cost: the headers, then the chosen array."""
    for member, shape, dtype in array_headers(name, content):
        if dtype.hasobject:
            raise ValueError(f"{member}: holds Python objects ({dtype}); save numbers "
                             "(np.save(f, np.asarray(M, dtype=float)))")
        if len(shape) > 2:
            raise ValueError(f"{member}: a {len(shape)}-D array {shape}; the app takes a P × P "
                             "matrix or its diagonal")
        size = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if size > max_bytes:
            raise ValueError(f"{member}: a {' × '.join(map(str, shape))} {dtype} array is "
                             f"{size / 2 ** 20:,.0f} MB unpacked, more than the "
                             f"{max_bytes / 2 ** 20:.0f} MB the app takes; use cl.compare(..., "
                             "extra={'name': M}) in a notebook")
    return read_array(name, content)
