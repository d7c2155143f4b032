"""The play button of a replay slider (damping's LM step, trajectories' step, the dynamics app's
step): one widget, shared by every app that replays something step by step."""

import ipywidgets as W


class Player:
    """A play button beside `slider` (an IntSlider): pressing it steps the slider from its value
    to its maximum, one step every `interval` ms, and the slider's callbacks draw each step. The
    button follows the slider's range; it has no description, so links leave it out (the
    slider's value is the view).

    `.widget` is the row to display; `.play` the ipywidgets Play (its value is linked to the
    slider's in the kernel, so the same code runs in a notebook, in Voila and in a test)."""

    def __init__(self, slider, interval=500):
        self.slider = slider
        self.play = W.Play(value=slider.value, min=slider.min, max=slider.max, step=1,
                           interval=interval, show_repeat=False, tooltip="play the replay",
                           layout=W.Layout(width="auto"))
        self.link = W.link((self.play, "value"), (slider, "value"))
        for name in ("min", "max"):
            W.dlink((slider, name), (self.play, name))
        self.widget = W.HBox([self.play, slider], layout=W.Layout(align_items="center"))

    def step(self):
        """One tick of the button, as the page does it (for tests): the next step, or False at
        the end."""
        if self.play.value >= self.play.max:
            return False
        self.play.value += 1
        return True
