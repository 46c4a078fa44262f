"""``agentnb``: the command line.

``agentnb run TASK [flags]`` runs one analysis in a managed kernel, showing its
progress on stderr and printing the approved final report on stdout, so that
``agentnb run ... > report.md`` keeps just the answer. The flags have the names
of the notebook magic's. ``agentnb demo`` runs a shipped analysis offline with
scripted replies; ``agentnb replay TRANSCRIPT --out PATH`` rebuilds the analysis
notebook of a past run without calling any model; ``agentnb resume TRANSCRIPT``
continues a run that was stopped or cut short; ``agentnb eval SUITE --out DIR``
runs a benchmark suite and scores it (:mod:`agentnb.evaluate`).

Exit status: 0 when the final report was approved, 1 when the run ended without
an approved answer (the stop reason says why), 2 for usage and configuration
errors, 130 when stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markdown import Markdown
from rich.rule import Rule
from rich.text import Text

from . import demo
from .errors import AgentnbError
from .flags import FlagParser, HelpShown, UsageError, add_run_flags, given, split_names
from .options import Resolved, RunOptions

if TYPE_CHECKING:
    from .chat.resume import Resumption

__all__ = ["main"]

EXIT_OK = 0
EXIT_NO_ANSWER = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _parser() -> FlagParser:
    parser = FlagParser(
        prog="agentnb",
        description="Multi-agent data analysis in a managed Jupyter kernel.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"agentnb {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=FlagParser)
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run an analysis: an analyst proposes steps, a critic reviews them",
        description=(
            "Run an analysis. Progress goes to stderr; the approved final report to stdout. "
            "Exit status: 0 approved answer, 1 no approved answer, 2 usage or configuration "
            "error, 130 stopped with Ctrl-C."
        ),
    )
    run.add_argument("task", metavar="TASK", help="what to find out, in words (quote it)")
    add_run_flags(run, notebook=False)
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="show only the final report and the usage table",
    )

    demo = commands.add_parser(
        "demo",
        help="an analysis end to end, offline, with scripted replies",
        description=(
            "Analyse the sales data shipped with agentnb: scripted analyst and critic replies, "
            "a real managed kernel, real plots. Writes the analysis notebook into the current "
            "folder."
        ),
    )
    demo.add_argument(
        "--out",
        metavar="PATH.ipynb",
        default="agentnb-demo.ipynb",
        help="where to save the analysis notebook (default: agentnb-demo.ipynb)",
    )
    demo.add_argument(
        "--approve",
        choices=("each", "final", "never"),
        default="never",
        help="approve the steps yourself (default: never, the demo runs on its own)",
    )
    demo.add_argument("-q", "--quiet", action="store_true", help="less output")

    resume = commands.add_parser(
        "resume",
        help="continue a run that was stopped or cut short, from its transcript",
        description=(
            "Continue a run from its transcript: the steps that worked run again in a fresh "
            "managed kernel, then the chat goes on where it stopped. Without --model, each "
            "role gets the model it had."
        ),
    )
    resume.add_argument("transcript", metavar="TRANSCRIPT", help="the run's .jsonl transcript")
    add_run_flags(resume, notebook=False)
    resume.add_argument(
        "-q", "--quiet", action="store_true", help="show only the final report and the usage table"
    )

    replay = commands.add_parser(
        "replay",
        help="rebuild the analysis notebook of a past run from its transcript",
        description="Rebuild the analysis notebook from a transcript; no model is called.",
    )
    replay.add_argument("transcript", metavar="TRANSCRIPT", help="a run's .jsonl transcript")
    replay.add_argument("--out", metavar="PATH.ipynb", required=True, help="the notebook to write")

    evaluate = commands.add_parser(
        "eval",
        help="run a benchmark suite and score the answers (accuracy, tokens, cost, time)",
        description=(
            "Run every task of SUITE headless, each in its own managed kernel, and score the "
            "answers as the benchmark does. SUITE: a local copy of InfiAgent-DABench or "
            "DABStep in its published layout, a suite.jsonl of your own, or 'mini' (shipped). "
            "Results go to --out (results.jsonl, summary.json, summary.md, report.ipynb); the "
            "same command again resumes. Exit status: 0 done, 1 stopped because the first "
            "tasks all failed alike, 2 usage or configuration error, 130 Ctrl-C (finished "
            "tasks are kept)."
        ),
    )
    evaluate.add_argument("suite", metavar="SUITE", nargs="?", help="the suite to run")
    evaluate.add_argument(
        "--out",
        metavar="DIR",
        help="the results folder; one that holds a run of the same models is resumed",
    )
    evaluate.add_argument(
        "--concurrency", metavar="N", type=int, default=1, help="tasks at a time (default: 1)"
    )
    evaluate.add_argument(
        "--rerun-failed",
        action="store_true",
        help="run again the tasks that ended without an answer (errors, time-outs, budgets)",
    )
    evaluate.add_argument(
        "--no-critic",
        action="store_true",
        help="the analyst alone: no review of steps or report (to measure what the critic buys)",
    )
    evaluate.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="put two runs side by side (results folders or results.jsonl files); with --out, "
        "also write compare.json and compare.ipynb there",
    )
    evaluate.add_argument(
        "--ids", metavar="ID[,ID...]", action="append", help="only these tasks (repeatable)"
    )
    evaluate.add_argument("--limit", metavar="N", type=int, help="only the first N tasks")
    evaluate.add_argument(
        "--label", metavar="TEXT", help="the run's name in tables (default: its models)"
    )
    evaluate.add_argument("-q", "--quiet", action="store_true", help="no line per task")
    add_run_flags(evaluate, notebook=False, exclude=("data", "approve", "out", "transcript"))
    return parser


def _interactive() -> bool:
    """Both stdin and stdout are terminals: someone is there to approve."""
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _print_report(out: Console, report: str) -> None:
    if out.is_terminal:
        out.print(Rule("final report", style="green"))
        out.print(Markdown(report))
    else:  # a file or a pipe: the report's own text, unwrapped
        out.out(report.rstrip("\n"), highlight=False)


def _run(
    args: argparse.Namespace,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
) -> int:
    defaults = {"approve": "each" if _interactive() else "never"}
    resolved = RunOptions.resolve(given(args), defaults=defaults)
    return _analyse(args.task, split_names(args.data), resolved, args.quiet, out, err, input_fn)


def _resume(
    args: argparse.Namespace,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
) -> int:
    from .chat.resume import resumption

    if args.data:
        raise UsageError("resume loads the data as the earlier run did: leave out --data")
    earlier = resumption(args.transcript)
    defaults: dict[str, object] = {"approve": "each" if _interactive() else "never"}
    resolved = RunOptions.resolve(given(args), defaults=defaults)
    options = resolved.options
    if not (options.model or options.analyst_model or options.critic_model):
        resolved = RunOptions.resolve(given(args), defaults={**defaults, **earlier.role_models})
    return _analyse(earlier.task, [], resolved, args.quiet, out, err, input_fn, resume=earlier)


def _analyse(
    task: str,
    data: list[str],
    resolved: Resolved,
    quiet: bool,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
    *,
    resume: Resumption | None = None,
) -> int:
    from ._sync import SyncBridge
    from .run import run_with
    from .ui.terminal import TerminalApprover, TerminalView

    view = TerminalView(err, quiet=quiet)
    approver = None
    if resolved.options.approve != "never":
        approver = TerminalApprover(err, input_fn=input_fn)
    bridge = SyncBridge()
    try:
        result = bridge.run(
            run_with(
                task, resolved, data=data or None, approver=approver, on_event=view, resume=resume
            )
        )
    except KeyboardInterrupt:
        view.close()
        if view.finished is None:
            err.print(Text("\n✘ stopped (Ctrl-C): the run was cancelled", style="bold red"))
        return EXIT_INTERRUPTED
    finally:
        view.close()
        bridge.close()
    if not quiet and result.transcript_path is not None:
        err.print(Text(f"transcript: {result.transcript_path}", style="dim"))
    if result.notebook is not None:
        err.print(Text(f"notebook: {result.notebook}", style="bold"))
    if result.final_report is not None and result.ok:
        _print_report(out, result.final_report)
    return EXIT_OK if result.ok else EXIT_NO_ANSWER


DEMO_TASK = demo.TASK

_REAL_MODEL_HINT = (
    "The replies above were scripted ({script}). To run your own analysis with a real model:\n"
    '  agentnb run "your question" --data your.csv --model gpt-4o-mini   '
    "(with OPENAI_API_KEY set)\n"
    '  OPENAI_BASE_URL=http://localhost:11434/v1 agentnb run "..." --data your.csv '
    "--model llama3.1   (Ollama, vLLM, LM Studio, llama.cpp)"
)


def _demo(
    args: argparse.Namespace,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
) -> int:
    from .models.scripted import ScriptedModel

    script = str(demo.REPLIES)
    err.print(
        Text(
            "agentnb demo: the analyst's and the critic's replies are scripted; the code, "
            "the kernel and the plots are real.",
            style="bold",
        )
    )
    # paced like a model on a terminal; at full speed for pipes and tests
    model = ScriptedModel(script, chunk_delay=0.004 if err.is_terminal else 0.0)
    resolved = RunOptions.resolve(
        # the demo's own settings; the environment still chooses the sandbox
        {"model": model, "approve": args.approve, "max_turns": 30, "out": args.out},
        given_as="demo",
    )
    status = _analyse(DEMO_TASK, [str(demo.SALES)], resolved, args.quiet, out, err, input_fn)
    err.print(Text(_REAL_MODEL_HINT.format(script=script), style="dim"))
    return status


def _replay(
    args: argparse.Namespace,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
) -> int:
    from .jupyter.notebook import notebook_from_transcript, save_notebook

    path = save_notebook(notebook_from_transcript(args.transcript), args.out).absolute()
    out.print(str(path), markup=False, highlight=False)
    return EXIT_OK


def _eval(
    args: argparse.Namespace,
    out: Console,
    err: Console,
    input_fn: Callable[[str], str] | None,
) -> int:
    from ._sync import SyncBridge
    from .evaluate import EvalAborted, compare, evaluate_with, write_summary
    from .evaluate.report import write_comparison
    from .evaluate.view import ProgressView, summary_table

    if args.compare:
        if args.suite:
            raise UsageError("give a SUITE to run, or --compare A B, not both")
        comparison = compare(*args.compare)
        out.print(summary_table(comparison["runs"]))
        a, b = (run["label"] for run in comparison["runs"])
        out.print(
            f"\non the {comparison['common']} tasks both ran: {comparison['both']} right in both, "
            f"{len(comparison['only_a'])} only in {a}, {len(comparison['only_b'])} only in {b}, "
            f"{comparison['neither']} in neither",
            markup=False,
            highlight=False,
        )
        if args.out:
            err.print(Text(f"notebook: {write_comparison(comparison, args.out)}", style="bold"))
        return EXIT_OK
    if not args.suite or not args.out:
        raise UsageError("give a SUITE and --out DIR, or --compare A B (see 'agentnb eval --help')")
    options = {k: v for k, v in given(args).items() if k != "out"}  # --out is eval's folder
    options["approve"] = "never"  # headless, whatever $AGENTNB_APPROVE says
    resolved = RunOptions.resolve(options, defaults={"approve": "never"})
    view = ProgressView(err, quiet=args.quiet)
    bridge = SyncBridge()
    try:
        result = bridge.run(
            evaluate_with(
                args.suite,
                resolved,
                out=args.out,
                concurrency=args.concurrency,
                rerun_failed=args.rerun_failed,
                critic=not args.no_critic,
                ids=split_names(args.ids) or None,
                limit=args.limit,
                label=args.label,
                view=view,
            )
        )
    except KeyboardInterrupt:
        view.close()
        err.print(
            Text(
                f"\n✘ stopped (Ctrl-C): the finished tasks are kept in {args.out}; the same "
                "command goes on from there",
                style="bold red",
            )
        )
        if (Path(args.out) / "run.json").is_file():
            out.print(summary_table([write_summary(args.out)]))
        return EXIT_INTERRUPTED
    except EvalAborted as exc:
        err.print(f"agentnb: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_NO_ANSWER
    finally:
        view.close()
        bridge.close()
    out.print(summary_table([result.summary]))
    err.print(Text(f"results: {result.results_path}", style="dim"))
    err.print(Text(f"notebook: {result.notebook_path}", style="bold"))
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, input_fn: Callable[[str], str] | None = None) -> int:
    """Run the ``agentnb`` command; return its exit status.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
        input_fn: reads one line of the user's answers at approval prompts
            (default: ``input``); for tests and embedding.
    """
    err = Console(stderr=True)
    out = Console()
    try:
        args = _parser().parse_args(list(argv) if argv is not None else None)
    except UsageError as exc:
        err.print(f"agentnb: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except HelpShown:
        return EXIT_OK
    commands = {
        "run": _run,
        "demo": _demo,
        "replay": _replay,
        "resume": _resume,
        "eval": _eval,
    }
    try:
        return commands[args.command](args, out, err, input_fn)
    except AgentnbError as exc:
        message = " ".join(str(exc).split("\n"))
        err.print(f"agentnb: error: {message}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:  # before the run began, or while it was shut down
        err.print(Text("✘ stopped (Ctrl-C)", style="bold red"))
        return EXIT_INTERRUPTED
