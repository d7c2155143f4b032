"""Two small widgets with their own page code (anywidget, which plotly's FigureWidget already
needs): a button that downloads a file in one click, and a box that shows a link as a full URL
with a copy button. The kernel cannot know the page's address or touch its clipboard and
downloads; the page can."""

import anywidget
import traitlets

_DOWNLOAD = """
function render({ model, el }) {
  const b = document.createElement('button');
  b.className = 'jupyter-widgets jupyter-button widget-button curvlab-download';
  b.style.width = 'auto';
  b.textContent = model.get('description');
  b.title = model.get('tooltip');
  b.onclick = () => model.send({ event: 'make' });
  model.on('msg:custom', (msg) => {
    if (msg.event !== 'file') return;
    const url = URL.createObjectURL(new Blob([msg.text], { type: msg.mime }));
    const a = document.createElement('a');
    a.href = url; a.download = msg.name; a.style.display = 'none';
    document.body.appendChild(a); a.click();
    setTimeout(() => { URL.revokeObjectURL(url); a.remove(); }, 2000);
  });
  el.appendChild(b);
}
export default { render };
"""

_LINK = """
function render({ model, el }) {
  const row = document.createElement('span');
  row.className = 'curvlab-linkbox';
  row.style.cssText = 'display:inline-flex;gap:4px;align-items:center;flex-wrap:wrap';
  const input = document.createElement('input');
  input.readOnly = true; input.className = 'curvlab-url';
  input.style.cssText = 'width:min(60vw,620px);font:inherit;padding:2px 4px';
  input.onfocus = () => input.select();
  const copy = document.createElement('button');
  copy.className = 'jupyter-widgets jupyter-button widget-button curvlab-copy';
  copy.style.width = 'auto'; copy.textContent = 'copy';
  const open = document.createElement('a');
  open.textContent = 'open in a new tab'; open.target = '_blank'; open.rel = 'noopener';
  row.append(input, copy, open);
  const show = () => {
    const q = model.get('query');
    row.style.display = q ? '' : 'none';
    const url = location.origin + location.pathname + (q === '?' ? '' : q);
    input.value = url; open.href = url;
  };
  copy.onclick = async () => {
    let ok = true;
    try { await navigator.clipboard.writeText(input.value); }
    catch (e) { input.select(); ok = document.execCommand('copy'); }
    copy.textContent = ok ? 'copied' : 'select and copy';
    setTimeout(() => { copy.textContent = 'copy'; }, 1500);
  };
  model.on('change:query', show); show();
  el.appendChild(row);
}
export default { render };
"""


class DownloadButton(anywidget.AnyWidget):
    """A button that, pressed, asks the kernel for a file (`make()` -> text) and has the page
    download it as `filename`: one click."""

    _esm = _DOWNLOAD
    description = traitlets.Unicode("download").tag(sync=True)
    tooltip = traitlets.Unicode("").tag(sync=True)

    def __init__(self, make, filename, mime="text/csv", **kwargs):
        super().__init__(**kwargs)
        self.make, self.filename, self.mime = make, filename, mime
        self.sent = 0                               # files sent (for tests)
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget, content, _buffers):
        if content.get("event") == "make":
            self.deliver()

    def deliver(self):
        """Make the file and send it to the page (what a press does); returns its text."""
        text = self.make()
        self.send({"event": "file", "name": self.filename, "text": text, "mime": self.mime})
        self.sent += 1
        return text


class LinkBox(anywidget.AnyWidget):
    """The full URL of this page with the query string `query` ('?…'; '' shows nothing), in a
    read-only box with a copy button and an 'open in a new tab' link."""

    _esm = _LINK
    query = traitlets.Unicode("").tag(sync=True)


_NUDGE = """
function render({ model, el }) {
  el.style.display = 'none';
  model.on('msg:custom', (msg) => {
    for (const ms of msg.after || [150]) {
      setTimeout(() => window.dispatchEvent(new Event('resize')), ms);
    }
  });
}
export default { render };
"""


class ResizeNudge(anywidget.AnyWidget):
    """An invisible widget that, told to (`nudge()`), has the page announce a window resize:
    every plot then fits its panel again (plotly's widget follows the window), as after the
    panels re-flow when presentation mode gives each figure a whole row."""

    _esm = _NUDGE

    def nudge(self, after=(150, 700, 1500)):
        self.send({"after": list(after)})
