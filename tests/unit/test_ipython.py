"""%load_ext difftech_lab: which objects get rich display, and the %difftech magic."""

import base64
import io
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from difftech_lab import ipython as ext
from difftech_lab.errors import InvalidArgumentError


@pytest.fixture
def shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    ext.load_ipython_extension(shell)
    yield shell
    ext.unload_ipython_extension(shell)
    shell.user_ns.pop("s", None)


class LatentSession:
    default_size = (64, 64)

    def latent_shape(self, width, height):
        return 4, height // 8, width // 8

    def preview(self, latents):
        return [Image.new("RGB", (64, 64), (int(z.mean() > 0) * 255, 0, 0)) for z in latents]


def _bundle(shell, obj):
    data, _ = shell.display_formatter.format(obj)
    return data


def test_sigma_schedule_shows_as_a_plot(shell):
    sigmas = torch.tensor([14.6, 7.0, 3.0, 1.0, 0.0])
    png = _bundle(shell, sigmas)["image/png"]
    assert Image.open(io.BytesIO(png)).size == (450, 260)


@pytest.mark.parametrize("tensor", [torch.tensor([1.0, 2.0]), torch.tensor([3, 2, 1]), torch.tensor([1.0, -1.0]),
                                    torch.ones(2, 2), torch.tensor([1.0])])
def test_other_tensors_keep_their_text_repr(shell, tensor):
    data = _bundle(shell, tensor)
    assert "image/png" not in data and data["text/plain"].startswith("tensor(")


def test_latent_shows_decoded_once_a_session_is_known(shell):
    latent = torch.cat([-torch.ones(1, 4, 8, 8), torch.ones(1, 4, 8, 8)])  # previews black, then red
    assert "image/png" not in _bundle(shell, latent)
    shell.user_ns["s"] = LatentSession()
    shell.run_line_magic("difftech", "session s")
    png = _bundle(shell, latent)["image/png"]
    grid = Image.open(io.BytesIO(png))
    assert grid.size == (512, 256), "two 64 px previews, enlarged 4× to be 256 px tall"
    assert grid.getpixel((255, 10)) == (0, 0, 0) and grid.getpixel((256, 10)) == (255, 0, 0)
    assert "image/png" not in _bundle(shell, torch.ones(1, 3, 8, 8)), "3 channels is not this session's latent"


def _html_image(html):
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_result_html_has_the_grid_and_the_recipe_summary():
    recipe = SimpleNamespace(parameters_text=lambda: "a <red> square\nSteps: 4, Seed: 1")
    result = SimpleNamespace(images=[Image.new("RGB", (8, 8))] * 2, nfe=8, recipe=recipe,
                             grid=lambda: Image.new("RGB", (16, 8)))
    html = ext.result_html(result)
    assert html.count("<img") == 1 and "image-rendering:pixelated" in html
    assert _html_image(html).size == (512, 256)
    assert "a &lt;red&gt; square\nSteps: 4, Seed: 1\nNFE: 8" in html


def test_small_images_are_enlarged_sharply_by_a_whole_factor():
    checker = Image.fromarray((np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)).convert("RGB")
    shown = ext.for_display(checker)
    assert shown.size == (256, 256)
    assert set(np.unique(np.asarray(shown))) == {0, 255}, "nearest neighbour: no blended pixels"
    np.testing.assert_array_equal(np.asarray(shown)[::4, ::4], np.asarray(checker))
    big = Image.new("RGB", (512, 512))
    assert ext.for_display(big) is big


def test_a_wide_row_is_enlarged_only_as_far_as_a_cell_holds():
    assert ext.for_display(Image.new("RGB", (8 * 64, 64))).size == (1024, 128)
    assert ext.for_display(Image.new("RGB", (2000, 64))).size == (2000, 64)


def test_magic_off_and_on(shell, capsys):
    sigmas = torch.tensor([2.0, 1.0, 0.0])
    shell.run_line_magic("difftech", "off")
    assert "image/png" not in _bundle(shell, sigmas)
    shell.run_line_magic("difftech", "on")
    assert "image/png" in _bundle(shell, sigmas)
    assert "no session for latents" in capsys.readouterr().out
    with pytest.raises(InvalidArgumentError, match="not a command"):
        shell.run_line_magic("difftech", "frobnicate")
    with pytest.raises(InvalidArgumentError, match="no variable 'nope'"):
        shell.run_line_magic("difftech", "session nope")


def test_load_ext_registers_the_magic():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "difftech_lab")
    try:
        assert "difftech" in shell.magics_manager.magics["line"]
        assert "image/png" in shell.display_formatter.format(torch.tensor([3.0, 1.0, 0.0]))[0]
    finally:
        ext.unload_ipython_extension(shell)
        shell.extension_manager.loaded.discard("difftech_lab")


def test_a_real_result_displays_as_html(shell):
    from difftech_lab.recipe import Recipe
    from difftech_lab.sampling.settings import Settings
    from difftech_lab.session import Result

    result = Result(images=[Image.new("RGB", (8, 8), "red")] * 3, latents=torch.zeros(3, 4, 1, 1),
                    recipe=Recipe(settings=Settings(width=8, height=8, steps=4, cfg=3.0, seed=7),
                                  params={"prompt": "a red square"}), nfe=8, timings={"total": 0.1},
                    sigmas=torch.tensor([1.0, 0.0]))
    data = _bundle(shell, result)
    assert data["text/plain"] == repr(result)
    html = data["text/html"]
    assert "a red square" in html and "Seed: 7" in html and "NFE: 8" in html and "0.1" not in html
    assert _html_image(html).size == (3 * 8 * 32, 8 * 32)
