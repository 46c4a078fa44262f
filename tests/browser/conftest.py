"""Fixtures of the browser tier: a Jupyter server per frontend, chromium, a page, a notebook.

Every test that uses ``jupyter_server`` (directly or through ``notebook``) runs twice: in
JupyterLab (``[lab]``) and in Notebook 7 (``[notebook]``).

Keep tests and fixtures here sync (``def``): Playwright's sync API runs its own event loop and
refuses to start inside a running one.

A scenario::

    def test_something(notebook: Notebook) -> None:
        notebook.create("x.ipynb", ["import ipywidgets as w\nw.Button(description='Go')"])
        notebook.open("x.ipynb")
        notebook.run_cell(0)                  # real Ctrl+Enter on the selected cell
        notebook.click_button("Go", within=0)
        saved = notebook.save()               # real Ctrl+S, then read back via /api/contents

One frontend only: ``@pytest.mark.parametrize("jupyter_server", ["lab"], indirect=True)``.
A failing test's report carries the page state, the console, the server log of the test and
``screenshots/<test>/FAILED.png``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Final

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from .harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    FRONTENDS,
    SAVE_REFUSALS,
    VIEWPORT,
    ConsoleLog,
    JupyterServer,
    Notebook,
)

# Screenshots of a run: one folder per test, emptied when the test starts.
SCREENSHOTS = Path(__file__).parent / "screenshots"

# The servers and the browser live as long as the tests of this folder run, not the whole
# session: while Playwright's sync API is alive it marks its event loop as the thread's running
# loop, and pytest-asyncio could not run the async tests of the other tiers.
SCOPE: Final = "package"

NOTEBOOK_KEY = pytest.StashKey["tuple[Notebook, int]"]()
READY_KEY = pytest.StashKey["dict[str, float]"]()


@pytest.fixture(scope=SCOPE, params=FRONTENDS)
def jupyter_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JupyterServer]:
    """A running ``jupyter lab`` or ``jupyter notebook`` (the param), isolated in a tmp dir."""
    frontend = request.param
    server = JupyterServer(frontend, tmp_path_factory.mktemp(f"jupyter-{frontend}"))
    server.start()
    assert server.ready_seconds is not None
    request.config.stash.setdefault(READY_KEY, {})[frontend] = server.ready_seconds
    yield server
    server.stop()
    if server.orphans:
        pytest.fail(
            f"the {frontend} server left processes behind (now killed): {server.orphans}\n"
            f"{server.log_tail()}"
        )


@pytest.fixture
def frontend(jupyter_server: JupyterServer) -> str:
    """``"lab"`` or ``"notebook"``: which frontend this run of the test drives."""
    return jupyter_server.frontend


@pytest.fixture(scope=SCOPE)
def browser() -> Iterator[Browser]:
    """Headless Debian chromium."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} not found: the browser tier needs Debian's chromium package "
            "(.ci/run installs it: apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def console() -> ConsoleLog:
    """Console messages and uncaught errors of the test's page (``.errors``, ``.messages``)."""
    return ConsoleLog()


@pytest.fixture
def page(browser: Browser, console: ConsoleLog) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies, no storage), 1280×900."""
    context = browser.new_context(viewport=VIEWPORT)
    opened = context.new_page()
    opened.set_default_timeout(30_000)
    console.attach(opened)
    yield opened
    context.close()


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@pytest.fixture
def notebook(
    request: pytest.FixtureRequest,
    jupyter_server: JupyterServer,
    page: Page,
    console: ConsoleLog,
) -> Iterator[Notebook]:
    """The notebook driver for this test: an empty server root, no kernels running."""
    jupyter_server.shutdown_kernels()
    _empty(jupyter_server.root)
    shots = SCREENSHOTS / re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(shots, ignore_errors=True)
    driver = Notebook(page, jupyter_server, console, shots)
    request.node.stash[NOTEBOOK_KEY] = (driver, jupyter_server.log_size())
    yield driver
    page.context.close()  # before the kernels go, so the frontend does not react to it
    jupyter_server.shutdown_kernels()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed browser test's report gets the page state, console, a screenshot, server log."""
    report = yield
    if report.failed and report.when in ("setup", "call") and NOTEBOOK_KEY in item.stash:
        driver, log_start = item.stash[NOTEBOOK_KEY]
        try:
            shot = f"saved in {driver.screenshot('FAILED')}"
        except Exception as error:  # the page may be gone
            shot = f"not possible: {error}"
        report.sections.append(("browser: screenshot", shot))
        report.sections.append(("browser: page", driver.describe()))
        report.sections.append(("browser: console", driver.console.format()))
        report.sections.append(
            ("jupyter server log during the test", driver.server.log_tail(log_start))
        )
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    ready = terminalreporter.config.stash.get(READY_KEY, None)
    if ready:
        times = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in ready.items())
        terminalreporter.write_line(f"browser tier: Jupyter server ready in {times}")
    for refusal in SAVE_REFUSALS:
        terminalreporter.write_line(
            f"browser tier: a save was refused, then pressed again: {refusal}"
        )
