"""What each dashboard says in words: a caption per panel ("What you see") and guided
experiments ("Try this"), each experiment a link that opens the app on exactly the view it talks
about (a query string: `links`). Every sentence is asserted by a headless test at that view
(tests/dashboards/test_lessons.py), from the numbers the page shows."""

import html
from typing import NamedTuple

import ipywidgets as W


class Lesson(NamedTuple):
    """One "try this" item: its sentence and the query string (without '?') of its view, which
    may ask for a dashboard's action too (a button's work: run=lm, `links`)."""
    text: str
    query: str

    @property
    def href(self):
        return "?" + self.query


def caption(dashboard, fig):
    """The caption of figure attribute `fig` (CAPTIONS holds text, or (label, text))."""
    c = dashboard.CAPTIONS[fig]
    return c if isinstance(c, str) else c[1]


def panel_label(dashboard, fig):
    """The caption's heading: its own label, or the figure's title (for titles that change with
    the view, CAPTIONS gives a label)."""
    c = dashboard.CAPTIONS[fig]
    return getattr(dashboard, fig).layout.title.text or fig if isinstance(c, str) else c[0]


def explanation(dashboard):
    """'What you see' (one caption per figure, under its title) and 'Try this' (each item a link
    to its view, opened in this tab: the app starts afresh on that view), as two collapsible
    sections of plain HTML (no MathJax: formulas are written in Unicode)."""
    figs = dashboard.named_figures()
    missing = sorted(set(figs) - set(dashboard.CAPTIONS))
    if missing:
        raise KeyError(f"{type(dashboard).__name__}: no caption for {missing}")
    rows = "".join(f"<p style='margin:6px 0'><b>{html.escape(panel_label(dashboard, k))}</b> — "
                   f"{html.escape(caption(dashboard, k))}</p>" for k in figs)
    steps = "".join(
        f"<li style='margin:3px 0'><a class='curvlab-lesson' href=\"{html.escape(t.href)}\" "
        f"target='_self' title='open this view'>{html.escape(t.text)}</a></li>"
        for t in dashboard.TRY_THIS)
    summary = "<summary style='cursor:pointer'><b>{}</b></summary>"
    hint = ("<p style='margin:4px 0;color:#555'>Each item is a link: it opens this app on the "
            "view it talks about.</p>")
    return W.HTML("<div style='max-width:1100px;line-height:1.4'>"
                  f"<details open>{summary.format('What you see')}{rows}</details>"
                  f"<details open>{summary.format('Try this')}{hint}<ol>{steps}</ol></details>"
                  "</div>").add_class("curvlab-scale")
