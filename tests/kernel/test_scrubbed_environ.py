"""Which variables a managed kernel inherits."""

from __future__ import annotations

import pytest

from agentnb.kernel.environment import is_secret, scrubbed_environ


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "PGPASSWORD",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSH_AUTH_SOCK",
        "my_api_key",
        "AGENTNB_GATEWAY_TOKEN",
        "HF_TOKEN",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret(name, "x")


@pytest.mark.parametrize(
    "name", ["PATH", "HOME", "LANG", "GIT_AUTHOR_NAME", "PYTHONPATH", "MPLBACKEND", "TERM"]
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret(name, "x")


def test_a_url_with_a_password_is_secret_whatever_its_name() -> None:
    assert is_secret("DATABASE_URL", "postgres://me:hunter2@db.example/sales")
    assert not is_secret("DATABASE_URL", "postgres://db.example/sales")
    assert not is_secret("HOMEPAGE", "https://example.org/a:b@c")


def test_scrub_keeps_the_allowed_and_adds_extras() -> None:
    env = scrubbed_environ(
        {
            "PATH": "/bin",
            "OPENAI_API_KEY": "sk-1",
            "HF_TOKEN": "t",
            "JPY_PARENT_PID": "1",
            "PYTEST_CURRENT_TEST": "x",
        },
        allow=["HF_TOKEN"],
        extra={"MPLBACKEND": "agg"},
    )
    assert env == {"PATH": "/bin", "HF_TOKEN": "t", "MPLBACKEND": "agg"}
