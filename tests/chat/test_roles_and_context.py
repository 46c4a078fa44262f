"""Roles as data, speaker selection, and what each agent is shown."""

from __future__ import annotations

import itertools

import pytest

from agentnb.agents import ANALYST, CRITIC, Role
from agentnb.errors import ConfigError
from agentnb.events import MessagePosted, Notice
from agentnb.messages import Review
from agentnb.models.base import ChatMessage
from agentnb.models.scripted import ScriptedModel
from agentnb.speakers import SelectionState

from .conftest import ChatRunner, step

STATISTICIAN = Role.persona(
    "statistician", "You are a statistician. Insist on sample sizes.", description="checks stats"
)


async def test_a_persona_reviews_every_step_with_the_critic(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print(10)"), "Ten."],
            "critic": ["APPROVE", "APPROVE"],
            "statistician": ["APPROVE n is fine", "APPROVE"],
        },
        roles=[ANALYST, CRITIC, STATISTICIAN],
    )
    assert run.result.ok
    assert run.speakers == [
        "analyst",
        "critic",
        "statistician",
        "run",
        "analyst",
        "critic",
        "statistician",
    ]
    # its persona and the reviewer protocol make its system prompt
    system = next(m for who, msgs in run.model.prompts if who == "statistician" for m in msgs)
    assert system.role == "system"
    assert "Insist on sample sizes." in str(system.content)
    assert "APPROVE or REVISE" in str(system.content)


async def test_round_robin_takes_turns_among_reviewers(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print(1)"), step("print(2)"), "Done."],
            "critic": ["APPROVE", "APPROVE"],
            "statistician": ["APPROVE"],
        },
        roles=[ANALYST, CRITIC, STATISTICIAN],
        selector="round_robin",
    )
    assert run.result.ok
    reviewers = [m.message.sender for m in run.of(MessagePosted) if isinstance(m.message, Review)]
    assert reviewers == ["critic", "statistician", "critic"]


async def test_a_model_selects_the_speaker_and_its_calls_are_counted(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print(1)"), "Done."],
            "critic": ["APPROVE"],
            "statistician": ["APPROVE"],
            "selector": ["statistician", "Critic, I think."],
        },
        roles=[ANALYST, CRITIC, STATISTICIAN],
        selector="model",
    )
    assert run.result.ok
    reviewers = [m.message.sender for m in run.of(MessagePosted) if isinstance(m.message, Review)]
    assert reviewers == ["statistician", "critic"]
    assert run.result.usage["selector"].calls == 2
    # the selector is only asked when there is a choice: one author, so no call for proposals
    assert run.speakers.count("selector") == 2
    assert "- statistician: checks stats" in run.prompts("selector")[0]


async def test_a_selector_model_naming_nobody_falls_back_with_a_notice(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": ["Done."],
            "critic": ["APPROVE"],
            "selector": ["I cannot decide."],
        },
        roles=[ANALYST, CRITIC, STATISTICIAN],
        selector="model",
    )
    assert run.result.ok
    reviewers = [m.message.sender for m in run.of(MessagePosted) if isinstance(m.message, Review)]
    assert reviewers == ["critic"]
    assert any("named no candidate" in n.text for n in run.of(Notice))


async def test_a_function_selects_the_speakers(chat: ChatRunner) -> None:
    seen: list[str] = []

    def pick(state: SelectionState) -> str | list[str]:
        seen.append(state.phase)
        if state.phase == "propose":
            return "analyst"
        return ["statistician"]

    run = await chat(
        {"analyst": [step("print(1)"), "Done."], "statistician": ["APPROVE", "APPROVE"]},
        roles=[ANALYST, CRITIC, STATISTICIAN],
        selector=pick,
    )
    assert run.result.ok
    assert seen == ["propose", "review_step", "propose", "review_final"]


async def test_a_selector_naming_a_stranger_is_a_clear_error(chat: ChatRunner) -> None:
    run = await chat({"analyst": [step("print(1)")]}, selector=lambda state: "nobody")
    assert run.result.stop_reason.kind == "error"
    assert "'nobody'" in run.result.stop_reason.message
    assert "analyst" in run.result.stop_reason.message


async def test_old_tracebacks_are_not_sent_again(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                step("ctx_df = {'a': 1}\nctx_df['price']"),
                step("print(ctx_df['a'])"),
                step("print('third')"),
                "Done.",
            ],
            "critic": ["APPROVE"] * 4,
        }
    )
    assert run.result.ok
    prompts = run.prompts("analyst")
    assert "KeyError" in prompts[1]
    assert "Traceback" in prompts[1] or "ctx_df['price']" in prompts[1]
    # once a later step succeeded, the failure is one line: no code, no traceback
    assert "### Step 1 (error): failed with KeyError: 'price'; superseded." in prompts[2]
    assert "ctx_df['price']" not in prompts[2]


async def test_prompts_grow_linearly_with_the_steps(chat: ChatRunner) -> None:
    n = 8
    run = await chat(
        {
            "analyst": [step(f"print('row {i}: ' + 'x' * 60)") for i in range(n)] + ["Done."],
            "critic": ["APPROVE"] * (n + 1),
        },
        max_turns=None,
    )
    assert run.result.ok
    sizes = [len(p) for p in run.prompts("analyst")]
    growth = [b - a for a, b in itertools.pairwise(sizes)]
    # each step adds about the same amount: no quadratic re-sending
    assert max(growth[1:]) <= 1.5 * min(growth[1:])
    assert sizes[-1] < 12 * sizes[1]


async def test_vision_models_see_the_latest_plot(chat: ChatRunner) -> None:
    model = ScriptedModel(
        {
            "analyst": [
                step("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"),
                "The line peaks at 3.",
            ],
            "critic": ["APPROVE", "APPROVE"],
        },
        vision=True,
    )
    run = await chat(model=model, vision=True)
    assert run.result.ok
    final_review: list[ChatMessage] = [msgs for who, msgs in model.prompts if who == "critic"][-1]
    parts = final_review[-1].content
    assert isinstance(parts, tuple)
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 1
    assert images[0]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")


async def test_without_vision_prompts_stay_text(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [
                step("import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"),
                "Up.",
            ],
            "critic": ["APPROVE", "APPROVE"],
        }
    )
    assert all(isinstance(m.content, str) for _, msgs in run.model.prompts for m in msgs)
    assert "[image/png" in run.prompts("analyst")[1]  # described, not sent


def test_roles_are_checked() -> None:
    with pytest.raises(ConfigError, match="role name"):
        Role("two words", "author", "x")
    with pytest.raises(ConfigError, match="author"):
        Role("x", "judge", "x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="empty"):
        Role.persona("blank", "  ")


async def test_advice_given_with_an_approval_reaches_the_analyst(chat: ChatRunner) -> None:
    run = await chat(
        {
            "analyst": [step("print('totals')"), "Done."],
            "critic": ["APPROVE. Next, plot the totals by month.", "APPROVE"],
        }
    )
    assert run.result.ok
    assert "Reviewers: critic: Next, plot the totals by month." in run.prompts("analyst")[1]
    # a reviewer of a later step sees earlier steps as code and status, not their output
    assert "Output:" not in run.prompts("critic")[0]
