"""Build apps/index.ipynb, the apps' landing page, from docs/screenshots (thumbnails embedded as
notebook attachments, so the page needs no file server and no network).

    .venv/bin/python docs/make_landing.py        # after the browser tests refreshed the screenshots
"""

import base64
import io
import pathlib

import nbformat
from nbformat.v4 import new_markdown_cell, new_notebook
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[1]
APPS = [
    ("landscape", "How well does each matrix's quadratic model describe the loss around w?",
     "1-D and 2-D slices along random, filter-normalised, eigen- or gradient directions, with the "
     "quadratic models of the Hessian, GGN, Fisher, K-FAC family and diagonals laid over them.",
     "Grosse; Botev et al.; Li et al. 2018"),
    ("spectra", "Which curvature approximation keeps the spectrum, and where does it fail?",
     "Eigenvalue spectra of every matrix, whole or per layer, SLQ densities, heatmaps of exact vs "
     "approximation, the comparison table — and your own matrix from a .npy file.",
     "Botev et al. 2017; Martens & Grosse 2015; George et al. 2018"),
    ("damping", "What does damping do to a second-order step?",
     "Move η through (C + ηI)⁻¹: filter factors, the step turning from Newton's to the gradient's, "
     "predicted vs actual decrease, Levenberg–Marquardt replayed.", "Grosse's lecture notes"),
    ("trajectories", "Newton, Gauss-Newton, K-FAC or Adam: who gets there, and is it invariant?",
     "Optimisers on 2-D test functions and on networks; the reparameterisation toggle shows which "
     "methods are affine invariant.", "Grosse; Martens & Grosse; Bulatov"),
    ("products", "How exact is a Hessian-vector product, and what do Lin's two GN products cost?",
     "Pearlmutter's exact Hv against finite differences (the V-shaped error); stored-Jacobian vs "
     "R-operator Gauss-Newton products in time and memory.", "Pearlmutter 1994; Lin's notes"),
    ("beyond", "Does the R-operator work beyond layered nets?",
     "Hv by relaxation on a recurrent network converging to the exact product; a Boltzmann machine's "
     "R{p}; weight perturbation's estimates against samples and σ.", "Pearlmutter 1994, sections 4–6"),
    ("dynamics", "How does curvature move while a net trains?",
     "Loss and sharpness against the optimiser's stability threshold, the spectrum and the "
     "gradient's overlap with the top eigenspace along training, and a loss slice at any step.",
     "Cohen et al. 2021, 2022; Gur-Ari et al. 2018"),
    ("uncertainty", "What does the choice of curvature do to a Laplace posterior?",
     "Predictive bands and confidence maps per kind beside the exact GGN's, the marginal "
     "likelihood against the prior precision, influence against leave-one-out.",
     "MacKay 1992; Koh & Liang 2017"),
]
TUTORIALS = ["pearlmutter", "lin", "bulatov", "botev", "grosse", "zoo", "check_your_tool", "beyond",
             "dynamics", "laplace"]


def thumbnail(name, width=420):
    img = Image.open(ROOT / "docs" / "screenshots" / f"{name}.png").convert("RGB")
    img = img.crop((0, 0, img.width, min(img.height, int(img.width * 0.62))))
    img.thumbnail((width, width))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode()


def main():
    cells = [new_markdown_cell(
        "# curvlab — a curvature laboratory\n\n"
        "Every matrix second-order optimisation rests on — Hessian, generalized Gauss-Newton, Fisher, "
        "K-FAC, KFLR, KFRA, EKFAC and the rest — computed exactly for a small network, and shown. "
        "Pick an app; each opens on a default problem you can change (data set, hidden layers or a "
        "conv net, activation, loss, training state). Start with **landscape** or **damping** in a "
        "first lecture.")]
    for name, question, what, source in APPS:
        cell = new_markdown_cell(
            f"### [{name}]({name}.ipynb)\n\n**{question}**\n\n"
            f"[![{name} app](attachment:{name}.png)]({name}.ipynb)\n\n"
            f"{what} *Source: {source}.*")
        cell["attachments"] = {f"{name}.png": {"image/png": thumbnail(name)}}
        cells.append(cell)
    cells.append(new_markdown_cell(
        "### Tutorials\n\nThe notebooks in `notebooks/` reproduce each source's claims with the library "
        "and assert them as they go: " + ", ".join(f"`{t}.ipynb`" for t in TUTORIALS) +
        ". Open them with `.venv/bin/jupyter lab notebooks/` after `./run apps` has set up the "
        "environment."))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nbformat.write(nb, ROOT / "apps" / "index.ipynb")


if __name__ == "__main__":
    main()
