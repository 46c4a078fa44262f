"""What each role sees on each kind of call: prompts built from a brief, no model, no
kernel (``test_roles_and_context.py`` checks the same through whole runs)."""

from __future__ import annotations

from agentnb.chat.context import (
    Brief,
    ContextLimits,
    author_prompt,
    data_schema,
    definitions,
    review_prompt,
)
from agentnb.chat.messages import Execution, Step
from agentnb.chat.roles import ANALYST, CRITIC
from agentnb.kernel.outputs import Output
from agentnb.models.base import message_text

SUMMARY = """### sales: DataFrame, 10,000 rows x 4 columns
dtypes: date str, region str, units int64, unit price float64
head:
         date region  units  unit price
0  2024-07-21  North      3        7.90
1  2024-01-30  South      2       12.16
numeric summary:
              mean    std   min    max
units       10.613  5.768  1.00  20.00
unit price  21.331 17.101  3.14  59.39
missing values: region 3

### rate: float
0.25
"""


def out(text: str) -> Output:
    return {"output_type": "stream", "name": "stdout", "text": text}


def error(ename: str, evalue: str) -> Output:
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def ran(
    n: int, code: str, *outputs: Output, status: str = "ok", proposed: str | None = None
) -> Step:
    execution = Execution(
        code=code,
        status=status,  # type: ignore[arg-type]
        outputs=outputs,
        execution_count=n,
        duration=0.1,
    )
    return Step(
        number=n,
        author="analyst",
        rationale="",
        code=code,
        proposed_code=code if proposed is None else proposed,
        execution=execution,
        reviews=("critic: Next, plot it.",),
    )


LOAD = ran(
    1,
    'import pandas as pd\ndf = pd.read_csv("sales.csv", parse_dates=["date"])\nprint(df.shape)',
    out("(10000, 4)\nLOAD-OUTPUT\n"),
)
WRONG = ran(
    2,
    'df["revenue"] = df["units"] * df["price"]',
    error("KeyError", "'price'"),
    status="error",
)
TOTALS = ran(
    3,
    'df["revenue"] = df["units"] * df["unit price"]\n'
    'totals = df.groupby("region")["revenue"].sum()\nprint(totals)',
    out("North 10\nSouth 12\nTOTALS-OUTPUT\n"),
)
STEPS = (LOAD, WRONG, TOTALS)


def brief(*steps: Step) -> Brief:
    return Brief(task="Revenue by region.", data_summary=SUMMARY, files="FILES-NOTE", steps=steps)


def author(b: Brief, **kw: object) -> str:
    return message_text(author_prompt(ANALYST, b, **kw)[-1])  # type: ignore[arg-type]


def review(b: Brief, step: int | None, code: str = "", text: str = "") -> str:
    prompt = review_prompt(CRITIC, b, author="analyst", step=step, text=text, code=code)
    return message_text(prompt[-1])


def test_the_analyst_sees_the_whole_summary_until_a_step_ran_then_the_schema() -> None:
    first = author(brief())
    assert "## Data\n<data>\n### sales" in first
    assert "2024-07-21" in first  # the head
    assert "10.613" in first  # the numeric summary
    # a failed step showed nothing of the data: still the whole summary
    assert "2024-07-21" in author(brief(WRONG))
    later = author(brief(*STEPS))
    assert "## Data (schema)\n<data>\n### sales: DataFrame, 10,000 rows x 4 columns" in later
    assert "dtypes: date str, region str, units int64, unit price float64" in later
    assert "ranges: units 1.00–20.00, unit price 3.14–59.39" in later
    assert "missing values: region 3" in later
    assert "### rate: float\n0.25" in later  # a value that is not a frame: as it is
    assert "2024-07-21" not in later
    assert "10.613" not in later


def test_the_analyst_sees_its_latest_step_whole_and_earlier_ones_as_definitions() -> None:
    text = author(brief(*STEPS))
    earlier, latest = text.split("### Step 3 (ok)")
    # step 1: what later code builds on, and a short excerpt of its output
    assert "### Step 1 (ok), definitions only" in earlier
    assert 'df = pd.read_csv("sales.csv", parse_dates=["date"])' in earlier
    assert "print(df.shape)" not in earlier
    assert "LOAD-OUTPUT" in earlier
    assert "### Step 2 (error): failed with <data>KeyError: 'price'</data>; superseded." in text
    # the latest: its code, its output and the reviewers' notes
    assert "print(totals)" in latest
    assert "TOTALS-OUTPUT" in latest
    assert "Reviewers: critic: Next, plot it." in latest
    assert text.count("Reviewers:") == 1
    assert "FILES-NOTE" in text


def test_the_critic_of_a_step_sees_that_step_and_the_latest_result() -> None:
    proposal = 'totals.plot.bar()\nprint("PROPOSED")'
    text = review(brief(*STEPS), 4, proposal, "A bar chart.")
    # the step in front of it, whole
    assert "## Proposed step 4 by analyst\nA bar chart.\n```python\n" + proposal in text
    # the latest result: what the step builds on and its output
    assert "### Step 3 (ok), definitions only" in text
    assert 'totals = df.groupby("region")["revenue"].sum()' in text
    assert "print(totals)" not in text
    assert "TOTALS-OUTPUT" in text
    # earlier steps: their definitions, no output, a failure as one line
    assert 'parse_dates=["date"]' in text
    assert "print(df.shape)" not in text
    assert "LOAD-OUTPUT" not in text
    assert "failed with <data>KeyError: 'price'</data>; superseded." in text
    # the schema, not the whole summary; no advice meant for the analyst
    assert "## Data (schema)" in text
    assert "2024-07-21" not in text
    assert "Reviewers:" not in text
    assert "FILES-NOTE" in text  # it judges where code writes


