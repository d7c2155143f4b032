"""Shareable links in a real browser, with Voila's preheated kernels: a query string sets the
app's controls (three apps, three controls each), the 'link to this view' button writes a link
that restores the view, and bad values give a message instead of a broken page."""

from .test_apps import (ERROR_OUTPUT, RENDER_COUNTER, SETTLED, assert_no_errors, choose, plot_data,
                        set_readout, wait_changed)


def open_with(page, url, app, query, plots):
    page.add_init_script(RENDER_COUNTER)
    page.goto(f"{url}/voila/render/{app}.ipynb{query}")
    page.wait_for_selector("#loading", state="detached", timeout=180_000)
    page.wait_for_function(SETTLED, arg=plots, timeout=120_000, polling=100)


def dropdown(page, label):
    box = page.locator(".widget-dropdown", has=page.locator(f"label:text-is('{label}')")).first
    return box.locator("select").evaluate("s => s.options[s.selectedIndex].text")


def readout(page, label):
    slider = page.locator(".widget-slider", has=page.locator(f"label:text-is('{label}')")).first
    return slider.locator(".widget-readout").inner_text()


def x_max(page, plot):
    x = plot_data(page, plot, 0, "x")
    return max(float(v) for v in x.strip("[]").split(","))


def test_a_link_sets_the_landscape_view(page, voila_url):
    open_with(page, voila_url, "landscape", "?data=moons&d1=gradient&span=2.5", 2)
    assert dropdown(page, "data") == "moons" and dropdown(page, "d1") == "gradient"
    assert abs(float(readout(page, "span")) - 2.5) < 1e-9
    assert abs(x_max(page, "1-D slice") - 2.5) < 1e-9            # and the plot is of that view
    assert_no_errors(page)


def test_a_link_sets_the_spectra_view(page, voila_url):
    open_with(page, voila_url, "spectra", "?data=xor&scope=W1&approx=kfra", 3)
    assert (dropdown(page, "data"), dropdown(page, "scope"), dropdown(page, "approx.")) == ("xor", "W1", "kfra")
    assert_no_errors(page)


def test_a_link_sets_the_damping_view(page, voila_url):
    open_with(page, voila_url, "damping", "?matrix=hessian&damping=0.1&lm-steps=20", 5)
    assert dropdown(page, "matrix") == "hessian"
    assert abs(float(readout(page, "damping η")) - 0.1) < 1e-9 and readout(page, "LM steps") == "20"
    assert_no_errors(page)


def test_the_link_button_round_trips_the_view(page, voila_url):
    open_with(page, voila_url, "landscape", "", 2)
    before = plot_data(page, "1-D slice", 0, "x")
    set_readout(page, "span", "3.3")
    wait_changed(page, "1-D slice", 0, "x", before)
    before_z = plot_data(page, "2-D slice", 0, "z")
    choose(page, "d2", "gradient")
    wait_changed(page, "2-D slice", 0, "z", before_z)
    page.get_by_role("button", name="link to this view").click()
    anchor = page.locator("a[target=_blank]", has_text="?").first
    anchor.wait_for(timeout=30_000)
    href = anchor.get_attribute("href")
    assert href.startswith("?") and "span=3.3" in href and "d2=gradient" in href and "data=" not in href
    fresh = page.context.new_page()
    open_with(fresh, voila_url, "landscape", href, 2)
    assert abs(x_max(fresh, "1-D slice") - 3.3) < 1e-9 and dropdown(fresh, "d2") == "gradient"
    assert_no_errors(fresh)


def test_a_bad_link_is_a_message_and_the_app_works(page, voila_url):
    open_with(page, voila_url, "landscape", "?span=wide&colour=red&d1=gradient", 2)
    page.wait_for_selector("text=link: unknown control 'colour'", timeout=60_000)
    assert "span='wide' is not a number" in page.inner_text("body")
    assert dropdown(page, "d1") == "gradient"                      # the good part was applied
    assert page.locator(ERROR_OUTPUT).count() == 0 and "Traceback" not in page.inner_text("body")
    before = plot_data(page, "1-D slice", 0, "x")
    set_readout(page, "span", "2.0")
    wait_changed(page, "1-D slice", 0, "x", before)