def test_the_critic_of_a_fix_sees_the_failed_step_whole_and_its_error_in_one_line() -> None:
    failed = ran(
        2, WRONG.code, out("PRINTED-BEFORE\n"), error("KeyError", "'price'"), status="error"
    )
    text = review(brief(LOAD, failed), 3, TOTALS.code)
    assert "### Step 2 (error)\n```python\n" + WRONG.code + "\n```\n" in text
    assert "failed with <data>KeyError: 'price'</data>" in text
    assert "PRINTED-BEFORE" not in text  # the author sees the whole output, not the critic
    assert "### Step 1 (ok), definitions only" in text
    # an earlier failure that nothing superseded yet is one line for the critic
    still = ran(3, "df.nope()", error("AttributeError", "nope"), status="error")
    text = review(brief(LOAD, WRONG, still), 4, "df.head()")
    assert "### Step 2 (error): failed with <data>KeyError: 'price'</data>." in text
    assert "### Step 3 (error)\n```python\ndf.nope()" in text


def test_the_critic_sees_code_the_user_edited_whole() -> None:
    edited = ran(3, TOTALS.code + "\nprint('EDITED')", out("TOTALS-OUTPUT\n"), proposed=TOTALS.code)
    text = review(brief(LOAD, edited), 4, "totals.plot()")
    assert "print('EDITED')" in text


def test_the_final_review_carries_the_full_summary_and_every_result() -> None:
    long = "x" * 900  # more than an author sees of an earlier step's output
    load = ran(1, LOAD.code, out(f"LOAD-OUTPUT {long}\n"))
    text = review(brief(load, WRONG, TOTALS), None, text="North leads.")
    assert "## Data\n<data>\n### sales" in text
    assert "2024-07-21" in text
    assert "10.613" in text
    # every step's output; its code as the definitions the critic judged before it ran
    assert 'parse_dates=["date"]' in text
    assert "print(df.shape)" not in text
    assert "### Step 3 (ok), definitions only" in text
    assert long in text
    assert "TOTALS-OUTPUT" in text
    assert "## Final report by analyst\nNorth leads." in text
    assert "FILES-NOTE" not in text  # no code to judge
    assert "Reviewers:" not in text
    assert long not in author(brief(load, WRONG, TOTALS))


def test_a_restart_is_said_where_the_lost_names_were_defined() -> None:
    died = Execution(
        code="boom()",
        status="died",
        outputs=(),
        execution_count=None,
        duration=1.0,
        restarted=True,
        note="The kernel died.",
    )
    step = Step(
        number=2,
        author="analyst",
        rationale="",
        code="boom()",
        proposed_code="boom()",
        execution=died,
    )
    text = author(brief(LOAD, step, ran(3, "import pandas as pd", out("ok\n"))))
    assert "the kernel was restarted, so the names of earlier steps are gone" in text


def test_compaction_still_applies_to_every_view() -> None:
    steps = [ran(n, f"frame_{n} = {n}\nprint(frame_{n})", out("o" * 2_000)) for n in range(1, 6)]
    limits = ContextLimits().compacted()
    for text in (
        author(brief(*steps), limits=limits),
        message_text(
            review_prompt(CRITIC, brief(*steps), author="a", step=6, text="", limits=limits)[-1]
        ),
        message_text(
            review_prompt(CRITIC, brief(*steps), author="a", step=None, text="R", limits=limits)[-1]
        ),
    ):
        assert "### Step 1 (ok): `frame_1 = 1` …" in text
        assert "### Step 3 (ok): `frame_3 = 3` …" in text
        assert "### Step 5 (ok)" in text


def test_definitions_keep_what_later_code_builds_on() -> None:
    code = """import matplotlib.pyplot as plt
monthly = (
    df.groupby("month")["revenue"]
    .sum()
)
monthly.plot()
plt.show()
print(monthly.tail(3))
df.dropna(inplace=True)
df.insert(0, "id", 1)
for col in ["a", "b"]:
    df[col] = df[col].astype(float)
for col in ["a", "b"]:
    print(col)
@staticmethod
def share(x):
    return x / x.sum()
n = await count()
monthly.tail(2)"""
    assert definitions(code) == (
        "import matplotlib.pyplot as plt\n"
        'monthly = (\n    df.groupby("month")["revenue"]\n    .sum()\n)\n'
        "df.dropna(inplace=True)\n"
        'df.insert(0, "id", 1)\n'
        'for col in ["a", "b"]:\n    df[col] = df[col].astype(float)\n'
        "@staticmethod\ndef share(x):\n    return x / x.sum()\n"
        "n = await count()"
    )
    assert definitions("print(1)\ndf.head()") == ""
    assert definitions("%matplotlib inline\nx = 1") is None  # not plain Python


def test_code_that_is_not_plain_python_is_shown_cut_not_dropped() -> None:
    magic = ran(1, "%timeit x = 1\ny = 2", out("fast\n"))
    text = author(brief(magic, ran(2, "z = y", out("ok\n"))))
    assert "%timeit x = 1\ny = 2" in text
    text = author(brief(ran(1, "print(1)", out("1\n")), ran(2, "z = 1", out("ok\n"))))
    assert "### Step 1 (ok), no definitions\nOutput:" in text


def test_a_summary_of_another_shape_is_its_own_schema() -> None:
    assert data_schema("[step error]\nNameError: sales") == "[step error]\nNameError: sales"
    frame_only = SUMMARY.split("\n\n### rate")[0]
    assert data_schema(frame_only).splitlines() == [
        "### sales: DataFrame, 10,000 rows x 4 columns",
        "dtypes: date str, region str, units int64, unit price float64",
        "ranges: units 1.00–20.00, unit price 3.14–59.39",
        "missing values: region 3",
    ]
